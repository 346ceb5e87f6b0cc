//! One order's trace, end to end, over real OTLP/gRPC: an in-process collector (the
//! opentelemetry-proto `TraceService`) receives what a node exports while an order is
//! ingested over HTTP, processed by the coordinator, answered by the simulated warehouse
//! (the connector) and processed again — and the spans form one trace with the right
//! parents across the Kafka hops (command record → connector → inbound record), with the
//! messaging attributes an SRE filters on.
//!
//! A second test follows an order through the connectors: the warehouse answers over HTTP,
//! finance is Odoo (the Odoo double), and each call is a client span under the delivery.
//!
//! `tracing` has one global subscriber per process: the collector and the exporter are
//! set up once ([`exporter`]) and each test picks its own trace by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use waybill_domain::{EventBody, SourceRef, System, Timestamp, topic};
use waybill_schema::samples;
use waybill_server::config::Config;
use waybill_server::demo::sim::{SimConfig, Simulator};
use waybill_server::demo::world;
use waybill_server::node::{self, Node};
use waybill_telemetry::{LogFormat, TRACEPARENT, TraceExport, TraceParent};

/// What the collector received: spans with their service name.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service =
                rs.resource.as_ref().and_then(|r| str_attr(&r.attributes, "service.name")).unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key)? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The in-process collector and the exporter sending to it, set up once per process.
