//! `waybill exceptions list|retry|resolve`: the exception workbench on a running server.

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
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
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
}

pub(crate) fn run(command: ExceptionsCommand) -> anyhow::Result<()> {
    let (remote, category, open, min_age, limit) = match command {
        ExceptionsCommand::List { remote, category, open, min_age, limit } => (remote, category, open, min_age, limit),
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
    };
    let req = proto::ListExceptionsRequest {
        category: category.unwrap_or_default(),
        open_only: open,
        min_age_seconds: min_age,
        limit,
    };
    let resp = call(&remote, async |mut c| Ok(c.queries.list_exceptions(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&resp);
    }
    let rows: Vec<Vec<String>> = resp
        .exceptions
        .iter()
        .map(|x| {
            vec![
                x.exception_id.clone(),
                x.category.clone(),
                x.order_ref.clone(),
                age(x.raised_at_us),
                if x.resolved_at_us == 0 { "open".into() } else { "resolved".into() },
                x.message.clone(),
            ]
        })
        .collect();
    print!("{}", table(&["EXCEPTION", "CATEGORY", "ORDER", "AGE", "STATE", "MESSAGE"], &rows));
    println!("{} exceptions", rows.len());
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
    }
    println!("event      {}", resp.event_id);
    Ok(())
}
