//! `waybill statements import`: a bank statement file (camt.053, MT940) or a payment
//! gateway's settlement report, read and posted to ingestion as the bank, one
//! `StatementReceived` per statement in the file, each with the receivables open in
//! finance from an export (`--open-items`, CSV; see `waybill_bank::open_items`).
//!
//! Each statement's event id names the statement and the file's checksum, and everything
//! in the event comes from the files, so importing the same file again changes nothing, and another file under the same statement id is
//! refused by cash application to the dead-letter topic, naming both checksums.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use waybill_bank::record;
use waybill_connect::client::{Client, Timeouts};
use waybill_domain::cash::correlation_key;
use waybill_domain::{EventBody, EventMeta, InboundEvent, SourceRef, System, Timestamp};

#[derive(Debug, Subcommand)]
pub(crate) enum StatementsCommand {
    /// Read a statement file and post each statement to a running server's ingestion.
    Import {
        /// The file: camt.053 XML, MT940, or a settlement report CSV.
        file: PathBuf,
        /// The receivables open in finance (CSV: number, customer_ref, customer_name,
        /// open_amount, currency, due_date).
        #[arg(long)]
        open_items: PathBuf,
        /// Ingestion URL of the server.
        #[arg(long, env = "WAYBILL_INGEST", default_value = "http://127.0.0.1:8420")]
        ingest: String,
        /// The bank importer's ingestion token (an identity with `system = "bank"`).
        #[arg(long, env = "WAYBILL_INGEST_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Read and check the files, print what would be posted, post nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) fn run(command: StatementsCommand) -> anyhow::Result<()> {
    let StatementsCommand::Import { file, open_items, ingest, token, dry_run } = command;
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()));
    let bytes = read(&file)?;
    let items = waybill_bank::open_items::parse(&read(&open_items)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", open_items.display()))?;
    let statements = waybill_bank::parse_file(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let checksum = waybill_bank::checksum(&bytes);
    let client = Client::new("waybill", Timeouts { connect: Duration::from_secs(5), call: Duration::from_secs(60) });
    let url = format!("{}/v1/events", ingest.trim_end_matches('/'));
    let headers: Vec<(&str, String)> = token.iter().map(|t| ("Authorization", format!("Bearer {t}"))).collect();
    let mut refused = 0;
    for s in &statements {
        let r = record::statement_received(s, &checksum, items.clone());
        let key = correlation_key(&r.statement_key);
        let short: String = r.checksum.chars().take(16).collect();
        let event = InboundEvent {
            meta: EventMeta {
                event_id: format!("bank:import:{}:{short}", r.statement_key),
                source: SourceRef::new(System::Bank, r.statement_id.clone()),
                correlation_key: key.clone(),
                // From the file, not the clock: the same file imported again is the same
                // event, which ingestion takes as a redelivery.
                occurred_at: r.lines.iter().filter_map(|l| l.booking_date).max().unwrap_or(Timestamp(0)),
                actor: None,
            },
            body: EventBody::StatementReceived(Box::new(r.clone())),
        };
        let what = format!("{} statement {} ({} lines, {} open items)", r.format, key, r.lines.len(), items.len());
        if dry_run {
            println!("{what}: checked, not posted (--dry-run)");
            continue;
        }
        let body = waybill_schema::encode_event_json(&event);
        let answer = client.post(&url, "/v1/events", &headers, "application/json", &body, None).map_err(|e| {
            anyhow::anyhow!("cannot reach ingestion at {url}: {e}; is the server running (ingest.listen)?")
        })?;
        match answer.failure() {
            None => println!("{what}: posted as {}", event.meta.event_id),
            Some(_) => {
                refused += 1;
                let said = waybill_connect::client::error_message(&answer.body);
                println!("{what}: refused by ingestion ({}): {said}", answer.status);
            }
        }
    }
    if refused > 0 {
        anyhow::bail!("{refused} of {} statements were refused; nothing else was changed", statements.len());
    }
    Ok(())
}
