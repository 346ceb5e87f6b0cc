//! `waybill`: the Waybill orchestrator.
//!
//! - `waybill serve`: run the orchestrator (embedded log by default).
//! - `waybill run`: the demo — orchestrator plus a simulated Odoo, warehouse and carrier.
//! - `waybill projections rebuild`: drop the read models and rebuild them from the log.
//! - `waybill dlq list|replay`: inspect and replay the dead-letter topic.
//! - `waybill approvals list|show|approve|reject|audit`, `waybill exceptions
//!   list|retry|resolve`, `waybill saga replay [--dry-run]`, `waybill order show|list`,
//!   `waybill trace`: talk to a running server's gRPC control plane
//!   (`--server`, `--token` or `WAYBILL_TOKEN`; tables, or `--output json`); the calls
//!   and their rendering are in `remote.rs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::Serialized;
use waybill_server::config::Config;
use waybill_server::{demo, dlq, node};

mod remote;

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
        /// gRPC control plane listen address (overrides `control.listen`; empty: off).
        #[arg(long)]
        control_listen: Option<String>,
        /// Metrics and health listen address (overrides `metrics.listen`; empty: off).
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Schema registry API listen address (overrides `registry.listen`; empty: off).
        #[arg(long)]
        registry_listen: Option<String>,
        /// Use the demo's master data instead of `catalog` (to add replicas to a
        /// `waybill run --kafka` demo).
        #[arg(long)]
        demo_catalog: bool,
    },
    /// Run the demo: the orchestrator with a simulated Odoo, warehouse and carrier.
    Run(demo::DemoOptions),
    /// Waybill's Kafka topics: what exists and what `apply` would create.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
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
    /// Held postings on a running server: list, show, approve, reject, audit.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Exceptions on a running server: list, retry, resolve.
    Exceptions {
        #[command(subcommand)]
        command: ExceptionsCommand,
    },
    /// Sagas on a running server: replay an order's inbound events.
    Saga {
        #[command(subcommand)]
        command: SagaCommand,
    },
    /// Orders on a running server.
    Order {
        #[command(subcommand)]
        command: OrderCommand,
    },
    /// The schema catalog against a deployment: what would change, and is it safe.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Everything related to a source reference (odoo:SO0042, wms:SHP-1, ...).
    Trace {
        /// `system:id`.
        source_ref: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

/// How to reach the control plane.
#[derive(Debug, Args)]
struct Remote {
    /// Control plane URL.
    #[arg(long, env = "WAYBILL_SERVER", default_value = "http://127.0.0.1:8421")]
    server: String,
    /// Bearer token.
    #[arg(long, env = "WAYBILL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate, for https.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[arg(long)]
    client_key: Option<PathBuf>,
    /// `table` or `json`.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// A running server's control plane for `dlq` (without `--server`, `dlq` reads the log).
#[derive(Debug, Clone, Args)]
struct DlqRemote {
    /// Control plane URL of a running server, e.g. `http://127.0.0.1:8421`.
    #[arg(long)]
    server: Option<String>,
    /// Bearer token (an operator's).
    #[arg(long, env = "WAYBILL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate, for https.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

impl DlqRemote {
    /// The control-plane options, when `--server` was given.
    fn remote(&self, output: Output) -> Option<Remote> {
        Some(Remote {
            server: self.server.clone()?,
            token: self.token.clone(),
            ca_cert: self.ca_cert.clone(),
            client_cert: None,
            client_key: None,
            output,
        })
    }
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// Held postings, oldest first.
    List {
        #[command(flatten)]
        remote: Remote,
        /// `held`, `approved`, `rejected` or `all`.
        #[arg(long, default_value = "held")]
        state: String,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// Only postings with a hold reason containing this text.
        #[arg(long)]
        reason: Option<String>,
        /// Only postings held at least this many seconds.
        #[arg(long, default_value_t = 0)]
        min_age: i64,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// Page token printed by the previous page.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// One posting with its evidence.
    Show {
        /// Posting id (`inv:SHP-1`).
        posting_id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Approve a held posting.
    Approve {
        /// Posting id.
        posting_id: String,
        /// The version you reviewed (from `show`).
        #[arg(long)]
        version: i64,
        /// Note.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Reject a held posting (nothing is posted).
    Reject {
        /// Posting id.
        posting_id: String,
        /// The version you reviewed (from `show`).
        #[arg(long)]
        version: i64,
        /// Why (required).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Who approved or rejected what, newest first.
    Audit {
        #[command(flatten)]
        remote: Remote,
        /// Only actions on this posting, exception or saga.
        #[arg(long)]
        posting: Option<String>,
        /// Only this identity.
        #[arg(long)]
        actor: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ExceptionsCommand {
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

#[derive(Debug, Subcommand)]
enum SagaCommand {
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

#[derive(Debug, Subcommand)]
enum OrderCommand {
    /// An order with its lines, shipments, postings and timeline.
    Show {
        /// Sale order name.
        order_ref: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Orders by state and age, the longest unchanged first: e.g. `--state picked
    /// --older-than 1d` finds orders picked a day ago that have not moved since.
    List {
        #[command(flatten)]
        remote: Remote,
        /// Order status (`reserving`, `released`, `picking`, `picked`, `shipped`,
        /// `delivered`, `on-hold`, `completed`, `backordered`, `cancelled`, ...); all when
        /// absent.
        #[arg(long)]
        state: Option<String>,
        /// Only orders whose latest change is at least this old: `90s`, `30m`, `4h`, `2d`
        /// (a bare number is seconds).
        #[arg(long, value_parser = parse_age, default_value = "0")]
        older_than: i64,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        /// Page token printed by the previous page.
        #[arg(long)]
        page_token: Option<String>,
    },
}

/// `90s`, `30m`, `4h`, `2d` or a bare number of seconds, as seconds.
fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().map_err(|_| format!("{s:?} is not an age; write e.g. 90s, 30m, 4h or 2d"))?;
    let per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} has unit {unit:?}; use s, m, h or d (e.g. 4h)")),
    };
    n.checked_mul(per).ok_or_else(|| format!("{s:?} is too large"))
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// What deploying this build changes in the schemas a deployment knows: new
    /// subjects, new versions, and incompatible edits at each subject's level (exits
    /// non-zero on any incompatible change).
    Check {
        /// The deployment: a Confluent-compatible registry URL (`http://registry:8081`,
        /// or a running Waybill's `registry.listen`), or the `schemas/` folder of the
        /// release it runs.
        #[arg(long)]
        against: String,
        /// Registry credentials: a file whose first line is `user:password` (basic
        /// auth) or `Bearer <token>`.
        #[arg(long)]
        credentials: Option<PathBuf>,
    },
    /// Register the catalog in a Confluent-compatible registry (Confluent, Karapace,
    /// Apicurio's Confluent API): each subject's compatibility level, then every version
    /// in order; prints the ids it assigned. Refuses, naming the subject, when the
    /// registry holds something incompatible. Then start Waybill with `[registry] url`.
    Push {
        /// The registry URL.
        #[arg(long)]
        registry: String,
        /// Registry credentials: a file whose first line is `user:password` (basic
        /// auth) or `Bearer <token>`.
        #[arg(long)]
        credentials: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Compare the topics on the brokers with the plan (partitions, replication,
    /// retention); exits non-zero if a topic has the wrong partition count.
    Plan {
        #[command(flatten)]
        common: Common,
    },
    /// Create the missing topics as planned (existing ones are left alone).
    Apply {
        #[command(flatten)]
        common: Common,
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
    /// List dead letters with their reasons: from a running server's control plane with
    /// `--server` (operator, audited), else from the log in the data directory (the
    /// server stopped).
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        remote: DlqRemote,
        /// Only records whose reason contains this text.
        #[arg(long)]
        matching: Option<String>,
        /// `table` or `json` (every header, the key, and the bytes in base64).
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Append dead letters back to the topic they came from (after a fix): through a
    /// running server's control plane with `--server` (operator, audited), else
    /// directly to the log in the data directory (the server stopped).
    Replay {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        remote: DlqRemote,
        /// Only records whose reason contains this text.
        #[arg(long)]
        matching: Option<String>,
        /// Why (recorded in the audit; with `--server`).
        #[arg(long, default_value = "")]
        note: String,
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

/// Logs, and OTLP trace export when `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set. Keep
/// the guard alive: dropping it flushes the exporter.
fn init_telemetry(cfg: &Config) -> anyhow::Result<waybill_telemetry::TelemetryGuard> {
    let format = cfg.telemetry.log_format.parse().unwrap_or_default();
    Ok(waybill_telemetry::init_with_guard(format, &cfg.telemetry.log_filter)?)
}

/// `waybill topics plan|apply`.
#[cfg(feature = "kafka")]
fn topics(command: TopicsCommand) -> anyhow::Result<()> {
    use waybill_server::backend::{self, kafka};
    let (common, apply) = match command {
        TopicsCommand::Plan { common } => (common, false),
        TopicsCommand::Apply { common } => (common, true),
    };
    let cfg = common.load(Figment::new())?;
    if cfg.kafka.is_none() {
        anyhow::bail!(
            "the config has no [kafka] section: the embedded log creates its topics itself. Add [kafka] with \
             bootstrap.servers (or WAYBILL_KAFKA__BOOTSTRAP__SERVERS) to plan topics on a broker"
        );
    }
    let log = kafka::connect(&cfg, kafka::Retry::Once)?;
    let checked = backend::check(&backend::plan(&cfg), |t| Ok(log.topic_partitions(t)?))?;
    print!("{}", backend::render(&checked));
    if let Some(e) = backend::mismatch_error(&checked, cfg.partitions) {
        return Err(e);
    }
    let missing = checked.iter().filter(|(_, s)| *s == backend::TopicState::Missing).count();
    if apply {
        let created = kafka::create_missing(&log, &checked)?;
        println!("created {created} topic(s); {} already existed", checked.len() - created);
    } else if missing > 0 {
        println!("{missing} topic(s) missing; `waybill topics apply` creates them");
    } else {
        println!("every topic exists with {} partitions", cfg.partitions);
    }
    Ok(())
}

#[cfg(not(feature = "kafka"))]
fn topics(_: TopicsCommand) -> anyhow::Result<()> {
    anyhow::bail!("this waybill was built without Kafka support (cargo feature `kafka`)")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Approvals { command } => remote::approvals(command),
        Command::Exceptions { command } => remote::exceptions(command),
        Command::Saga { command } => remote::saga(command),
        Command::Order { command } => remote::order(command),
        Command::Trace { source_ref, remote } => remote::trace(&source_ref, &remote),
        Command::Serve { common, listen, control_listen, metrics_listen, registry_listen, demo_catalog } => {
            let mut extra = Figment::new();
            if let Some(l) = listen {
                extra = extra.merge(Serialized::default("ingest.listen", l));
            }
            if let Some(l) = control_listen {
                extra = extra.merge(Serialized::default("control.listen", l));
            }
            if let Some(l) = metrics_listen {
                extra = extra.merge(Serialized::default("metrics.listen", l));
            }
            if let Some(l) = registry_listen {
                extra = extra.merge(Serialized::default("registry.listen", l));
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
        Command::Run(opts) => {
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
        Command::Topics { command } => topics(command),
        Command::Schemas { command: SchemasCommand::Push { registry, credentials } } => {
            let pushed = waybill_server::schemas::push(&registry, credentials.as_deref())?;
            print!("{pushed}");
            Ok(())
        }
        Command::Schemas { command: SchemasCommand::Check { against, credentials } } => {
            let report = waybill_server::schemas::check(&against, credentials.as_deref())?;
            print!("{report}");
            if report.breaks() {
                anyhow::bail!("incompatible schema changes against {against}; see the lines marked INCOMPATIBLE");
            }
            Ok(())
        }
        Command::Projections { command: ProjectionsCommand::Rebuild { common } } => {
            let cfg = common.load(Figment::new())?;
            let _telemetry = init_telemetry(&cfg)?;
            let started = std::time::Instant::now();
            let n = node::rebuild_projections(&cfg)?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "rebuilt projections from {n} records in {secs:.2} s ({:.0} records/s)",
                n as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Command::Dlq { command } => match command {
            DlqCommand::List { remote: DlqRemote { server: Some(_), .. }, .. }
            | DlqCommand::Replay { remote: DlqRemote { server: Some(_), .. }, .. } => remote::dlq(command),
            DlqCommand::List { common, output, matching, .. } => {
                if matching.is_some() {
                    anyhow::bail!(
                        "--matching filters the listing of a running server (--server); without it, filter the output (grep, jq)"
                    );
                }
                let cfg = common.load(Figment::new())?;
                let _telemetry = init_telemetry(&cfg)?;
                let log = node::open_log(&cfg)?;
                match output {
                    Output::Table => dlq::print_list(log.as_ref(), &mut std::io::stdout()),
                    Output::Json => dlq::print_list_json(log.as_ref(), &mut std::io::stdout()),
                }
            }
            DlqCommand::Replay { common, matching, .. } => {
                let cfg = common.load(Figment::new())?;
                let _telemetry = init_telemetry(&cfg)?;
                let log = node::open_log(&cfg)?;
                let n = dlq::replay(log.as_ref(), matching.as_deref())?;
                println!("replayed {n} dead letters to their original topics");
                Ok(())
            }
        },
    }
}
