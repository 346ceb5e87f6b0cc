//! Procure-to-receive against the Odoo double over JSON-RPC: purchase orders the buyer
//! confirms and locks in Odoo come in once, and receipts are validated and sent back to
//! the vendor once, whatever goes wrong on the way.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use waybill_connect::client::Timeouts;
use waybill_connect::odoo::poller::{Poller, PollerConfig};
use waybill_connect::odoo::{Odoo, OdooAdapter, Protocol};
use waybill_connect::secret::SecretFile;
use waybill_connect::target::{Limits, Target};
use waybill_connect::{Adapter, Call, Failure};
use waybill_domain::event::LotQty;
use waybill_domain::purchase::{ReceiptPosting, ReceivedLine};
use waybill_domain::{Command, CommandBody, CommandMeta, EventBody, InboundEvent, Qty, System, Timestamp, topic};
use waybill_doubles::odoo::{OdooConfig, OdooDouble, OdooVersion};
use waybill_doubles::{Fault, Match, Times};
use waybill_log::EventLog;
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};

struct World {
    double: OdooDouble,
    odoo: Arc<Odoo>,
    log: Arc<dyn EventLog>,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    world_of(OdooVersion::V17)
}

fn world_of(version: OdooVersion) -> World {
    let double = OdooDouble::start(OdooConfig::version(version));
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("odoo.key");
    std::fs::write(&key, double.api_key("admin").unwrap()).unwrap();
    let odoo = Arc::new(Odoo::new(
        &double.url(),
        double.db(),
        if version == OdooVersion::V19 { Protocol::Json2 } else { Protocol::JsonRpc { login: "admin".into() } },
        Arc::new(SecretFile::open(&key).unwrap()),
        Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(5) },
    ));
    let options = EmbeddedOptions { fsync: FsyncPolicy::Never, ..EmbeddedOptions::default() };
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log"), options).unwrap());
    log.ensure_topic(&topic::inbound(System::Odoo), 2).unwrap();
    log.ensure_topic(topic::CONNECT_STATE, 1).unwrap();
    double.create("res.partner", json!({"name": "Acme Fasteners GmbH", "ref": "V-ACME"}));
    double.create("res.partner", json!({"name": "Nordic Tools AB"}));
    double.create("product.product", json!({"default_code": "BOLT-M8", "name": "Bolt M8", "type": "consu"}));
    double.create("product.product", json!({"default_code": "PAINT-5L", "name": "Paint 5 l", "tracking": "lot"}));
    double.create("product.product", json!({"default_code": "DRILL-X", "name": "Drill X", "tracking": "serial"}));
    double.create("res.currency", json!({"name": "EUR"}));
    World { double, odoo, log, _dir: dir }
}

fn poller(w: &World) -> Poller {
    let limits = Limits {
        rate: 0.0,
        burst: 1,
        breaker_threshold: 5,
        breaker_cool_down: Duration::from_secs(1),
        unavailable_after: Duration::from_secs(60),
    };
    let cfg = PollerConfig {
        connector: "odoo".into(),
        interval: Duration::from_millis(50),
        page: 3,
        overlap: Duration::from_secs(5),
        warehouse: "WH-MAIN".into(),
        companies: Default::default(),
    };
    Poller::new(cfg, w.odoo.clone(), Arc::new(Target::new("odoo", limits)), w.log.clone()).unwrap()
}

fn drain(p: &mut Poller) {
    while p.poll().unwrap() > 0 {}
}

fn events(w: &World) -> Vec<InboundEvent> {
    let t = topic::inbound(System::Odoo);
    (0..2)
        .flat_map(|p| w.log.read(&t, p, 0, 100_000).unwrap())
        .map(|r| waybill_schema::decode_event(&r.value).unwrap())
        .collect()
}

/// A JSON-RPC call as the buyer's Odoo client makes it.
fn rpc(d: &OdooDouble, model: &str, method: &str, args: Value) -> Result<Value, Value> {
    let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
        "args": [d.db(), d.uid("admin").unwrap(), "admin", model, method, args, {}]}});
    let mut resp = ureq::post(format!("{}/jsonrpc", d.url()))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let v: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    match v.get("error") {
        Some(e) => Err(e.clone()),
        None => Ok(v["result"].clone()),
    }
}

fn id_of(d: &OdooDouble, model: &str, field: &str, value: &str) -> i64 {
    d.records(model).iter().find(|r| r[field] == json!(value)).unwrap()["id"].as_i64().unwrap()
}

