//! `waybill run`: the demo. Starts a node on an embedded log, a simulated distributor
//! (Odoo, warehouse, carrier) that produces realistic traffic and answers commands, and
//! shows progress until every order has reached an end state; then prints a summary.

pub mod answers;
pub mod sim;
pub mod world;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use waybill_domain::ExceptionCategory;
use waybill_projection::{OrderStatus, ProjectionStore};

use crate::config::Config;
use crate::node::Node;
use sim::{SimConfig, Simulator};

/// Options of `waybill run`.
#[derive(Debug, Clone, Args)]
pub struct DemoOptions {
    /// Orders to release.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Seed of the simulated traffic (same seed, same orders and mishaps).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Orders released per second (0: as fast as possible).
    #[arg(long, default_value_t = 250.0)]
    pub rate: f64,
    /// Partitions.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Seconds the warehouse has to confirm a pick (late picks come 1.5 × later).
    #[arg(long, default_value_t = 1.5)]
    pub pick_timeout: f64,
    /// Data directory; kept afterwards. Without it a temporary one is used and removed.
    /// Running again on the same directory resumes where the last run stopped.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `batch`, `interval` or `never`: when the embedded log fsyncs.
    #[arg(long, default_value = "batch")]
    pub fsync: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Ingestion listen address while the demo runs (`127.0.0.1:0`: any free port; empty: off).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Control-plane gRPC address while the demo runs (anonymous callers on loopback act
    /// as approvers; empty: off).
    #[arg(long, default_value = "127.0.0.1:8421")]
    pub control_listen: String,
    /// `/metrics`, `/healthz`, `/readyz` address while the demo runs (empty: off).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    /// Run on Kafka at these brokers (`host:port,...`) instead of the embedded log. The
    /// topics must be new or empty (the demo's orders would meet an earlier run's).
    #[arg(long)]
    pub kafka: Option<String>,
    /// A librdkafka property for `--kafka`, `key=value` (repeatable), e.g.
    /// `security.protocol=SASL_SSL`.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Log at info level.
    #[arg(long)]
    pub verbose: bool,
    /// Keep the orchestrator running after the summary (until Ctrl-C), so held
    /// postings can be approved and the projections queried while it runs.
    #[arg(long)]
    pub stay: bool,
}

/// The outcome of a demo run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Orders in the run.
    pub orders: usize,
    /// Partitions.
    pub partitions: u32,
    /// Orders per state.
    pub by_status: BTreeMap<OrderStatus, u64>,
    /// Orders not in an end state that have an open exception (waiting for someone).
    pub waiting_with_exception: u64,
    /// Orders neither in an end state nor with an open exception: stalled silently
    /// (should be none), as `order (status)`.
    pub stalled: Vec<String>,
    /// Exceptions raised, by category: (raised, still open).
    pub exceptions: BTreeMap<ExceptionCategory, (u64, u64)>,
    /// Records in the dead-letter topic.
    pub dead_letters: u64,
    /// Undecodable records the simulator injected.
    pub injected_bad_records: u64,
    /// Saga latency (accepted → completed), milliseconds: p50, p99.
    pub latency_ms: (f64, f64),
    /// Inbound events processed by the coordinator.
    pub events: u64,
    /// Commands issued.
    pub commands: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Where the data is, when kept.
    pub data_dir: Option<PathBuf>,
    /// Did every order reach an end state or get an open exception?
    pub finished: bool,
    /// Invoices posted by finance.
    pub invoices_posted: u64,
    /// Credit notes issued by finance.
    pub credit_notes_issued: u64,
    /// Held postings still waiting for an approver: (invoices, credit notes).
    pub held: (u64, u64),
    /// A few held posting ids, to try the approval commands on.
    pub held_examples: Vec<String>,
}

/// End states of the order-to-fulfillment saga in the demo: completed, backordered,
/// cancelled, or on hold for a master-data fix.
fn is_end_state(s: OrderStatus) -> bool {
    s.is_final() || s == OrderStatus::OnHold
}

