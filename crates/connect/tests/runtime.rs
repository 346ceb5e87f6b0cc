//! The connector runtime over the embedded log against the HTTP target double: order,
//! throttling, priority, breaking, outages and failures, as a target and an operator see
//! them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use waybill_connect::backoff::Backoff;
use waybill_connect::client::Timeouts;
use waybill_connect::http::{Format, HttpAdapter};
use waybill_connect::secret::SecretFile;
use waybill_connect::target::Limits;
use waybill_connect::{Connector, ConnectorConfig, Running};
use waybill_domain::command::{OrderOnly, StockRequest};
use waybill_domain::{Command, CommandBody, CommandMeta, EventBody, InboundEvent, System, Timestamp, topic};
use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig};
use waybill_doubles::{DownMode, Fault, Match, Times, max_in_window};
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
use waybill_log::{AppendBatch, EventLog, Record};

const SECRET: &str = "wms-shared-secret";

struct Rig {
    log: Arc<dyn EventLog>,
    target: HttpTarget,
    dir: tempfile::TempDir,
}

fn rig(answer: impl Fn(&waybill_doubles::http_target::Received) -> Answer + Send + Sync + 'static) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(
        &dir.path().join("log"),
        EmbeddedOptions { fsync: FsyncPolicy::Never, ..EmbeddedOptions::default() },
    )
    .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log);
    for t in [topic::commands(System::Wms), topic::inbound(System::Wms), topic::DLQ.to_string()] {
        log.ensure_topic(&t, 2).unwrap();
    }
    let target = HttpTarget::start(HttpTargetConfig::new(SECRET.as_bytes().to_vec(), answer));
    std::fs::write(dir.path().join("hmac"), SECRET).unwrap();
    Rig { log, target, dir }
}

fn config(rate: f64, burst: u32, concurrency: usize) -> ConnectorConfig {
    ConnectorConfig {
        name: "wms".into(),
        system: System::Wms,
        concurrency,
        limits: Limits {
            rate,
            burst,
            breaker_threshold: 3,
            breaker_cool_down: Duration::from_millis(500),
            unavailable_after: Duration::from_secs(2),
        },
        max_attempts: 3,
        backoff: Backoff { base: Duration::from_millis(20), max: Duration::from_millis(200) },
        bulk: vec!["CancelReservation".into()],
        readahead: 512,
    }
}

impl Rig {
    fn start(&self, cfg: ConnectorConfig) -> Running {
        let hmac = Arc::new(SecretFile::open(self.dir.path().join("hmac")).unwrap());
        let adapter = HttpAdapter::new(
            System::Wms,
            &self.target.command_url(),
            Format::Json,
            Timeouts { connect: Duration::from_secs(1), call: Duration::from_secs(2) },
            Some(hmac),
            None,
        );
        let running = Connector::new(cfg, self.log.clone(), Arc::new(adapter)).start().unwrap();
        running.assign(&[0, 1]);
        running
    }

    fn send(&self, commands: &[Command]) {
        let records = commands
            .iter()
            .map(|c| {
                Record::keyed(
                    topic::commands(System::Wms),
                    c.meta.correlation_key.as_bytes().to_vec(),
                    waybill_schema::encode_command(c).unwrap(),
                )
            })
            .collect();
        self.log.append(AppendBatch { records, positions: Vec::new() }).unwrap();
    }