/// The buyer creates and confirms a purchase order of `vendor` for 10 bolts, 4 l of
/// paint (lot-tracked) and 2 drills (serials); answers (id, name).
fn confirmed_po(w: &World, vendor: &str) -> (i64, String) {
    let d = &w.double;
    let line = |code: &str, qty: f64, price: f64| json!([0, 0, {"product_id": id_of(d, "product.product", "default_code", code), "product_qty": qty, "price_unit": price}]);
    let po = rpc(
        d,
        "purchase.order",
        "create",
        json!([{"partner_id": id_of(d, "res.partner", "name", vendor), "partner_ref": "ACME-SO-7",
                "currency_id": id_of(d, "res.currency", "name", "EUR"), "date_planned": "2026-12-08 09:00:00",
                "order_line": [line("BOLT-M8", 10.0, 0.35), line("PAINT-5L", 4.0, 12.9), line("DRILL-X", 2.0, 89.0)]}]),
    )
    .unwrap()
    .as_i64()
    .unwrap();
    rpc(d, "purchase.order", "button_confirm", json!([[po]])).unwrap();
    let name = d.record("purchase.order", po).unwrap()["name"].as_str().unwrap().to_string();
    (po, name)
}

fn adapter(w: &World) -> OdooAdapter {
    OdooAdapter::new(w.odoo.clone(), System::Odoo)
}

fn command(key: &str, body: CommandBody) -> Command {
    let po = match &body {
        CommandBody::ValidateReceipt(p) | CommandBody::ReturnToVendor(p) => p.po_ref.clone(),
        _ => unreachable!("receipt commands only"),
    };
    Command {
        meta: CommandMeta {
            idempotency_key: key.into(),
            saga_id: format!("p2r:{po}"),
            correlation_key: format!("po:{po}"),
            target: System::Odoo,
            caused_by: "test".into(),
            issued_at: Timestamp(0),
        },
        body,
    }
}

fn deliver(w: &World, c: &Command) -> Result<Vec<InboundEvent>, Failure> {
    adapter(w).deliver(c, Call { encoded: &[], trace: None, attempt: 1, throttle: None })
}

fn received(po_line_no: i32, sku: &str, qty: i64, lots: &[(&str, i64)], serials: &[&str]) -> ReceivedLine {
    ReceivedLine {
        po_line_no,
        asn_line_no: None,
        sku: sku.into(),
        quantity: Qty(qty),
        damaged: Qty(0),
        lots: lots.iter().map(|(l, q)| LotQty { lot: l.to_string(), quantity: Qty(*q) }).collect(),
        serials: serials.iter().map(|s| s.to_string()).collect(),
        bin: "A-01".into(),
    }
}

fn posting(po: &str, receipt: &str, lines: Vec<ReceivedLine>) -> ReceiptPosting {
    ReceiptPosting { po_ref: po.into(), receipt_id: receipt.into(), lines }
}

fn qty_received(w: &World, po: i64) -> Vec<f64> {
    let mut lines: Vec<Value> =
        w.double.records("purchase.order.line").into_iter().filter(|l| l["order_id"][0] == json!(po)).collect();
    lines.sort_by_key(|l| l["id"].as_i64());
    lines.iter().map(|l| l["qty_received"].as_f64().unwrap()).collect()
}

fn done_receipts(w: &World, po: &str) -> usize {
    w.double.count("stock.picking", &[("origin", po), ("picking_type_code", "incoming"), ("state", "done")])
}

