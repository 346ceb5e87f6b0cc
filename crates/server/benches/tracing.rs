//! Trace export overhead (issue 5): the saga workload of pipeline row 2 — the coordinator
//! draining a backlog of complete order-to-fulfillment sagas from the embedded log (fsync
//! per batch) — with OpenTelemetry export off and on, in the same run.
//!
//! `tracing` has one global subscriber per process and the production set-up installs it
//! once from the environment, so every measurement is a fresh child process of this
//! binary (`WAYBILL_TRACING_BENCH_CHILD=1`) that installs the subscriber exactly as
//! `waybill` does (`waybill_telemetry::init_with_guard`, from `OTEL_*`), pre-loads the
//! backlog (not timed), then drains it (timed) and flushes the queued spans to the
//! receiver (timed too: the spans of a drain are part of its cost). The receiver is an
//! in-process OTLP/gRPC collector (opentelemetry-proto's `TraceService`) in the parent,
//! on loopback, so its CPU competes with the child's as a local collector would.
//!
//! Configurations, in a rotated order within each round:
//! - **off**: no `OTEL_EXPORTER_OTLP_ENDPOINT` (the spans are disabled at their call sites);
//! - **full**: export, `OTEL_TRACES_SAMPLER=parentbased_always_on` (the SDK default, dev);
//! - **ratio**: export, `parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG=0.1`, the
//!   production setting of `deploy/base/statefulset.yaml`.
//!
//! The ratio column is the median of the per-round ratios (on / off of the same round).
//! Target: overhead ≤ 10% of throughput, i.e. ratio ≥ 0.90.
//!
//! Knobs: `WAYBILL_BENCH_ROUNDS` (7), `WAYBILL_BENCH_TRACING_ORDERS` (6000 orders, 7
//! inbound events each), `WAYBILL_BENCH_TRACING_UPSTREAM=1`: every order's records arrive
//! with the trace context of an upstream system that traces (a connector, a caller of the
//! ingestion endpoint) and sampled there as the mode's sampler would (all with `full`,
//! one trace in ten with `ratio`); without it every record starts a trace of its own.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use waybill_domain::Timestamp;
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
use waybill_log::{AppendBatch, EventLog};
use waybill_saga::Policy;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig};
use waybill_saga::store::StateStore;
use waybill_server::demo::world;
use waybill_server::node::ensure_topics;
use waybill_telemetry::LogFormat;

mod common;
use common::{PARTITIONS, env_usize, environment, fmt_num, loadavg, median, process_cpu_ns, saga_backlog, spread};

const CHILD: &str = "WAYBILL_TRACING_BENCH_CHILD";

/// Counts what the collector received.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .map(|ss| ss.spans.len())
            .sum();
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Full,
    Ratio,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Off, Mode::Full, Mode::Ratio];

    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Full => "full",
            Mode::Ratio => "ratio",
        }
    }
}

/// One child's result.
#[derive(Debug, Clone, Copy)]
struct Measured {
    inputs: f64,
    /// Drain plus span flush.
    secs: f64,
    /// Drain alone.
    drain_secs: f64,
    /// CPU time of every thread of the child during the timed part.
    cpu_secs: f64,
    completed: f64,
}

