//! `waybill load`: a load generator and capacity test through Waybill's real edges.
//!
//! It runs Waybill itself as a child process (`waybill serve` with a generated
//! configuration in a temporary directory, on the embedded log or `--kafka`), and in its
//! own process the doubles of the warehouse, the carrier, finance and Odoo's command
//! endpoint ([`crate::demo::systems`], answering as [`crate::demo::answers::World`] says,
//! with every mishap turned off) and the clients. Each client posts an order — Odoo's
//! `OrderReleased`, as Odoo's webhook sends it — to authenticated ingestion
//! (`POST /v1/events` with the Odoo producer's token), then follows it on the control
//! plane's `WatchOrder` stream until it reaches an end state. Waybill's connectors deliver
//! its commands to the doubles, which answer at once (or after `--delay-ms`, or `503` for
//! `--failure-rate` of the requests), in their HTTP answer or later through ingestion.
//!
//! Closed loop (`--concurrency C`): each of C clients starts its next order when its last
//! one ended. Open loop (`--rate R`, `--scenario`): orders arrive at their times whatever
//! Waybill's state, and latency counts from the time the order was due, so a backlog
//! shows. The run stops by itself after `--orders` or `--duration`; an order that does not
//! end within `--order-timeout` counts as an error. CPU is read from `/proc` for the child
//! and for this process, at the start and the end.

mod cpu;
pub mod report;
pub mod shape;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use waybill_connect::Failure;
use waybill_connect::client::{Client, Timeouts};
use waybill_control::client::{ClientOptions, connect};
use waybill_control::proto;
use waybill_domain::{EventBody, System, Timestamp};

use crate::config::Config;
use crate::demo::answers::{World, event};
use crate::demo::systems::{Pace, Systems};
use crate::demo::world::{self, Mix};
use crate::demo::{Secrets, sim};
use report::{Latency, ProcessCpu, Report};
use shape::Scenario;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadOutput {
    /// A table.
    Table,
    /// One JSON object.
    Json,
}

/// Options of `waybill load`.
#[derive(Debug, Clone, Args)]
pub struct LoadOptions {
    /// Orders to place in all.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Closed loop: clients, each placing its next order when its last one ended.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Open loop instead: orders arrive at this base rate (orders/s), shaped by
    /// `--scenario`, whether or not earlier ones have ended.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The open loop's shape: `steady`, `month-end` (a surge to 3× the rate) or `cutoff`
    /// (30% of the day's orders in its 10 minutes).
    #[arg(long, value_enum, default_value = "steady", requires = "rate")]
    pub scenario: Scenario,
    /// Stop placing orders after this many seconds (orders in flight still get their
    /// `--order-timeout`).
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Seconds an order may take from post to end state before it counts as a timeout.
    #[arg(long, default_value_t = 60.0)]
    pub order_timeout: f64,
    /// Milliseconds each double takes to answer a command, and to send its later answers.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// The fraction of requests to the doubles answered `503` (the connectors retry).
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Partitions.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// `batch`, `interval` or `never`: when the embedded log fsyncs.
    #[arg(long, default_value = "batch")]
    pub fsync: String,
    /// Run Waybill on Kafka at these brokers (`host:port,...`) instead of the embedded log.
    #[arg(long)]
    pub kafka: Option<String>,
    /// A librdkafka property for `--kafka`, `key=value` (repeatable).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// Allow `--kafka` brokers that are not on loopback (the run writes thousands of
    /// orders to their topics).
    #[arg(long)]
    pub allow_remote: bool,
    /// Seed of the orders.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The `waybill` binary to run as the child (default: this one).
    #[arg(long)]
    pub waybill: Option<PathBuf>,
    /// `table` or `json`.
    #[arg(long, value_enum, default_value = "table")]
    pub output: LoadOutput,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl LoadOptions {
    /// Refuses options that cannot make a run, saying which and why.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.orders == 0 {
            anyhow::bail!("--orders is 0; give the number of orders to place, e.g. --orders 2000");
        }
        if self.rate.is_none() && self.concurrency == 0 {
            anyhow::bail!("--concurrency is 0; give at least one client, or an open-loop --rate");
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            anyhow::bail!("--rate {r} is not a positive number of orders per second");
        }
        if !(0.0..1.0).contains(&self.failure_rate) {
            anyhow::bail!(
                "--failure-rate {} is not a fraction in [0, 1); 0.05 answers 5% of calls 503",
                self.failure_rate
            );
        }
        if !(self.duration > 0.0 && self.order_timeout > 0.0) {
            anyhow::bail!("--duration and --order-timeout must be positive numbers of seconds");
        }
        if let Some(brokers) = &self.kafka
            && !self.allow_remote
        {
            for b in brokers.split(',') {
                if !is_loopback(b) {
                    anyhow::bail!(
                        "--kafka broker {b:?} is not on loopback; a load run writes thousands of orders to its topics. \
                         Point it at a broker on this machine, or add --allow-remote if that cluster is meant for it"
                    );
                }
            }
        }
        Ok(())
    }

    fn mode(&self) -> String {
        match self.rate {
            Some(r) => format!("open loop, {r} orders/s, {}", scenario_name(self.scenario)),
            None if self.concurrency == 1 => "closed loop, 1 client".into(),
            None => format!("closed loop, {} clients", self.concurrency),
        }
    }
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Steady => "steady",
        Scenario::MonthEnd => "month-end",
        Scenario::Cutoff => "cutoff",
    }
}

