//! `make bench-kafka` (issue 3): Waybill over the Kafka backend against a raw rdkafka
//! consume→produce pipe of the same records, on a local Kafka-protocol broker.
//!
//! Every round pre-loads a fresh slice of the saga workload of pipeline row 2 (complete
//! order-to-fulfillment sagas, seven inbound events each, as one backlog across the
//! inbound topics) through `KafkaLog::append` (not timed), then, in alternating order:
//! - **Waybill**: `Coordinator::drain_partition` on a `KafkaLog` over the 4 partitions,
//!   one after another on one thread (decode, saga step, journal and commands appended
//!   with acks=all and an idempotent producer, positions committed per batch);
//! - **raw pipe** (the physical limit here): one rdkafka `BaseConsumer` per partition,
//!   assigned to the same inbound topics at the same offsets, copying every record (key,
//!   headers, value) to `waybill.bench.pipe` with an idempotent acks=all producer, in
//!   batches of the coordinator's `max_batch` (512): produce the batch, wait for every
//!   delivery, commit the consumer's offsets synchronously — the same durability steps a
//!   Waybill turn takes, without the work in between.
//!
//! After the rounds, **restore**: a new coordinator with an empty state store, so it
//! rebuilds each partition's sagas from the journal alone (as on a fresh pod), against a
//! raw `BaseConsumer` read of the same journal partition (no decoding).
//!
//! Targets: Waybill ≥ 40% of the raw pipe's events/s. Ratio = median of per-round ratios.
//!
//! Knobs: `WAYBILL_BENCH_KAFKA` (bootstrap, default `127.0.0.1:19092`),
//! `WAYBILL_BENCH_ROUNDS` (5), `WAYBILL_BENCH_KAFKA_ORDERS` (orders per round, 3000). The
//! topics must be empty at the start: run it on a fresh broker (`make bench-kafka` starts
//! and stops one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use waybill_domain::{JournalBody, Timestamp, topic};
use waybill_log::kafka::rdkafka::config::ClientConfig;
use waybill_log::kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use waybill_log::kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use waybill_log::kafka::rdkafka::message::{DeliveryResult, Header as KafkaHeader, Headers, Message, OwnedHeaders};
use waybill_log::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use waybill_log::kafka::rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};
use waybill_log::kafka::rdkafka::{ClientContext, Timestamp as KafkaTimestamp};
use waybill_log::kafka::{KafkaLog, KafkaOptions};
use waybill_log::{AppendBatch, EventLog};
use waybill_saga::Policy;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig};
use waybill_saga::store::StateStore;
use waybill_schema::JournalRecord;
use waybill_server::demo::world;
use waybill_server::node::ensure_topics;

mod common;
use common::{
    PARTITIONS, cpu_secs_since, env_usize, environment, fmt_num, loadavg, median, saga_backlog, spread, thread_cpu_ns,
};

const PIPE_TOPIC: &str = "waybill.bench.pipe";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Counts failed deliveries of the raw pipe's producer.
#[derive(Debug, Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("client.id", "waybill-bench-raw");
    c
}

/// The raw pipe's producer: what `KafkaLog` uses (idempotent, acks=all, linger 1 ms).
fn raw_producer(bootstrap: &str) -> anyhow::Result<BaseProducer<Deliveries>> {
    Ok(base_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create_with_context(Deliveries::default())?)
}

/// A consumer configured as `KafkaLog`'s readers are.
fn raw_consumer(bootstrap: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(base_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.wait.max.ms", "100")
        .create()?)
}

