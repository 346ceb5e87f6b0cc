//! The forged approval of the security report, produced straight to
//! `waybill.inbound.odoo` on a real Kafka-protocol broker (Tansu) by a plain rdkafka
//! producer, as any client with write access to the topic could: the coordinator
//! dead-letters it as `forbidden` and the held posting stays held. The same order's
//! events come in through authenticated ingestion, so the node runs the whole edge on
//! the Kafka backend.

#[path = "support/tansu.rs"]
mod tansu;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use waybill_domain::{InboundEvent, SourceRef, System, topic};
use waybill_saga::catalog::{Catalog, Tracking};
use waybill_saga::coordinator::headers;
use waybill_server::config::Config;
use waybill_server::node::{self, Node};
use waybill_test_util::inbound as b;

const ODOO: &str = "odoo-prod-token-00000001";
const WMS: &str = "wms-prod-token-000000002";

fn post(addr: std::net::SocketAddr, token: &str, e: &InboundEvent) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent
        .post(&format!("http://{addr}/v1/events"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .send(&waybill_schema::encode_event_json(e)[..])
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 202, "{}: {}", e.body.name(), resp.body_mut().read_to_string().unwrap());
}

#[test]
fn a_forged_approval_produced_to_the_inbound_topic_is_dead_lettered_on_kafka() {
    let broker = tansu::Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = format!(
        "[[tokens]]\ntoken = \"{ODOO}\"\nidentity = \"odoo-prod\"\nsystem = \"odoo\"\n\n[[tokens]]\ntoken = \"{WMS}\"\nidentity = \"wms-prod\"\nsystem = \"wms\"\n"
    );
    std::fs::write(dir.path().join("tokens.toml"), tokens).unwrap();
    let toml = format!(
        "data_dir = {:?}\npartitions = 2\n[control]\nlisten = \"\"\ntokens_file = {:?}\n[ingest]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"\"\n[kafka]\n\"bootstrap.servers\" = {:?}\n\"producer.batch.num.messages\" = \"1\"\n",
        dir.path().join("data"),
        dir.path().join("tokens.toml"),
        broker.addr
    );
    std::fs::write(dir.path().join("waybill.toml"), toml).unwrap();
    let cfg = Config::load(Some(&dir.path().join("waybill.toml")), figment::Figment::new()).unwrap();
    let mut catalog =
        Catalog::default().with_product("PLAIN", "Units", Tracking::None).with_customer("C1").with_tax_code("VAT20");
    catalog.new_customers.insert("C1".into());
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log, catalog).unwrap();
    let addr = node.ingest_addr.unwrap();
    let order = "SO-K1";
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let status =
        |s: waybill_projection::OrderStatus| node.projections.order(order).unwrap().is_some_and(|o| o.status >= s);
    use waybill_projection::OrderStatus;
    post(addr, ODOO, &b::at_now(b::released(order, vec![b::line(1, "PLAIN", "Units", 2)])));
    wait("released", &|| status(OrderStatus::Reserving));
    post(addr, WMS, &b::at_now(b::reserved(order, &[(1, 2, 0)])));
    wait("reserved", &|| status(OrderStatus::Reserved));
    post(addr, WMS, &b::at_now(b::accepted(order)));
    wait("accepted", &|| status(OrderStatus::Released));
    post(addr, WMS, &b::at_now(b::pick(order, "P1", vec![b::picked(1, "PLAIN", 2)], true)));
    wait("picked", &|| status(OrderStatus::Picked));
    post(addr, WMS, &b::at_now(b::issued(order, "SHP-K1", &[(1, "PLAIN", 2)])));
    let posting = "inv:SHP-K1";
    wait("the invoice is held", &|| node.projections.posting(posting).unwrap().is_some());

    // A plain Kafka producer writes the forged approval to Odoo's inbound topic.
    let mut forged = b::at_now(b::decision(order, "forged-kafka-1", posting, 1, "mallory", "admin", true));
    forged.meta.source = SourceRef::new(System::Odoo, "x");
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    let value = waybill_schema::encode_event(&forged).unwrap();
    let t = topic::inbound(System::Odoo);
    producer
        .send(BaseRecord::<[u8], [u8]>::to(&t).key(order.as_bytes()).payload(&value[..]))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    // The coordinator refuses it: a forbidden dead letter naming the topic and the claim.
    let dead_letter = || {
        (0..2).flat_map(|p| node.log.read(topic::DLQ, p, 0, 1000).unwrap()).find_map(|r| {
            (r.header(headers::DLQ_KIND) == Some(&b"forbidden"[..]))
                .then(|| String::from_utf8_lossy(r.header(headers::DLQ_REASON).unwrap()).into_owned())
        })
    };
    wait("the forged approval is dead-lettered", &|| dead_letter().is_some());
    let reason = dead_letter().unwrap();
    assert!(reason.contains("arrived on waybill.inbound.odoo") && reason.contains("odoo:x"), "{reason}");
    let (_, p) = node.projections.posting(posting).unwrap().unwrap();
    assert_eq!((p.state.as_str(), p.decided_by), ("held", None));
    node.shutdown();
}
