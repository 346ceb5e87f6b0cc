//! `waybill reconcile stock`: a reconciliation run now, on a running server (operator;
//! audited). Prints the run's findings — each also an open `RECONCILIATION_MISMATCH`
//! exception — and where its JSON report was written.

use clap::Subcommand;
use waybill_control::proto;

use super::render::{Output, json, table};
use super::{Remote, call};

#[derive(Debug, Subcommand)]
pub(crate) enum ReconcileCommand {
    /// Each product's on-hand at the warehouse system against what Waybill expects (the
    /// baseline moved by what it journaled since).
    Stock {
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) fn run(command: ReconcileCommand) -> anyhow::Result<()> {
    let ReconcileCommand::Stock { remote } = command;
    let req = proto::ReconcileRequest { kind: "stock".into() };
    let report = call(&remote, async |mut c| Ok(c.reconciliation.reconcile(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&report);
    }
    print!("{}", render(&report));
    Ok(())
}

/// The report as a clerk reads it: the counts, then one row per finding.
pub(crate) fn render(r: &proto::ReconcileReport) -> String {
    let mut out = format!(
        "reconciliation {} ({}, tolerance {}): {} products compared, {} agree, {} baselined, {} findings, {} closed, {} moving (next run)\n",
        r.run_id,
        r.kind,
        r.tolerance,
        r.compared,
        r.agreed,
        r.baselined.len(),
        r.findings.len(),
        r.closed.len(),
        r.unsettled.len()
    );
    if !r.findings.is_empty() {
        let rows: Vec<Vec<String>> = r
            .findings
            .iter()
            .map(|f| {
                vec![
                    f.sku.clone(),
                    f.on_hand.clone(),
                    f.expected.clone(),
                    f.difference.clone(),
                    if f.wms_last_movement.is_empty() { "-".into() } else { f.wms_last_movement.clone() },
                    if f.journal_last_movement.is_empty() { "-".into() } else { f.journal_last_movement.clone() },
                    if f.already_open { "still open".into() } else { "new".into() },
                ]
            })
            .collect();
        out.push_str(&table(
            &["SKU", "WAREHOUSE", "EXPECTED", "DIFFERENCE", "LAST AT WAREHOUSE", "LAST JOURNALED", "FINDING"],
            &rows,
        ));
        out.push_str("each finding is a RECONCILIATION_MISMATCH exception: `waybill exceptions list --category reconciliation-mismatch`\n");
    }
    if !r.closed.is_empty() {
        out.push_str(&format!("closed (back in agreement): {}\n", r.closed.join(", ")));
    }
    out.push_str(&format!("report: {}\n", r.report_path));
    out
}
