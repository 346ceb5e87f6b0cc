//! `waybill run`: the demo. Starts a node on an embedded log (or Kafka) and a simulated
//! distributor that produces realistic traffic and answers Waybill's commands, shows
//! progress until every order has reached an end state, then prints a summary.
//!
//! By default the distributor's systems are real HTTP servers on loopback and Waybill
//! talks to them only the way it talks to real ones:
//! - Odoo is the Odoo double (JSON-RPC, 17.0), seeded with the world's master data; a
//!   sales channel creates and confirms the orders in it, and cancels some
//!   ([`channel`]). Waybill's Odoo connector polls the confirmed and cancelled orders and
//!   carries out `ConfirmShipment` and `CreateBackorder` in it;
//! - the warehouse, the carrier and finance are HTTP doubles that Waybill's HTTP
//!   connectors post commands to, signed; they answer what they know at once and post
//!   the rest (picks, goods issues, proofs of delivery, returns) to Waybill's ingestion
//!   endpoint with their own tokens ([`systems`]);
//! - a misbehaving producer writes undecodable records straight to the inbound topics.
//!
//! With `--in-process` the [`sim::Simulator`] plays every system inside the process
//! instead, reading the command topics and appending answers to the log itself: no HTTP,
//! no connectors. The benchmarks and the Kafka scale and fault tests use it, and it can
//! resume a run on the same data directory, which the doubles (in memory) cannot.

pub mod answers;
mod bank;
mod buyer;
pub mod channel;
pub mod entities;
mod people;
pub mod purchasing;
pub mod sim;
mod stage;
pub mod stock;
pub mod summary;
pub mod systems;
pub mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::node::Node;
use sim::{SimConfig, Simulator};
pub use stage::{Secrets, Stage};
pub use summary::{ConnectorLine, Summary};

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
    /// With `--in-process`, running again on the same directory resumes where the last
    /// run stopped (the doubles of the default mode keep their data in memory, so a
    /// directory of an earlier run is refused there).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `batch`, `interval` or `never`: when the embedded log fsyncs.
    #[arg(long, default_value = "batch")]
    pub fsync: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Ingestion listen address while the demo runs (`127.0.0.1:0`: any free port; empty:
    /// off, only with `--in-process`: the systems post their later answers to it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Control-plane gRPC address while the demo runs (anonymous callers on loopback act
    /// as approvers; empty: off).
    #[arg(long, default_value = "127.0.0.1:8421")]
    pub control_listen: String,
    /// Confluent Schema Registry API (read-only, the schema catalog) while the demo runs
    /// (empty: off).
    #[arg(long, default_value = "127.0.0.1:8422")]
    pub registry_listen: String,
    /// `/metrics`, `/healthz`, `/readyz` address while the demo runs (empty: off).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    /// The web workbench while the demo runs; the demo prints a sign-in for each role
    /// (empty, or no control plane: off).
    #[arg(long, default_value = "127.0.0.1:8423")]
    pub web_listen: String,
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
    /// Play Odoo, the warehouse, the carrier and finance inside the process: the
    /// simulator appends their events to the log and reads the command topics itself,
    /// instead of the doubles on loopback talking to Waybill through its connectors and
    /// ingestion. For the benchmarks and the Kafka scale and fault tests, which measure
    /// the orchestrator alone, and to resume a killed run on the same `--data-dir`.
    #[arg(long)]
    pub in_process: bool,
}

/// The systems around the node while the demo runs.
enum Distributor {
    /// The simulator inside the process.
    InProcess { stats: Arc<sim::SimStats>, thread: JoinHandle<()> },
    /// The doubles, the sales channel and the posters of later answers.
    Connected { stage: Box<Stage>, channel: Arc<channel::ChannelStats>, threads: Vec<JoinHandle<()>> },
}

impl Distributor {
    /// Orders released to Waybill (in-process) or created in Odoo.
    fn released(&self) -> u64 {
        match self {
            Distributor::InProcess { stats, .. } => stats.released.load(Ordering::Relaxed),
            Distributor::Connected { channel, .. } => channel.created.load(Ordering::Relaxed),
        }
    }

    /// Work the systems still have to do: answers not yet out, orders not yet placed,
    /// commands not yet delivered.
    fn pending(&self, node: &Node) -> u64 {
        match self {
            Distributor::InProcess { stats, .. } => stats.pending.load(Ordering::Relaxed),
            Distributor::Connected { stage, channel, .. } => {
                channel.pending.load(Ordering::Relaxed)
                    + stage.later().pending.load(Ordering::Relaxed)
                    + stage::undelivered(node.log.as_ref())
            }
        }
    }

