//! Consumer-group membership on a real Kafka-protocol broker (`WAYBILL_TEST_KAFKA`,
//! default `127.0.0.1:19092`, where `scripts/broker.sh start` runs Tansu): partitions
//! move between members with cooperative-sticky rebalances, every partition has exactly
//! one owner once the group settles, and positions commit through the member.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use waybill_log::kafka::{KafkaLog, KafkaOptions, PartitionOwner};
use waybill_log::{AppendBatch, EventLog, Position, Record};

fn options() -> KafkaOptions {
    let bootstrap = std::env::var("WAYBILL_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".to_owned());
    let mut o = KafkaOptions { client_id: "waybill-group-test".to_owned(), ..KafkaOptions::new(bootstrap) };
    o.request_timeout = Duration::from_secs(15);
    o.properties.insert("producer.batch.num.messages".into(), "1".into());
    o.properties.insert("consumer.session.timeout.ms".into(), "6000".into());
    o.properties.insert("consumer.heartbeat.interval.ms".into(), "500".into());
    o
}

fn connect() -> KafkaLog {
    KafkaLog::connect(options()).unwrap_or_else(|e| {
        panic!("the Kafka group tests need a broker (WAYBILL_TEST_KAFKA); start it with scripts/broker.sh start\n{e}")
    })
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{nanos}")
}

/// Records what the group told this member, and the order of events.
#[derive(Default)]
struct Owner {
    name: &'static str,
    owned: Mutex<BTreeSet<i32>>,
    events: Arc<Mutex<Vec<String>>>,
}

impl PartitionOwner for Owner {
    fn assigned(&self, partitions: &[i32]) {
        let mut owned = self.owned.lock().unwrap();
        for p in partitions {
            assert!(owned.insert(*p), "{} was assigned {p} twice", self.name);
        }
        self.events.lock().unwrap().push(format!("{} +{partitions:?}", self.name));
    }

    fn revoked(&self, partitions: &[i32], _lost: bool) {
        let mut owned = self.owned.lock().unwrap();
        for p in partitions {
            assert!(owned.remove(p), "{} lost {p} it did not own", self.name);
        }
        self.events.lock().unwrap().push(format!("{} -{partitions:?}", self.name));
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn partitions_move_between_members_and_each_has_one_owner() {
    let (a_log, b_log) = (connect(), connect());
    let topic = unique("waybill-group-test");
    let group = unique("waybill-group");
    a_log.ensure_topic(&topic, 4).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::new(Owner { name: "a", events: events.clone(), ..Owner::default() });
    let b = Arc::new(Owner { name: "b", events: events.clone(), ..Owner::default() });
    let all: BTreeSet<i32> = (0..4).collect();

    let member_a = a_log.join_group(&group, &topic, a.clone()).unwrap();
    wait_until("a owns every partition", Duration::from_secs(30), || *a.owned.lock().unwrap() == all);
    assert_eq!(member_a.owned(), vec![0, 1, 2, 3]);

    // Commits for the group go through the member (the broker refuses them from a
    // non-member while the group is active).
    let batch = AppendBatch {
        records: vec![Record::keyed(&topic, b"k".to_vec(), b"v".to_vec())],
        positions: vec![Position { group: group.clone(), topic: topic.clone(), partition: 2, next_offset: 0 }],
    };
    a_log.append(batch).unwrap();
    assert_eq!(a_log.committed(&group, &topic, 2).unwrap(), Some(0));

    let member_b = b_log.join_group(&group, &topic, b.clone()).unwrap();
    wait_until("the group splits the partitions", Duration::from_secs(60), || {
        let (oa, ob) = (a.owned.lock().unwrap().clone(), b.owned.lock().unwrap().clone());
        oa.len() == 2 && ob.len() == 2 && oa.is_disjoint(&ob) && oa.union(&ob).copied().collect::<BTreeSet<_>>() == all
    });
    // Cooperative: a kept what it did not give away, and gave before b got.
    {
        let log = events.lock().unwrap();
        let first_b = log.iter().position(|e| e.starts_with("b +")).unwrap();
        let a_gave = log.iter().position(|e| e.starts_with("a -")).unwrap();
        assert!(a_gave < first_b, "b was assigned before a gave up: {log:?}");
        assert!(!log.iter().any(|e| e == "a -[0, 1, 2, 3]"), "an eager rebalance revoked everything: {log:?}");
    }

    member_b.leave();
    wait_until("a owns every partition again", Duration::from_secs(60), || *a.owned.lock().unwrap() == all);
    assert!(b.owned.lock().unwrap().is_empty());
    member_a.leave();
    assert!(a.owned.lock().unwrap().is_empty(), "leaving revokes what the member owned");
}

/// Tansu has no Kafka transactions (it answers `InitProducerId`, not `EndTxn`): the
/// start-up check says so and what to do, instead of every append failing later.
#[test]
fn transactions_on_a_broker_without_them_fail_the_check_with_what_to_do() {
    let mut o = options();
    o.transactions = true;
    o.request_timeout = Duration::from_secs(10);
    let log = KafkaLog::connect(o).expect("Tansu answers InitProducerId");
    let topic = unique("waybill-txn-check");
    log.ensure_topic(&topic, 1).unwrap();
    let err = log.verify_transactions(&topic).expect_err("Tansu has no EndTxn").to_string();
    assert!(err.contains("cannot run Kafka transactions") && err.contains("kafka.transactions = false"), "{err}");
}