fn exporter() -> (&'static Collector, &'static waybill_telemetry::TelemetryGuard) {
    static EXPORT: std::sync::OnceLock<(Collector, waybill_telemetry::TelemetryGuard, tokio::runtime::Runtime)> =
        std::sync::OnceLock::new();
    let (collector, guard, _) = EXPORT.get_or_init(|| {
        // The collector, on loopback.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let collector = Collector::default();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let collector_addr = listener.local_addr().unwrap();
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        // Export to it, as OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<port> would.
        let export = TraceExport {
            endpoint: Some(format!("http://{collector_addr}")),
            service_name: "waybill-test".into(),
            schedule_delay: Some(Duration::from_millis(100)),
        };
        let guard = waybill_telemetry::init_with(LogFormat::Text, "warn", export).unwrap();
        assert!(guard.exporting());
        (collector, guard, rt)
    });
    (collector, guard)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// The span tree of one trace, indented, for the failure messages and the test output.
fn tree(spans: &[&Span]) -> String {
    fn walk(out: &mut String, spans: &[&Span], parent: &[u8], depth: usize) {
        let mut children: Vec<&&Span> = spans.iter().filter(|s| s.parent_span_id == parent).collect();
        children.sort_by_key(|s| s.start_time_unix_nano);
        for s in children {
            let event = str_attr(&s.attributes, "waybill.event.type")
                .or_else(|| str_attr(&s.attributes, "waybill.command.type"))
                .unwrap_or_default();
            out.push_str(&format!("{}{} [{}] {}\n", "  ".repeat(depth), s.name, hex(&s.span_id), event));
            walk(out, spans, &s.span_id, depth + 1);
        }
    }
    let ids: Vec<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
    let mut out = String::new();
    let mut roots: Vec<&[u8]> =
        spans.iter().map(|s| s.parent_span_id.as_slice()).filter(|p| !ids.contains(p)).collect();
    roots.sort();
    roots.dedup();
    for r in roots {
        out.push_str(&format!("(parent {})\n", if r.is_empty() { "none".into() } else { hex(r) }));
        walk(&mut out, spans, r, 1);
    }
    out
}

#[test]
fn one_order_is_one_trace_across_ingestion_coordinator_and_connector() {
    let (collector, guard) = exporter();

    // A node with ingestion, and the simulated warehouse/carrier/finance answering commands.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config { data_dir: dir.path().to_path_buf(), partitions: 2, ..Config::default() };
    cfg.ingest.listen = "127.0.0.1:0".into();
    cfg.ingest.allow_anonymous = true;
    cfg.control.listen = String::new();
    cfg.metrics.listen = String::new();
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log.clone(), world::catalog()).unwrap();
    let calm = world::Mix::happy();
    let stop = Arc::new(AtomicBool::new(false));
    let mut sim = Simulator::new(
        log.clone(),
        SimConfig { orders: 0, seed: 7, rate: 0.0, mix: calm.clone(), pick_timeout: Duration::from_secs(60) },
    )
    .unwrap();
    let sim_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || sim.run(&stop).unwrap())
    };

    // Odoo releases an order over HTTP, from inside a trace of its own.
    let order = world::order(7, 0, &calm, Timestamp::now());
    let order_ref = order.order_ref.clone();
    let mut event = samples::events().into_iter().find(|e| e.body.name() == "OrderReleased").unwrap();
    event.meta.event_id = format!("odoo:release:{order_ref}");
    event.meta.correlation_key = order_ref.clone();
    event.meta.source = SourceRef::new(System::Odoo, order_ref.clone());
    event.body = EventBody::OrderReleased(order);
    let caller = TraceParent::new_root();
    let url = format!("http://{}/v1/events", node.ingest_addr.unwrap());
    let resp = agent()
        .post(&url)
        .header("Content-Type", "application/json")
        .header(TRACEPARENT, caller.to_string())
        .send(&waybill_schema::encode_event_json(&event)[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let trace_id = format!("{:032x}", caller.trace_id);

    // Wait until the warehouse's pick has been processed and its span exported.
    let is_pick = |s: &Span| {
        s.name == "waybill.inbound.wms process"
            && str_attr(&s.attributes, "waybill.event.type").as_deref() == Some("PickConfirmed")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !collector.spans().iter().any(|(_, s)| is_pick(s)) {
        assert!(Instant::now() < deadline, "no pick span exported; got {:#?}", collector.spans().len());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    sim_thread.join().unwrap();
    guard.flush();

    let all = collector.spans();
    assert!(all.iter().all(|(service, _)| service == "waybill-test"), "service.name comes from the export settings");
    let spans: Vec<&Span> = all.iter().map(|(_, s)| s).filter(|s| hex(&s.trace_id) == trace_id).collect();
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), *s)).collect();
    let shape = tree(&spans);
    println!("trace {trace_id}:\n{shape}");

    // The ingestion span continues the caller's trace.
    let ingest =
        spans.iter().find(|s| s.name == "waybill.ingest").unwrap_or_else(|| panic!("no ingest span:\n{shape}"));
    assert_eq!(ingest.kind, SpanKind::Server as i32);
    assert_eq!(hex(&ingest.parent_span_id), format!("{:016x}", caller.span_id), "ingest span's parent is the caller");
    assert_eq!(int_attr(&ingest.attributes, "http.response.status_code"), Some(202));
    assert_eq!(str_attr(&ingest.attributes, "messaging.destination.name").as_deref(), Some("waybill.inbound.odoo"));

    // The coordinator's processing of the release is its child, with the messaging attributes.
    let released = spans
        .iter()
        .find(|s| {
            s.name == "waybill.inbound.odoo process"
                && str_attr(&s.attributes, "waybill.event.type").as_deref() == Some("OrderReleased")
        })
        .unwrap_or_else(|| panic!("no coordinator span for the release:\n{shape}"));
    assert_eq!(released.parent_span_id, ingest.span_id, "coordinator continues the ingested record's trace");
    assert_eq!(released.kind, SpanKind::Consumer as i32);
    let a = &released.attributes;
    assert_eq!(str_attr(a, "messaging.system").as_deref(), Some("kafka"));
    assert_eq!(str_attr(a, "messaging.operation.type").as_deref(), Some("process"));
    assert_eq!(str_attr(a, "messaging.destination.name").as_deref(), Some("waybill.inbound.odoo"));
    assert_eq!(str_attr(a, "messaging.kafka.message.key").as_deref(), Some(order_ref.as_str()));
    assert_eq!(int_attr(a, "messaging.kafka.offset"), Some(0));
    let partition = waybill_log::partition_for(order_ref.as_bytes(), 2);
    assert_eq!(str_attr(a, "messaging.destination.partition.id"), Some(partition.to_string()));
    assert_eq!(str_attr(a, "waybill.order.ref").as_deref(), Some(order_ref.as_str()));
    assert_eq!(str_attr(a, "waybill.saga.id"), Some(format!("o2f:{order_ref}")));
    assert_eq!(str_attr(a, "waybill.saga.kind").as_deref(), Some("o2f"));

    // Every record written for the release carries that span's context.
    let released_tp = format!("00-{trace_id}-{}-01", hex(&released.span_id));
    let mut written = 0;
    for t in [topic::JOURNAL.to_string(), topic::commands(System::Wms)] {
        // Checkpoints have no key; every other record is the order's and carries a context.
        for r in log.read(&t, partition, 0, 1000).unwrap().iter().filter(|r| !r.key.is_empty()) {
            assert_eq!(r.key, order_ref.as_bytes());
            let tp = r.header(TRACEPARENT).unwrap_or_else(|| panic!("{t} record at {} has no traceparent", r.offset));
            written += usize::from(tp == released_tp.as_bytes());
        }
    }
    assert!(written >= 2, "the journal event(s) and the ReserveStock command carry {released_tp} ({written} found)");

    // The pick: coordinator span ← simulated warehouse handling the release command ←
    // coordinator span that issued it ← … ← the release ← ingestion. One trace throughout.
    let pick =
        spans.iter().find(|s| is_pick(s)).unwrap_or_else(|| panic!("pick span not in the order's trace:\n{shape}"));
    assert_eq!(pick.kind, SpanKind::Consumer as i32);
    assert_eq!(str_attr(&pick.attributes, "messaging.destination.name").as_deref(), Some("waybill.inbound.wms"));
    assert_eq!(str_attr(&pick.attributes, "waybill.order.ref").as_deref(), Some(order_ref.as_str()));
    let connector = by_id.get(&pick.parent_span_id).unwrap_or_else(|| panic!("pick's parent not exported:\n{shape}"));
    assert_eq!(connector.name, "waybill.commands.wms process", "{shape}");
    assert_eq!(connector.kind, SpanKind::Consumer as i32);
    assert_eq!(str_attr(&connector.attributes, "waybill.command.type").as_deref(), Some("ReleaseToWarehouse"));
    assert_eq!(str_attr(&connector.attributes, "messaging.system").as_deref(), Some("kafka"));
    let mut chain = vec![pick.name.clone()];
    let mut at = *pick;
    while let Some(parent) = by_id.get(&at.parent_span_id) {
        chain.push(parent.name.clone());
        at = parent;
    }
    assert_eq!(at.span_id, ingest.span_id, "the pick's ancestry reaches the ingestion span: {chain:?}\n{shape}");
    assert_eq!(
        chain,
        [
            "waybill.inbound.wms process",  // PickConfirmed
            "waybill.commands.wms process", // ReleaseToWarehouse, in the simulated warehouse
            "waybill.inbound.wms process",  // StockReserved
            "waybill.commands.wms process", // ReserveStock, in the simulated warehouse
            "waybill.inbound.odoo process", // OrderReleased
            "waybill.ingest",
        ],
        "{shape}"
    );

    node.shutdown();
}

