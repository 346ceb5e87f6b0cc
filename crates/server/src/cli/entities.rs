//! `waybill entities`: the legal entities of a configuration, every layer applied — what
//! an order, statement or held posting of each is decided under.

use clap::Args;
use figment::Figment;
use serde::Serialize;

use super::Common;
use super::render::{Output, json, table};

/// `waybill entities`.
#[derive(Debug, Args)]
pub(crate) struct EntitiesArgs {
    #[command(flatten)]
    common: Common,
    /// `table` or `json`.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// One entity as its decisions see it.
#[derive(Debug, Serialize)]
struct Line {
    code: String,
    name: String,
    default: bool,
    template: Option<String>,
    currency: String,
    odoo_company_id: Option<i64>,
    bank_accounts: Vec<String>,
    tax_codes: Vec<String>,
    hold_invoices_above: String,
    hold_credit_notes_above: String,
    approval_limits: Vec<(String, String)>,
    cash_window: String,
}

pub(crate) fn run(args: EntitiesArgs) -> anyhow::Result<()> {
    let cfg = args.common.load(Figment::new())?;
    let entities = &cfg.policy.entities;
    let default = entities.default_entity().map(|e| e.code.clone());
    let money = |m: waybill_domain::Money| if m.0 == i64::MAX { "no limit".to_string() } else { m.to_string() };
    let lines: Vec<Line> = entities
        .iter()
        .map(|e| {
            let p = &e.policy;
            Line {
                code: e.code.clone(),
                name: e.name.clone(),
                default: default.as_deref() == Some(e.code.as_str()),
                template: e.template.clone(),
                currency: e.currency.clone(),
                odoo_company_id: e.odoo_company_id,
                bank_accounts: e.bank_accounts.iter().cloned().collect(),
                tax_codes: e.tax_codes.iter().cloned().collect(),
                hold_invoices_above: money(p.posting.hold_invoices_above),
                hold_credit_notes_above: money(p.posting.hold_credit_notes_above),
                approval_limits: p.posting.approval_limits.iter().map(|(r, m)| (r.clone(), money(*m))).collect(),
                cash_window: if p.cash.schedule.trim().is_empty() {
                    "as each statement arrives".to_string()
                } else {
                    format!("{} ({})", p.cash.schedule, p.cash.time_zone)
                },
            }
        })
        .collect();
    if args.output == Output::Json {
        return json(&lines);
    }
    if lines.is_empty() {
        println!("no entities configured: one company, decided under [policy]");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                format!("{}{}", l.code, if l.default { " (default)" } else { "" }),
                l.name.clone(),
                l.template.clone().unwrap_or_else(|| "-".into()),
                l.currency.clone(),
                l.odoo_company_id.map_or("-".into(), |id| id.to_string()),
                l.tax_codes.join(" "),
                l.hold_invoices_above.clone(),
                l.approval_limits.iter().map(|(r, m)| format!("{r} {m}")).collect::<Vec<_>>().join(", "),
                l.cash_window.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ENTITY",
                "NAME",
                "TEMPLATE",
                "CUR",
                "ODOO",
                "TAX CODES",
                "HOLD INVOICES ABOVE",
                "APPROVAL LIMITS",
                "CASH APPLIED"
            ],
            &rows
        )
    );
    for l in &lines {
        if !l.bank_accounts.is_empty() {
            println!("{}: bank accounts {}", l.code, l.bank_accounts.join(", "));
        }
    }
    Ok(())
}