/// `host:port` names this machine (`localhost`, `127.x`, `::1`).
fn is_loopback(hostport: &str) -> bool {
    let hostport = hostport.trim();
    if let Ok(a) = hostport.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Runs the load test and returns its report.
pub fn run(opts: &LoadOptions) -> anyhow::Result<Report> {
    opts.validate()?;
    let dir = tempfile::Builder::new().prefix("waybill-load-").tempdir()?;
    let secrets = Secrets::generate(&[System::Wms, System::Carrier, System::Finance, System::Odoo], Some("load"))?;
    let mix = Mix::happy();
    let world = Arc::new(World::new(opts.seed, mix.clone(), Duration::from_secs(3600)));
    let pace =
        Pace { fixed: Some(Duration::from_millis(opts.delay_ms)), unavailable_rate: opts.failure_rate, history: false };
    let systems = Systems::start(world, secrets.hmac(), pace)?;
    let cfg = child_config(opts, dir.path(), &secrets, &systems)?;
    let config_path = dir.path().join("waybill.toml");
    std::fs::write(&config_path, toml::to_string(&cfg)?)?;

    let exe = match &opts.waybill {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let mut child = Waybill::start(&exe, &config_path, &dir.path().join("waybill.log"))?;
    let result = drive(opts, &mut child, &secrets, &systems, mix);
    let stopped = child.stop();
    systems.later.stop();
    let mut report = result?;
    stopped?;
    report.target = format!(
        "child process `waybill serve`, {}, {} partitions",
        match &opts.kafka {
            Some(k) => format!("Kafka at {k}"),
            None => format!("embedded log (fsync {})", opts.fsync),
        },
        opts.partitions
    );
    Ok(report)
}

/// The child's configuration: the connectors to the doubles, the tokens, ingestion and
/// the control plane on free loopback ports, nothing else listening.
fn child_config(opts: &LoadOptions, dir: &Path, secrets: &Secrets, systems: &Systems) -> anyhow::Result<Config> {
    let mut cfg = Config { data_dir: dir.join("data"), partitions: opts.partitions, ..Config::default() };
    cfg.log.fsync = opts.fsync.clone();
    cfg.ingest.listen = "127.0.0.1:0".into();
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.metrics.listen = String::new();
    cfg.registry.listen = String::new();
    cfg.web.listen = String::new();
    cfg.telemetry.log_filter = "warn".into();
    for (system, target) in systems.targets() {
        let mut c = secrets.http_connector(system, target.command_url());
        // Unthrottled: the load test measures Waybill, not a target's rate limit.
        c.rate = 0.0;
        c.concurrency = 16;
        cfg.connectors.insert(system.as_str().into(), c);
    }
    secrets.configure_ingestion(&mut cfg);
    cfg.ingest.rate_per_sec = 100_000.0;
    cfg.ingest.burst = 100_000;
    if let Some(servers) = &opts.kafka {
        cfg.kafka = Some(crate::demo::kafka_config(servers, &opts.kafka_properties)?);
    }
    cfg.validate()?;
    Ok(cfg)
}

/// `waybill serve` as a child process, with its listeners.
struct Waybill {
    child: Child,
    ingest: String,
    control: String,
    log: PathBuf,
}

impl Waybill {
    fn start(exe: &Path, config: &Path, log: &Path) -> anyhow::Result<Waybill> {
        let err = std::fs::File::create(log)?;
        let mut child = Command::new(exe)
            .args(["serve", "--demo-catalog", "--config"])
            .arg(config)
            .env_remove("WAYBILL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start {} serve: {e}; give the binary with --waybill", exe.display())
            })?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut ingest, mut control) = (None, None);
        while ingest.is_none() || control.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    let line = line.trim();
                    if let Some(url) = line.strip_prefix("ingestion") {
                        ingest = Some(url.trim().trim_end_matches("/v1/events").to_string());
                    } else if let Some(rest) = line.strip_prefix("control plane") {
                        control = rest.split_whitespace().next().map(|a| format!("http://{a}"));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    anyhow::bail!("waybill serve did not report its listeners within 120 s; it said:\n{}", tail(log));
                }
            }
        }
        Ok(Waybill { child, ingest: ingest.expect("seen"), control: control.expect("seen"), log: log.to_path_buf() })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Stops the child with SIGTERM (as an orchestrator would), SIGKILL after 20 s.
    fn stop(mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            anyhow::bail!("waybill serve exited early ({status}); it said:\n{}", tail(&self.log));
        }
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for Waybill {
    /// A run that failed half-way does not leave its `waybill serve` behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last lines `waybill serve` wrote to its log.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// What the clients record.
#[derive(Default)]
struct Tally {
    latencies: Mutex<Vec<Duration>>,
    ended: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    posted: AtomicU64,
    done: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    last_end: Mutex<Option<Instant>>,
}

impl Tally {
    fn error(&self, kind: &str) {
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(kind.to_string()).or_insert(0) += 1;
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything one order needs.
struct Orders {
    seed: u64,
    mix: Mix,
    ingest: Client,
    url: String,
    token: String,
    timeout: Duration,
    tally: Tally,
}

impl Orders {
    /// Posts order `i`, follows it to its end, and records what happened; latency counts
    /// from `due`.
    async fn place(
        self: Arc<Self>,
        queries: proto::queries_client::QueriesClient<waybill_control::client::AuthChannel>,
        i: usize,
        due: Instant,
    ) {
        let t = &self.tally;
        let now_in_flight = t.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        t.max_in_flight.fetch_max(now_in_flight, Ordering::Relaxed);
        let outcome = self.clone().follow(queries, i, due).await;
        t.in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok((status, latency)) => {
                t.latencies.lock().unwrap_or_else(|p| p.into_inner()).push(latency);
                *t.ended.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_insert(0) += 1;
                *t.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                t.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(kind) => t.error(kind),
        }
    }

    async fn follow(
        self: Arc<Self>,
        mut queries: proto::queries_client::QueriesClient<waybill_control::client::AuthChannel>,
        i: usize,
        due: Instant,
    ) -> Result<(String, Duration), &'static str> {
        let order_ref = world::order_ref(i);
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.post(i)).await.map_err(|_| "client-failed")??;
        self.tally.posted.fetch_add(1, Ordering::Relaxed);
        let left = self.timeout.saturating_sub(due.elapsed());
        let request = proto::WatchOrderRequest { order_ref, timeout_ms: left.as_millis().clamp(1, 3_600_000) as u32 };
        let mut stream = match queries.watch_order(request).await {
            Ok(s) => s.into_inner(),
            Err(_) => return Err("watch-refused"),
        };
        // The server ends the stream at the deadline; this one holds if it does not.
        let give_up = tokio::time::Instant::now() + left + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(give_up, stream.message()).await {
                Ok(Ok(Some(u))) if u.end => return Ok((u.status, due.elapsed())),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return Err("watch-ended-early"),
                Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => return Err("timeout"),
                Ok(Err(_)) => return Err("watch-failed"),
                Err(_) => return Err("timeout"),
            }
        }
    }

    /// Posts order `i` as Odoo's webhook would, until ingestion takes it.
    fn post(&self, i: usize) -> Result<(), &'static str> {
        let order = world::order(self.seed, i, &self.mix, Timestamp::now());
        let e = event(sim::release_id(i), System::Odoo, &order.order_ref.clone(), EventBody::OrderReleased(order));
        let body = waybill_schema::encode_event_json(&e);
        let headers = [("Authorization", format!("Bearer {}", self.token))];
        let deadline = Instant::now() + self.timeout;
        loop {
            let outcome = self
                .ingest
                .post(&self.url, "/v1/events", &headers, "application/json", &body, None)
                .and_then(|a| a.failure().map_or(Ok(()), Err));
            let wait = match outcome {
                Ok(()) => return Ok(()),
                Err(Failure::Refused { .. }) | Err(Failure::Unauthorized { .. }) => return Err("ingestion-refused"),
                Err(Failure::Unavailable { retry_after, .. }) => retry_after.unwrap_or(Duration::from_millis(50)),
                Err(_) => Duration::from_millis(50),
            };
            if Instant::now() + wait > deadline {
                return Err("ingestion-unavailable");
            }
            std::thread::sleep(wait);
        }
    }
}

