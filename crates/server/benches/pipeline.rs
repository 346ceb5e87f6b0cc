//! `make bench`: the benchmark table of docs/benchmarks.md.
//!
//! A `harness = false` bench that prints a markdown table. Every figure is measured next
//! to its baseline inside the same round, rounds are repeated (`WAYBILL_BENCH_ROUNDS`,
//! default 7) and the table shows medians; the ratio column is the median of the
//! per-round ratios (ours / baseline of the same round), which cancels most of the noise
//! of a shared machine.
//!
//! Rows:
//! 1. embedded-log append, 100 records of ~300 bytes per batch, fsync per batch, against
//!    raw `write_all` + `sync_data` of the same bytes, and against a sled batch + `flush`;
//!    1c: 16 threads appending one record each, fsync per batch, against one thread doing
//!    the same (the group commit: concurrent appenders share fsyncs);
//! 2. saga processing end to end (`Coordinator::drain_partition` over every partition,
//!    fsync per batch) against the embedded-log append rate of row 1, in events;
//! 3. projection rebuild (`Projector::rebuild`) of the log row 2 wrote, against a raw
//!    sequential `EventLog::read` of the same records;
//! 4. Avro encode / decode of one inbound event, cached path against the naive one.
//!
//! Knobs (environment): `WAYBILL_BENCH_ROUNDS` (7), `WAYBILL_BENCH_ORDERS` (2000),
//! `WAYBILL_BENCH_BATCHES` (batches of 100 per append measurement, 300),
//! `WAYBILL_BENCH_IN_PROCESS=1` (row 2's drains in the bench's own process, as before each
//! got a process of its own: the layout whose second drain costs more),

// The allocator the `waybill` binary runs with (crates/server/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::File;
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use waybill_domain::event::EventBody;
use waybill_domain::{JournalBody, System, Timestamp, topic};
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_projection::ProjectionStore;
use waybill_projection::runner::Projector;
use waybill_saga::Policy;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig};
use waybill_saga::store::StateStore;
use waybill_schema::JournalRecord;
use waybill_server::demo::world;
use waybill_server::node::ensure_topics;

mod common;
use common::{
    PARTITIONS, SEED, clean_mix, command_output, cpu_secs_since, env_usize, event, fmt_num, loadavg, median,
    order_events, process_threads, spread, thread_cpu_ns, thread_minor_faults, to_record,
};

const RECORDS_PER_BATCH: usize = 100;
/// Row 1c: appender threads, and single-record appends in all per measurement.
const CONCURRENT_THREADS: usize = 16;
const CONCURRENT_RECORDS: usize = 1600;

fn open_log(dir: &Path, fsync: FsyncPolicy) -> anyhow::Result<Arc<dyn EventLog>> {
    let log = EmbeddedLog::open(dir, EmbeddedOptions { fsync, ..EmbeddedOptions::default() })?;
    let log: Arc<dyn EventLog> = Arc::new(log);
    ensure_topics(log.as_ref(), PARTITIONS)?;
    Ok(log)
}