/// The child: installs telemetry from the environment, pre-loads, drains, flushes.
fn child() -> anyhow::Result<()> {
    let guard = waybill_telemetry::init_with_guard(LogFormat::Text, "warn")?;
    let orders = env_usize("WAYBILL_BENCH_TRACING_ORDERS", 6000);
    let now = Timestamp::now();
    let mut backlog = saga_backlog(0, orders, now)?;
    if upstream() {
        // One upstream trace per order, sampled with the sampler's ratio.
        let ratio: f64 = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut traces: std::collections::HashMap<Vec<u8>, String> = std::collections::HashMap::new();
        for r in &mut backlog {
            let tp = traces.entry(r.key.clone()).or_insert_with(|| {
                let flags = if rng.f64() < ratio { "01" } else { "00" };
                format!("00-{:032x}-{:016x}-{flags}", rng.u128(1..), rng.u64(1..))
            });
            r.headers.push(waybill_log::Header { key: "traceparent".into(), value: tp.as_bytes().to_vec() });
        }
    }
    let dir = tempfile::Builder::new().prefix("waybill-bench-tracing-").tempdir_in("/tmp")?;
    let log = EmbeddedLog::open(
        &dir.path().join("log"),
        EmbeddedOptions { fsync: FsyncPolicy::EveryBatch, ..EmbeddedOptions::default() },
    )?;
    let log: Arc<dyn EventLog> = Arc::new(log);
    ensure_topics(log.as_ref(), PARTITIONS)?;
    for c in backlog.chunks(1000) {
        log.append(AppendBatch { records: c.to_vec(), positions: vec![] })?;
    }
    let coordinator = Coordinator::new(
        log.clone(),
        StateStore::open(&dir.path().join("state"))?,
        Arc::new(world::catalog()),
        Policy::default(),
        CoordinatorConfig::default(),
    );
    let cpu = process_cpu_ns();
    let t = Instant::now();
    let mut inputs = 0;
    for p in 0..PARTITIONS as i32 {
        inputs += coordinator.drain_partition(p, now)?;
    }
    let drain_secs = t.elapsed().as_secs_f64();
    guard.flush();
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = match (cpu, process_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => f64::NAN,
    };
    let completed = coordinator.stats().journal_events.load(Ordering::Relaxed);
    if inputs != backlog.len() as u64 {
        bail!("drained {inputs} of {} inputs", backlog.len());
    }
    println!("RESULT {inputs} {secs} {drain_secs} {cpu_secs} {completed} {}", guard.exporting());
    drop(guard);
    Ok(())
}

/// Whether the records carry an upstream trace context (`WAYBILL_BENCH_TRACING_UPSTREAM`).
fn upstream() -> bool {
    std::env::var("WAYBILL_BENCH_TRACING_UPSTREAM").is_ok_and(|v| !v.is_empty())
}

