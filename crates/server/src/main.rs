//! `waybill`: the Waybill orchestrator.
//!
//! - `waybill serve`: run the orchestrator (embedded log by default).
//! - `waybill run`: the demo — orchestrator plus a simulated Odoo, warehouse and carrier.
//! - `waybill projections rebuild`: drop the read models and rebuild them from the log.
//! - `waybill dlq list|replay`: inspect and replay the dead-letter topic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::Serialized;
use waybill_server::config::Config;
use waybill_server::{demo, dlq, node};

#[derive(Debug, Parser)]
#[command(name = "waybill", version, about = "Event-sourced workflow orchestrator for distributors running Odoo")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Common {
    /// Configuration file (TOML). Environment variables `WAYBILL_*` override it.
    #[arg(long, short = 'c', env = "WAYBILL_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Common {
    fn load(&self, extra: Figment) -> anyhow::Result<Config> {
        let mut flags = extra;
        if let Some(d) = &self.data_dir {
            flags = flags.merge(Serialized::default("data_dir", d));
        }
        Ok(Config::load(self.config.as_deref(), flags)?)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the orchestrator until interrupted.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Ingestion listen address (overrides `ingest.listen`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the demo: the orchestrator with a simulated Odoo, warehouse and carrier.
    Run(demo::DemoOptions),
    /// Read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// The dead-letter topic.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Drop every projection and rebuild from the log (the server must be stopped).
    Rebuild {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters with their reasons.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Append dead letters back to the topic they came from (after a fix).
    Replay {
        #[command(flatten)]
        common: Common,
        /// Only records whose reason contains this text.
        #[arg(long)]
        matching: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_telemetry(cfg: &Config) {
    let format = cfg.telemetry.log_format.parse().unwrap_or_default();
    waybill_telemetry::init(format, &cfg.telemetry.log_filter);
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { common, listen } => {
            let mut extra = Figment::new();
            if let Some(l) = listen {
                extra = extra.merge(Serialized::default("ingest.listen", l));
            }
            let cfg = common.load(extra)?;
            init_telemetry(&cfg);
            let log = node::open_log(&cfg)?;
            let catalog = cfg.load_catalog()?;
            let node = node::Node::start(&cfg, log, catalog)?;
            tracing::info!(data_dir = %cfg.data_dir.display(), partitions = cfg.partitions, "waybill serving");
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let _ = tokio::signal::ctrl_c().await;
                s.store(true, Ordering::Relaxed);
            });
            tracing::info!("shutting down");
            node.shutdown();
            Ok(())
        }
        Command::Run(opts) => {
            waybill_telemetry::init(waybill_telemetry::LogFormat::Text, if opts.verbose { "info" } else { "error" });
            let summary = demo::run(&opts)?;
            println!("{summary}");
            Ok(())
        }
        Command::Projections { command: ProjectionsCommand::Rebuild { common } } => {
            let cfg = common.load(Figment::new())?;
            init_telemetry(&cfg);
            let started = std::time::Instant::now();
            let n = node::rebuild_projections(&cfg)?;
            let secs = started.elapsed().as_secs_f64();
            println!("rebuilt projections from {n} records in {secs:.2} s ({:.0} records/s)", n as f64 / secs.max(1e-9));
            Ok(())
        }
        Command::Dlq { command } => match command {
            DlqCommand::List { common } => {
                let cfg = common.load(Figment::new())?;
                init_telemetry(&cfg);
                let log = node::open_log(&cfg)?;
                dlq::print_list(log.as_ref(), &mut std::io::stdout())
            }
            DlqCommand::Replay { common, matching } => {
                let cfg = common.load(Figment::new())?;
                init_telemetry(&cfg);
                let log = node::open_log(&cfg)?;
                let n = dlq::replay(log.as_ref(), matching.as_deref())?;
                println!("replayed {n} dead letters to their original topics");
                Ok(())
            }
        },
    }
}