fn append_chunks(log: &dyn EventLog, records: &[Record], chunk: usize) -> anyhow::Result<()> {
    for c in records.chunks(chunk) {
        log.append(AppendBatch { records: c.to_vec(), positions: vec![] })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Row 1: append.

/// Seconds for `batches` appends of 100 records each through the embedded log.
fn embedded_append(tmp: &Path, batches: &[Vec<Record>]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(tmp)?;
    let log = open_log(dir.path(), FsyncPolicy::EveryBatch)?;
    let prepared: Vec<AppendBatch> =
        batches.iter().map(|r| AppendBatch { records: r.clone(), positions: vec![] }).collect();
    let t = Instant::now();
    for b in prepared {
        log.append(b)?;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(log);
    Ok(secs)
}

/// The bytes a batch carries (topic, key, header and value of each record).
fn batch_bytes(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r.topic.as_bytes());
        out.extend_from_slice(&r.key);
        for h in &r.headers {
            out.extend_from_slice(h.key.as_bytes());
            out.extend_from_slice(&h.value);
        }
        out.extend_from_slice(&r.value);
    }
    out
}

/// Seconds for `write_all` + `sync_data` of the same bytes per batch, to a plain file.
fn raw_file_append(tmp: &Path, bytes: &[Vec<u8>]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(tmp)?;
    let mut f = File::create(dir.path().join("raw.bin"))?;
    let t = Instant::now();
    for b in bytes {
        f.write_all(b)?;
        f.sync_data()?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds for one sled batch of 100 inserts + `flush()` per batch.
fn sled_append(tmp: &Path, batches: &[Vec<Record>]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(tmp)?;
    let db = sled::Config::new().path(dir.path()).open()?;
    let mut seq = 0u64;
    let prepared: Vec<sled::Batch> = batches
        .iter()
        .map(|rs| {
            let mut b = sled::Batch::default();
            for r in rs {
                let mut k = seq.to_be_bytes().to_vec();
                k.extend_from_slice(&r.key);
                seq += 1;
                b.insert(k, r.value.clone());
            }
            b
        })
        .collect();
    let t = Instant::now();
    for b in prepared {
        db.apply_batch(b)?;
        db.flush()?;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(db);
    Ok(secs)
}

/// Row 1c: `threads` appenders, each appending `per_thread` single records (fsync per
/// batch) as fast as it can; records/s over all of them.
fn concurrent_append(tmp: &Path, record: &Record, threads: usize, per_thread: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(tmp)?;
    let log = open_log(dir.path(), FsyncPolicy::EveryBatch)?;
    let t = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let log = log.clone();
                scope.spawn(move || -> anyhow::Result<()> {
                    for _ in 0..per_thread {
                        log.append(AppendBatch { records: vec![record.clone()], positions: Vec::new() })?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("an appender thread panicked"))??;
        }
        Ok(())
    })?;
    Ok((threads * per_thread) as f64 / t.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// Row 2 and 3: sagas, projections.

/// One row-2 drain's figures, per inbound event where that applies.
struct Drain {
    rate: f64,
    cpu_us: f64,
    faults: f64,
    threads: f64,
}

impl Drain {
    fn of(r: &SagaRun) -> Self {
        let n = r.inputs as f64;
        Drain { rate: n / r.secs, cpu_us: r.cpu_secs * 1e6 / n, faults: r.faults as f64 / n, threads: r.threads as f64 }
    }

    /// The median of one figure (NaN when there is no drain).
    fn median(drains: &[&Drain], figure: fn(&Drain) -> f64) -> f64 {
        if drains.is_empty() {
            return f64::NAN;
        }
        median(&drains.iter().map(|d| figure(d)).collect::<Vec<_>>())
    }
}

#[derive(Default)]
struct SagaRun {
    secs: f64,
    cpu_secs: f64,
    /// Minor page faults of the draining thread during the drain.
    faults: u64,
    /// Threads of the process when the drain began.
    threads: u64,
    inputs: u64,
    completed: u64,
    dlq: i64,
    batches: u64,
    journal_events: u64,
    commands: u64,
    rebuild_secs: f64,
    rebuild_cpu_secs: f64,
    rebuild_records: usize,
    raw_read_secs: f64,
    raw_read_records: usize,
}

/// The environment variable that makes the bench a child that runs one saga round.
const CHILD: &str = "WAYBILL_BENCH_SAGA_ROUND";

/// Row 2's input: seven events per order, pre-loaded at once as a backlog: the Odoo and
/// warehouse events of every order, then all the carrier events. The coordinator merges
/// the topics in append order, so every saga completes (checked below).
fn saga_stages(orders: usize, now: Timestamp) -> anyhow::Result<Vec<Vec<Record>>> {
    let catalog = world::catalog();
    let mut all = Vec::new();
    let mut carrier = Vec::new();
    for i in 0..orders {
        for e in order_events(i, &catalog, now) {
            let r = to_record(&e)?;
            if e.meta.source.system == System::Carrier { carrier.push(r) } else { all.push(r) }
        }
    }
    all.extend(carrier);
    Ok(vec![all])
}

/// Row 2's drain in a process of its own, into `dir`. Run in the bench's process, the
/// second of two drains cost about 1.7 times the coordinator CPU per event of the first,
/// whichever fsync policy it had — something the first left behind (its sled stores'
/// threads, the heap) and not pinned down further: a fresh process gives every drain the
/// same start.
fn saga_drain_isolated(dir: &Path, orders: usize, fsync: FsyncPolicy) -> anyhow::Result<SagaRun> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD, if fsync == FsyncPolicy::Never { "never" } else { "batch" })
        .env("WAYBILL_BENCH_ORDERS", orders.to_string())
        .env("WAYBILL_BENCH_DIR", dir)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the saga round's process failed ({}): {text}", out.status);
    }
    let line = text.lines().find_map(|l| l.strip_prefix("saga-run ")).context("the saga round printed no result")?;
    let v: Vec<f64> = line.split(' ').map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(v.len() == 10, "saga round result {line:?}");
    Ok(SagaRun {
        secs: v[0],
        cpu_secs: v[1],
        inputs: v[2] as u64,
        completed: v[3] as u64,
        dlq: v[4] as i64,
        batches: v[5] as u64,
        journal_events: v[6] as u64,
        commands: v[7] as u64,
        faults: v[8] as u64,
        threads: v[9] as u64,
        ..SagaRun::default()
    })
}

/// The child: one saga round, its figures on one line of stdout.
fn saga_round_child(policy: &str) -> anyhow::Result<()> {
    let orders = env_usize("WAYBILL_BENCH_ORDERS", 2000);
    let dir = std::env::var("WAYBILL_BENCH_DIR")?;
    let fsync = if policy == "never" { FsyncPolicy::Never } else { FsyncPolicy::EveryBatch };
    // A running node has its schema catalog parsed and its codecs' caches filled; the
    // fresh process fills them first (one record of every kind), outside the timing.
    for e in waybill_schema::samples::events() {
        waybill_schema::decode_event(&waybill_schema::encode_event(&e)?)?;
    }
    for c in waybill_schema::samples::commands() {
        waybill_schema::decode_command(&waybill_schema::encode_command(&c)?)?;
    }
    for j in waybill_schema::samples::journal_events() {
        waybill_schema::decode_journal(&waybill_schema::encode_journal(&j)?)?;
    }
    let stages = saga_stages(orders, Timestamp::now())?;
    let r = saga_drain(Path::new(&dir), &stages, orders, fsync)?;
    println!(
        "saga-run {} {} {} {} {} {} {} {} {} {}",
        r.secs, r.cpu_secs, r.inputs, r.completed, r.dlq, r.batches, r.journal_events, r.commands, r.faults, r.threads
    );
    Ok(())
}

fn count_completed(log: &dyn EventLog) -> anyhow::Result<u64> {
    let mut n = 0;
    for p in 0..PARTITIONS as i32 {
        let mut from = 0;
        loop {
            let rs = log.read(topic::JOURNAL, p, from, 4096)?;
            let Some(last) = rs.last() else { break };
            from = last.offset + 1;
            for r in &rs {
                if let JournalRecord::Event(e) = waybill_schema::decode_journal_record(&r.value)?
                    && matches!(e.body, JournalBody::Completed(_))
                {
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Raw sequential read of every record the projector reads, no decoding.
fn raw_read(log: &dyn EventLog) -> anyhow::Result<usize> {
    let mut n = 0;
    for t in Projector::topics() {
        for p in 0..log.partitions(&t)? as i32 {
            let mut from = 0;
            loop {
                let rs = log.read(&t, p, from, 1000)?;
                let Some(last) = rs.last() else { break };
                from = last.offset + 1;
                n += rs.len();
                black_box(&rs);
            }
        }
    }
    Ok(n)
}

/// Pre-loads the events, drains every partition (timed), checks the sagas, then times
/// the projection rebuild and a raw read of the same log.
///
/// Each stage is appended whole before the drain that follows it (the bench uses one
/// stage: a backlog across topics; see docs/benchmarks.md).
/// Row 2 in `dir`: the backlog appended, then drained; the log stays in `dir` for row 3.
fn saga_drain(dir: &Path, stages: &[Vec<Record>], orders: usize, fsync: FsyncPolicy) -> anyhow::Result<SagaRun> {
    let log = open_log(&dir.join("log"), fsync)?;
    let store = StateStore::open(&dir.join("state"))?;
    let coordinator = Coordinator::new(
        log.clone(),
        store,
        Arc::new(world::catalog()),
        Policy::default(),
        // As a node on the embedded log runs it: no saga state snapshots (the growth
        // bench measures them).
        CoordinatorConfig::default(),
    );
    let now = Timestamp::now();
    let mut secs = 0.0;
    let mut cpu_secs = 0.0;
    let mut inputs = 0;
    let mut faults = 0;
    let threads = process_threads().unwrap_or(0);
    for stage in stages {
        append_chunks(log.as_ref(), stage, 1000)?;
        let cpu = thread_cpu_ns();
        let f0 = thread_minor_faults().unwrap_or(0);
        let t = Instant::now();
        for p in 0..PARTITIONS as i32 {
            inputs += coordinator.drain_partition(p, now)?;
        }
        secs += t.elapsed().as_secs_f64();
        cpu_secs += cpu_secs_since(cpu);
        faults += thread_minor_faults().unwrap_or(0).saturating_sub(f0);
    }
    let stats = coordinator.stats();
    let completed = count_completed(log.as_ref())?;
    let mut dlq = 0;
    for p in 0..PARTITIONS as i32 {
        dlq += log.end_offset(topic::DLQ, p)?;
    }
    if completed != orders as u64 || dlq != 0 {
        eprintln!("warning: {completed} of {orders} sagas completed, {dlq} dead letters");
    }
    Ok(SagaRun {
        secs,
        cpu_secs,
        faults,
        threads,
        inputs,
        completed,
        dlq,
        batches: stats.batches.load(Ordering::Relaxed),
        journal_events: stats.journal_events.load(Ordering::Relaxed),
        commands: stats.commands.load(Ordering::Relaxed),
        ..SagaRun::default()
    })
}

/// Rows 2 and 3: the drain in a process of its own (below), then the rebuild of the log
/// it wrote, in this process, against a raw read of the same records.
fn saga_round(tmp: &Path, orders: usize, fsync: FsyncPolicy, raw_first: bool) -> anyhow::Result<SagaRun> {
    let dir = tempfile::tempdir_in(tmp)?;
    // `WAYBILL_BENCH_IN_PROCESS=1`: the drain in this process, as before (to study why a
    // second drain in one process costs more).
    let drained = if std::env::var("WAYBILL_BENCH_IN_PROCESS").as_deref() == Ok("1") {
        saga_drain(dir.path(), &saga_stages(orders, Timestamp::now())?, orders, fsync)?
    } else {
        saga_drain_isolated(dir.path(), orders, fsync)?
    };
    let log = open_log(&dir.path().join("log"), fsync)?;
    let proj_dir = dir.path().join("projections");
    let run_rebuild = || -> anyhow::Result<(f64, f64, usize)> {
        let store = Arc::new(ProjectionStore::open(&proj_dir)?);
        let projector = Projector::new(log.clone(), store);
        let cpu = thread_cpu_ns();
        let t = Instant::now();
        let n = projector.rebuild()?;
        Ok((t.elapsed().as_secs_f64(), cpu_secs_since(cpu), n))
    };
    let run_raw = || -> anyhow::Result<(f64, usize)> {
        let t = Instant::now();
        let n = raw_read(log.as_ref())?;
        Ok((t.elapsed().as_secs_f64(), n))
    };
    let ((rebuild_secs, rebuild_cpu_secs, rebuild_records), (raw_read_secs, raw_read_records)) = if raw_first {
        let raw = run_raw()?;
        (run_rebuild()?, raw)
    } else {
        let rb = run_rebuild()?;
        (rb, run_raw()?)
    };
    Ok(SagaRun { rebuild_secs, rebuild_cpu_secs, rebuild_records, raw_read_secs, raw_read_records, ..drained })
}

// ---------------------------------------------------------------------------------------
// Row 4: codec.

fn ns_per<T>(iters: usize, mut f: impl FnMut() -> T) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Iterations that take roughly `target`.
fn calibrate<T>(target: Duration, mut f: impl FnMut() -> T) -> usize {
    let mut n = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        let e = t.elapsed();
        if e >= target / 8 || n >= 1 << 24 {
            let per = e.as_secs_f64() / n as f64;
            return ((target.as_secs_f64() / per) as usize).max(10);
        }
        n *= 2;
    }
}

// ---------------------------------------------------------------------------------------

struct Row {
    name: String,
    ours: String,
    baseline: String,
    ratio: String,
}

fn main() -> anyhow::Result<()> {
    if let Ok(policy) = std::env::var(CHILD) {
        return saga_round_child(&policy);
    }
    let started = Instant::now();
    let rounds = env_usize("WAYBILL_BENCH_ROUNDS", 7);
    let orders = env_usize("WAYBILL_BENCH_ORDERS", 2000);
    let n_batches = env_usize("WAYBILL_BENCH_BATCHES", 300);
    let tmp_root = tempfile::Builder::new().prefix("waybill-bench-").tempdir_in("/tmp")?;
    let tmp = tmp_root.path();
    let now = Timestamp::now();

    // Row 1 input: encoded OrderReleased events, keyed by order, to the Odoo inbound topic.
    // Orders with four or five lines encode to about 300 bytes.
    let mut released = Vec::with_capacity(n_batches * RECORDS_PER_BATCH);
    let mut i = 0;
    while released.len() < n_batches * RECORDS_PER_BATCH {
        let order = world::order(SEED, i, &clean_mix(), now);
        i += 1;
        if order.lines.len() < 4 {
            continue;
        }
        let key = order.order_ref.clone();
        let body = EventBody::OrderReleased(order);
        released.push(to_record(&event(format!("odoo:release:{key}"), System::Odoo, &key, now, body))?);
    }
    let value_bytes = released.iter().map(|r| r.value.len()).sum::<usize>() as f64 / released.len() as f64;
    let batches: Vec<Vec<Record>> = released.chunks(RECORDS_PER_BATCH).map(<[Record]>::to_vec).collect();
    let raw_bytes: Vec<Vec<u8>> = batches.iter().map(|b| batch_bytes(b)).collect();
    let raw_batch_bytes = raw_bytes.iter().map(Vec::len).sum::<usize>() as f64 / raw_bytes.len() as f64;

    // Row 2 input (built again by each saga round's process, the same way).
    let inbound_total: usize = saga_stages(orders, now)?.iter().map(Vec::len).sum();

    // Row 4 input: a realistic OrderReleased with three lines.
    let three = (0..10_000)
        .map(|i| world::order(SEED, i, &clean_mix(), now))
        .find(|o| o.lines.len() == 3)
        .context("no three-line order")?;
    let key = three.order_ref.clone();
    let codec_event = event(format!("odoo:release:{key}"), System::Odoo, &key, now, EventBody::OrderReleased(three));
    let codec_bytes = waybill_schema::encode_event(&codec_event)?;
    if waybill_schema::decode_event(&codec_bytes)? != codec_event
        || waybill_schema::decode_event_naive(&waybill_schema::encode_event_naive(&codec_event)?)? != codec_event
    {
        bail!("codec round trip failed");
    }
    let target = Duration::from_millis(250);
    let it_enc = calibrate(target / 4, || waybill_schema::encode_event(&codec_event).unwrap());
    let it_enc_naive = calibrate(target / 4, || waybill_schema::encode_event_naive(&codec_event).unwrap());
    let it_dec = calibrate(target / 4, || waybill_schema::decode_event(&codec_bytes).unwrap());
    let it_dec_naive = calibrate(target / 4, || waybill_schema::decode_event_naive(&codec_bytes).unwrap());

    eprintln!(
        "waybill bench: {rounds} rounds; append {n_batches} batches x {RECORDS_PER_BATCH} records; sagas {orders} orders ({inbound_total} inbound events)"
    );

    let (mut emb, mut raw, mut sld) = (vec![], vec![], vec![]);
    let (mut saga_ev, mut saga_sagas, mut r_saga) = (vec![], vec![], vec![]);
    let (mut rb, mut rr, mut r_rb) = (vec![], vec![], vec![]);
    let (mut r_raw, mut r_sled) = (vec![], vec![]);
    let (mut conc_one, mut conc_many, mut r_conc) = (vec![], vec![], vec![]);
    let (mut enc, mut enc_n, mut dec, mut dec_n, mut r_enc, mut r_dec) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut saga_cpu, mut rb_cpu) = (vec![], vec![]);
    // Row 2's drains, [with fsync, without][run first in its round, second]: the order
    // alternates, so a cost one drain leaves to the next shows as a difference by position.
    let mut by_position: [[Vec<Drain>; 2]; 2] = Default::default();
    let mut checks = Vec::new();
    let load_start = loadavg();
    let mut last_run = None;
    let records = (n_batches * RECORDS_PER_BATCH) as f64;
    for round in 0..rounds {
        // Row 1, the three variants back to back (order rotated per round).
        let mut e = 0.0;
        let mut r = 0.0;
        let mut s = 0.0;
        for k in 0..3 {
            match (k + round) % 3 {
                0 => e = embedded_append(tmp, &batches)?,
                1 => r = raw_file_append(tmp, &raw_bytes)?,
                _ => s = sled_append(tmp, &batches)?,
            }
        }
        let e_rate = records / e;
        emb.push(e_rate);
        raw.push(records / r);
        sld.push(records / s);
        r_raw.push(r / e);
        r_sled.push(s / e);

        // Row 1c: 16 concurrent appenders against one, in alternating order.
        let (one, many) = if round % 2 == 0 {
            let one = concurrent_append(tmp, &released[0], 1, CONCURRENT_RECORDS)?;
            (one, concurrent_append(tmp, &released[0], CONCURRENT_THREADS, CONCURRENT_RECORDS / CONCURRENT_THREADS)?)
        } else {
            let many =
                concurrent_append(tmp, &released[0], CONCURRENT_THREADS, CONCURRENT_RECORDS / CONCURRENT_THREADS)?;
            (concurrent_append(tmp, &released[0], 1, CONCURRENT_RECORDS)?, many)
        };
        conc_one.push(one);
        conc_many.push(many);
        r_conc.push(many / one);

        // Rows 2 and 3.
        // Information only: the same work without fsync, to show what fsync costs; which
        // of the two runs first alternates by round.
        let fsync_first = round % 2 == 0;
        let (run, nofsync) = if fsync_first {
            let run = saga_round(tmp, orders, FsyncPolicy::EveryBatch, round % 2 == 0)?;
            (run, saga_round(tmp, orders, FsyncPolicy::Never, round % 2 == 1)?)
        } else {
            let nofsync = saga_round(tmp, orders, FsyncPolicy::Never, round % 2 == 1)?;
            (saga_round(tmp, orders, FsyncPolicy::EveryBatch, round % 2 == 0)?, nofsync)
        };
        by_position[0][usize::from(!fsync_first)].push(Drain::of(&run));
        by_position[1][usize::from(fsync_first)].push(Drain::of(&nofsync));
        saga_cpu.push(run.cpu_secs * 1e6 / run.inputs as f64);
        rb_cpu.push(run.rebuild_cpu_secs * 1e6 / run.rebuild_records as f64);
        let ev_rate = run.inputs as f64 / run.secs;
        saga_ev.push(ev_rate);
        saga_sagas.push(run.completed as f64 / run.secs);
        r_saga.push(ev_rate / e_rate);
        rb.push(run.rebuild_records as f64 / run.rebuild_secs);
        rr.push(run.raw_read_records as f64 / run.raw_read_secs);
        r_rb.push(run.raw_read_secs / run.rebuild_secs);
        checks.push((run.inputs, run.completed, run.dlq));

        // Row 4.
        let (a, b) = (
            ns_per(it_enc, || waybill_schema::encode_event(&codec_event).unwrap()),
            ns_per(it_enc_naive, || waybill_schema::encode_event_naive(&codec_event).unwrap()),
        );
        let (c, d) = (
            ns_per(it_dec, || waybill_schema::decode_event(&codec_bytes).unwrap()),
            ns_per(it_dec_naive, || waybill_schema::decode_event_naive(&codec_bytes).unwrap()),
        );
        enc.push(a);
        enc_n.push(b);
        dec.push(c);
        dec_n.push(d);
        r_enc.push(b / a);
        r_dec.push(d / c);

        eprintln!(
            "round {}: append {:.0}/s (raw {:.0}/s, sled {:.0}/s; {} appenders {:.0}/s, one {:.0}/s); sagas {:.0} events/s ({} batches, {} completed, {} dlq); rebuild {:.0}/s (raw read {:.0}/s); encode {:.0}/{:.0} ns, decode {:.0}/{:.0} ns",
            round + 1,
            e_rate,
            records / r,
            records / s,
            CONCURRENT_THREADS,
            conc_many.last().copied().unwrap_or(0.0),
            conc_one.last().copied().unwrap_or(0.0),
            ev_rate,
            run.batches,
            run.completed,
            run.dlq,
            run.rebuild_records as f64 / run.rebuild_secs,
            run.raw_read_records as f64 / run.raw_read_secs,
            a,
            b,
            c,
            d
        );
        last_run = Some(run);
    }
    let run = last_run.context("no rounds")?;
    let all_ok = checks.iter().all(|(i, c, d)| *i == inbound_total as u64 && *c == orders as u64 && *d == 0);

    let per_batch = |rate: f64| rate / RECORDS_PER_BATCH as f64;
    let rows = vec![
        Row {
            name: "1a. embedded-log append, 100 rec/batch, fsync per batch — vs raw `write_all`+`sync_data` of the same bytes".into(),
            ours: format!("{} batches/s = {} rec/s", fmt_num(per_batch(median(&emb))), fmt_num(median(&emb))),
            baseline: format!("{} batches/s = {} rec/s", fmt_num(per_batch(median(&raw))), fmt_num(median(&raw))),
            ratio: format!("{:.2}", median(&r_raw)),
        },
        Row {
            name: "1b. embedded-log append (same run) — vs raw sled batch-insert of 100 + `flush()`".into(),
            ours: format!("{} batches/s = {} rec/s", fmt_num(per_batch(median(&emb))), fmt_num(median(&emb))),
            baseline: format!("{} batches/s = {} rec/s", fmt_num(per_batch(median(&sld))), fmt_num(median(&sld))),
            ratio: format!("{:.2}", median(&r_sled)),
        },
        Row {
            name: format!(
                "1c. embedded-log append, {CONCURRENT_THREADS} threads appending 1 record each, fsync per batch (group commit) — vs 1 thread doing the same"
            ),
            ours: format!("{} rec/s", fmt_num(median(&conc_many))),
            baseline: format!("{} rec/s", fmt_num(median(&conc_one))),
            ratio: format!("{:.2}", median(&r_conc)),
        },
        Row {
            name: format!(
                "2. saga processing end to end, embedded log, fsync per batch ({orders} orders, {inbound_total} inbound events) — vs row 1 append rate (target ≥ 0.25)"
            ),
            ours: format!("{} events/s, {} sagas/s", fmt_num(median(&saga_ev)), fmt_num(median(&saga_sagas))),
            baseline: format!("{} rec/s", fmt_num(median(&emb))),
            ratio: format!("{:.2} {}", median(&r_saga), if median(&r_saga) >= 0.25 { "(met)" } else { "(MISSED)" }),
        },
        Row {
            name: format!(
                "3. projection rebuild, {} journal+command records (target ≥ 100,000/s) — vs raw `EventLog::read` of the same records",
                run.rebuild_records
            ),
            ours: format!(
                "{} rec/s {}",
                fmt_num(median(&rb)),
                if median(&rb) >= 100_000.0 { "(met)" } else { "(MISSED)" }
            ),
            baseline: format!("{} rec/s", fmt_num(median(&rr))),
            ratio: format!("{:.3}", median(&r_rb)),
        },
        Row {
            name: "4a. Avro encode, OrderReleased with 3 lines — cached vs naive".into(),
            ours: format!("{} ns/event", fmt_num(median(&enc))),
            baseline: format!("{} ns/event", fmt_num(median(&enc_n))),
            ratio: format!("{:.1}x faster", median(&r_enc)),
        },
        Row {
            name: "4b. Avro decode, same event — cached vs naive".into(),
            ours: format!("{} ns/event", fmt_num(median(&dec))),
            baseline: format!("{} ns/event", fmt_num(median(&dec_n))),
            ratio: format!("{:.1}x faster", median(&r_dec)),
        },
    ];

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let rustc = command_output("rustc", &["-V"]).unwrap_or_else(|| "unknown".into());
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown".into());
    let kernel = command_output("uname", &["-sr"]).unwrap_or_else(|| "unknown".into());
    let fs = command_output("df", &["--output=fstype", "/tmp"])
        .and_then(|s| s.lines().nth(1).map(str::trim).map(String::from))
        .unwrap_or_else(|| "unknown".into());

    println!();
    println!("| measurement | ours | baseline | ratio |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} | {} |", r.name, r.ours, r.baseline, r.ratio);
    }
    println!();
    println!(
        "Medians of {rounds} rounds; ratio = median of per-round ours/baseline (rows 1–3: rate ratio; row 4: naive ns / cached ns)."
    );
    println!(
        "Environment: {cores} cores, {rustc}, {kernel}, data in /tmp ({fs}), {date}, `cargo bench` (release profile); load average {load_start} at start, {} at end.",
        loadavg()
    );
    println!();
    println!("Details:");
    println!(
        "- row 1: mean value {value_bytes:.0} bytes (encoded OrderReleased with 4–5 lines), {raw_batch_bytes:.0} bytes per raw batch; spread embedded {}–{} rec/s, raw {}–{}, sled {}–{}",
        fmt_num(spread(&emb).0),
        fmt_num(spread(&emb).1),
        fmt_num(spread(&raw).0),
        fmt_num(spread(&raw).1),
        fmt_num(spread(&sld).0),
        fmt_num(spread(&sld).1)
    );
    println!(
        "- row 2: {PARTITIONS} partitions drained one after another on one thread, coordinator max_batch {}, FsyncPolicy::EveryBatch; last round: {} appends ({:.0} inputs per append), {} journal events, {} commands; spread {}–{} events/s",
        CoordinatorConfig::default().max_batch,
        run.batches,
        run.inputs as f64 / run.batches.max(1) as f64,
        run.journal_events,
        run.commands,
        fmt_num(spread(&saga_ev).0),
        fmt_num(spread(&saga_ev).1)
    );
    println!(
        "- row 2 on-CPU time of the coordinator thread: {:.1} µs per inbound event (≈ {} events/s if the thread had a core to itself)",
        median(&saga_cpu),
        fmt_num(1e6 / median(&saga_cpu))
    );
    let nofsync: Vec<&Drain> = by_position[1].iter().flatten().collect();
    println!(
        "- row 2 without fsync (FsyncPolicy::Never, information only): {} events/s, {:.1} µs of coordinator CPU per inbound event",
        fmt_num(Drain::median(&nofsync, |d| d.rate)),
        Drain::median(&nofsync, |d| d.cpu_us)
    );
    for (drains, name) in by_position.iter().zip(["fsync per batch", "without fsync"]) {
        let [first, second] = drains.each_ref().map(|v| v.iter().collect::<Vec<_>>());
        let at = |v: &[&Drain]| {
            format!(
                "{} events/s, {:.1} µs CPU, {:.3} minor faults per event, {:.0} threads at its start",
                fmt_num(Drain::median(v, |d| d.rate)),
                Drain::median(v, |d| d.cpu_us),
                Drain::median(v, |d| d.faults),
                Drain::median(v, |d| d.threads)
            )
        };
        println!(
            "- row 2 {name}, by position in the round (medians): run first {}; run second {}",
            at(&first),
            at(&second)
        );
    }
    println!(
        "- row 2 check: every round processed {inbound_total} inputs, completed {orders} of {orders} sagas (Completed journal events) and left waybill.dlq empty: {}",
        if all_ok { "yes" } else { "NO" }
    );
    if !all_ok {
        for (i, (inputs, c, d)) in checks.iter().enumerate() {
            println!("  round {}: {inputs} inputs, {c} completed, {d} dead letters", i + 1);
        }
    }
    println!(
        "- row 3: {} records read by the rebuild (journal events + checkpoints + commands + {} dead letters), {} by the raw read; spread rebuild {}–{} rec/s",
        run.rebuild_records,
        run.dlq,
        run.raw_read_records,
        fmt_num(spread(&rb).0),
        fmt_num(spread(&rb).1)
    );
    println!(
        "- row 3 on-CPU time of the rebuilding thread: {:.1} µs per record (≈ {} rec/s if the thread had a core to itself; sled's own threads not counted)",
        median(&rb_cpu),
        fmt_num(1e6 / median(&rb_cpu))
    );
    println!(
        "- row 4: {} bytes framed; iterations per round: encode {it_enc} / naive {it_enc_naive}, decode {it_dec} / naive {it_dec_naive}",
        codec_bytes.len()
    );
    println!("- total bench time {:.0} s", started.elapsed().as_secs_f64());
    if !all_ok {
        bail!("not every saga completed; the saga figures are not valid");
    }
    Ok(())
}
