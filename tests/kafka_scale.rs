//! Scale-out on a real Kafka-protocol broker, through the `waybill` binary: replicas share
//! the partitions through the consumer group, a replica is SIGKILLed mid-run, a fresh
//! replica with an empty data directory joins and restores its partitions from the saga
//! state snapshot and the journal after it — and afterwards every order has reached its end, no business key got two
//! different commands, and each command's effect happened once.
//!
//! Each test starts its own Tansu broker (in memory, on a free loopback port) from
//! `WAYBILL_TANSU_BIN` (default `~/.cache/waybill/tansu/bin/tansu`, which
//! `scripts/broker.sh install` builds). The test fails, never skips, without it.

#[path = "support/proc.rs"]
#[allow(dead_code)] // shared with other test binaries; not every helper is used here
mod proc;
#[path = "support/tansu.rs"]
mod tansu;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proc::Proc;

use tansu::Broker;
use waybill_domain::command::CommandBody;
use waybill_domain::topic;
use waybill_log::EventLog;
use waybill_log::kafka::{KafkaLog, KafkaOptions};
use waybill_saga::coordinator::headers;

const BIN: &str = env!("CARGO_BIN_EXE_waybill");

/// Session timeout of the test replicas: how long until a killed replica's partitions
/// move.
const SESSION_MS: u64 = 6000;

impl Broker {
    /// librdkafka properties every client of the test uses.
    fn properties() -> Vec<(&'static str, String)> {
        vec![
            // Tansu's ListOffsets(latest) is exact only with one record per batch
            // (crates/log/tests/kafka_conformance.rs says why).
            ("producer.batch.num.messages", "1".into()),
            ("consumer.session.timeout.ms", SESSION_MS.to_string()),
            ("consumer.heartbeat.interval.ms", "500".into()),
        ]
    }

    fn log(&self) -> KafkaLog {
        let mut o = KafkaOptions::new(self.addr.clone());
        o.client_id = "waybill-scale-test".into();
        for (k, v) in Broker::properties() {
            o.properties.insert(k.into(), v);
        }
        KafkaLog::connect(o).expect("connect to the test broker")
    }
}

fn kafka_args(broker: &Broker) -> Vec<String> {
    let mut v = vec!["--kafka".to_owned(), broker.addr.clone()];
    for (k, val) in Broker::properties() {
        v.push("--kafka-property".into());
        v.push(format!("{k}={val}"));
    }
    v
}

/// `waybill run --kafka --in-process`: the simulator plus the first replica. The systems
/// run in process: the replicas started with `waybill serve` have no connectors, so
/// commands on their partitions would otherwise wait for the demo's.
fn demo(broker: &Broker, dir: &Path, orders: usize) -> Proc {
    let mut c = Command::new(BIN);
    c.args(["run", "--quiet", "--verbose", "--listen", "", "--control-listen", "", "--metrics-listen", ""])
        .args(["--registry-listen", ""])
        .arg("--in-process")
        .args(["--rate", "40", "--pick-timeout", "4", "--timeout", "240"])
        .arg("--orders")
        .arg(orders.to_string())
        .arg("--data-dir")
        .arg(dir)
        .args(kafka_args(broker));
    Proc::spawn(c)
}

/// `waybill serve`: another replica in the same group.
fn replica(broker: &Broker, dir: &Path) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("waybill.toml");
    let mut toml = format!(
        "data_dir = {:?}\npartitions = 4\n[policy.fulfillment]\npick_timeout_secs = 4.0\n[kafka]\n\"bootstrap.servers\" = {:?}\n",
        dir.join("data"),
        broker.addr
    );
    for (k, v) in Broker::properties() {
        toml.push_str(&format!("{k:?} = {v:?}\n"));
    }
    std::fs::write(&config, toml).unwrap();
    let mut c = Command::new(BIN);
    c.args(["serve", "--demo-catalog", "--listen", "", "--control-listen", "", "--metrics-listen", ""])
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info");
    Proc::spawn(c)
}

fn all_records(log: &dyn EventLog, t: &str) -> Vec<waybill_log::StoredRecord> {
    let mut out = Vec::new();
    for p in 0..log.partitions(t).unwrap() as i32 {
        let end = log.end_offset(t, p).unwrap();
        let mut from = 0;
        while from < end {
            let batch = log.read(t, p, from, 4096).unwrap();
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            out.extend(batch);
        }
    }
    out
}

/// Partitions restored with flow states loaded from the snapshot topic.
fn restored_from_snapshot(output: &str) -> usize {
    output
        .lines()
        .filter(|l| l.contains("partition restored"))
        .filter(|l| l.split_whitespace().any(|w| w.starts_with("snapshot.flows=") && w != "snapshot.flows=0"))
        .count()
}

