//! `waybill serve` (the orchestrator until interrupted) and `waybill run` (the demo).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use figment::Figment;
use figment::providers::Serialized;
use waybill_server::{demo, node};

use super::{Common, init_telemetry};

/// `waybill serve`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Ingestion listen address (overrides `ingest.listen`).
    #[arg(long)]
    listen: Option<String>,
    /// gRPC control plane listen address (overrides `control.listen`; empty: off).
    #[arg(long)]
    control_listen: Option<String>,
    /// Metrics and health listen address (overrides `metrics.listen`; empty: off).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Schema registry API listen address (overrides `registry.listen`; empty: off).
    #[arg(long)]
    registry_listen: Option<String>,
    /// Web workbench listen address (overrides `web.listen`; empty: off).
    #[arg(long)]
    web_listen: Option<String>,
    /// Use the demo's master data instead of `catalog` (to add replicas to a
    /// `waybill run --kafka` demo).
    #[arg(long)]
    demo_catalog: bool,
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs { common, listen, control_listen, metrics_listen, registry_listen, web_listen, demo_catalog } = args;
    let mut extra = Figment::new();
    for (key, value) in [
        ("ingest.listen", listen),
        ("control.listen", control_listen),
        ("metrics.listen", metrics_listen),
        ("registry.listen", registry_listen),
        ("web.listen", web_listen),
    ] {
        if let Some(l) = value {
            extra = extra.merge(Serialized::default(key, l));
        }
    }
    let cfg = common.load(extra)?;
    let _telemetry = init_telemetry(&cfg)?;
    let catalog = if demo_catalog { demo::world::catalog() } else { cfg.load_catalog()? };
    let backend = waybill_server::backend::open(&cfg)?;
    let kafka = backend.is_kafka();
    let node = node::Node::start_on(&cfg, backend, catalog)?;
    tracing::info!(data_dir = %cfg.data_dir.display(), partitions = cfg.partitions, kafka, control = ?node.control_addr(), "waybill serving");
    println!("waybill serving; listening on:\n{}", node.listeners().join("\n"));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        waybill_server::node::shutdown_signal().await;
        s.store(true, Ordering::Relaxed);
    });
    tracing::info!("shutting down");
    node.shutdown();
    Ok(())
}

pub(crate) fn run(opts: demo::DemoOptions) -> anyhow::Result<()> {
    let _telemetry = waybill_telemetry::init_with_guard(
        waybill_telemetry::LogFormat::Text,
        if opts.verbose { "info" } else { "error" },
    )?;
    let summary = demo::run(&opts)?;
    if !opts.stay {
        println!("{summary}"); // with --stay it was printed before waiting
    }
    Ok(())
}