#[test]
fn a_confirmed_purchase_order_comes_in_once_and_its_lock_closes_it_once() {
    let w = world();
    w.double.freeze_clock("2026-12-01 10:00:00");
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    assert_eq!(name, "P00001");
    let mut p = poller(&w);
    drain(&mut p);
    let first = events(&w);
    assert_eq!(first.len(), 1, "{first:?}");
    let e = &first[0];
    assert_eq!(
        (e.meta.event_id.as_str(), e.meta.correlation_key.as_str(), e.meta.source.id.as_str()),
        ("odoo:po:P00001", "po:P00001", format!("purchase.order/{po}").as_str())
    );
    let EventBody::PurchaseOrderConfirmed(c) = &e.body else { panic!("{e:?}") };
    assert_eq!(
        (c.supplier_ref.as_str(), c.supplier_name.as_str(), c.currency.as_str()),
        ("V-ACME", "Acme Fasteners GmbH", "EUR")
    );
    let lines: Vec<(i32, &str, i64, i64)> =
        c.lines.iter().map(|l| (l.line_no, l.sku.as_str(), l.quantity.0, l.unit_price.0)).collect();
    assert_eq!(lines, [(10, "BOLT-M8", 10_000, 35), (20, "PAINT-5L", 4000, 1290), (30, "DRILL-X", 2000, 8900)]);
    assert_eq!(waybill_connect::odoo::poller::format(c.expected_at), "2026-12-08 09:00:00");

    // Polled again, and after a restart: nothing new.
    drain(&mut p);
    drop(p);
    let mut p = poller(&w);
    drain(&mut p);
    assert_eq!(events(&w).len(), 1);
    assert_eq!(p.cursor_of("purchase.order").map(|c| c.id), Some(po));

    // A vendor without a reference is told by its name; a draft is nobody's business yet.
    w.double.tick();
    let (_, nordic) = confirmed_po(&w, "Nordic Tools AB");
    let draft = rpc(&w.double, "purchase.order", "create", json!([{"partner_id": 1}])).unwrap();
    assert!(draft.is_i64());
    w.double.tick();
    rpc(&w.double, "purchase.order", "button_done", json!([[po]])).unwrap();
    drain(&mut p);
    drop(p);
    let mut p = poller(&w);
    drain(&mut p);
    let all = events(&w);
    let ids: Vec<&str> = all.iter().map(|e| e.meta.event_id.as_str()).collect();
    assert_eq!(ids.iter().filter(|i| **i == "odoo:po-closed:P00001").count(), 1, "{ids:?}");
    assert_eq!(ids.iter().filter(|i| **i == "odoo:po:P00001").count(), 1, "the lock repeats no confirmation: {ids:?}");
    let nordic = all.iter().find(|e| e.meta.event_id == format!("odoo:po:{nordic}")).expect("the second order");
    let EventBody::PurchaseOrderConfirmed(n) = &nordic.body else { panic!("{nordic:?}") };
    assert_eq!(n.supplier_ref, "Nordic Tools AB");
    let closed = all.iter().find(|e| e.meta.event_id == "odoo:po-closed:P00001").unwrap();
    let EventBody::PurchaseOrderClosed(c) = &closed.body else { panic!("{closed:?}") };
    assert_eq!(c.po_ref, "P00001");
    assert!(c.reason.contains("locked"), "{}", c.reason);
    assert!(!ids.iter().any(|i| i.contains("P00003")), "the draft came in: {ids:?}");
}

#[test]
fn a_cancelled_order_is_closed_only_if_it_was_confirmed_and_one_closed_unseen_comes_in_confirmed_first() {
    let w = world();
    w.double.freeze_clock("2026-12-01 10:00:00");
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    let quote = rpc(&w.double, "purchase.order", "create", json!([{"partner_id": 1}])).unwrap();
    rpc(&w.double, "purchase.order", "button_cancel", json!([[quote]])).unwrap();
    let mut p = poller(&w);
    drain(&mut p);
    // Cancelled in the same second as the confirmation was read.
    rpc(&w.double, "purchase.order", "button_cancel", json!([[po]])).unwrap();
    drain(&mut p);
    // Confirmed and locked between two polls: the confirmation was never read.
    w.double.tick();
    let (other, other_name) = confirmed_po(&w, "Nordic Tools AB");
    rpc(&w.double, "purchase.order", "button_done", json!([[other]])).unwrap();
    drain(&mut p);
    let ids: Vec<String> = events(&w).into_iter().map(|e| e.meta.event_id).collect();
    assert_eq!(
        ids,
        [
            format!("odoo:po:{name}"),
            format!("odoo:po-closed:{name}"),
            format!("odoo:po:{other_name}"),
            format!("odoo:po-closed:{other_name}")
        ]
    );
}

