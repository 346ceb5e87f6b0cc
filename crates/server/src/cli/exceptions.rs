//! `waybill exceptions list|retry|resolve|assign|assign-line`: the exception workbench on
//! a running server.

use clap::Subcommand;
use waybill_control::proto;

use super::render::{Output, age, json, table};
use super::{Remote, call};

#[derive(Debug, Subcommand)]
pub(crate) enum ExceptionsCommand {
    /// Exceptions on the workbench.
    List {
        #[command(flatten)]
        remote: Remote,
        /// Category (`master-data`, `stock-shortage`, `approval-overdue`, ...).
        #[arg(long)]
        category: Option<String>,
        /// Open ones only.
        #[arg(long)]
        open: bool,
        /// Raised at least this many seconds ago.
        #[arg(long, default_value_t = 0)]
        min_age: i64,
        /// Only exceptions assigned to this owner (`-` for unassigned ones).
        #[arg(long)]
        owner: Option<String>,
        /// Only exceptions of orders of this customer (Odoo partner ref).
        #[arg(long)]
        customer: Option<String>,
        /// Only exceptions of this legal entity (its code in `[entities]`).
        #[arg(long)]
        entity: Option<String>,
        /// At most this many per page.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Page token printed by the previous page.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Re-issue the command of the step an exception is about, with its original
    /// idempotency key (operator).
    Retry {
        /// Exception id (`o2f:SO0042/pick-overdue/1`).
        exception_id: String,
        /// Why (recorded in the audit).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Close an open exception by hand, saying what was done (operator).
    Resolve {
        /// Exception id.
        exception_id: String,
        /// What was done (required).
        #[arg(long)]
        note: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Assign an open exception to an owner who is to work it, or to a new owner
    /// (operator).
    Assign {
        /// Exception id.
        exception_id: String,
        /// Who is to work it: a person or team identity.
        #[arg(long)]
        owner: String,
        /// Why this owner, what to do (recorded in the journal and the audit).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Apply an unmatched bank-statement line by hand (operator): the invoices it pays and,
    /// for what they leave, the customer whose account keeps it. Waybill sends the line's
    /// one journal entry to finance and closes the exception.
    AssignLine {
        /// The line's unmatched-payment exception (`cash:<statement>/unmatched-payment/1`).
        exception_id: String,
        /// An invoice the line pays and how much of it: NUMBER=AMOUNT
        /// (`INV/2026/0001=120.00`); repeat for each invoice.
        #[arg(long = "invoice", value_name = "NUMBER=AMOUNT", value_parser = parse_invoice)]
        invoices: Vec<proto::LineAllocation>,
        /// The customer (finance's customer reference) whose account keeps what the
        /// invoices leave of the line.
        #[arg(long, value_name = "CUSTOMER")]
        on_account: Option<String>,
        /// How the allocation was established (required; in the journal and the audit).
        #[arg(long)]
        note: String,
        #[command(flatten)]
        remote: Remote,
    },
}

fn parse_invoice(text: &str) -> Result<proto::LineAllocation, String> {
    waybill_control::statement_line::parse_allocation(text)
}

pub(crate) fn run(command: ExceptionsCommand) -> anyhow::Result<()> {
    let (remote, req) = match command {
        ExceptionsCommand::List { remote, category, open, min_age, owner, customer, entity, limit, page_token } => {
            let req = proto::ListExceptionsRequest {
                category: category.unwrap_or_default(),
                open_only: open,
                min_age_seconds: min_age,
                limit,
                owner: owner.unwrap_or_default(),
                customer: customer.unwrap_or_default(),
                page_size: limit,
                page_token: page_token.unwrap_or_default(),
                entity: entity.unwrap_or_default(),
            };
            (remote, req)
        }
        ExceptionsCommand::Retry { exception_id, note, remote } => {
            let req = proto::ExceptionActionRequest { exception_id, note };
            let resp = call(&remote, async |mut c| Ok(c.workbench.retry_exception(req).await?.into_inner()))?;
            return print_exception_action(&remote, &resp);
        }
        ExceptionsCommand::Resolve { exception_id, note, remote } => {
            let req = proto::ExceptionActionRequest { exception_id, note };
            let resp = call(&remote, async |mut c| Ok(c.workbench.resolve_exception(req).await?.into_inner()))?;
            return print_exception_action(&remote, &resp);
        }
        ExceptionsCommand::Assign { exception_id, owner, note, remote } => {
            let req = proto::AssignExceptionRequest { exception_id, owner, note };
            let resp = call(&remote, async |mut c| Ok(c.workbench.assign_exception(req).await?.into_inner()))?;
            return print_exception_action(&remote, &resp);
        }
        ExceptionsCommand::AssignLine { exception_id, invoices, on_account, note, remote } => {
            let req = proto::AssignStatementLineRequest {
                exception_id,
                allocations: invoices,
                on_account: on_account.unwrap_or_default(),
                note,
                ..Default::default()
            };
            let resp = call(&remote, async |mut c| Ok(c.workbench.assign_statement_line(req).await?.into_inner()))?;
            return print_exception_action(&remote, &resp);
        }
    };
    let resp = call(&remote, async |mut c| Ok(c.queries.list_exceptions(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&resp);
    }
    // The entity column only where entities are configured.
    let entities = resp.exceptions.iter().any(|x| !x.entity.is_empty());
    let rows: Vec<Vec<String>> = resp
        .exceptions
        .iter()
        .map(|x| {
            let mut row = vec![x.exception_id.clone(), x.category.clone(), x.order_ref.clone()];
            if entities {
                row.push(or_dash(&x.entity));
            }
            row.extend([
                or_dash(&x.customer),
                or_dash(&x.owner),
                age(x.raised_at_us),
                if x.resolved_at_us == 0 { "open".into() } else { "resolved".into() },
                x.message.clone(),
            ]);
            row
        })
        .collect();
    let mut header = vec!["EXCEPTION", "CATEGORY", "ORDER"];
    if entities {
        header.push("ENTITY");
    }
    header.extend(["CUSTOMER", "OWNER", "AGE", "STATE", "MESSAGE"]);
    print!("{}", table(&header, &rows));
    println!("{} exceptions", rows.len());
    if !resp.next_page_token.is_empty() {
        println!("more: --page-token {}", resp.next_page_token);
    }
    Ok(())
}

pub(crate) fn print_exception_action(remote: &Remote, resp: &proto::ExceptionActionResponse) -> anyhow::Result<()> {
    if remote.output == Output::Json {
        return json(resp);
    }
    println!("{}", resp.message);
    if let Some(x) = &resp.exception {
        let state = if x.resolved_at_us == 0 { "open".to_string() } else { format!("resolved: {}", x.resolution) };
        println!("exception  {} ({}, order {})", x.exception_id, x.category, x.order_ref);
        println!("state      {state}");
        if !x.owner.is_empty() {
            println!("owner      {} (assigned {} ago)", x.owner, age(x.assigned_at_us));
        }
    }
    if resp.action == waybill_control::statement_line::ACTION && !resp.idempotency_key.is_empty() {
        println!("entry      {} (sent to finance)", resp.idempotency_key);
    }
    if !resp.event_id.is_empty() {
        println!("event      {}", resp.event_id);
    }
    Ok(())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_string() }
}
