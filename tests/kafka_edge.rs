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
use waybill_domain::event::*;
use waybill_domain::{EventMeta, InboundEvent, Money, Qty, SourceRef, System, Timestamp, topic};
use waybill_saga::catalog::{Catalog, Tracking};
use waybill_saga::coordinator::headers;
use waybill_server::config::Config;
use waybill_server::node::{self, Node};

const ODOO: &str = "odoo-prod-token-00000001";
const WMS: &str = "wms-prod-token-000000002";

fn event(order: &str, id: &str, system: System, body: EventBody) -> InboundEvent {
    InboundEvent {
        meta: EventMeta {
            event_id: format!("{id}:{order}"),
            source: SourceRef::new(system, order),
            correlation_key: order.to_string(),
            occurred_at: Timestamp::now(),
            actor: None,
        },
        body,
    }
}

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
    let line = OrderLine {
        line_no: 1,
        sku: "PLAIN".into(),
        uom: "Units".into(),
        quantity: Qty::units(2),
        unit_price: Money(1250),
        tax_code: Some("VAT20".into()),
        requested_date: Timestamp(0),
        warehouse: "WH1".into(),
    };
    let released = EventBody::OrderReleased(OrderReleased {
        order_ref: order.into(),
        customer_ref: "C1".into(),
        ship_to: "C1-SHIP".into(),
        currency: "EUR".into(),
        client_order_ref: None,
        lines: vec![line],
    });
    post(addr, ODOO, &event(order, "odoo:release", System::Odoo, released));
    wait("released", &|| status(OrderStatus::Reserving));
    let lines = vec![LineReservation { line_no: 1, reserved: Qty::units(2), short: Qty::ZERO }];
    post(
        addr,
        WMS,
        &event(
            order,
            "wms:reserved",
            System::Wms,
            EventBody::StockReserved(StockReserved { order_ref: order.into(), lines }),
        ),
    );
    wait("reserved", &|| status(OrderStatus::Reserved));
    let accepted = ReleasedToWarehouse { order_ref: order.into(), wms_order_id: "W1".into() };
    post(addr, WMS, &event(order, "wms:accepted", System::Wms, EventBody::ReleasedToWarehouse(accepted)));
    wait("accepted", &|| status(OrderStatus::Released));
    let pick = PickConfirmed {
        order_ref: order.into(),
        pick_id: "P1".into(),
        lines: vec![PickedLine {
            line_no: 1,
            sku: "PLAIN".into(),
            quantity: Qty::units(2),
            lots: vec![],
            serials: vec![],
            bin: "A".into(),
        }],
        complete: true,
    };
    post(addr, WMS, &event(order, "wms:pick", System::Wms, EventBody::PickConfirmed(pick)));
    wait("picked", &|| status(OrderStatus::Picked));
    let issued = GoodsIssued {
        order_ref: order.into(),
        shipment_id: "SHP-K1".into(),
        lines: vec![ShippedLine {
            line_no: 1,
            sku: "PLAIN".into(),
            quantity: Qty::units(2),
            lots: vec![],
            serials: vec![],
        }],
        packages: vec![Package { package_id: "PKG-K1".into(), weight_grams: 500 }],
    };
    post(addr, WMS, &event(order, "wms:issued", System::Wms, EventBody::GoodsIssued(issued)));
    let posting = "inv:SHP-K1";
    wait("the invoice is held", &|| node.projections.posting(posting).unwrap().is_some());

    // A plain Kafka producer writes the forged approval to Odoo's inbound topic.
    let forged = InboundEvent {
        meta: EventMeta {
            event_id: "forged-kafka-1".into(),
            source: SourceRef::new(System::Odoo, "x"),
            correlation_key: order.into(),
            occurred_at: Timestamp::now(),
            actor: None,
        },
        body: EventBody::PostingApproved(PostingDecision {
            order_ref: order.into(),
            posting_id: posting.into(),
            expected_version: 1,
            actor: "mallory".into(),
            reason: "forged".into(),
            role: "admin".into(),
        }),
    };
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
