//! `waybill`: the Waybill orchestrator.
//!
//! - `waybill serve`: run the orchestrator (embedded log by default).
//! - `waybill run`: the demo — orchestrator plus a simulated Odoo, warehouse and carrier.
//! - `waybill projections rebuild`: drop the read models and rebuild them from the log.
//! - `waybill dlq list|replay`: inspect and replay the dead-letter topic.
//! - `waybill approvals list|show|approve|reject|audit`, `waybill exceptions
//!   list|retry|resolve`, `waybill saga replay [--dry-run]`, `waybill order show`,
//!   `waybill trace`: talk to a running server's gRPC control plane
//!   (`--server`, `--token` or `WAYBILL_TOKEN`; tables, or `--output json`).

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
        /// gRPC control plane listen address (overrides `control.listen`; empty: off).
        #[arg(long)]
        control_listen: Option<String>,
        /// Metrics and health listen address (overrides `metrics.listen`; empty: off).
        #[arg(long)]
        metrics_listen: Option<String>,
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
        Command::Serve { common, listen, control_listen, metrics_listen, demo_catalog } => {
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
            let cfg = common.load(extra)?;
            let _telemetry = init_telemetry(&cfg)?;
            let catalog = if demo_catalog { demo::world::catalog() } else { cfg.load_catalog()? };
            let backend = waybill_server::backend::open(&cfg)?;
            let kafka = backend.is_kafka();
            let node = node::Node::start_on(&cfg, backend, catalog)?;
            tracing::info!(data_dir = %cfg.data_dir.display(), partitions = cfg.partitions, kafka, control = ?node.control_addr(), "waybill serving");
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
            DlqCommand::List { common } => {
                let cfg = common.load(Figment::new())?;
                let _telemetry = init_telemetry(&cfg)?;
                let log = node::open_log(&cfg)?;
                dlq::print_list(log.as_ref(), &mut std::io::stdout())
            }
            DlqCommand::Replay { common, matching } => {
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

/// The control-plane subcommands: gRPC calls and their rendering.
mod remote {
    use std::fmt::Write as _;

    use waybill_control::client::{self, ClientOptions, Clients};
    use waybill_control::proto;

    use super::{ApprovalsCommand, ExceptionsCommand, OrderCommand, Output, Remote, SagaCommand};

    fn call<T>(remote: &Remote, f: impl AsyncFnOnce(Clients) -> Result<T, tonic::Status>) -> anyhow::Result<T> {
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

    fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }

    /// A plain table: columns padded to their widest cell.
    fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
        let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for r in rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<String>, out: &mut String| {
            let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
            let _ = writeln!(out, "{}", s.join("  ").trim_end());
        };
        line(headers.iter().map(|h| h.to_string()).collect(), &mut out);
        line(w.iter().map(|n| "-".repeat(*n)).collect(), &mut out);
        for r in rows {
            line(r.clone(), &mut out);
        }
        out
    }

    fn money(minor: i64) -> String {
        waybill_domain::Money(minor).to_string()
    }

    fn age(at_us: i64) -> String {
        if at_us == 0 {
            return "-".into();
        }
        let secs = (waybill_domain::Timestamp::now().0 - at_us).max(0) / 1_000_000;
        match secs {
            s if s < 120 => format!("{s}s"),
            s if s < 7200 => format!("{}m", s / 60),
            s if s < 172_800 => format!("{}h", s / 3600),
            s => format!("{}d", s / 86_400),
        }
    }

    fn print_posting(p: &proto::Posting) {
        println!("posting      {} ({}, {} {})", p.posting_id, p.document, p.business_key, p.state);
        println!("order        {}  customer {}", p.order_ref, p.customer);
        println!("amount       {} {}", p.amount, p.currency);
        println!("version      {}   (approve with --version {})", p.version, p.version);
        println!(
            "requested by {}  held {} ago{}",
            p.requested_by,
            age(p.held_at_us),
            if p.escalated { "  ESCALATED" } else { "" }
        );
        for r in &p.reasons {
            println!("reason       {r}");
        }
        if !p.decided_by.is_empty() {
            println!("decided by   {} ({}): {}", p.decided_by, p.decided_role, p.decision_reason);
        }
        for r in &p.refusals {
            println!("refused      {r}");
        }
    }

    pub(super) fn approvals(command: ApprovalsCommand) -> anyhow::Result<()> {
        match command {
            ApprovalsCommand::List { remote, state, customer, reason, min_age, page_size, page_token } => {
                let req = proto::ListHeldPostingsRequest {
                    state,
                    customer: customer.unwrap_or_default(),
                    reason_contains: reason.unwrap_or_default(),
                    min_age_seconds: min_age,
                    document: String::new(),
                    page_size,
                    page_token: page_token.unwrap_or_default(),
                };
                let resp = call(&remote, async |mut c| Ok(c.approvals.list_held_postings(req).await?.into_inner()))?;
                if remote.output == Output::Json {
                    return json(&resp);
                }
                let rows: Vec<Vec<String>> = resp
                    .postings
                    .iter()
                    .map(|p| {
                        vec![
                            p.posting_id.clone(),
                            p.order_ref.clone(),
                            p.customer.clone(),
                            format!("{} {}", p.amount, p.currency),
                            p.version.to_string(),
                            p.state.clone(),
                            age(p.held_at_us),
                            p.reasons.join("; "),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["POSTING", "ORDER", "CUSTOMER", "AMOUNT", "VERSION", "STATE", "AGE", "REASONS"], &rows)
                );
                println!("{} postings", rows.len());
                if !resp.next_page_token.is_empty() {
                    println!("more: --page-token {}", resp.next_page_token);
                }
                Ok(())
            }
            ApprovalsCommand::Show { posting_id, remote } => {
                let req = proto::GetPostingRequest { posting_id };
                let resp = call(&remote, async |mut c| Ok(c.approvals.get_posting(req).await?.into_inner()))?;
                if remote.output == Output::Json {
                    return json(&resp);
                }
                if let Some(p) = &resp.posting {
                    print_posting(p);
                }
                println!("\norder lines");
                let rows: Vec<Vec<String>> = resp
                    .order_lines
                    .iter()
                    .map(|l| {
                        vec![
                            l.line_no.to_string(),
                            l.sku.clone(),
                            l.ordered.clone(),
                            l.shipped.clone(),
                            money(l.unit_price_minor),
                            l.tax_code.clone(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["LINE", "SKU", "ORDERED", "SHIPPED", "PRICE", "TAX"], &rows));
                println!("\ndocument lines (total {})", money(resp.document_total_minor));
                let rows: Vec<Vec<String>> = resp
                    .document_lines
                    .iter()
                    .map(|l| {
                        vec![
                            l.line_no.to_string(),
                            l.sku.clone(),
                            l.quantity.clone(),
                            money(l.unit_price_minor),
                            l.tax_code.clone(),
                            money(l.total_minor),
                        ]
                    })
                    .collect();
                print!("{}", table(&["LINE", "SKU", "QTY", "PRICE", "TAX", "TOTAL"], &rows));
                Ok(())
            }
            ApprovalsCommand::Approve { posting_id, version, reason, remote } => {
                let req = proto::DecisionRequest { posting_id, expected_version: version, reason };
                let resp = call(&remote, async |mut c| Ok(c.approvals.approve(req).await?.into_inner()))?;
                if remote.output == Output::Json {
                    return json(&resp);
                }
                println!("{}", resp.message);
                Ok(())
            }
            ApprovalsCommand::Reject { posting_id, version, reason, remote } => {
                let req = proto::DecisionRequest { posting_id, expected_version: version, reason };
                let resp = call(&remote, async |mut c| Ok(c.approvals.reject(req).await?.into_inner()))?;
                if remote.output == Output::Json {
                    return json(&resp);
                }
                println!("{}", resp.message);
                Ok(())
            }
            ApprovalsCommand::Audit { remote, posting, actor, limit } => {
                let req = proto::ListAuditRequest {
                    posting_id: posting.unwrap_or_default(),
                    actor: actor.unwrap_or_default(),
                    limit,
                };
                let resp = call(&remote, async |mut c| Ok(c.audit.list_audit(req).await?.into_inner()))?;
                if remote.output == Output::Json {
                    return json(&resp);
                }
                let rows: Vec<Vec<String>> = resp
                    .entries
                    .iter()
                    .map(|e| {
                        vec![
                            age(e.at_us),
                            e.actor.clone(),
                            e.role.clone(),
                            e.peer.clone(),
                            e.action.clone(),
                            e.posting_id.clone(),
                            if e.expected_version > 0 { format!("v{}", e.expected_version) } else { "-".into() },
                            e.outcome.clone(),
                            e.detail.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["AGO", "ACTOR", "ROLE", "PEER", "ACTION", "SUBJECT", "VERSION", "OUTCOME", "DETAIL"],
                        &rows
                    )
                );
                Ok(())
            }
        }
    }

    pub(super) fn exceptions(command: ExceptionsCommand) -> anyhow::Result<()> {
        let (remote, category, open, min_age, limit) = match command {
            ExceptionsCommand::List { remote, category, open, min_age, limit } => {
                (remote, category, open, min_age, limit)
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

    fn print_exception_action(remote: &Remote, resp: &proto::ExceptionActionResponse) -> anyhow::Result<()> {
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

    pub(super) fn saga(command: SagaCommand) -> anyhow::Result<()> {
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

    pub(super) fn order(command: OrderCommand) -> anyhow::Result<()> {
        let (order_ref, remote) = match command {
            OrderCommand::Show { order_ref, remote } => (order_ref, remote),
            OrderCommand::List { remote, state, older_than, page_size, page_token } => {
                return order_list(&remote, state, older_than, page_size, page_token);
            }
        };
        let req = proto::GetOrderRequest { order_ref };
        let resp = call(&remote, async |mut c| Ok(c.queries.get_order(req).await?.into_inner()))?;
        if remote.output == Output::Json {
            return json(&resp);
        }
        let Some(o) = resp.order else { return Ok(()) };
        println!("order {}  status {}  customer {}  currency {}", o.order_ref, o.status, o.customer, o.currency);
        for p in &o.problems {
            println!("problem: {p}");
        }
        let rows: Vec<Vec<String>> = o
            .lines
            .iter()
            .map(|l| {
                vec![
                    l.line_no.to_string(),
                    l.sku.clone(),
                    l.uom.clone(),
                    l.ordered.clone(),
                    l.shipped.clone(),
                    money(l.unit_price_minor),
                    l.tax_code.clone(),
                ]
            })
            .collect();
        print!("\n{}", table(&["LINE", "SKU", "UOM", "ORDERED", "SHIPPED", "PRICE", "TAX"], &rows));
        if !o.postings.is_empty() {
            let rows: Vec<Vec<String>> = o
                .postings
                .iter()
                .map(|p| {
                    vec![
                        p.posting_id.clone(),
                        format!("{} {}", p.amount, p.currency),
                        p.version.to_string(),
                        p.state.clone(),
                    ]
                })
                .collect();
            print!("\n{}", table(&["POSTING", "AMOUNT", "VERSION", "STATE"], &rows));
        }
        let rows: Vec<Vec<String>> = o
            .timeline
            .iter()
            .map(|t| vec![age(t.at_us), t.saga_id.clone(), t.seq.to_string(), t.event.clone(), t.summary.clone()])
            .collect();
        print!("\n{}", table(&["AGO", "SAGA", "SEQ", "EVENT", "SUMMARY"], &rows));
        Ok(())
    }

    fn order_list(
        remote: &Remote,
        state: Option<String>,
        older_than: i64,
        page_size: u32,
        page_token: Option<String>,
    ) -> anyhow::Result<()> {
        let req = proto::ListOrdersRequest {
            state: state.unwrap_or_default(),
            older_than_seconds: older_than,
            page_size,
            page_token: page_token.unwrap_or_default(),
        };
        let resp = call(remote, async |mut c| Ok(c.queries.list_orders(req).await?.into_inner()))?;
        if remote.output == Output::Json {
            return json(&resp);
        }
        let rows: Vec<Vec<String>> = resp
            .orders
            .iter()
            .map(|o| {
                vec![
                    o.order_ref.clone(),
                    o.status.clone(),
                    o.customer.clone(),
                    o.open_exceptions.to_string(),
                    age(o.last_event_at_us),
                    age(o.first_event_at_us),
                ]
            })
            .collect();
        print!("{}", table(&["ORDER", "STATUS", "CUSTOMER", "OPEN EXCEPTIONS", "UNCHANGED FOR", "AGE"], &rows));
        if !resp.next_page_token.is_empty() {
            println!("more: --page-token {}", resp.next_page_token);
        }
        Ok(())
    }

    pub(super) fn trace(source_ref: &str, remote: &Remote) -> anyhow::Result<()> {
        let req = proto::GetLineageRequest { source_ref: source_ref.to_string() };
        let resp = call(remote, async |mut c| Ok(c.queries.get_lineage(req).await?.into_inner()))?;
        if remote.output == Output::Json {
            return json(&resp);
        }
        let rows: Vec<Vec<String>> = resp
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.kind.clone(),
                    e.id.clone(),
                    e.name.clone(),
                    format!("{}/{}@{}", e.topic, e.partition, e.offset),
                    age(e.at_us),
                ]
            })
            .collect();
        print!("{}", table(&["KIND", "ID", "NAME", "WHERE", "AGO"], &rows));
        Ok(())
    }
}
