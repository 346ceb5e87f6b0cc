//! `make bench-growth`: cost as history grows (docs/benchmarks.md, "Growth").
//!
//! One embedded log fills with order history in steps of `WAYBILL_BENCH_GROWTH_CHUNK`
//! orders (10,000): each step appends its orders' eight inbound events (the seven of
//! pipeline row 2, then finance's `InvoicePosted`, so the order's flow finishes) as one
//! backlog and drains every partition with saga state snapshots on, as a node on Kafka
//! keeps them (an embedded node does with `[coordinator] snapshots = true`). At
//! each size of `WAYBILL_BENCH_GROWTH_SIZES` (10000,100000,1000000 orders) it prints:
//!
//! - the drain rate and coordinator CPU per inbound event of the last step, beside the
//!   first step's (the baseline: the same work with no history);
//! - the process's resident memory, the flows still live, and the disk the log and the
//!   state store take;
//! - a fresh replica's restore (an empty state store, every partition): from the snapshot
//!   plus the journal after its mark, beside a restore from the whole journal — the
//!   baseline, and what every restore cost before snapshots.
//!
//! fsync is off (`FsyncPolicy::Never`): the figures are CPU and history, not the disk's
//! flush latency (pipeline row 2 has that). `WAYBILL_BENCH_GROWTH_JOURNAL_RESTORE=0`
//! skips the restore from the whole journal at sizes above the first (it grows with
//! history: minutes at 1M orders); `WAYBILL_BENCH_GROWTH_SNAPSHOTS=0` drains without
//! writing snapshots (what they cost; the restore from the snapshot then finds none).
//! No invoice is held for approval (nobody approves here), so every order's flow ends.
//!
//! Finished flows are retired `WAYBILL_BENCH_GROWTH_RETAIN_SECS` (10) seconds after they
//! last changed, as `[coordinator] retire_finished_after_days` retires them after days:
//! each step drains at the wall clock's time, so its ticks retire what finished that long
//! before, and what the store, the snapshot and a restore hold is the flows of the last
//! few steps, not the history. `WAYBILL_BENCH_GROWTH_RETAIN_SECS=0` keeps every flow (the
//! baseline: what every node did before retention). The events of each step occurred
//! when it began.
//!
//! The embedded log applies its retention after every step, as a node's `log-retention`
//! thread does every `[log] retention_check_secs`, with a node's rules and the same
//! compression: the inbound and command topics keep `WAYBILL_BENCH_GROWTH_RETAIN_SECS`
//! (a node keeps them `[topics]` hours), the snapshots their current generation; the
//! journal is kept. `WAYBILL_BENCH_GROWTH_LOG_RETENTION=0` keeps every record (the
//! baseline: what the embedded log did before).

// The allocator the `waybill` binary runs with (crates/server/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use waybill_domain::event::{EventBody, InvoicePosted};
use waybill_domain::{Money, System, Timestamp, topic};
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy, RetentionReport};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_saga::Policy;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig};
use waybill_saga::store::StateStore;
use waybill_server::demo::world;
use waybill_server::node::ensure_topics;

mod common;
use common::{
    PARTITIONS, cpu_secs_since, env_usize, environment, event, fmt_num, loadavg, order_events, thread_cpu_ns, to_record,
};

/// The inbound events of order `i` (pipeline row 2's seven, then the invoice posted).
fn order_records(
    i: usize,
    catalog: &waybill_saga::Catalog,
    now: Timestamp,
) -> anyhow::Result<(Vec<Record>, Vec<Record>)> {
    let events = order_events(i, catalog, now);
    let key = events[0].meta.correlation_key.clone();
    let shipment_id = format!("SHP-{}-1", &key[2..]);
    let posted = event(
        format!("finance:posted:{shipment_id}"),
        System::Finance,
        &key,
        now,
        EventBody::InvoicePosted(InvoicePosted {
            order_ref: key.clone(),
            shipment_id,
            invoice_number: format!("INV-{i:07}"),
            amount: Money(0),
        }),
    );
    let (mut early, mut late) = (Vec::with_capacity(5), Vec::with_capacity(3));
    for e in events.iter().chain(std::iter::once(&posted)) {
        let r = to_record(e)?;
        if matches!(e.meta.source.system, System::Carrier | System::Finance) { late.push(r) } else { early.push(r) }
    }
    Ok((early, late))
}

/// The default policy, except that no invoice is held for approval: nobody approves in
/// this bench, and held invoices would pile up as live flows (the approval queue is the
/// workbench bench's subject).
fn policy() -> Policy {
    let mut policy = Policy::default();
    policy.posting.hold_invoices_above = Money(i64::MAX);
    policy.posting.price_tolerance_pct = f64::MAX;
    policy.posting.hold_first_invoice_to_new_customer = false;
    policy
}

