//! Fault injection against [`KafkaLog`] with librdkafka's mock cluster (real loopback
//! listeners inside the test process): a broker outage in the middle of appends and
//! errors injected into produce and commit requests must lose nothing and duplicate
//! nothing.
//!
//! The mock has no CreateTopics, so topics are made with `MockCluster::create_topic`;
//! `ensure_topic` then finds them in the metadata.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use waybill_log::kafka::{KafkaLog, KafkaOptions};
use waybill_log::{AppendBatch, EventLog, Offset, Position, Record, StoredRecord};

type Mock = MockCluster<'static, DefaultProducerContext>;

fn mock_with_topic(topic: &str, partitions: i32) -> Mock {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(topic, partitions, 1).expect("mock topic");
    mock
}

fn connect(mock: &Mock) -> KafkaLog {
    KafkaLog::connect(KafkaOptions {
        client_id: "waybill-mock".to_owned(),
        request_timeout: Duration::from_secs(20),
        ..KafkaOptions::new(mock.bootstrap_servers())
    })
    .expect("connect to the mock cluster")
}

fn read_partition(log: &dyn EventLog, topic: &str, partition: i32) -> Vec<StoredRecord> {
    let mut out: Vec<StoredRecord> = Vec::new();
    loop {
        let got = log
            .read(topic, partition, out.len() as Offset, 50)
            .unwrap_or_else(|e| panic!("read {topic}/{partition}: {e}"));
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Every key's values, in partition order, over all partitions; checks offsets are dense.
fn values_by_key(log: &dyn EventLog, topic: &str, partitions: i32) -> BTreeMap<String, Vec<u32>> {
    let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for p in 0..partitions {
        for (i, r) in read_partition(log, topic, p).into_iter().enumerate() {
            assert_eq!(r.offset, i as Offset, "offsets of {topic}/{p} are not dense");
            seen.entry(String::from_utf8(r.key).unwrap())
                .or_default()
                .push(String::from_utf8(r.value).unwrap().parse().unwrap());
        }
    }
    seen
}

fn batch(topic: &str, keys: u32, b: u32, group: &str) -> AppendBatch {
    AppendBatch {
        records: (0..keys).map(|k| Record::keyed(topic, format!("key-{k}"), format!("{b}"))).collect(),
        positions: vec![Position {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition: 0,
            next_offset: i64::from(b) + 1,
        }],
    }
}

/// The broker goes down for two seconds while a thread appends: appends in flight
/// block and then succeed, and afterwards every record is there exactly once, in order.
#[test]
fn broker_down_and_up_during_appends_loses_nothing() {
    let topic = "mock.down-up";
    let (partitions, keys, batches) = (3, 4, 60u32);
    let mock = mock_with_topic(topic, partitions);
    let log = Arc::new(connect(&mock));
    log.ensure_topic(topic, partitions as u32).expect("ensure_topic of an existing mock topic");

    let appender = {
        let log = log.clone();
        thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            for b in 0..batches {
                let started = Instant::now();
                log.append(batch(topic, keys, b, "mock-group"))
                    .unwrap_or_else(|e| panic!("append {b} failed across the outage: {e}"));
                slowest = slowest.max(started.elapsed());
                thread::sleep(Duration::from_millis(10));
            }
            slowest
        })
    };
    thread::sleep(Duration::from_millis(200));
    mock.broker_down(1).unwrap();
    thread::sleep(Duration::from_secs(2));
    mock.broker_up(1).unwrap();
    let slowest = appender.join().expect("appender thread");
    assert!(
        slowest >= Duration::from_secs(1),
        "no append waited for the outage (slowest {slowest:?}): the test did not exercise it"
    );

    let seen = values_by_key(&*log, topic, partitions);
    assert_eq!(seen.len(), keys as usize);
    for (key, values) in seen {
        assert_eq!(
            values,
            (0..batches).collect::<Vec<_>>(),
            "key {key} lost, duplicated or reordered records across the outage"
        );
    }
    assert_eq!(
        log.committed("mock-group", topic, 0).unwrap(),
        Some(i64::from(batches)),
        "the position of the last batch must be committed"
    );
}

