//! `waybill log forget-group`: the embedded log's stored positions of a reader removed for
//! good, which would otherwise keep every record of its topics after them.

use clap::Subcommand;
use figment::Figment;
use waybill_server::backend;

use super::{Common, init_telemetry};

#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Forget every position a consumer group stored in the embedded log, so retention
    /// stops keeping records for it (the server must be stopped).
    ForgetGroup {
        /// The consumer group (a connector's, the coordinator's, …).
        #[arg(long)]
        group: String,
        #[command(flatten)]
        common: Common,
    },
}

pub(crate) fn run(command: LogCommand) -> anyhow::Result<()> {
    let LogCommand::ForgetGroup { group, common } = command;
    let cfg = common.load(Figment::new())?;
    let _telemetry = init_telemetry(&cfg)?;
    let opened = backend::open(&cfg)?;
    let Some(log) = opened.embedded else {
        anyhow::bail!(
            "the config puts the log on Kafka, where retention does not wait for readers; delete a consumer \
             group there with the broker's tools (`kafka-consumer-groups.sh --delete --group {group}`)"
        );
    };
    let n = log.forget_group(&group)?;
    if n == 0 {
        println!("group {group:?} has no stored position in the embedded log; nothing to forget");
    } else {
        println!(
            "forgot group {group:?}'s positions in {n} partitions; the next retention pass no longer waits for it"
        );
    }
    Ok(())
}