/// An order through the connectors: released over HTTP ingestion, its reservation and
/// release answered by the warehouse over HTTP (the warehouse continues the trace it was
/// sent in its later posts), its invoice posted in Odoo (finance in Odoo Accounting) — and
/// the invoice's answer sits in the same trace as the release, under the delivery span
/// whose client spans are the calls to the Odoo double.
#[test]
fn one_order_is_one_trace_through_the_connectors_and_odoo() {
    use waybill_domain::event::*;
    use waybill_domain::{EventMeta, InboundEvent, Money, Qty};
    use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig, Received};
    use waybill_doubles::odoo::{OdooConfig, OdooDouble};
    use waybill_server::connectors::ConnectorSettings;

    let (collector, guard) = exporter();
    let odoo = OdooDouble::start(OdooConfig::default());
    odoo.create("res.partner", serde_json::json!({"name": "Customer 1", "ref": "C0001"}));
    odoo.create(
        "product.product",
        serde_json::json!({"default_code": "SKU-0000", "name": "SKU-0000", "type": "consu"}),
    );
    let event = |id: &str, system: System, order: &str, body: EventBody| InboundEvent {
        meta: EventMeta {
            event_id: id.into(),
            source: SourceRef::new(system, id),
            correlation_key: order.into(),
            occurred_at: Timestamp::now(),
            actor: None,
        },
        body,
    };
    let order_ref = "SO-TRACE-1".to_string();
    let line = OrderLine {
        line_no: 10,
        sku: "SKU-0000".into(),
        uom: "Units".into(),
        quantity: Qty::units(2),
        unit_price: Money(450),
        tax_code: Some("VAT20".into()),
        requested_date: Timestamp::now(),
        warehouse: "WH-MAIN".into(),
    };
    // The warehouse: reservations and releases answered at once; the pick and the goods
    // issue posted later by the test, continuing the trace the release came with.
    let pending: Arc<Mutex<Vec<(String, InboundEvent)>>> = Arc::default();
    let wms = {
        let (pending, order_ref, line) = (pending.clone(), order_ref.clone(), line.clone());
        HttpTarget::start(HttpTargetConfig::new(b"hmac".to_vec(), move |r: &Received| {
            let answer = |e: InboundEvent| {
                let v: serde_json::Value = serde_json::from_slice(&waybill_schema::encode_event_json(&e)).unwrap();
                Answer::ok(serde_json::json!({ "events": [v] }))
            };
            if r.key.starts_with("reserve:") {
                let lines = vec![LineReservation { line_no: 10, reserved: line.quantity, short: Qty::ZERO }];
                return answer(event(
                    "wms:reserved",
                    System::Wms,
                    &order_ref,
                    EventBody::StockReserved(StockReserved { order_ref: order_ref.clone(), lines }),
                ));
            }
            if r.key.starts_with("release:") {
                let tp = r.traceparent.clone().expect("the release carries its trace");
                let shipped = ShippedLine {
                    line_no: 10,
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    lots: vec![],
                    serials: vec![],
                };
                let pick = PickedLine {
                    line_no: 10,
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    lots: vec![],
                    serials: vec![],
                    bin: "B1".into(),
                };
                let mut p = pending.lock().unwrap();
                p.push((
                    tp.clone(),
                    event(
                        "wms:pick",
                        System::Wms,
                        &order_ref,
                        EventBody::PickConfirmed(PickConfirmed {
                            order_ref: order_ref.clone(),
                            pick_id: "PK-1".into(),
                            lines: vec![pick],
                            complete: true,
                        }),
                    ),
                ));
                p.push((
                    tp,
                    event(
                        "wms:issued",
                        System::Wms,
                        &order_ref,
                        EventBody::GoodsIssued(GoodsIssued {
                            order_ref: order_ref.clone(),
                            shipment_id: "SHP-TRACE-1".into(),
                            lines: vec![shipped],
                            packages: vec![Package { package_id: "PKG-1".into(), weight_grams: 500 }],
                        }),
                    ),
                ));
                return answer(event(
                    "wms:accepted",
                    System::Wms,
                    &order_ref,
                    EventBody::ReleasedToWarehouse(ReleasedToWarehouse {
                        order_ref: order_ref.clone(),
                        wms_order_id: "W-1".into(),
                    }),
                ));
            }
            Answer::Accepted
        }))
    };
    let carrier = HttpTarget::start(HttpTargetConfig::new(b"hmac".to_vec(), |_: &Received| Answer::Accepted));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "admin").unwrap();
    std::fs::write(dir.path().join("hmac"), "hmac").unwrap();
    let mut cfg = Config { data_dir: dir.path().join("data"), partitions: 2, ..Config::default() };
    cfg.ingest.listen = "127.0.0.1:0".into();
    cfg.ingest.allow_anonymous = true;
    cfg.control.listen = String::new();
    cfg.metrics.listen = String::new();
    cfg.connectors.insert(
        "finance".into(),
        ConnectorSettings {
            kind: "odoo".into(),
            system: "finance".into(),
            url: odoo.url(),
            database: odoo.db().into(),
            login: "admin".into(),
            credentials_file: Some(dir.path().join("key")),
            ..ConnectorSettings::default()
        },
    );
    for (name, target) in [("wms", &wms), ("carrier", &carrier)] {
        cfg.connectors.insert(
            name.into(),
            ConnectorSettings {
                kind: "http".into(),
                url: target.command_url(),
                hmac_secret_file: Some(dir.path().join("hmac")),
                ..ConnectorSettings::default()
            },
        );
    }
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log.clone(), world::catalog()).unwrap();
    let url = format!("http://{}/v1/events", node.ingest_addr.unwrap());
    let post = |e: &InboundEvent, tp: &str| {
        let resp = agent()
            .post(&url)
            .header("Content-Type", "application/json")
            .header(TRACEPARENT, tp)
            .send(&waybill_schema::encode_event_json(e)[..])
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    };
    let caller = TraceParent::new_root();
    let release = OrderReleased {
        order_ref: order_ref.clone(),
        customer_ref: "C0001".into(),
        ship_to: "C0001-SHIP".into(),
        currency: "EUR".into(),
        client_order_ref: None,
        lines: vec![line.clone()],
        company: None,
    };
    post(
        &event("odoo:release:SO-TRACE-1", System::Odoo, &order_ref, EventBody::OrderReleased(release)),
        &caller.to_string(),
    );
    let trace_id = format!("{:032x}", caller.trace_id);

    let is_invoice = |s: &Span| {
        s.name == "waybill.inbound.finance process"
            && str_attr(&s.attributes, "waybill.event.type").as_deref() == Some("InvoicePosted")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !collector.spans().iter().any(|(_, s)| is_invoice(s) && hex(&s.trace_id) == trace_id) {
        for (tp, e) in pending.lock().unwrap().drain(..) {
            post(&e, &tp);
        }
        assert!(Instant::now() < deadline, "no invoice answer in the order's trace");
        std::thread::sleep(Duration::from_millis(50));
    }
    guard.flush();
    assert_eq!(odoo.count("account.move", &[("ref", "SHP-TRACE-1"), ("state", "posted")]), 1);

    let all = collector.spans();
    let spans: Vec<&Span> = all.iter().map(|(_, s)| s).filter(|s| hex(&s.trace_id) == trace_id).collect();
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), *s)).collect();
    let shape = tree(&spans);
    println!("trace {trace_id}:\n{shape}");
    let invoice = spans.iter().find(|s| is_invoice(s)).unwrap();
    let delivery =
        by_id.get(&invoice.parent_span_id).unwrap_or_else(|| panic!("the answer's parent is not exported:\n{shape}"));
    assert_eq!(delivery.name, "waybill.commands.finance deliver", "{shape}");
    assert_eq!(str_attr(&delivery.attributes, "waybill.command.type").as_deref(), Some("PostInvoice"));
    assert_eq!(str_attr(&delivery.attributes, "waybill.connector").as_deref(), Some("finance"));
    // The calls to Odoo are client spans under the delivery, with HTTP's conventions.
    let calls: Vec<&&Span> = spans.iter().filter(|s| s.parent_span_id == delivery.span_id).collect();
    let post_call = calls
        .iter()
        .find(|s| s.name == "POST /jsonrpc account.move.action_post")
        .unwrap_or_else(|| panic!("no client span for action_post:\n{shape}"));
    assert_eq!(post_call.kind, SpanKind::Client as i32);
    let a = &post_call.attributes;
    assert_eq!(str_attr(a, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(str_attr(a, "url.full"), Some(format!("{}/jsonrpc", odoo.url())));
    assert_eq!(str_attr(a, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(int_attr(a, "http.response.status_code"), Some(200));
    assert!(calls.iter().any(|s| s.name == "POST /jsonrpc account.move.create"), "{shape}");
    // And the delivery descends from the release that came in over ingestion.
    let mut chain = vec![invoice.name.clone()];
    let mut at = *invoice;
    while let Some(parent) = by_id.get(&at.parent_span_id) {
        chain.push(parent.name.clone());
        at = parent;
    }
    assert_eq!(at.name, "waybill.ingest", "the ancestry reaches ingestion: {chain:?}\n{shape}");
    assert!(chain.contains(&"waybill.commands.wms deliver".to_string()), "{chain:?}");
    node.shutdown();
}