    /// The warehouse's stock (none in process: no warehouse system to read).
    fn stock(&self) -> Option<&stock::WarehouseStock> {
        match self {
            Distributor::InProcess { .. } => None,
            Distributor::Connected { stage, .. } => Some(stage.stock()),
        }
    }

    fn bad_records(&self) -> u64 {
        match self {
            Distributor::InProcess { stats, .. } => stats.bad_records.load(Ordering::Relaxed),
            Distributor::Connected { channel, .. } => channel.bad_records.load(Ordering::Relaxed),
        }
    }

    /// Stops the threads; the doubles (and their secrets) live on in what it returns,
    /// until the node has stopped calling them.
    fn stop(self, stop: &AtomicBool) -> Option<Box<Stage>> {
        stop.store(true, Ordering::Relaxed);
        match self {
            Distributor::InProcess { thread, .. } => {
                let _ = thread.join();
                None
            }
            Distributor::Connected { stage, threads, .. } => {
                stage.later().stop();
                for t in threads {
                    let _ = t.join();
                }
                Some(stage)
            }
        }
    }
}

/// Runs the demo.
pub fn run(opts: &DemoOptions) -> anyhow::Result<Summary> {
    run_keeping_doubles(opts).map(|(summary, _)| summary)
}

/// Runs the demo and hands back its doubles (none with `--in-process`), stopped calling
/// but still answering, so a test can count what each system saw.
pub fn run_keeping_doubles(opts: &DemoOptions) -> anyhow::Result<(Summary, Option<Box<Stage>>)> {
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
    cfg.registry.listen = opts.registry_listen.clone();
    // The demo's control plane trusts loopback callers as approvers (refused elsewhere).
    cfg.control.allow_anonymous = true;
    cfg.control.anonymous_role = "approver".into();
    cfg.policy.fulfillment.pick_timeout_secs = opts.pick_timeout;
    // Small enough that some of the simulated returns wait for an approver.
    cfg.policy.posting.hold_credit_notes_above = waybill_domain::Money(100_00);
    if let Some(servers) = &opts.kafka {
        cfg.kafka = Some(kafka_config(servers, &opts.kafka_properties)?);
    }
    let world =
        Arc::new(answers::World::new(opts.seed, world::Mix::default(), Duration::from_secs_f64(opts.pick_timeout)));
    let stage = if opts.in_process {
        // Ingestion, on loopback: anyone on this machine may post as any system, within
        // the same rules (no control events, each event from its owner, limits).
        cfg.ingest.allow_anonymous = opts.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        None
    } else {
        if opts.listen.is_empty() {
            anyhow::bail!(
                "--listen is empty, but the warehouse, the carrier and Odoo post their later answers to Waybill's ingestion \
                 endpoint; give it an address (127.0.0.1:0 picks a free port), or run the systems in process with --in-process"
            );
        }
        let stage = Stage::start(world.clone(), opts.orders)?;
        stage.configure(&mut cfg);
        Some(stage)
    };
    // One sign-in per role for the workbench, in the identities file the control plane
    // reads (beside the producers' tokens of the connected demo).
    let people = people::People::generate();
    let people_dir = tempfile::Builder::new().prefix("waybill-demo-people-").tempdir()?;
    if !opts.control_listen.is_empty() && !opts.web_listen.is_empty() {
        cfg.control.tokens_file = Some(people.write(cfg.control.tokens_file.as_deref(), people_dir.path())?);
        cfg.web.listen = opts.web_listen.clone();
    }
    // The distributor's two companies, each on its country template.
    entities::configure(&mut cfg, people_dir.path())?;
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
    } else if stage.is_some()
        && (0..cfg.partitions as i32)
            .any(|p| log.end_offset(waybill_domain::topic::JOURNAL, p).is_ok_and(|end| end > 0))
    {
        anyhow::bail!(
            "{} holds an earlier run; the doubles of Odoo, the warehouse, the carrier and finance keep their data in \
             memory, so that run cannot go on through them. Resume it with --in-process, or give a new --data-dir",
            data_dir.display()
        );
    }
    let node = Node::start_on(&cfg, backend, world::catalog())?;
    let stop = Arc::new(AtomicBool::new(false));
    print_listeners(&node, stage.as_ref(), node.web_addr.map(|_| &people), opts.stay);
    // Stock reconciliation's baseline: the warehouse's go-live count, before any order.
    let reconcile = node.stock_job.clone().filter(|_| stage.is_some());
    if let Some(job) = &reconcile {
        job.run(waybill_domain::Timestamp::now())
            .map_err(|e| anyhow::anyhow!("the baseline reconciliation failed: {e}"))?;
    }
    let distributor = match stage {
        None => {
            let mut simulator = Simulator::new(
                log.clone(),
                SimConfig {
                    orders: opts.orders,
                    seed: opts.seed,
                    rate: opts.rate,
                    mix: world.mix.clone(),
                    pick_timeout: world.pick_timeout,
                },
            )?;
            let stats = simulator.stats();
            let stop = stop.clone();
            let thread = std::thread::Builder::new().name("simulator".into()).spawn(move || {
                if let Err(e) = simulator.run(&stop) {
                    tracing::error!(error = %format!("{e:#}"), "simulator failed");
                }
            })?;
            Distributor::InProcess { stats, thread }
        }
        Some(stage) => {
            let addr = node.ingest_addr.expect("the connector demo listens for ingestion");
            let mut threads = stage.start_posting(addr)?;
            let projections = node.projections.clone();
            let seen: channel::Seen = Arc::new(move |order: &str| projections.order(order).is_ok_and(|o| o.is_some()));
            let cfg = channel::ChannelConfig {
                orders: opts.orders,
                seed: opts.seed,
                rate: opts.rate,
                mix: world.mix.clone(),
            };
            let mut channel = stage.channel(cfg, log.clone(), seen)?;
            let stats = channel.stats();
            let s = stop.clone();
            threads.push(std::thread::Builder::new().name("sales-channel".into()).spawn(move || channel.run(&s))?);
            Distributor::Connected { stage: Box::new(stage), channel: stats, threads }
        }
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
    let mut lost = false;
    loop {
        let done = summary::ended(&node.projections)?;
        // Halfway, the warehouse loses a few units of one product, for the reconciliation
        // at the end to find.
        if !lost && done * 2 >= opts.orders as u64 {
            if let Some(stock) = distributor.stock() {
                stock.lose();
            }
            lost = true;
        }
        let released = distributor.released();
        let events = node.stats.inputs.load(Ordering::Relaxed);
        bar.set_position(done.min(opts.orders as u64));
        bar.set_message(format!("{released} released, {events} events in"));
        // Done when every order reached an end state and the invoices and returns that
        // follow have settled: the systems have nothing left to say, every command is
        // delivered, and no new input arrived for a moment.
        // An order still in flight counts as done when it has an open exception: the
        // workbench has it, and nothing more happens to it without someone acting.
        let quiet = events == last_events && distributor.pending(&node) == 0;
        last_events = events;
        if quiet && done + summary::waiting(&node.projections)?.0 >= opts.orders as u64 {
            finished = true;
            break;
        }
        // Workers restart themselves after an error (an unreachable broker, say); the
        // demo only gives up at its deadline, and then says what went wrong.
        if Instant::now() > deadline {
            bar.abandon_with_message("timed out");
            if let Some(f) = node.failure() {
                let stage = distributor.stop(&stop);
                node.shutdown();
                drop(stage);
                anyhow::bail!("the demo did not finish within {} s; the orchestrator reported: {f}", opts.timeout);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    // The end-of-day reconciliation, once the warehouse is quiet; its findings are open
    // exceptions on the workbench before the summary is printed.
    let reconciliation = match &reconcile {
        Some(job) => Some(summary::reconcile_at_end(job, &node)?),
        None => None,
    };
    let mut summary = summary::summarize(
        opts,
        &node,
        distributor.bad_records(),
        elapsed,
        finished,
        temp.is_none().then_some(data_dir),
        reconciliation,
    )?;
    summary.entities = summary::EntityLine::of(&node.projections, &cfg.policy.entities)?;
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
    let stage = distributor.stop(&stop);
    node.shutdown();
    Ok((summary, stage))
}

/// Prints where everything listens: the node's endpoints and the doubles.
fn print_listeners(node: &Node, stage: Option<&Stage>, people: Option<&people::People>, stay: bool) {
    println!("Waybill demo, listening on:");
    for line in node.listeners() {
        println!("{line}");
    }
    if let (Some(addr), Some(people)) = (node.web_addr, people) {
        println!("Sign in to the workbench at http://{addr}/ as (passwords for this run only):");
        for line in people.describe() {
            println!("  {line}");
        }
        if !stay {
            println!("  (the workbench closes with the demo; add --stay to keep it open)");
        }
    }
    match stage {
        Some(stage) => {
            println!("The distributor's systems (doubles on loopback, reached through Waybill's connectors):");
            for line in stage.describe() {
                println!("  {line}");
            }
        }
        None => println!("The distributor's systems run in process (--in-process): no connectors, no doubles."),
    }
    println!();
}

/// The `[kafka]` section for `--kafka` and `--kafka-property`.
pub(crate) fn kafka_config(servers: &str, properties: &[String]) -> anyhow::Result<crate::config::KafkaConfig> {
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
