//! The `waybill` command line, one module per command group, all printing through one
//! renderer ([`render`]: `--output table|json`).
//!
//! - [`serve`]: `waybill serve` and the `waybill run` demo;
//! - [`topics`], [`log`], [`projections`], [`schemas`]: administration of the log, the read
//!   models and the schema catalog;
//! - [`dlq`]: the dead-letter topic (through the control plane, or from the log);
//! - [`statements`]: bank statement files into ingestion, as the bank;
//! - [`approvals`], [`exceptions`], [`saga`], [`order`], [`trace`], [`reconcile`]: calls to a running
//!   server's gRPC control plane (`--server`, `--token` or `WAYBILL_TOKEN`).

mod approvals;
mod dlq;
mod entities;
mod exceptions;
mod log;
mod order;
mod projections;
mod reconcile;
mod render;
mod saga;
mod schemas;
mod serve;
mod statements;
mod topics;
mod trace;
mod web;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::Serialized;
use waybill_control::client::{self, ClientOptions, Clients};
use waybill_server::config::Config;

use render::Output;

#[derive(Debug, Parser)]
#[command(name = "waybill", version, about = "Event-sourced workflow orchestrator for distributors running Odoo")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Configuration file (TOML). Environment variables `WAYBILL_*` override it.
    #[arg(long, short = 'c', env = "WAYBILL_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
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
pub(crate) enum Command {
    /// Run the orchestrator until interrupted.
    Serve(serve::ServeArgs),
    /// Run the demo: the orchestrator with a simulated Odoo, warehouse and carrier.
    Run(waybill_server::demo::DemoOptions),
    /// Load test: `waybill serve` as a child process, orders posted through ingestion by
    /// closed-loop clients (or at an open-loop rate), followed to their end over gRPC, the
    /// warehouse, carrier, finance and Odoo as HTTP doubles; prints throughput, latency,
    /// errors and CPU per order.
    Load(waybill_server::load::LoadOptions),
    /// Waybill's Kafka topics: what exists and what `apply` would create.
    Topics {
        #[command(subcommand)]
        command: topics::TopicsCommand,
    },
    /// The embedded log.
    Log {
        #[command(subcommand)]
        command: log::LogCommand,
    },
    /// Read models.
    Projections {
        #[command(subcommand)]
        command: projections::ProjectionsCommand,
    },
    /// The dead-letter topic.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// The legal entities of a configuration, every layer (defaults, [policy], template,
    /// the entity's own) applied: currency, tax codes, holds, approval limits.
    Entities(entities::EntitiesArgs),
    /// Bank statements: import a camt.053, MT940 or settlement report file.
    Statements {
        #[command(subcommand)]
        command: statements::StatementsCommand,
    },
    /// A reconciliation run now on a running server: `stock`.
    Reconcile {
        #[command(subcommand)]
        command: reconcile::ReconcileCommand,
    },
    /// Held postings on a running server: list, show, approve, reject, audit.
    Approvals {
        #[command(subcommand)]
        command: approvals::ApprovalsCommand,
    },
    /// Exceptions on a running server: list, retry, resolve, assign, apply a bank-statement
    /// line by hand (assign-line).
    Exceptions {
        #[command(subcommand)]
        command: exceptions::ExceptionsCommand,
    },
    /// Sagas on a running server: replay an order's inbound events.
    Saga {
        #[command(subcommand)]
        command: saga::SagaCommand,
    },
    /// Orders on a running server.
    Order {
        #[command(subcommand)]
        command: order::OrderCommand,
    },
    /// The web workbench: hash a person's password for the identities file.
    Web {
        #[command(subcommand)]
        command: web::WebCommand,
    },
    /// The schema catalog against a deployment: what would change, and is it safe.
    Schemas {
        #[command(subcommand)]
        command: schemas::SchemasCommand,
    },
    /// Everything related to a source reference (odoo:SO0042, wms:SHP-1, ...).
    Trace {
        /// `system:id`.
        source_ref: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// How to reach the control plane.
#[derive(Debug, Args)]
pub(crate) struct Remote {
    /// Control plane URL.
    #[arg(long, env = "WAYBILL_SERVER", default_value = "http://127.0.0.1:8421")]
    pub(crate) server: String,
    /// Bearer token.
    #[arg(long, env = "WAYBILL_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate, for https.
    #[arg(long)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long)]
    pub(crate) client_cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[arg(long)]
    pub(crate) client_key: Option<PathBuf>,
    /// `table` or `json`.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) output: Output,
}

pub(crate) fn call<T>(remote: &Remote, f: impl AsyncFnOnce(Clients) -> Result<T, tonic::Status>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let opts = ClientOptions {
            server: remote.server.clone(),
            token: remote.token.clone(),
            ca_cert: remote.ca_cert.clone(),
            client_cert: remote.client_cert.clone(),
            client_key: remote.client_key.clone(),
        };
        let clients = client::connect(&opts).await?;
        f(clients).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))
    })
}

/// Logs, and OTLP trace export when `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set. Keep
/// the guard alive: dropping it flushes the exporter.
pub(crate) fn init_telemetry(cfg: &Config) -> anyhow::Result<waybill_telemetry::TelemetryGuard> {
    let format = cfg.telemetry.log_format.parse().unwrap_or_default();
    Ok(waybill_telemetry::init_with_guard(format, &cfg.telemetry.log_filter)?)
}

/// Runs one command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Run(opts) => serve::run(opts),
        Command::Load(opts) => serve::load(opts),
        Command::Topics { command } => topics::run(command),
        Command::Log { command } => log::run(command),
        Command::Projections { command } => projections::run(command),
        Command::Schemas { command } => schemas::run(command),
        Command::Web { command } => web::run(command),
        Command::Dlq { command } => dlq::run(command),
        Command::Reconcile { command } => reconcile::run(command),
        Command::Statements { command } => statements::run(command),
        Command::Entities(args) => entities::run(args),
        Command::Approvals { command } => approvals::run(command),
        Command::Exceptions { command } => exceptions::run(command),
        Command::Saga { command } => saga::run(command),
        Command::Order { command } => order::run(command),
        Command::Trace { source_ref, remote } => trace::run(&source_ref, &remote),
    }
}