fn coordinator(
    log: &Arc<dyn EventLog>,
    state: &Path,
    snapshots: bool,
    retain: Option<std::time::Duration>,
) -> anyhow::Result<Coordinator> {
    Ok(Coordinator::new(
        log.clone(),
        StateStore::open(state)?,
        Arc::new(world::catalog()),
        policy(),
        CoordinatorConfig { snapshots, retire_after: retain, ..CoordinatorConfig::default() },
    ))
}

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        total += if meta.is_dir() { disk_bytes(&e.path()) } else { meta.len() };
    }
    total
}

/// Resident set size of this process, bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Flows not finished, and flows held in all, in the state store in `dir` (opened once its
/// coordinator let go).
fn flows(dir: &Path) -> anyhow::Result<(usize, usize)> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let store = loop {
        match StateStore::open(dir) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(e.into()),
        }
    };
    let (mut live, mut kept) = (0, 0);
    for p in 0..PARTITIONS as i32 {
        live += store.unfinished(p)?.len();
        kept += store.scan_encoded(p)?.count();
    }
    Ok((live, kept))
}

/// A fresh replica's restore of every partition: seconds, journal records replayed, flow
/// states loaded from the snapshot, flows live after it. `now` is before any flow's
/// retention passed, so the replica writes nothing to the log (no tick, no retirement).
fn restore(
    log: &Arc<dyn EventLog>,
    tmp: &Path,
    snapshots: bool,
    now: Timestamp,
    retain: Option<std::time::Duration>,
) -> anyhow::Result<(f64, u64, u64, usize, usize)> {
    let dir = tempfile::tempdir_in(tmp)?;
    let c = coordinator(log, dir.path(), snapshots, retain)?;
    let t = Instant::now();
    for p in 0..PARTITIONS as i32 {
        let n = c.drain_partition(p, now)?;
        anyhow::ensure!(n == 0, "the restore found {n} inputs to process");
    }
    let secs = t.elapsed().as_secs_f64();
    let stats = c.stats();
    drop(c);
    let (live, kept) = flows(dir.path())?;
    Ok((secs, stats.restored.load(Ordering::Relaxed), stats.restored_from_snapshot.load(Ordering::Relaxed), live, kept))
}