    fn inbound(&self) -> Vec<InboundEvent> {
        let t = topic::inbound(System::Wms);
        let mut out = Vec::new();
        for p in 0..2 {
            for r in self.log.read(&t, p, 0, 100_000).unwrap() {
                out.push(waybill_schema::decode_event(&r.value).unwrap());
            }
        }
        out
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Rig) -> bool) {
        let until = Instant::now() + timeout;
        while !done(self) {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn command(order: &str, key: &str, body: CommandBody) -> Command {
    Command {
        meta: CommandMeta {
            idempotency_key: key.into(),
            saga_id: format!("o2f:{order}"),
            correlation_key: order.into(),
            target: System::Wms,
            caused_by: "test".into(),
            issued_at: Timestamp(0),
        },
        body,
    }
}

fn reserve(order: &str) -> Command {
    command(
        order,
        &format!("reserve:{order}"),
        CommandBody::ReserveStock(StockRequest { order_ref: order.into(), warehouse: "WH".into(), lines: vec![] }),
    )
}

fn cancel(order: &str) -> Command {
    command(
        order,
        &format!("cancel-reservation:{order}"),
        CommandBody::CancelReservation(OrderOnly { order_ref: order.into(), reason: "r".into() }),
    )
}

fn stock_reserved(r: &waybill_doubles::http_target::Received) -> Answer {
    let order = r.json.as_ref().unwrap()["data"]["order_ref"].as_str().unwrap().to_string();
    Answer::ok(json!({"events": [{"type": "StockReserved", "meta": {"event_id": format!("wms:reserved:{order}"),
        "source": {"system": "WMS", "id": order}, "correlation_key": order, "occurred_at": 0},
        "data": {"order_ref": order, "lines": []}}]}))
}

#[test]
fn every_command_is_delivered_once_in_key_order_and_its_answer_is_written_with_the_position() {
    let rig = rig(|r| if r.key.starts_with("reserve:") { stock_reserved(r) } else { Answer::Accepted });
    let running = rig.start(config(0.0, 1, 4));
    let orders: Vec<String> = (0..40).map(|i| format!("SO{i:04}")).collect();
    let mut commands = Vec::new();
    for o in &orders {
        commands.push(reserve(o));
        commands.push(cancel(o));
    }
    rig.send(&commands);
    rig.wait_for("every answer", Duration::from_secs(20), |r| r.inbound().len() == 40);
    rig.wait_for("every command", Duration::from_secs(20), |r| r.target.received().len() == 80);
    assert_eq!(rig.target.duplicates(), 0);
    for o in &orders {
        let got = rig.target.received();
        let first = got.iter().position(|x| x.key == format!("reserve:{o}")).unwrap();
        let second = got.iter().position(|x| x.key == format!("cancel-reservation:{o}")).unwrap();
        assert!(first < second, "{o}: the reservation went out before its cancellation");
    }
    running.stop();
    let group = "connector-wms";
    let t = topic::commands(System::Wms);
    let stored: i64 = (0..2).map(|p| rig.log.committed(group, &t, p).unwrap().unwrap_or(0)).sum();
    assert_eq!(stored, 80, "the position covers every delivered command");
    // A restart delivers nothing again.
    let again = rig.start(config(0.0, 1, 4));
    std::thread::sleep(Duration::from_millis(300));
    again.stop();
    assert_eq!(rig.target.received().len() + rig.target.duplicates() as usize, 80);
}

#[test]
fn at_twenty_per_second_no_window_sees_more_than_the_bucket_allows_and_critical_overtakes_bulk() {
    let rig = rig(|_| Answer::Accepted);
    let running = rig.start(config(20.0, 5, 4));
    // A backlog of bulk commands, then one critical.
    let bulk: Vec<Command> = (0..40).map(|i| cancel(&format!("SO{i:04}"))).collect();
    rig.send(&bulk);
    std::thread::sleep(Duration::from_millis(300));
    rig.send(&[reserve("SO9999")]);
    rig.wait_for("the backlog", Duration::from_secs(10), |r| r.target.received().len() == 41);
    running.stop();
    let requests = rig.target.requests();
    for w in [0.25_f64, 0.5, 1.0] {
        let max = max_in_window(&requests, Duration::from_secs_f64(w));
        assert!(max as f64 <= 5.0 + 20.0 * w + 1.0, "{max} requests in a {w} s window at 20/s burst 5");
    }
    let order: Vec<String> = rig.target.received().into_iter().map(|r| r.key).collect();
    let at = order.iter().position(|k| k == "reserve:SO9999").unwrap();
    assert!(at < 20, "the critical command went out at position {at}, behind half the bulk backlog: {order:?}");
}

#[test]
fn a_target_down_for_a_while_opens_the_breaker_is_reported_once_and_gets_everything_once_when_back() {
    let rig = rig(|r| if r.key.starts_with("reserve:") { stock_reserved(r) } else { Answer::Accepted });
    let running = rig.start(config(0.0, 1, 2));
    rig.target.down(DownMode::Refuse);
    let down_at = Instant::now();
    let orders: Vec<String> = (0..10).map(|i| format!("SO{i:04}")).collect();
    rig.send(&orders.iter().map(|o| reserve(o)).collect::<Vec<_>>());
    rig.wait_for("the outage report", Duration::from_secs(10), |r| {
        r.inbound().iter().any(|e| matches!(e.body, EventBody::TargetUnavailable(_)))
    });
    assert!(running.target().stats().breaker_opens.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    // Down for 20 s in all: the breaker holds the calls back, probing every cool-down.
    let calls = || running.target().stats().requests.load(std::sync::atomic::Ordering::Relaxed);
    let tries_while_down = calls();
    let rest = Duration::from_secs(20).saturating_sub(down_at.elapsed());
    std::thread::sleep(rest);
    let probes = calls() - tries_while_down;
    assert!(probes as f64 <= rest.as_secs_f64() / 0.5 + 2.0, "{probes} calls in {rest:?}: only the breaker's probes");
    rig.target.up();
    rig.wait_for("every answer after recovery", Duration::from_secs(15), |r| {
        r.inbound().iter().filter(|e| matches!(e.body, EventBody::StockReserved(_))).count() == 10
    });
    rig.wait_for("the recovery report", Duration::from_secs(5), |r| {
        r.inbound().iter().any(|e| matches!(e.body, EventBody::TargetRecovered(_)))
    });
    running.stop();
    let events = rig.inbound();
    let unavailable: Vec<&InboundEvent> =
        events.iter().filter(|e| matches!(e.body, EventBody::TargetUnavailable(_))).collect();
    assert_eq!(unavailable.len(), 1, "one report per outage");
    assert_eq!(unavailable[0].meta.correlation_key, "target:wms");
    assert_eq!(rig.target.received().len(), 10);
    assert_eq!(rig.target.duplicates(), 0, "nothing delivered twice");
}

#[test]
fn a_refusal_and_exhausted_retries_become_command_failed_with_the_target_s_words() {
    let rig = rig(|r| {
        if r.key.starts_with("reserve:SO0001") {
            Answer::Sync { status: 422, body: json!({"error": "warehouse WH is closed for inventory"}) }
        } else {
            Answer::Accepted
        }
    });
    rig.target.inject(Match::action("cancel-reservation:SO0002"), Fault::Status(500), Times::UntilCleared);
    let running = rig.start(config(0.0, 1, 2));
    rig.send(&[reserve("SO0001"), cancel("SO0002"), cancel("SO0003")]);
    rig.wait_for("two failures", Duration::from_secs(10), |r| {
        r.inbound().iter().filter(|e| matches!(e.body, EventBody::CommandFailed(_))).count() == 2
    });
    running.stop();
    let events = rig.inbound();
    let failed = |key: &str| {
        events
            .iter()
            .find_map(|e| match &e.body {
                EventBody::CommandFailed(f) if f.idempotency_key == key => Some(f.clone()),
                _ => None,
            })
            .unwrap()
    };
    let refused = failed("reserve:SO0001");
    assert!(refused.reason.contains("closed for inventory"), "{}", refused.reason);
    assert_eq!(
        (refused.attempts, refused.saga_id.as_str(), refused.target),
        (1, "o2f:SO0001", System::Wms),
        "a refusal is not retried"
    );
    let exhausted = failed("cancel-reservation:SO0002");
    assert_eq!(exhausted.attempts, 3, "max_attempts");
    assert!(exhausted.reason.contains("gave up after 3 attempts"), "{}", exhausted.reason);
    assert!(rig.target.command("cancel-reservation:SO0003").is_some(), "the other orders went on");
}