fn run_child(mode: Mode, endpoint: &str, orders: usize) -> anyhow::Result<Measured> {
    let mut cmd = Command::new(std::env::current_exe()?);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(CHILD, "1")
        .env("WAYBILL_BENCH_TRACING_ORDERS", orders.to_string())
        .env("WAYBILL_BENCH_TRACING_UPSTREAM", if upstream() { "1" } else { "" })
        .env("OTEL_SERVICE_NAME", "waybill-bench");
    match mode {
        Mode::Off => {}
        Mode::Full => {
            cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint).env("OTEL_TRACES_SAMPLER", "parentbased_always_on");
        }
        Mode::Ratio => {
            cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
                .env("OTEL_TRACES_SAMPLER_ARG", "0.1");
        }
    }
    let out = cmd.output().context("running the bench child")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        bail!("bench child ({}) failed: {}\n{}", mode.name(), out.status, String::from_utf8_lossy(&out.stderr));
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| -> anyhow::Result<f64> { Ok(f.get(i).context("short RESULT line")?.parse()?) };
    if f.get(5).copied() != Some(if mode == Mode::Off { "false" } else { "true" }) {
        bail!("bench child ({}) exported = {:?}", mode.name(), f.get(5));
    }
    Ok(Measured { inputs: num(0)?, secs: num(1)?, drain_secs: num(2)?, cpu_secs: num(3)?, completed: num(4)? })
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let started = Instant::now();
    let rounds = env_usize("WAYBILL_BENCH_ROUNDS", 7);
    let orders = env_usize("WAYBILL_BENCH_TRACING_ORDERS", 6000);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let collector = Collector::default();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    eprintln!("tracing bench: {rounds} rounds of off/full/ratio, {orders} orders ({} inbound events)", orders * 7);

    let load_start = loadavg();
    // Per mode: throughput, drain-only throughput, CPU µs per event, spans received.
    let mut rate: [Vec<f64>; 3] = Default::default();
    let mut drain_rate: [Vec<f64>; 3] = Default::default();
    let mut cpu_us: [Vec<f64>; 3] = Default::default();
    let mut spans: [Vec<f64>; 3] = Default::default();
    let mut flush_ms: [Vec<f64>; 3] = Default::default();
    let (mut r_full, mut r_ratio, mut r_cpu_full, mut r_cpu_ratio) = (vec![], vec![], vec![], vec![]);
    let mut inputs = 0.0;
    for round in 0..rounds {
        let mut got = [None; 3];
        for k in 0..3 {
            let i = (k + round) % 3;
            let before = collector.spans.load(Ordering::Relaxed);
            let m = run_child(Mode::ALL[i], &endpoint, orders)?;
            let received = collector.spans.load(Ordering::Relaxed) - before;
            rate[i].push(m.inputs / m.secs);
            drain_rate[i].push(m.inputs / m.drain_secs);
            cpu_us[i].push(m.cpu_secs * 1e6 / m.inputs);
            spans[i].push(received as f64);
            flush_ms[i].push((m.secs - m.drain_secs) * 1e3);
            inputs = m.inputs;
            if m.completed == 0.0 {
                bail!("no journal events written");
            }
            got[i] = Some(m);
        }
        let [Some(off), Some(full), Some(ratio)] = got else { unreachable!() };
        r_full.push(off.secs / full.secs);
        r_ratio.push(off.secs / ratio.secs);
        r_cpu_full.push(full.cpu_secs / off.cpu_secs);
        r_cpu_ratio.push(ratio.cpu_secs / off.cpu_secs);
        eprintln!(
            "round {}: off {:.0} events/s, full {:.0} ({} spans), ratio 0.1 {:.0} ({} spans)",
            round + 1,
            off.inputs / off.secs,
            full.inputs / full.secs,
            spans[1].last().copied().unwrap_or(0.0),
            ratio.inputs / ratio.secs,
            spans[2].last().copied().unwrap_or(0.0),
        );
    }
    rt.shutdown_background();

    let verdict = |r: f64| if r >= 0.90 { "(met)" } else { "(MISSED)" };
    println!();
    println!(
        "| measurement | events/s | on-CPU µs/event (all threads) | spans received | throughput ratio on/off (target ≥ 0.90) | CPU ratio on/off |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| 5a. saga drain, trace export off (no OTLP endpoint) | {} | {:.1} | 0 | baseline | baseline |",
        fmt_num(median(&rate[0])),
        median(&cpu_us[0])
    );
    println!(
        "| 5b. same, export on, every trace sampled (`parentbased_always_on`) | {} | {:.1} | {} of {} | {:.2} {} | {:.2} |",
        fmt_num(median(&rate[1])),
        median(&cpu_us[1]),
        fmt_num(median(&spans[1])),
        fmt_num(inputs),
        median(&r_full),
        verdict(median(&r_full)),
        median(&r_cpu_full)
    );
    println!(
        "| 5c. same, export on, `parentbased_traceidratio` 0.1 (production) | {} | {:.1} | {} (≈ 10% of {}) | {:.2} {} | {:.2} |",
        fmt_num(median(&rate[2])),
        median(&cpu_us[2]),
        fmt_num(median(&spans[2])),
        fmt_num(inputs),
        median(&r_ratio),
        verdict(median(&r_ratio)),
        median(&r_cpu_ratio)
    );
    println!();
    println!(
        "Medians of {rounds} rounds, one fresh process per measurement, the three configurations back to back in a rotated order each round; ratio = median of per-round off time / on time (CPU: on / off)."
    );
    println!(
        "Workload: {orders} orders, {} inbound events, 4 partitions drained one after another, embedded log with fsync per batch; timed: drain + flush of the queued spans to an in-process OTLP/gRPC receiver on loopback.",
        fmt_num(inputs)
    );
    println!(
        "Trace context: {}.",
        if upstream() {
            "every order's records carry an upstream traceparent, sampled upstream like the mode's sampler (WAYBILL_BENCH_TRACING_UPSTREAM=1)"
        } else {
            "none; every record starts a trace of its own (the coordinator is the root)"
        }
    );
    println!("Environment: {}; load average {load_start} at start, {} at end.", environment(), loadavg());
    println!();
    println!("Details:");
    for (i, m) in Mode::ALL.iter().enumerate() {
        let (lo, hi) = spread(&rate[i]);
        println!(
            "- {}: spread {}–{} events/s; drain alone {} events/s; flush at the end {:.0} ms",
            m.name(),
            fmt_num(lo),
            fmt_num(hi),
            fmt_num(median(&drain_rate[i])),
            median(&flush_ms[i])
        );
    }
    println!("- total bench time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