struct Step {
    orders: usize,
    events_per_s: f64,
    cpu_us: f64,
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

fn main() -> anyhow::Result<()> {
    let chunk = env_usize("WAYBILL_BENCH_GROWTH_CHUNK", 10_000);
    let sizes: Vec<usize> = std::env::var("WAYBILL_BENCH_GROWTH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .context("WAYBILL_BENCH_GROWTH_SIZES: orders, comma-separated")?;
    let journal_restore = std::env::var("WAYBILL_BENCH_GROWTH_JOURNAL_RESTORE").as_deref() != Ok("0");
    let tmp_root = tempfile::Builder::new().prefix("waybill-growth-").tempdir_in("/tmp")?;
    let tmp = tmp_root.path();
    // `WAYBILL_BENCH_GROWTH_SNAPSHOTS=0`: the drain without snapshots (what they cost).
    let snapshots = std::env::var("WAYBILL_BENCH_GROWTH_SNAPSHOTS").as_deref() != Ok("0");
    let retain_secs = env_usize("WAYBILL_BENCH_GROWTH_RETAIN_SECS", 10);
    let retain = (retain_secs > 0).then(|| std::time::Duration::from_secs(retain_secs as u64));
    let log_retention = std::env::var("WAYBILL_BENCH_GROWTH_LOG_RETENTION").as_deref() != Ok("0");
    // A node's rules (crates/server/src/backend.rs), days compressed to the flows' retention.
    let mut rules = waybill_server::backend::embedded_retention(&waybill_server::config::Config::default());
    for r in rules.iter_mut().filter(|r| !r.keep.is_zero()) {
        r.keep = std::time::Duration::from_secs(retain_secs as u64);
    }
    let embedded = Arc::new(EmbeddedLog::open(
        &tmp.join("log"),
        EmbeddedOptions {
            fsync: FsyncPolicy::Never,
            retention: if log_retention { rules } else { Vec::new() },
            ..EmbeddedOptions::default()
        },
    )?);
    let log: Arc<dyn EventLog> = embedded.clone();
    ensure_topics(log.as_ref(), PARTITIONS)?;
    let state = tmp.join("state");
    let main = coordinator(&log, &state, snapshots, retain)?;
    let catalog = world::catalog();
    let start = Timestamp::now();
    let load_start = loadavg();
    eprintln!(
        "waybill growth bench: sizes {sizes:?}, steps of {chunk} orders, {PARTITIONS} partitions, finished flows retired after {}, log retention {}",
        if retain_secs > 0 { format!("{retain_secs} s") } else { "never".into() },
        if log_retention { "on" } else { "off" }
    );

    let mut rows = Vec::new();
    let mut first: Option<Step> = None;
    let mut done = 0usize;
    for &size in &sizes {
        let (mut inputs, mut secs, mut cpu) = (0u64, 0.0, 0.0);
        let (mut pass_secs, mut pass) = (0.0, RetentionReport::default());
        while done < size {
            let n = chunk.min(size - done);
            let now = Timestamp::now();
            let (mut early, mut late) = (Vec::with_capacity(n * 5), Vec::with_capacity(n * 3));
            for i in done..done + n {
                let (e, l) = order_records(i, &catalog, now)?;
                early.extend(e);
                late.extend(l);
            }
            early.extend(late);
            for batch in early.chunks(1000) {
                log.append(AppendBatch { records: batch.to_vec(), positions: Vec::new() })?;
            }
            let c0 = thread_cpu_ns();
            let t = Instant::now();
            for p in 0..PARTITIONS as i32 {
                inputs += main.drain_partition(p, now)?;
            }
            secs += t.elapsed().as_secs_f64();
            cpu += cpu_secs_since(c0);
            done += n;
            // The log's retention, between steps (a node runs it on its own thread).
            let t = Instant::now();
            let r = embedded.enforce_retention()?;
            pass_secs = t.elapsed().as_secs_f64();
            pass.records_expired += r.records_expired;
            pass.segments_deleted += r.segments_deleted;
            pass.bytes_copied += r.bytes_copied;
            pass.bytes_deleted += r.bytes_deleted;
            if first.is_none() {
                first = Some(Step { orders: n, events_per_s: inputs as f64 / secs, cpu_us: cpu * 1e6 / inputs as f64 });
            }
        }
        let step = Step { orders: size, events_per_s: inputs as f64 / secs, cpu_us: cpu * 1e6 / inputs as f64 };
        let rss = rss_bytes();
        let log_disk = disk_bytes(&tmp.join("log"));
        let state_disk = disk_bytes(&state);
        let (snap_secs, snap_journal, snap_flows, live, kept) = restore(&log, tmp, true, start, retain)?;
        let journal = if journal_restore || rows.is_empty() {
            restore(&log, tmp, false, start, retain).map(|(secs, records, ..)| Some((secs, records)))?
        } else {
            None
        };
        eprintln!(
            "{size} orders: {:.0} events/s, {:.1} µs/event; {live} flows live, {kept} held, {} retired; log retention since the last size: {} records expired, {} segments ({}) deleted, {} copied forward, last pass {pass_secs:.2} s; rss {}; log {}, state {}; restore from snapshot {:.2} s ({snap_flows} flows, {snap_journal} journal records); from the journal {}",
            step.events_per_s,
            step.cpu_us,
            main.stats().retired.load(Ordering::Relaxed),
            pass.records_expired,
            pass.segments_deleted,
            mib(pass.bytes_deleted),
            mib(pass.bytes_copied),
            mib(rss),
            mib(log_disk),
            mib(state_disk),
            snap_secs,
            journal.map(|j| format!("{:.2} s ({} records)", j.0, j.1)).unwrap_or_else(|| "skipped".into())
        );
        let passed = (pass_secs, pass.bytes_deleted, pass.bytes_copied);
        rows.push((
            step,
            (live, kept),
            rss,
            log_disk,
            state_disk,
            passed,
            (snap_secs, snap_journal, snap_flows),
            journal,
        ));
    }

    let first = first.context("no step ran")?;
    let mut retention =
        if retain_secs > 0 { format!("finished flows retired after {retain_secs} s") } else { "no retention".into() };
    retention.push_str(if log_retention { ", log retention on" } else { ", log retention off" });
    println!("\n### Growth (embedded log, fsync off, {PARTITIONS} partitions, steps of {chunk} orders, {retention})\n");
    println!(
        "| orders in history | drain, last step (first step: {} orders) | CPU per inbound event (first step) | flows live / held | RSS | log on disk | log deleted / copied forward since the last size (last pass) | state store on disk | fresh-replica restore from the snapshot | from the whole journal (baseline) |",
        fmt_num(first.orders as f64)
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (step, live, rss, log_disk, state_disk, passed, snap, journal) in &rows {
        println!(
            "| {} | {} events/s ({}) | {:.1} µs ({:.1}) | {} / {} | {} | {} | {} / {} ({:.2} s) | {} | {:.2} s: {} flow states + {} journal records | {} |",
            fmt_num(step.orders as f64),
            fmt_num(step.events_per_s),
            fmt_num(first.events_per_s),
            step.cpu_us,
            first.cpu_us,
            fmt_num(live.0 as f64),
            fmt_num(live.1 as f64),
            mib(*rss),
            mib(*log_disk),
            mib(passed.1),
            mib(passed.2),
            passed.0,
            mib(*state_disk),
            snap.0,
            fmt_num(snap.2 as f64),
            fmt_num(snap.1 as f64),
            journal
                .map(|j| format!("{:.2} s: {} journal records", j.0, fmt_num(j.1 as f64)))
                .unwrap_or_else(|| "not run".into()),
        );
    }
    println!("\n{}; load average {load_start} at the start, {} at the end", environment(), loadavg());
    let dlq: i64 = (0..PARTITIONS as i32).map(|p| log.end_offset(topic::DLQ, p).unwrap_or(0)).sum();
    println!("dead letters: {dlq}; flows retired: {}", main.stats().retired.load(Ordering::Relaxed));
    Ok(())
}
