//! The ingestion endpoint over real HTTP: JSON and Confluent-Avro bodies are accepted
//! once durable, a redelivery is answered with the original position, the same event id
//! with another body gets a 409 with both digests, bad bodies get a 400 that says what is
//! wrong and land in the dead-letter topic, an unsupported Content-Type a 415, and an
//! accepted order flows on into its saga.

use std::time::{Duration, Instant};

use waybill_domain::topic;
use waybill_schema::samples;
use waybill_server::config::Config;
use waybill_server::demo::world;
use waybill_server::node::{self, Node};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn post(url: &str, ctype: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut resp = agent().post(url).header("Content-Type", ctype).send(body).expect("request reaches the server");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[test]
fn ingestion_accepts_once_rejects_clearly_and_feeds_the_saga() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config { data_dir: dir.path().to_path_buf(), partitions: 2, ..Config::default() };
    cfg.ingest.listen = "127.0.0.1:0".into();
    cfg.ingest.allow_anonymous = true;
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.metrics.listen = "127.0.0.1:0".into();
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log.clone(), world::catalog()).unwrap();
    let url = format!("http://{}/v1/events", node.ingest_addr.unwrap());

    // A valid order, as JSON.
    let mut order = world::order(
        1,
        0,
        &world::Mix { bad_master_data: 0.0, ..world::Mix::default() },
        waybill_domain::Timestamp::now(),
    );
    order.order_ref = "SO-HTTP-1".into();
    let mut event = samples::events().into_iter().find(|e| e.body.name() == "OrderReleased").unwrap();
    event.meta.event_id = "odoo:release:SO-HTTP-1".into();
    event.meta.correlation_key = "SO-HTTP-1".into();
    event.meta.source = waybill_domain::SourceRef::new(waybill_domain::System::Odoo, "SO-HTTP-1");
    event.body = waybill_domain::EventBody::OrderReleased(order);
    let json = waybill_schema::encode_event_json(&event);
    let (status, body) = post(&url, "application/json", &json);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["topic"], "waybill.inbound.odoo");
    let offset = body["offset"].clone();

    // The same event again: accepted once, answered with where it already is.
    let (status, body) = post(&url, "application/json", &json);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate");
    assert_eq!(body["offset"], offset);
    // Also when it comes back as Avro.
    let avro = waybill_schema::encode_event(&event).unwrap();
    let (status, body) = post(&url, "application/vnd.confluent.avro", &avro);
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));

    // The same event id with another body is not a duplicate: 409 with both digests, and
    // the second body is kept in the dead-letter topic.
    let mut changed = event.clone();
    changed.meta.correlation_key = "SO-HTTP-1".into();
    if let waybill_domain::EventBody::OrderReleased(o) = &mut changed.body {
        o.currency = "CHF".into();
    }
    let (status, body) = post(&url, "application/json", &waybill_schema::encode_event_json(&changed));
    assert_eq!(status, 409, "{body}");
    let (accepted, second) = (body["accepted_digest"].as_str().unwrap(), body["digest"].as_str().unwrap());
    assert_eq!((accepted.len(), second.len()), (64, 64), "sha256 in hex: {body}");
    assert_ne!(accepted, second);
    assert_eq!(body["event_id"], "odoo:release:SO-HTTP-1");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(accepted) && msg.contains(second) && msg.contains("new event id"), "{msg}");
    let dead: Vec<_> = (0..2).flat_map(|p| log.read(topic::DLQ, p, 0, 100).unwrap()).collect();
    assert_eq!(dead.len(), 1, "the conflicting body is dead-lettered");
    assert_eq!(waybill_schema::decode_event_json(&dead[0].value).unwrap(), changed);
    let reason =
        String::from_utf8_lossy(dead[0].header(waybill_saga::coordinator::headers::DLQ_REASON).unwrap()).into_owned();
    assert!(reason.contains("reused with a different body") && reason.contains(second), "{reason}");
    // The same headers as a dead letter from a topic: the record's own, then the dlq ones.
    assert_eq!(dead[0].key, b"SO-HTTP-1");
    assert_eq!(dead[0].header("waybill.event-id"), Some(&b"odoo:release:SO-HTTP-1"[..]));
    for (h, want) in [
        ("waybill.dlq.kind", &b"rule"[..]),
        ("waybill.dlq.topic", b"http:/v1/events"),
        ("waybill.dlq.partition", b"-1"),
        ("waybill.dlq.offset", b"-1"),
        ("waybill.dlq.caller", b"anonymous"),
    ] {
        assert_eq!(dead[0].header(h), Some(want), "{h}");
    }

    // A different event as Avro is accepted.
    let mut other = event.clone();
    other.meta.event_id = "odoo:cancel:SO-HTTP-2".into();
    other.meta.correlation_key = "SO-HTTP-2".into();
    let (status, _) = post(&url, "application/vnd.confluent.avro", &waybill_schema::encode_event(&other).unwrap());
    assert_eq!(status, 202);

    // Bad bodies: a clear 400, and the body is kept in the dead-letter topic.
    let (status, body) = post(&url, "application/json", br#"{"type": "OrderReleased", "meta": {}}"#);
    assert_eq!(status, 400);
    let msg = body["error"].as_str().unwrap().to_string();
    assert!(msg.contains("meta") || msg.contains("data"), "the error names what is missing: {msg}");
    let (status, body) = post(&url, "application/vnd.confluent.avro", &[0, 0, 0, 0x27, 0x0f, 1, 2]);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("schema id 9999 is not in the registry"), "{body}");
    let (status, body) = post(&url, "text/plain", b"hello");
    assert_eq!(status, 415, "an unsupported media type: {body}");
    assert!(body["error"].as_str().unwrap().contains("application/json"), "{body}");
    let dlq: usize = (0..2).map(|p| log.end_offset(topic::DLQ, p).unwrap() as usize).sum();
    assert_eq!(dlq, 3, "the conflicting and both undecodable bodies are kept");

    // The accepted order reaches its saga: the warehouse is asked to reserve stock.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(o) = node.projections.order("SO-HTTP-1").unwrap() {
            assert_eq!(o.status, waybill_projection::OrderStatus::Reserving, "{o:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the order never reached the projections");
        std::thread::sleep(Duration::from_millis(20));
    }
    node.shutdown();

    // On the embedded log the coordinator keeps no saga state snapshots unless told to
    // (`[coordinator] snapshots`): its state store is on the same volume as the log.
    let snapshots = |log: &dyn waybill_log::EventLog| -> Vec<waybill_log::StoredRecord> {
        (0..2).flat_map(|p| log.read(topic::SNAPSHOTS, p, 0, 10_000).unwrap()).collect()
    };
    assert!(snapshots(log.as_ref()).is_empty(), "no snapshot written by default on the embedded log");
    // Told to, a node whose state directory is gone restores from the journal and then
    // writes a snapshot generation holding the order's state.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    cfg.coordinator.snapshots = Some(true);
    let node = Node::start(&cfg, log.clone(), world::catalog()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let flow = loop {
        let found = snapshots(log.as_ref())
            .into_iter()
            .filter(|r| r.key == b"SO-HTTP-1")
            .find_map(|r| waybill_schema::snapshot::decode_flow_state(&r.value).ok());
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no snapshot of the order was written");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!flow.finished, "the order waits for its reservation");
    assert!(String::from_utf8_lossy(&flow.state).contains("SO-HTTP-1"));
    node.shutdown();
}
