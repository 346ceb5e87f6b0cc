//! `waybill projections rebuild`: drop the read models and rebuild them from the log.

use clap::Subcommand;
use figment::Figment;
use waybill_server::node;

use super::{Common, init_telemetry};

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectionsCommand {
    /// Drop every projection and rebuild from the log (the server must be stopped).
    Rebuild {
        #[command(flatten)]
        common: Common,
    },
}

pub(crate) fn run(command: ProjectionsCommand) -> anyhow::Result<()> {
    let ProjectionsCommand::Rebuild { common } = command;
    let cfg = common.load(Figment::new())?;
    let _telemetry = init_telemetry(&cfg)?;
    let started = std::time::Instant::now();
    let n = node::rebuild_projections(&cfg)?;
    let secs = started.elapsed().as_secs_f64();
    println!("rebuilt projections from {n} records in {secs:.2} s ({:.0} records/s)", n as f64 / secs.max(1e-9));
    Ok(())
}