/// Copies every record of `inputs` (topic → [from, end) per partition) to the pipe topic,
/// partition by partition, in batches of `batch`: produce, wait for the deliveries, commit.
/// Returns the records copied.
fn raw_pipe(
    consumers: &[BaseConsumer],
    producer: &BaseProducer<Deliveries>,
    ranges: &BTreeMap<(String, i32), (i64, i64)>,
    batch: usize,
) -> anyhow::Result<u64> {
    let mut copied = 0u64;
    for (p, consumer) in consumers.iter().enumerate() {
        let p = p as i32;
        let mut remaining = 0i64;
        let mut next: BTreeMap<String, i64> = BTreeMap::new();
        for ((t, q), (from, end)) in ranges {
            if *q == p && end > from {
                remaining += end - from;
                next.insert(t.clone(), *from);
            }
        }
        let deadline = Instant::now() + TIMEOUT * 4;
        let mut pending = 0usize;
        while remaining > 0 {
            ensure!(Instant::now() < deadline, "raw pipe: {remaining} records of partition {p} not consumed in time");
            let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
            let m = m?;
            let (from, end) = ranges[&(m.topic().to_string(), p)];
            ensure!(
                m.offset() >= from && m.offset() < end,
                "raw pipe: {}/{p} delivered offset {} outside {from}..{end}",
                m.topic(),
                m.offset()
            );
            next.insert(m.topic().to_string(), m.offset() + 1);
            remaining -= 1;
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(PIPE_TOPIC)
                .partition(p)
                .key(m.key().unwrap_or_default())
                .payload(m.payload().unwrap_or_default());
            if let Some(hs) = m.headers() {
                let mut owned = OwnedHeaders::new_with_capacity(hs.count());
                for h in hs.iter() {
                    owned = owned.insert(KafkaHeader { key: h.key, value: h.value });
                }
                rec = rec.headers(owned);
            }
            if let KafkaTimestamp::CreateTime(ts) = m.timestamp() {
                rec = rec.timestamp(ts);
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            pending += 1;
            if pending >= batch || remaining == 0 {
                wait_for_deliveries(producer)?;
                let mut commit = TopicPartitionList::new();
                for (t, o) in &next {
                    commit.add_partition_offset(t, p, KafkaOffset::Offset(*o))?;
                }
                consumer.commit(&commit, CommitMode::Sync)?;
                copied += pending as u64;
                pending = 0;
            }
        }
    }
    let failed = producer.context().failed.load(Ordering::Relaxed);
    ensure!(failed == 0, "raw pipe: {failed} deliveries failed");
    Ok(copied)
}

/// Waits until every record sent so far is acknowledged (or failed). `BaseProducer::flush`
/// polls in steps of 100 ms, which would add up to 100 ms to every batch.
fn wait_for_deliveries(producer: &BaseProducer<Deliveries>) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while producer.in_flight_count() > 0 {
        ensure!(Instant::now() < deadline, "raw pipe: deliveries not acknowledged within {TIMEOUT:?}");
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Reads `[0, end)` of `topic`/`p` with a fresh consumer, no decoding; returns the count.
fn raw_read(bootstrap: &str, topic: &str, p: i32, end: i64) -> anyhow::Result<u64> {
    let consumer = raw_consumer(bootstrap, "waybill.bench.read")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, KafkaOffset::Offset(0))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + TIMEOUT * 4;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while n < end as u64 {
        ensure!(Instant::now() < deadline, "raw read of {topic}/{p}: {n} of {end} records in time");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            bytes += m.payload_len();
            n += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(n)
}

fn connect(bootstrap: &str) -> anyhow::Result<Arc<dyn EventLog>> {
    let log = KafkaLog::connect(KafkaOptions::new(bootstrap)).with_context(|| {
        format!("no Kafka broker at {bootstrap}; run `scripts/broker.sh start` or `make bench-kafka`")
    })?;
    Ok(Arc::new(log))
}

fn coordinator(log: Arc<dyn EventLog>, dir: &std::path::Path) -> anyhow::Result<Coordinator> {
    Ok(Coordinator::new(
        log,
        StateStore::open(dir)?,
        Arc::new(world::catalog()),
        Policy::default(),
        CoordinatorConfig::default(),
    ))
}

/// End offsets of every (topic, partition) in `topics`.
fn ends(log: &dyn EventLog, topics: &[String]) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut out = BTreeMap::new();
    for t in topics {
        for p in 0..PARTITIONS as i32 {
            out.insert((t.clone(), p), log.end_offset(t, p)?);
        }
    }
    Ok(out)
}

/// Completed sagas in the journal (decoding every journal record).
fn count_completed(log: &dyn EventLog) -> anyhow::Result<u64> {
    let mut n = 0;
    for p in 0..PARTITIONS as i32 {
        let end = log.end_offset(topic::JOURNAL, p)?;
        let mut from = 0;
        while from < end {
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

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let bootstrap = std::env::var("WAYBILL_BENCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let rounds = env_usize("WAYBILL_BENCH_ROUNDS", 5);
    let orders = env_usize("WAYBILL_BENCH_KAFKA_ORDERS", 3000);
    let max_batch = CoordinatorConfig::default().max_batch;
    let tmp = tempfile::Builder::new().prefix("waybill-bench-kafka-").tempdir_in("/tmp")?;

    let log = connect(&bootstrap)?;
    ensure_topics(log.as_ref(), PARTITIONS)?;
    log.ensure_topic(PIPE_TOPIC, PARTITIONS)?;
    let inputs = topic::coordinator_inputs();
    let mut all_topics = inputs.clone();
    all_topics.push(topic::JOURNAL.to_string());
    if ends(log.as_ref(), &all_topics)?.values().any(|e| *e > 0) {
        bail!("the Waybill topics on {bootstrap} are not empty; run the bench on a fresh broker (make bench-kafka)");
    }
    let coord = coordinator(log.clone(), &tmp.path().join("state"))?;
    let producer = raw_producer(&bootstrap)?;
    // One consumer per partition, assigned once to the (still empty) input topics and kept
    // across rounds, as KafkaLog keeps its positioned readers.
    let mut consumers = Vec::new();
    for p in 0..PARTITIONS as i32 {
        let consumer = raw_consumer(&bootstrap, "waybill.bench.pipe")?;
        let mut tpl = TopicPartitionList::new();
        for t in &inputs {
            tpl.add_partition_offset(t, p, KafkaOffset::Offset(0))?;
        }
        consumer.assign(&tpl)?;
        consumers.push(consumer);
    }
    let load_start = loadavg();
    eprintln!("kafka bench on {bootstrap}: {rounds} rounds of {orders} orders ({} inbound events each)", orders * 7);

    let (mut ours, mut raw, mut ratio, mut cpu_us) = (vec![], vec![], vec![], vec![]);
    let mut preload = vec![];
    let mut batches_total = 0;
    let now = Timestamp::now();
    // Round 0 warms both sides up (connections, readers, metadata) and is not counted.
    let warmup = (orders / 5).max(50);
    for round in 0..=rounds {
        let (first, n_orders) = if round == 0 { (0, warmup) } else { (warmup + (round - 1) * orders, orders) };
        let records = saga_backlog(first, n_orders, now)?;
        let before = ends(log.as_ref(), &inputs)?;
        let t = Instant::now();
        for c in records.chunks(1000) {
            log.append(AppendBatch { records: c.to_vec(), positions: vec![] })?;
        }
        preload.push(records.len() as f64 / t.elapsed().as_secs_f64());
        let after = ends(log.as_ref(), &inputs)?;
        let ranges: BTreeMap<(String, i32), (i64, i64)> =
            before.iter().map(|(k, from)| (k.clone(), (*from, after[k]))).collect();

        let run_ours = || -> anyhow::Result<(f64, f64, u64, u64)> {
            let batches = coord.stats().batches.load(Ordering::Relaxed);
            let cpu = thread_cpu_ns();
            let t = Instant::now();
            let mut n = 0;
            for p in 0..PARTITIONS as i32 {
                n += coord.drain_partition(p, now)?;
            }
            let secs = t.elapsed().as_secs_f64();
            Ok((secs, cpu_secs_since(cpu), n, coord.stats().batches.load(Ordering::Relaxed) - batches))
        };
        let run_raw = || -> anyhow::Result<(f64, u64)> {
            let t = Instant::now();
            let n = raw_pipe(&consumers, &producer, &ranges, max_batch)?;
            Ok((t.elapsed().as_secs_f64(), n))
        };
        let ((secs, cpu, n, batches), (raw_secs, raw_n)) = if round % 2 == 1 {
            let r = run_raw()?;
            (run_ours()?, r)
        } else {
            let o = run_ours()?;
            (o, run_raw()?)
        };
        if n != records.len() as u64 {
            let group = CoordinatorConfig::default().group;
            let mut behind = Vec::new();
            for ((t, p), (from, end)) in &ranges {
                let at = log.committed(&group, t, *p)?;
                if at != Some(*end) && end > from {
                    behind.push(format!("{t}/{p}: {from}..{end}, at {at:?}, end now {}", log.end_offset(t, *p)?));
                }
            }
            bail!("Waybill processed {n} of {} inputs; behind: {}", records.len(), behind.join("; "));
        }
        ensure!(raw_n == records.len() as u64, "raw pipe copied {raw_n} of {} records", records.len());
        if round == 0 {
            eprintln!(
                "warm-up: {n_orders} orders, Waybill {:.0} events/s, raw pipe {:.0} records/s",
                n as f64 / secs,
                raw_n as f64 / raw_secs
            );
            continue;
        }
        batches_total += batches;
        ours.push(n as f64 / secs);
        raw.push(raw_n as f64 / raw_secs);
        ratio.push(raw_secs / secs);
        cpu_us.push(cpu * 1e6 / n as f64);
        eprintln!(
            "round {round}: Waybill {:.0} events/s ({batches} appends), raw pipe {:.0} records/s",
            n as f64 / secs,
            raw_n as f64 / raw_secs
        );
    }
    let completed = count_completed(log.as_ref())?;
    let dlq: i64 = (0..PARTITIONS as i32).map(|p| log.end_offset(topic::DLQ, p)).sum::<Result<_, _>>()?;
    let expected = (warmup + rounds * orders) as u64;

    // Restore: an empty state store, partition by partition, alternating with a raw read
    // of the same journal partition by a fresh consumer.
    let journal_ends = ends(log.as_ref(), &[topic::JOURNAL.to_string()])?;
    let (mut restore, mut raw_read_rate, mut r_restore) = (vec![], vec![], vec![]);
    let restore_rounds = rounds.max(3);
    for round in 0..restore_rounds {
        let p = (round % PARTITIONS as usize) as i32;
        let end = journal_ends[&(topic::JOURNAL.to_string(), p)];
        let run_restore = || -> anyhow::Result<(f64, u64)> {
            // The same client as the drain: on Tansu 0.6.0 a fresh client would stop short
            // of the journal's last batch (its ListOffsets(latest) answer is wrong; see
            // `KafkaLog::high_watermark`). The journal is read from the broker either way.
            let dir = tempfile::tempdir_in(tmp.path())?;
            let c = coordinator(log.clone(), dir.path())?;
            let t = Instant::now();
            let n = c.drain_partition(p, now)?;
            let secs = t.elapsed().as_secs_f64();
            ensure!(n == 0, "restore processed {n} new inputs");
            Ok((secs, c.stats().restored.load(Ordering::Relaxed)))
        };
        let run_read = || -> anyhow::Result<(f64, u64)> {
            let t = Instant::now();
            let n = raw_read(&bootstrap, topic::JOURNAL, p, end)?;
            Ok((t.elapsed().as_secs_f64(), n))
        };
        let ((secs, replayed), (read_secs, read)) = if round % 2 == 0 {
            let r = run_read()?;
            (run_restore()?, r)
        } else {
            let o = run_restore()?;
            (o, run_read()?)
        };
        ensure!(
            replayed == end as u64 && read == end as u64,
            "journal {p}: replayed {replayed}, read {read}, end {end}"
        );
        restore.push(replayed as f64 / secs);
        raw_read_rate.push(read as f64 / read_secs);
        r_restore.push(read_secs / secs);
        eprintln!(
            "restore {}: partition {p}, {replayed} journal records, {:.0} records/s (raw read {:.0}/s)",
            round + 1,
            replayed as f64 / secs,
            read as f64 / read_secs
        );
    }

    let per_round = orders * 7;
    let journal_per_partition: Vec<String> = journal_ends.values().map(|e| e.to_string()).collect();
    println!();
    println!("| measurement | Waybill | raw rdkafka baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| 6. saga processing end to end through the Kafka backend ({orders} orders, {per_round} inbound events per round) — vs raw consume→produce pipe of the same records (target ≥ 0.40) | {} events/s | {} records/s | {:.2} {} |",
        fmt_num(median(&ours)),
        fmt_num(median(&raw)),
        median(&ratio),
        if median(&ratio) >= 0.40 { "(met)" } else { "(MISSED)" }
    );
    println!(
        "| 7. partition restore from the journal into an empty state store — vs raw consume of the same journal partition | {} journal records/s | {} records/s | {:.2} |",
        fmt_num(median(&restore)),
        fmt_num(median(&raw_read_rate)),
        median(&r_restore)
    );
    println!();
    println!(
        "Medians of {rounds} rounds (restore: {restore_rounds}, partitions in turn); ratio = median of per-round Waybill / raw. Broker: {bootstrap}."
    );
    println!("Environment: {}; load average {load_start} at start, {} at end.", environment(), loadavg());
    println!();
    println!("Details:");
    println!(
        "- row 6: 4 partitions drained one after another on one thread, coordinator max_batch {max_batch}; {:.0} inputs per append on average; spread Waybill {}–{} events/s, raw {}–{} records/s",
        (rounds * per_round) as f64 / batches_total.max(1) as f64,
        fmt_num(spread(&ours).0),
        fmt_num(spread(&ours).1),
        fmt_num(spread(&raw).0),
        fmt_num(spread(&raw).1)
    );
    println!(
        "- row 6 on-CPU time of the coordinator thread: {:.1} µs per inbound event (librdkafka's own threads not counted)",
        median(&cpu_us)
    );
    println!(
        "- row 6 raw pipe: batches of {max_batch}, each produced (idempotent, acks=all, linger 1 ms), flushed (every delivery acknowledged) and its offsets committed synchronously"
    );
    println!(
        "- pre-load through KafkaLog::append, 1000 records per append (not timed): {} records/s",
        fmt_num(median(&preload))
    );
    println!(
        "- check: {completed} of {expected} sagas completed (Completed journal events), {dlq} dead letters: {}",
        if completed == expected && dlq == 0 { "ok" } else { "NOT OK" }
    );
    println!("- row 7: journal records per partition {}", journal_per_partition.join(", "));
    println!("- total bench time {:.0} s", started.elapsed().as_secs_f64());
    ensure!(completed == expected && dlq == 0, "not every saga completed; the figures are not valid");
    Ok(())
}
