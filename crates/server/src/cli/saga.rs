//! `waybill saga replay [--dry-run]`: feed an order's inbound events through its sagas.

use clap::Subcommand;
use waybill_control::proto;

use super::render::{Output, json, table};
use super::{Remote, call};

#[derive(Debug, Subcommand)]
pub(crate) enum SagaCommand {
    /// Feed an order's inbound events through its sagas again: records already applied
    /// change nothing; dead-lettered or mishandled ones are decided again (operator).
    Replay {
        /// Any saga of the order (`o2f:SO0042`, `s2i:SHP-1`, `ret:RMA-1`) or the order name.
        saga_id: String,
        /// Only show what would change; writes nothing to the saga (viewer).
        #[arg(long)]
        dry_run: bool,
        /// Why (recorded in the audit).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) fn run(command: SagaCommand) -> anyhow::Result<()> {
    let SagaCommand::Replay { saga_id, dry_run, note, remote } = command;
    let req = proto::ReplayRequest { saga_id, note };
    let resp = if dry_run {
        call(&remote, async |mut c| Ok(c.workbench.dry_run_replay(req).await?.into_inner()))?
    } else {
        call(&remote, async |mut c| Ok(c.workbench.replay(req).await?.into_inner()))?
    };
    if remote.output == Output::Json {
        return json(&resp);
    }
    println!("{}", resp.message);
    let rows: Vec<Vec<String>> = resp
        .inputs
        .iter()
        .map(|i| {
            vec![
                format!("{}/{}@{}", i.topic, i.partition, i.offset),
                i.event.clone(),
                i.event_id.clone(),
                if i.dead_letter.is_empty() { "-".into() } else { i.dead_letter.clone() },
            ]
        })
        .collect();
    print!("\nrecords replayed\n{}", table(&["WHERE", "EVENT", "EVENT ID", "DEAD LETTER"], &rows));
    let title = if resp.dry_run { "journal events it would write" } else { "journal events written" };
    let rows: Vec<Vec<String>> = resp
        .journal
        .iter()
        .map(|t| vec![t.saga_id.clone(), t.seq.to_string(), t.event.clone(), t.summary.clone()])
        .collect();
    print!("\n{title}\n{}", table(&["SAGA", "SEQ", "EVENT", "SUMMARY"], &rows));
    let title = if resp.dry_run { "commands it would issue" } else { "commands issued" };
    let rows: Vec<Vec<String>> = resp
        .commands
        .iter()
        .map(|c| vec![c.idempotency_key.clone(), c.command.clone(), c.target.clone(), c.saga_id.clone()])
        .collect();
    print!("\n{title}\n{}", table(&["IDEMPOTENCY KEY", "COMMAND", "TARGET", "SAGA"], &rows));
    for r in &resp.refused {
        println!("still refused: {r}");
    }
    Ok(())
}