#[test]
fn replicas_share_partitions_survive_a_sigkill_and_a_fresh_replica_restores_from_the_snapshot() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let orders = 250;
    let a = demo(&broker, &tmp.path().join("a"), orders);
    a.wait_for_line("the first replica to own partitions", Duration::from_secs(60), |l| {
        l.contains("consumer group assigns partitions")
    });

    // Let A write some of every partition's journal first, so that what B restores is
    // real history.
    let log = broker.log();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(0..4).all(|p| log.end_offset(topic::JOURNAL, p).is_ok_and(|end| end >= 20)) {
        assert!(Instant::now() < deadline, "A wrote no journal; its output:\n{}", a.output());
        std::thread::sleep(Duration::from_millis(100));
    }

    // B joins: the group moves some of A's partitions to it, and B restores them from the
    // saga state snapshot A wrote and the journal after it (its own store is empty).
    let b = replica(&broker, &tmp.path().join("b"));
    b.wait_for_line("B to be assigned partitions", Duration::from_secs(60), |l| {
        l.contains("consumer group assigns partitions")
    });
    b.wait_for_line("B to restore a partition", Duration::from_secs(60), |l| l.contains("partition restored"));
    a.wait_for_line("A to give partitions to B", Duration::from_secs(60), |l| l.contains("partition released"));
    std::thread::sleep(Duration::from_millis(1500));

    // SIGKILL B mid-run: its partitions return after the session times out.
    let b_output = b.kill();

    // C starts with an empty data directory while A still runs.
    let c = replica(&broker, &tmp.path().join("c"));
    c.wait_for_line("C to be assigned partitions", Duration::from_secs(90), |l| {
        l.contains("consumer group assigns partitions")
    });

    // A finishes when every order has reached its end state.
    let mut a = a;
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo did not finish; output:\n{}", a.output());
        std::thread::sleep(Duration::from_millis(200));
    };
    let a_output = a.output();
    assert!(status.success(), "the demo failed:\n{a_output}");
    let c_output = c.output();
    drop(c);

    assert!(
        a_output.contains(&format!("Waybill demo: {orders} orders")) && !a_output.contains("timed out"),
        "the demo summary:\n{a_output}"
    );
    // An order ends in an end state, or waits on an exception someone was told about
    // (finance refusing an invoice in a closed period is one the world plans); none
    // stalls silently.
    let count = |label: &str| -> u64 {
        a_output
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let settled: u64 = [
        "on hold: master data to fix",
        "completed (delivered)",
        "ended entirely backordered",
        "cancelled, compensated",
        "in flight, an exception open",
    ]
    .iter()
    .map(|label| count(label))
    .sum();
    assert_eq!(count("in flight, stalled silently"), 0, "no order stalled silently:\n{a_output}");
    assert_eq!(settled, orders as u64, "every order reached an end state or an open exception:\n{a_output}");
    assert!(restored_from_snapshot(&b_output) >= 1, "B restored from the snapshot A wrote:\n{b_output}");
    assert!(c_output.contains("partition restored"), "C (empty data directory) restored partitions:\n{c_output}");

    // Commands: a key may be written again after a crash (the same command), never two
    // different commands under one key, and never two invoices for one shipment.
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut invoice_keys_per_shipment: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in topic::command_topics() {
        for r in all_records(&log, &t) {
            let cmd = waybill_schema::decode_command(&r.value).expect("commands decode");
            assert_eq!(
                r.headers.iter().find(|h| h.key == headers::IDEMPOTENCY_KEY).map(|h| h.value.as_slice()),
                Some(cmd.meta.idempotency_key.as_bytes())
            );
            if let CommandBody::PostInvoice(inv) = &cmd.body {
                invoice_keys_per_shipment
                    .entry(inv.shipment_id.clone())
                    .or_default()
                    .insert(cmd.meta.idempotency_key.clone());
            }
            by_key.entry(format!("{t}/{}", cmd.meta.idempotency_key)).or_default().insert(format!("{:?}", cmd.body));
        }
    }
    assert!(!invoice_keys_per_shipment.is_empty(), "invoices were posted");
    let conflicting: Vec<&String> = by_key.iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| k).collect();
    assert!(conflicting.is_empty(), "different commands under one idempotency key: {conflicting:?}");
    let twice: Vec<&String> = invoice_keys_per_shipment.iter().filter(|(_, k)| k.len() > 1).map(|(s, _)| s).collect();
    assert!(twice.is_empty(), "shipments invoiced under two keys: {twice:?}");
}