#[test]
fn a_receipt_validates_the_incoming_picking_once_with_its_lots_and_serials_and_answers_the_same_twice() {
    let w = world();
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    let first = command(
        "receipt:R-1",
        CommandBody::ValidateReceipt(posting(
            &name,
            "R-1",
            vec![
                received(10, "BOLT-M8", 6000, &[], &[]),
                received(20, "PAINT-5L", 4000, &[("L-1", 2500), ("L-2", 1500)], &[]),
                received(30, "DRILL-X", 1000, &[], &["SN-1"]),
            ],
        )),
    );
    // Odoo validates, then the connection drops before the answer: the outcome is unknown.
    w.double.inject(Match::call("stock.picking", "button_validate"), Fault::CommitThenDrop, Times::Next(1));
    let unknown = deliver(&w, &first).unwrap_err();
    assert!(matches!(unknown, Failure::Unknown { .. }), "{unknown:?}");
    let answer = deliver(&w, &first).expect("the retry finds the validated receipt");
    let again = deliver(&w, &first).expect("and so does a redelivery");
    assert_eq!(done_receipts(&w, &name), 1, "one picking validated for one receipt");
    assert_eq!(answer.len(), 1);
    assert_eq!((&answer[0].meta.event_id, &answer[0].body), (&again[0].meta.event_id, &again[0].body));
    assert_eq!(answer[0].meta.event_id, "odoo:ReceiptValidated:receipt:R-1");
    assert_eq!(answer[0].meta.correlation_key, format!("po:{name}"));
    let EventBody::ReceiptValidated(v) = &answer[0].body else { panic!("{answer:?}") };
    assert_eq!(
        (v.po_ref.as_str(), v.receipt_id.as_str(), v.picking_ref.as_str()),
        (name.as_str(), "R-1", "WH/IN/00001")
    );
    assert_eq!(qty_received(&w, po), [6.0, 4.0, 1.0]);
    let mut lots: Vec<String> =
        w.double.records("stock.lot").iter().map(|l| l["name"].as_str().unwrap().to_string()).collect();
    lots.sort();
    assert_eq!(lots, ["L-1", "L-2", "SN-1"]);

    // The rest arrives: Odoo's backorder is validated, not the done picking again.
    let second = command(
        "receipt:R-2",
        CommandBody::ValidateReceipt(posting(
            &name,
            "R-2",
            vec![received(10, "BOLT-M8", 4000, &[], &[]), received(30, "DRILL-X", 1000, &[], &["SN-2"])],
        )),
    );
    let answer = deliver(&w, &second).expect("the backorder validated");
    let EventBody::ReceiptValidated(v) = &answer[0].body else { panic!("{answer:?}") };
    assert_eq!(v.picking_ref, "WH/IN/00002");
    assert_eq!(done_receipts(&w, &name), 2);
    assert_eq!(qty_received(&w, po), [10.0, 4.0, 2.0]);
}