/// Orders in an end state (cheap: the projections' counters).
fn ended(p: &ProjectionStore) -> anyhow::Result<u64> {
    Ok(p.order_counts_by_status()?.iter().filter(|(s, _)| is_end_state(*s)).map(|(_, n)| *n).sum())
}

/// Orders not in an end state, split into those with an open exception (someone has been
/// told) and those without (stalled silently; DESIGN.md invariant 10 says there are none).
fn waiting(p: &ProjectionStore) -> anyhow::Result<(u64, Vec<String>)> {
    let mut flagged = 0;
    let mut silent = Vec::new();
    for s in OrderStatus::ALL.into_iter().filter(|s| !is_end_state(*s)) {
        for o in p.orders_by_age(Some(s), None, None, usize::MAX)? {
            if o.open_exceptions > 0 {
                flagged += 1;
            } else {
                silent.push(format!("{} ({})", o.order_ref, o.status));
            }
        }
    }
    Ok((flagged, silent))
}

/// Runs the demo.
pub fn run(opts: &DemoOptions) -> anyhow::Result<Summary> {
    let temp = match &opts.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("waybill-demo-").tempdir()?),
    };
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| temp.as_ref().expect("temp dir").path().to_path_buf());
    let mut cfg = Config { data_dir: data_dir.clone(), partitions: opts.partitions, ..Config::default() };
    cfg.log.fsync = opts.fsync.clone();
    cfg.ingest.listen = opts.listen.clone();
    cfg.control.listen = opts.control_listen.clone();
    cfg.metrics.listen = opts.metrics_listen.clone();
    // The demo's control plane trusts loopback callers as approvers (refused elsewhere).
    cfg.control.allow_anonymous = true;
    cfg.control.anonymous_role = "approver".into();
    // Ingestion too, on loopback: anyone on this machine may post as any system, within
    // the same rules (no control events, each event from its owner, limits).
    cfg.ingest.allow_anonymous = opts.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
    cfg.policy.fulfillment.pick_timeout_secs = opts.pick_timeout;
    // Small enough that some of the simulated returns wait for an approver.
    cfg.policy.posting.hold_credit_notes_above = waybill_domain::Money(100_00);
    if let Some(servers) = &opts.kafka {
        cfg.kafka = Some(kafka_config(servers, &opts.kafka_properties)?);
    }
    cfg.validate()?;

    let started = Instant::now();
    let backend = crate::backend::open(&cfg)?;
    let log = backend.log.clone();
    if backend.is_kafka() {
        let used: Vec<String> = (0..cfg.partitions as i32)
            .filter(|p| log.end_offset(waybill_domain::topic::JOURNAL, *p).is_ok_and(|end| end > 0))
            .map(|p| p.to_string())
            .collect();
        if !used.is_empty() {
            anyhow::bail!(
                "{} on Kafka already holds an earlier run's journal (partitions {}); the demo's orders would meet \
                 that run's. Start it on a fresh broker or cluster (for the test broker: scripts/broker.sh stop && \
                 scripts/broker.sh start)",
                waybill_domain::topic::JOURNAL,
                used.join(", ")
            );
        }
    }
    let node = Node::start_on(&cfg, backend, world::catalog())?;
    if let Some(addr) = node.ingest_addr {
        tracing::info!(%addr, "ingestion endpoint of the demo");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut simulator = Simulator::new(
        log.clone(),
        SimConfig {
            orders: opts.orders,
            seed: opts.seed,
            rate: opts.rate,
            mix: world::Mix::default(),
            pick_timeout: Duration::from_secs_f64(opts.pick_timeout),
        },
    )?;
    let sim_stats = simulator.stats();
    let sim_thread = {
        let stop = stop.clone();
        std::thread::Builder::new().name("simulator".into()).spawn(move || {
            if let Err(e) = simulator.run(&stop) {
                tracing::error!(error = %format!("{e:#}"), "simulator failed");
            }
        })?
    };

    let bar = ProgressBar::new(opts.orders as u64);
    bar.set_draw_target(if opts.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} orders done · {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let deadline = started + Duration::from_secs(opts.timeout);
    let mut finished = false;
    let mut last_events = u64::MAX;
    loop {
        let done = ended(&node.projections)?;
        let released = sim_stats.released.load(Ordering::Relaxed);
        let events = node.stats.inputs.load(Ordering::Relaxed);
        bar.set_position(done.min(opts.orders as u64));
        bar.set_message(format!("{released} released, {events} events in"));
        // Done when every order reached an end state and the invoices and returns that
        // follow have settled: the simulator has nothing left to say and no new input
        // arrived for a moment.
        // An order still in flight counts as done when it has an open exception: the
        // workbench has it, and nothing more happens to it without someone acting.
        let quiet = events == last_events && sim_stats.pending.load(Ordering::Relaxed) == 0;
        last_events = events;
        if quiet && done + waiting(&node.projections)?.0 >= opts.orders as u64 {
            finished = true;
            break;
        }
        // Workers restart themselves after an error (an unreachable broker, say); the
        // demo only gives up at its deadline, and then says what went wrong.
        if Instant::now() > deadline {
            bar.abandon_with_message("timed out");
            if let Some(f) = node.failure() {
                stop.store(true, Ordering::Relaxed);
                let _ = sim_thread.join();
                node.shutdown();
                anyhow::bail!("the demo did not finish within {} s; the orchestrator reported: {f}", opts.timeout);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let summary = summarize(opts, &node, &sim_stats, elapsed, finished, temp.is_none().then_some(data_dir))?;
    if opts.stay {
        // The simulated systems keep answering, so an approved invoice gets posted.
        println!("{summary}");
        match node.control_addr() {
            Some(addr) => println!("control plane on {addr}: try `waybill approvals list`; press Ctrl-C to stop"),
            None => println!("the orchestrator keeps running; press Ctrl-C to stop"),
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            crate::node::shutdown_signal().await;
        });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sim_thread.join();
    node.shutdown();
    Ok(summary)
}

/// The `[kafka]` section for `--kafka` and `--kafka-property`.
fn kafka_config(servers: &str, properties: &[String]) -> anyhow::Result<crate::config::KafkaConfig> {
    use crate::config::{KafkaConfig, KafkaValue};
    let mut map = BTreeMap::new();
    map.insert("bootstrap.servers".to_owned(), KafkaValue::Str(servers.to_owned()));
    for p in properties {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--kafka-property {p:?} is not key=value (e.g. security.protocol=SASL_SSL)")
        })?;
        map.insert(k.trim().to_owned(), KafkaValue::Str(v.trim().to_owned()));
    }
    Ok(KafkaConfig(map))
}

fn summarize(
    opts: &DemoOptions,
    node: &Node,
    sim: &sim::SimStats,
    elapsed: Duration,
    finished: bool,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Summary> {
    let p = &node.projections;
    let by_status: BTreeMap<OrderStatus, u64> = p.order_counts_by_status()?.into_iter().collect();
    let (waiting_with_exception, stalled) = waiting(p)?;
    let mut exceptions: BTreeMap<ExceptionCategory, (u64, u64)> = BTreeMap::new();
    let mut dead_letters = 0;
    for x in p.exceptions(false, None)? {
        let e = exceptions.entry(x.category).or_default();
        e.0 += 1;
        if x.is_open() {
            e.1 += 1;
        }
        if x.dead_letter_kind.is_some() {
            dead_letters += 1;
        }
    }
    let mut invoices_posted = 0;
    let mut credit_notes_issued = 0;
    for o in p.orders(None, usize::MAX)? {
        for d in &o.documents {
            match d.kind {
                waybill_domain::journal::DocumentKind::Invoice => invoices_posted += 1,
                waybill_domain::journal::DocumentKind::CreditNote => credit_notes_issued += 1,
            }
        }
    }
    let held_postings = p.postings(Some("held"))?;
    let held = (
        held_postings.iter().filter(|(_, x)| x.document == waybill_domain::journal::DocumentKind::Invoice).count()
            as u64,
        held_postings.iter().filter(|(_, x)| x.document == waybill_domain::journal::DocumentKind::CreditNote).count()
            as u64,
    );
    let held_examples = held_postings
        .iter()
        .take(3)
        .map(|(_, x)| format!("{} ({}, {})", x.posting_id, x.amount, x.reasons.join("; ")))
        .collect();
    let mut latencies: Vec<f64> = p
        .orders(Some(OrderStatus::Completed), usize::MAX)?
        .into_iter()
        .filter_map(|o| o.completed_at.map(|c| c.micros_since(o.first_event_at) as f64 / 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() { 0.0 } else { latencies[((latencies.len() as f64 - 1.0) * q).round() as usize] }
    };
    Ok(Summary {
        orders: opts.orders,
        partitions: opts.partitions,
        by_status,
        waiting_with_exception,
        stalled,
        exceptions,
        dead_letters,
        injected_bad_records: sim.bad_records.load(Ordering::Relaxed),
        latency_ms: (pct(0.5), pct(0.99)),
        events: node.stats.inputs.load(Ordering::Relaxed),
        commands: node.stats.commands.load(Ordering::Relaxed),
        elapsed,
        data_dir,
        finished,
        invoices_posted,
        credit_notes_issued,
        held,
        held_examples,
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "Waybill demo: {} orders on {} partitions, {:.1} s", self.orders, self.partitions, secs)?;
        if !self.finished {
            writeln!(f, "WARNING: not every order reached an end state or an open exception before the timeout")?;
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10}", "orders by state", "count")?;
        writeln!(f, "  {:-<34} {:->10}", "", "")?;
        for (s, n) in self.by_status.iter().filter(|(_, n)| **n > 0) {
            let label = match s {
                OrderStatus::Completed => "completed (delivered)",
                OrderStatus::Backordered => "ended entirely backordered",
                OrderStatus::Cancelled => "cancelled, compensated",
                OrderStatus::OnHold => "on hold: master data to fix",
                other => other.as_str(),
            };
            writeln!(f, "  {:<34} {:>10}", label, n)?;
        }
        writeln!(f, "  {:<34} {:>10}", "in flight, an exception open", self.waiting_with_exception)?;
        writeln!(f, "  {:<34} {:>10}", "in flight, stalled silently", self.stalled.len())?;
        for x in self.stalled.iter().take(5) {
            writeln!(f, "    stalled: {x}")?;
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10} {:>10}", "exceptions by category", "raised", "open")?;
        writeln!(f, "  {:-<34} {:->10} {:->10}", "", "", "")?;
        for (c, (raised, open)) in &self.exceptions {
            writeln!(f, "  {:<34} {:>10} {:>10}", c.as_str(), raised, open)?;
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10}", "invoices posted", self.invoices_posted)?;
        writeln!(f, "  {:<34} {:>10}", "invoices held for approval", self.held.0)?;
        writeln!(f, "  {:<34} {:>10}", "credit notes issued", self.credit_notes_issued)?;
        writeln!(f, "  {:<34} {:>10}", "credit notes held for approval", self.held.1)?;
        for x in &self.held_examples {
            writeln!(f, "    held: {x}")?;
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10}", "dead-letter records", self.dead_letters)?;
        writeln!(f, "  {:<34} {:>10}", "  of which injected garbage", self.injected_bad_records)?;
        writeln!(f, "  {:<34} {:>10}", "commands issued", self.commands)?;
        writeln!(f, "  {:<34} {:>10}", "inbound events processed", self.events)?;
        writeln!(f, "  {:<34} {:>10.0}", "events/s", self.events as f64 / secs.max(1e-9))?;
        writeln!(f, "  {:<34} {:>10.0}", "saga latency p50 (ms)", self.latency_ms.0)?;
        writeln!(f, "  {:<34} {:>10.0}", "saga latency p99 (ms)", self.latency_ms.1)?;
        if let Some(d) = &self.data_dir {
            writeln!(f)?;
            writeln!(f, "  data kept in {}", d.display())?;
        }
        Ok(())
    }
}