/// Produce requests failing with retriable errors are retried by the idempotent
/// producer: each append succeeds once, at the offsets it reports, with no duplicates.
#[test]
fn injected_produce_errors_are_retried_without_duplicates() {
    let topic = "mock.produce-errors";
    let (partitions, keys, batches) = (2, 5, 20u32);
    let mock = mock_with_topic(topic, partitions);
    let log = connect(&mock);
    log.ensure_topic(topic, partitions as u32).unwrap();

    let mut reported: Vec<(i32, Offset)> = Vec::new();
    for b in 0..batches {
        if b % 4 == 0 {
            mock.request_errors(
                RDKafkaApiKey::Produce,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                ],
            );
        }
        let out = log
            .append(batch(topic, keys, b, "mock-errors"))
            .unwrap_or_else(|e| panic!("append {b} must succeed after retries: {e}"));
        reported.extend(out.iter().map(|a| (a.partition, a.offset)));
    }

    let seen = values_by_key(&log, topic, partitions);
    for (key, values) in &seen {
        assert_eq!(values, &(0..batches).collect::<Vec<_>>(), "key {key} was duplicated or lost by retries");
    }
    let total: usize = seen.values().map(Vec::len).sum();
    assert_eq!(total, (keys * batches) as usize);
    reported.sort_unstable();
    reported.dedup();
    assert_eq!(reported.len(), total, "append reported the same offset twice or an offset that holds no record");
    assert_eq!(log.committed("mock-errors", topic, 0).unwrap(), Some(i64::from(batches)));
}

/// A commit refused by a moving coordinator is retried: the position is stored.
#[test]
fn injected_commit_errors_are_retried() {
    let topic = "mock.commit-errors";
    let mock = mock_with_topic(topic, 1);
    let log = connect(&mock);
    log.append(batch(topic, 1, 0, "mock-commit")).unwrap();
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    log.append(batch(topic, 1, 1, "mock-commit")).expect("append whose commit meets coordinator errors");
    assert_eq!(log.committed("mock-commit", topic, 0).unwrap(), Some(2));
    assert_eq!(read_partition(&log, topic, 0).len(), 2);
}

fn connect_transactional(mock: &Mock) -> KafkaLog {
    KafkaLog::connect(KafkaOptions {
        client_id: "waybill-mock-txn".to_owned(),
        request_timeout: Duration::from_secs(20),
        transactions: true,
        ..KafkaOptions::new(mock.bootstrap_servers())
    })
    .expect("connect to the mock cluster with transactions")
}

/// With `transactions`, a batch with positions commits its records and the positions in
/// one transaction. The mock runs the transaction API but neither hides aborted records
/// from readers nor stores the offsets of `TxnOffsetCommit`, so nothing here depends on
/// either.
#[test]
fn transactional_appends_commit_records_and_positions_together() {
    let topic = "mock.txn";
    let mock = mock_with_topic(topic, 1);
    let log = connect_transactional(&mock);
    log.verify_transactions(topic).expect("the mock runs the transaction APIs");
    for b in 0..5 {
        let appended = log.append(batch(topic, 3, b, "mock-txn")).expect("transactional append");
        assert_eq!(appended.len(), 3);
    }
    assert_eq!(log.transaction_outcomes(), (5, 0));
    // Batches without positions (ingestion, tools) use the plain idempotent producer.
    log.append(AppendBatch { records: vec![Record::keyed(topic, "plain", "9")], positions: vec![] }).unwrap();
    assert_eq!(log.transaction_outcomes(), (5, 0));
    let values = values_by_key(&log, topic, 1);
    assert_eq!(values["key-0"], vec![0, 1, 2, 3, 4]);
}

/// A commit the broker refuses aborts the transaction and fails the batch as a whole
/// (the coordinator retries it); the next append goes through.
#[test]
fn a_failed_transaction_is_aborted_and_the_next_one_commits() {
    let topic = "mock.txn-abort";
    let mock = mock_with_topic(topic, 1);
    let log = connect_transactional(&mock);
    log.append(batch(topic, 1, 0, "mock-txn-abort")).unwrap();
    mock.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; 1]);
    let err = log.append(batch(topic, 1, 1, "mock-txn-abort")).expect_err("the commit is refused");
    assert!(err.to_string().contains("committing the transaction"), "{err}");
    assert_eq!(log.transaction_outcomes(), (1, 1), "the failed transaction is counted as aborted");
    // The log is usable afterwards (a fresh producer if the old one cannot go on).
    log.append(batch(topic, 1, 2, "mock-txn-abort")).expect("the next transaction commits");
    assert!(log.transaction_outcomes().0 >= 2);
}

/// A producer fenced by a newer one with the same transactional id (another process
/// took the partition over) gets `Fenced`, not a retryable error, so its worker stops
/// instead of writing on. The mock does not bump epochs for a second producer of the
/// same id, so the broker's answer is injected.
#[test]
fn a_fenced_producer_reports_fenced_and_is_not_retried() {
    let topic = "mock.txn-fence";
    let mock = mock_with_topic(topic, 1);
    let log = connect_transactional(&mock);
    log.append(batch(topic, 1, 0, "mock-fence")).unwrap();
    mock.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED]);
    let err = log.append(batch(topic, 1, 1, "mock-fence")).expect_err("the producer is fenced");
    assert!(matches!(err, waybill_log::Error::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("another process owns the partition"), "{err}");
}