#[test]
fn a_refused_receipt_reads_in_odoo_s_words_and_changes_nothing() {
    let w = world();
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    let c = command(
        "receipt:R-1",
        CommandBody::ValidateReceipt(posting(&name, "R-1", vec![received(20, "PAINT-5L", 4000, &[], &[])])),
    );
    match deliver(&w, &c) {
        Err(Failure::Refused { reason }) => {
            assert!(
                reason.contains("You need to supply a Lot/Serial number for products [PAINT-5L] Paint 5 l."),
                "{reason}"
            )
        }
        other => panic!("expected Odoo's refusal, got {other:?}"),
    }
    assert_eq!(done_receipts(&w, &name), 0);
    assert_eq!(qty_received(&w, po), [0.0, 0.0, 0.0]);

    // A cancelled order has no receipt to validate: refused, saying why.
    rpc(&w.double, "purchase.order", "button_cancel", json!([[po]])).unwrap();
    let c = command(
        "receipt:R-2",
        CommandBody::ValidateReceipt(posting(&name, "R-2", vec![received(10, "BOLT-M8", 1000, &[], &[])])),
    );
    match deliver(&w, &c) {
        Err(Failure::Refused { reason }) => assert!(reason.contains("has no open receipt in Odoo"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_returned_receipt_goes_back_to_the_vendor_once_and_lowers_what_was_received() {
    let w = world();
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    let lines = vec![
        received(10, "BOLT-M8", 10_000, &[], &[]),
        received(20, "PAINT-5L", 4000, &[("L-1", 4000)], &[]),
        received(30, "DRILL-X", 2000, &[], &["SN-1", "SN-2"]),
    ];
    let back = command("rtv:R-1", CommandBody::ReturnToVendor(posting(&name, "R-1", lines.clone())));
    match deliver(&w, &back) {
        Err(Failure::Refused { reason }) => assert!(reason.contains("was never validated in Odoo"), "{reason}"),
        other => panic!("a receipt never validated cannot go back: {other:?}"),
    }
    deliver(&w, &command("receipt:R-1", CommandBody::ValidateReceipt(posting(&name, "R-1", lines)))).expect("received");
    assert_eq!(qty_received(&w, po), [10.0, 4.0, 2.0]);

    // The return is created, then the answer to its validation is lost.
    w.double.inject(Match::call("stock.picking", "button_validate"), Fault::CommitThenDrop, Times::Next(1));
    assert!(matches!(deliver(&w, &back), Err(Failure::Unknown { .. })));
    assert_eq!(deliver(&w, &back).expect("the retry finds the return done"), Vec::new(), "no answer event");
    deliver(&w, &back).expect("a redelivery too");
    let returns: Vec<Value> =
        w.double.records("stock.picking").into_iter().filter(|p| p["return_id"].is_array()).collect();
    assert_eq!(returns.len(), 1, "one return: {returns:?}");
    let r = &returns[0];
    assert_eq!((r["state"].as_str(), r["picking_type_code"].as_str()), (Some("done"), Some("outgoing")));
    assert_eq!(r["origin"], "Return of WH/IN/00001");
    assert_eq!(r["location_dest_id"][1], "Partners/Vendors");
    assert_eq!(qty_received(&w, po), [0.0, 0.0, 0.0], "everything went back");
}

#[test]
fn a_return_interrupted_after_the_wizard_is_completed_not_created_twice() {
    let w = world();
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    let lines = vec![received(10, "BOLT-M8", 10_000, &[], &[])];
    deliver(&w, &command("receipt:R-1", CommandBody::ValidateReceipt(posting(&name, "R-1", lines.clone()))))
        .expect("received");
    // The wizard creates the return; validating it fails on a lock timeout.
    w.double.inject(Match::call("stock.picking", "button_validate"), Fault::LockTimeout, Times::Next(1));
    let back = command("rtv:R-1", CommandBody::ReturnToVendor(posting(&name, "R-1", lines)));
    let err = deliver(&w, &back).unwrap_err();
    assert!(matches!(err, Failure::Transient { .. }), "{err:?}");
    deliver(&w, &back).expect("the open return is validated");
    let returns = w.double.count_where("stock.picking", json!([["return_id", "!=", false]]));
    assert_eq!(returns, 1);
    assert_eq!(qty_received(&w, po), [0.0, 0.0, 0.0]);
}

#[test]
fn over_json2_a_receipt_and_its_return_go_through_the_same_way() {
    let w = world_of(OdooVersion::V19);
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    let lines = vec![
        received(10, "BOLT-M8", 10_000, &[], &[]),
        received(20, "PAINT-5L", 4000, &[("L-9", 4000)], &[]),
        received(30, "DRILL-X", 2000, &[], &["SN-8", "SN-9"]),
    ];
    let receipt = command("receipt:R-1", CommandBody::ValidateReceipt(posting(&name, "R-1", lines.clone())));
    let answer = deliver(&w, &receipt).expect("validated over JSON-2");
    let EventBody::ReceiptValidated(v) = &answer[0].body else { panic!("{answer:?}") };
    assert_eq!(v.picking_ref, "WH/IN/00001");
    assert_eq!(qty_received(&w, po), [10.0, 4.0, 2.0]);
    let incoming = w.double.count("stock.picking", &[("origin", name.as_str()), ("picking_type_code", "incoming")]);
    assert_eq!(incoming, 1, "everything arrived: no backorder");
    deliver(&w, &command("rtv:R-1", CommandBody::ReturnToVendor(posting(&name, "R-1", lines)))).expect("returned");
    assert_eq!(qty_received(&w, po), [0.0, 0.0, 0.0]);
}

#[test]
fn an_over_delivery_is_received_in_full_and_damaged_goods_stay_on_the_backorder() {
    let w = world();
    let (po, name) = confirmed_po(&w, "Acme Fasteners GmbH");
    let mut bolts = received(10, "BOLT-M8", 12_000, &[], &[]);
    let mut paint = received(20, "PAINT-5L", 3000, &[("L-1", 3000)], &[]);
    paint.damaged = Qty(1000);
    bolts.asn_line_no = Some(1);
    let lines = vec![bolts, paint, received(30, "DRILL-X", 2000, &[], &["SN-1", "SN-2"])];
    deliver(&w, &command("receipt:R-1", CommandBody::ValidateReceipt(posting(&name, "R-1", lines))))
        .expect("validated");
    assert_eq!(qty_received(&w, po), [12.0, 3.0, 2.0], "accepted goods only, the extra bolts included");
    let open: Vec<Value> = w
        .double
        .records("stock.picking")
        .into_iter()
        .filter(|p| p["origin"] == json!(name) && p["state"] == json!("assigned"))
        .collect();
    assert_eq!(open.len(), 1, "Odoo still expects the damaged litre: {open:?}");
}
