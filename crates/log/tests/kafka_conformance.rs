//! The conformance suite against [`KafkaLog`] on a real Kafka-protocol broker, one test
//! per check.
//!
//! Not run here: `torn_write_never_exposes_half_a_batch`. It needs a harness that can
//! crash the backend part-way through writing its own storage
//! (`conformance::CrashHarness`), and asserts that a batch survives whole or not at all.
//! Kafka's storage is the broker's, so a client crash leaves nothing for the client to
//! tear; and without transactions a batch spread over partitions can be cut short, which
//! is why `Capabilities::atomic_batches` is `false` here and why every journal
//! `Checkpoint` names the journal range it covers (ARCHITECTURE.md, invariant 2). What a
//! cut-short batch does to the sagas is tested with a log that cuts a batch after its
//! journal events (`crates/saga/tests/coordinator.rs`), not by this suite.
//!
//! The broker is at `WAYBILL_TEST_KAFKA` (default `127.0.0.1:19092`, where
//! `scripts/broker.sh start` runs Tansu). These tests fail, never skip, when it is not
//! there: a green run must mean the Kafka backend was exercised.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use waybill_log::EventLog;
use waybill_log::kafka::{KafkaLog, KafkaOptions};
use waybill_log::testing::conformance::{self, Harness};

fn bootstrap() -> String {
    std::env::var("WAYBILL_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".to_owned())
}

fn options() -> KafkaOptions {
    let mut o = KafkaOptions {
        client_id: "waybill-conformance".to_owned(),
        request_timeout: Duration::from_secs(15),
        ..KafkaOptions::new(bootstrap())
    };
    // Tansu 0.6 (in-memory storage) answers ListOffsets(latest) with the base offset of
    // the newest record *batch* plus one, not the end of the partition
    // (tansu-storage src/dynostore.rs, `ListOffset::Latest => offset + 1`). One record
    // per produced batch makes the two agree. Real Kafka needs no such setting.
    if std::env::var_os("WAYBILL_TEST_KAFKA_MULTI_RECORD_BATCHES").is_none() {
        o.properties.insert("producer.batch.num.messages".to_owned(), "1".to_owned());
    }
    o
}

/// Fails every test with one clear message when the broker is not there, without each
/// test waiting for its own connection timeout.
fn require_broker() {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = REACHABLE.get_or_init(|| {
        let mut o = options();
        o.request_timeout = Duration::from_secs(10);
        KafkaLog::connect(o).map(drop).map_err(|e| e.to_string())
    });
    if let Err(e) = r {
        panic!(
            "the Kafka conformance tests need a broker at {} (WAYBILL_TEST_KAFKA); start it with scripts/broker.sh start\n{e}",
            bootstrap()
        );
    }
}

/// Each `open` is a new client (a process restart, as far as Kafka can tell); the broker
/// owns durability.
struct Kafka;

impl Harness for Kafka {
    fn open(&mut self) -> Arc<dyn EventLog> {
        require_broker();
        Arc::new(
            KafkaLog::connect(options()).unwrap_or_else(|e| {
                panic!("cannot open KafkaLog (start the broker with scripts/broker.sh start): {e}")
            }),
        )
    }
}

macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                conformance::$check(&mut Kafka);
            }
        )*
    };
}

checks!(
    ordering_per_key,
    atomic_batch_with_positions,
    restart_durability,
    offsets_dense_from_zero,
    read_past_end_is_error,
    unknown_topic_is_error,
    partition_mismatch_is_error,
    wait_for_wakes_on_append,
    wait_any_wakes_on_any_partition,
    concurrent_appenders_keep_per_key_order,
    headers_round_trip,
);

/// Every check every backend must pass, in a row on one broker.
#[test]
fn run_all_on_one_broker() {
    conformance::run_all(&mut Kafka);
}

/// An unreachable broker is a clear `Unavailable` error naming the servers and the cause.
#[test]
fn unreachable_broker_is_a_clear_error() {
    let o = KafkaOptions {
        request_timeout: Duration::from_secs(2),
        // A port nothing listens on (the discard port, closed on test machines).
        ..KafkaOptions::new("127.0.0.1:9")
    };
    let e = KafkaLog::connect(o).unwrap_err().to_string();
    assert!(e.contains("cannot reach Kafka at 127.0.0.1:9") && e.contains("bootstrap.servers"), "{e}");
}