/// Runs the clients against the child and collects the report.
fn drive(
    opts: &LoadOptions,
    child: &mut Waybill,
    secrets: &Secrets,
    systems: &Systems,
    mix: Mix,
) -> anyhow::Result<Report> {
    let _posting = systems.later.start(format!("{}/v1/events", child.ingest), secrets.tokens().clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let clients = rt.block_on(connect(&ClientOptions {
        server: child.control.clone(),
        token: secrets.viewer().map(str::to_string),
        ..ClientOptions::default()
    }))?;
    let orders = Arc::new(Orders {
        seed: opts.seed,
        mix,
        ingest: Client::new("waybill", Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(30) }),
        url: format!("{}/v1/events", child.ingest),
        token: secrets.token(System::Odoo).to_string(),
        timeout: Duration::from_secs_f64(opts.order_timeout),
        tally: Tally::default(),
    });
    let pid = child.pid();
    let (child_cpu0, self_cpu0) = (cpu::seconds(&pid), cpu::seconds("self"));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(opts.duration);
    let progress = (!opts.quiet).then(|| progress(orders.clone(), opts.orders, started));

    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        match opts.rate {
            None => {
                let next = Arc::new(AtomicUsize::new(0));
                for _ in 0..opts.concurrency.min(opts.orders) {
                    let (orders, next, queries, n) =
                        (orders.clone(), next.clone(), clients.queries.clone(), opts.orders);
                    tasks.spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= n || Instant::now() >= stop_at {
                                break;
                            }
                            orders.clone().place(queries.clone(), i, Instant::now()).await;
                        }
                    });
                }
            }
            Some(rate) => {
                for (i, at) in shape::arrivals(opts.orders, rate, opts.scenario).into_iter().enumerate() {
                    let due = started + at;
                    if due >= stop_at {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    tasks.spawn(orders.clone().place(clients.queries.clone(), i, due));
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    });
    let (child_cpu1, self_cpu1) = (cpu::seconds(&pid), cpu::seconds("self"));
    let ended_at = orders.tally.last_end.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(Instant::now);
    if let Some(p) = progress {
        p.store(u64::MAX, Ordering::Relaxed);
    }

    let t = &orders.tally;
    let mut latencies = std::mem::take(&mut *t.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    let mut ended = std::mem::take(&mut *t.ended.lock().unwrap_or_else(|p| p.into_inner()));
    let completed = ended.remove("completed").unwrap_or(0);
    let mut errors = std::mem::take(&mut *t.errors.lock().unwrap_or_else(|p| p.into_inner()));
    let not_placed = opts.orders as u64 - t.done.load(Ordering::Relaxed);
    if not_placed > 0 {
        errors.insert("not-placed-within-duration".into(), not_placed);
    }
    let elapsed = ended_at.saturating_duration_since(started).as_secs_f64().max(1e-9);
    let per_order = |s: f64| if completed > 0 { s * 1000.0 / completed as f64 } else { 0.0 };
    let mut cpu = Vec::new();
    let mut add = |process: String, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b) {
            cpu.push(ProcessCpu { process, cpu_s: b - a, cpu_ms_per_order: per_order(b - a) });
        }
    };
    add(format!("waybill serve (child, pid {pid})"), child_cpu0, child_cpu1);
    add("load generator, clients and doubles (this process)".into(), self_cpu0, self_cpu1);
    Ok(Report {
        mode: opts.mode(),
        target: String::new(),
        doubles: format!(
            "warehouse, carrier, finance, odoo over signed HTTP; answer after {} ms; {}% answered 503",
            opts.delay_ms,
            opts.failure_rate * 100.0
        ),
        orders_planned: opts.orders,
        orders_posted: t.posted.load(Ordering::Relaxed),
        completed,
        ended_otherwise: ended,
        errors,
        elapsed_s: elapsed,
        completions_per_s: completed as f64 / elapsed,
        latency: Latency::of(&mut latencies),
        max_in_flight: t.max_in_flight.load(Ordering::Relaxed),
        cpu,
    })
}

/// Prints a progress line to stderr every 5 s until the returned flag is set to
/// `u64::MAX`.
fn progress(orders: Arc<Orders>, total: usize, started: Instant) -> Arc<AtomicU64> {
    let stop = Arc::new(AtomicU64::new(0));
    let s = stop.clone();
    std::thread::spawn(move || {
        while s.load(Ordering::Relaxed) != u64::MAX {
            std::thread::sleep(Duration::from_millis(200));
            let secs = started.elapsed().as_secs();
            if secs > 0
                && secs.is_multiple_of(5)
                && s.swap(secs, Ordering::Relaxed) != secs
                && s.load(Ordering::Relaxed) != u64::MAX
            {
                let t = &orders.tally;
                eprintln!(
                    "load: {secs} s, {} of {total} ended, {} in flight",
                    t.done.load(Ordering::Relaxed),
                    t.in_flight.load(Ordering::Relaxed)
                );
            }
        }
    });
    stop
}
