//! The Odoo adapter against the Odoo double over real HTTP: each command does what an
//! integrator would do by hand in Odoo, once, whatever goes wrong on the way.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use waybill_connect::client::Timeouts;
use waybill_connect::odoo::{Odoo, OdooAdapter, Protocol};
use waybill_connect::secret::SecretFile;
use waybill_connect::{Adapter, Call, Failure};
use waybill_domain::command::{ConfirmShipment, InvoiceLine, IssueCreditNote, PostInvoice};
use waybill_domain::event::{LotQty, ShippedLine};
use waybill_domain::{Command, CommandBody, CommandMeta, EventBody, Money, Qty, System, Timestamp};
use waybill_doubles::odoo::{OdooConfig, OdooDouble, OdooVersion};
use waybill_doubles::{Fault, Match, Times};

struct World {
    double: OdooDouble,
    adapter: OdooAdapter,
    key_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn world(version: OdooVersion) -> World {
    let double = OdooDouble::start(OdooConfig::version(version));
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("odoo.key");
    std::fs::write(&key_file, format!("{}\n", double.api_key("admin").unwrap())).unwrap();
    let protocol =
        if version == OdooVersion::V19 { Protocol::Json2 } else { Protocol::JsonRpc { login: "admin".into() } };
    let odoo = Odoo::new(
        &double.url(),
        double.db(),
        protocol,
        Arc::new(SecretFile::open(&key_file).unwrap()),
        Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(5) },
    );
    let adapter = OdooAdapter::new(Arc::new(odoo), System::Odoo);
    seed(&double);
    World { double, adapter, key_file, _dir: dir }
}

fn seed(d: &OdooDouble) {
    d.create("res.partner", json!({"name": "Azure Interior", "ref": "C0001"}));
    d.create(
        "product.product",
        json!({"default_code": "BOLT-M8", "name": "Bolt M8", "tracking": "none", "type": "consu"}),
    );
    d.create(
        "product.product",
        json!({"default_code": "PAINT-5L", "name": "Paint 5 l", "tracking": "lot", "type": "consu"}),
    );
    d.create(
        "product.product",
        json!({"default_code": "DRILL-X", "name": "Drill X", "tracking": "serial", "type": "consu"}),
    );
}

fn product(d: &OdooDouble, code: &str) -> i64 {
    d.records("product.product").iter().find(|p| p["default_code"] == json!(code)).unwrap()["id"].as_i64().unwrap()
}

/// A confirmed order `name` with 10 bolts, 4 l of paint (lot-tracked) and 2 drills (serials).
fn confirmed_order(w: &World, name: &str) {
    let partner = w.double.records("res.partner")[0]["id"].as_i64().unwrap();
    let line = |code: &str, qty: f64| json!([0, 0, {"product_id": product(&w.double, code), "product_uom_qty": qty, "price_unit": 2.5}]);
    let id = w.double.create(
        "sale.order",
        json!({"name": name, "partner_id": partner, "order_line": [line("BOLT-M8", 10.0), line("PAINT-5L", 4.0), line("DRILL-X", 2.0)]}),
    );
    call_jsonrpc(&w.double, "sale.order", "action_confirm", json!([[id]]));
}

fn call_jsonrpc(d: &OdooDouble, model: &str, method: &str, args: serde_json::Value) -> serde_json::Value {
    let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
        "args": [d.db(), d.uid("admin").unwrap(), "admin", model, method, args, {}]}});
    let mut resp = ureq::post(format!("{}/jsonrpc", d.url()))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert!(v.get("error").is_none(), "the double refused the set-up call: {v}");
    v["result"].clone()
}

fn command(key: &str, target: System, body: CommandBody) -> Command {
    Command {
        meta: CommandMeta {
            idempotency_key: key.into(),
            saga_id: "o2f:SO000001".into(),
            correlation_key: "SO000001".into(),
            target,
            caused_by: "test".into(),
            issued_at: Timestamp(0),
        },
        body,
    }
}

fn deliver(w: &World, c: &Command) -> Result<Vec<waybill_domain::InboundEvent>, Failure> {
    w.adapter.deliver(c, Call { encoded: &[], trace: None, attempt: 1, throttle: None })
}

fn shipment(lines: Vec<ShippedLine>, tracking: &str, id: &str) -> Command {
    command(
        &format!("confirm-shipment:{id}"),
        System::Odoo,
        CommandBody::ConfirmShipment(ConfirmShipment {
            order_ref: "SO000001".into(),
            shipment_id: id.into(),
            tracking_ref: tracking.into(),
            lines,
        }),
    )
}

fn shipped(sku: &str, qty: i64, lots: &[(&str, i64)], serials: &[&str]) -> ShippedLine {
    ShippedLine {
        line_no: 10,
        sku: sku.into(),
        quantity: Qty(qty),
        lots: lots.iter().map(|(l, q)| LotQty { lot: l.to_string(), quantity: Qty(*q) }).collect(),
        serials: serials.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn a_shipment_validates_its_delivery_with_lots_and_serials_once_and_odoo_keeps_the_rest_on_a_backorder() {
    let w = world(OdooVersion::V17);
    confirmed_order(&w, "SO000001");
    // First shipment: 6 bolts, 4 l of paint from two lots, one drill.
    let first = shipment(
        vec![
            shipped("BOLT-M8", 6000, &[], &[]),
            shipped("PAINT-5L", 4000, &[("L-1", 2500), ("L-2", 1500)], &[]),
            shipped("DRILL-X", 1000, &[], &["SN-1"]),
        ],
        "1Z0001",
        "SHP-1",
    );
    deliver(&w, &first).expect("validated");
    deliver(&w, &first).expect("a repeat finds the validated delivery");
    let done = w.double.count("stock.picking", &[("origin", "SO000001"), ("state", "done")]);
    assert_eq!(done, 1, "validated once");
    let pickings = w.double.records("stock.picking");
    let backorder = pickings
        .iter()
        .find(|p| p["state"] != json!("done") && p["origin"] == json!("SO000001"))
        .expect("Odoo kept the rest on a backorder");
    assert!(backorder["backorder_id"].is_array(), "it is a backorder of the first delivery: {backorder}");
    // The second shipment validates the backorder.
    let second =
        shipment(vec![shipped("BOLT-M8", 4000, &[], &[]), shipped("DRILL-X", 1000, &[], &["SN-2"])], "1Z0002", "SHP-2");
    deliver(&w, &second).expect("the backorder validated");
    assert_eq!(w.double.count("stock.picking", &[("origin", "SO000001"), ("state", "done")]), 2);
}

#[test]
fn a_lot_tracked_product_shipped_without_its_lot_is_odoo_s_refusal_in_odoo_s_words() {
    let w = world(OdooVersion::V17);
    confirmed_order(&w, "SO000001");
    let c = shipment(vec![shipped("PAINT-5L", 4000, &[], &[])], "1Z0003", "SHP-1");
    match deliver(&w, &c) {
        Err(Failure::Refused { reason }) => assert!(reason.contains("Lot/Serial"), "{reason}"),
        other => panic!("expected Odoo's refusal, got {other:?}"),
    }
}

#[test]
fn an_unknown_outcome_is_re_read_not_re_done() {
    let w = world(OdooVersion::V17);
    confirmed_order(&w, "SO000001");
    // Odoo validates, then the connection drops before the answer.
    w.double.inject(Match::call("stock.picking", "button_validate"), Fault::CommitThenDrop, Times::Next(1));
    let c = shipment(
        vec![
            shipped("BOLT-M8", 10_000, &[], &[]),
            shipped("PAINT-5L", 4000, &[("L-1", 4000)], &[]),
            shipped("DRILL-X", 2000, &[], &["SN-1", "SN-2"]),
        ],
        "1Z0004",
        "SHP-1",
    );
    let first = deliver(&w, &c).unwrap_err();
    assert!(matches!(first, Failure::Unknown { .. }), "{first:?}");
    deliver(&w, &c).expect("the retry finds the validated delivery");
    assert_eq!(w.double.count("stock.picking", &[("origin", "SO000001"), ("state", "done")]), 1);

    // The same for an invoice: created and posted, answer lost.
    w.double.inject(Match::call("account.move", "action_post"), Fault::CommitThenDrop, Times::Next(1));
    let inv = invoice("SHP-1");
    assert!(matches!(deliver(&w, &inv), Err(Failure::Unknown { .. })));
    let events = deliver(&w, &inv).expect("the retry finds the posted invoice");
    assert_eq!(
        w.double.count("account.move", &[("ref", "SHP-1"), ("move_type", "out_invoice")]),
        1,
        "one invoice per shipment"
    );
    let EventBody::InvoicePosted(p) = &events[0].body else { panic!("{events:?}") };
    assert!(p.invoice_number.starts_with("INV/"), "{}", p.invoice_number);
    assert_eq!(
        events[0].meta.event_id, "odoo:InvoicePosted:invoice:SHP-1",
        "deterministic: the same answer id both times"
    );
}

fn invoice(shipment: &str) -> Command {
    command(
        &format!("invoice:{shipment}"),
        System::Finance,
        CommandBody::PostInvoice(PostInvoice {
            order_ref: "SO000001".into(),
            shipment_id: shipment.into(),
            customer_ref: "C0001".into(),
            currency: "EUR".into(),
            lines: vec![InvoiceLine {
                line_no: 10,
                sku: "BOLT-M8".into(),
                quantity: Qty(10_000),
                unit_price: Money(250),
                tax_code: "VAT20".into(),
            }],
            total: Money(2500),
        }),
    )
}

#[test]
fn a_validation_error_is_a_refusal_with_odoo_s_message_and_the_same_key_succeeds_after_the_fix() {
    let w = world(OdooVersion::V18);
    w.double.fail_validation("account.move", "action_post", "The invoice date is in a locked period.");
    let c = invoice("SHP-9");
    match deliver(&w, &c) {
        Err(Failure::Refused { reason }) => assert!(reason.contains("locked period"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    w.double.clear_faults();
    let events = deliver(&w, &c).expect("posted after the fix");
    assert!(matches!(events[0].body, EventBody::InvoicePosted(_)));
    assert_eq!(
        w.double.count("account.move", &[("ref", "SHP-9")]),
        1,
        "the draft of the first attempt was posted, not a second invoice"
    );
}

#[test]
fn a_credit_note_goes_through_the_reversal_wizard_once() {
    let w = world(OdooVersion::V17);
    let events = deliver(&w, &invoice("SHP-1")).unwrap();
    let EventBody::InvoicePosted(p) = &events[0].body else { panic!() };
    let credit = command(
        "credit:RCV-1",
        System::Finance,
        CommandBody::IssueCreditNote(IssueCreditNote {
            order_ref: "SO000001".into(),
            receipt_id: "RCV-1".into(),
            invoice_number: p.invoice_number.clone(),
            lines: vec![InvoiceLine {
                line_no: 10,
                sku: "BOLT-M8".into(),
                quantity: Qty(2000),
                unit_price: Money(250),
                tax_code: "VAT20".into(),
            }],
            restocking_fee: Money(100),
            total: Money(400),
        }),
    );
    w.double.inject(Match::call("account.move", "action_post"), Fault::CommitThenDrop, Times::Next(1));
    assert!(deliver(&w, &credit).is_err());
    let events = deliver(&w, &credit).unwrap();
    let EventBody::CreditNoteIssued(c) = &events[0].body else { panic!("{events:?}") };
    assert!(c.credit_note_number.starts_with("RINV/"), "{}", c.credit_note_number);
    assert_eq!(w.double.count("account.move", &[("move_type", "out_refund")]), 1, "one credit note per receipt");
    let refund = w.double.records("account.move").into_iter().find(|m| m["move_type"] == json!("out_refund")).unwrap();
    assert!(refund["reversed_entry_id"].is_array(), "made by the reversal wizard: {refund}");
}

#[test]
fn a_rotated_json2_key_is_read_again_without_a_restart() {
    let w = world(OdooVersion::V19);
    deliver(&w, &invoice("SHP-1")).expect("JSON-2 works with the first key");
    w.double.rotate_key("admin", "second-key");
    let c = invoice("SHP-2");
    assert!(matches!(deliver(&w, &c), Err(Failure::Unauthorized { .. })), "the old key is refused");
    std::fs::write(&w.key_file, "second-key\n").unwrap();
    deliver(&w, &c).expect("the new key from the file");
}

#[test]
fn an_expired_session_logs_in_again() {
    let w = world(OdooVersion::V17);
    deliver(&w, &invoice("SHP-1")).expect("logged in once");
    w.double.inject(Match::any(), Fault::SessionExpired, Times::Next(1));
    let c = invoice("SHP-2");
    assert!(matches!(deliver(&w, &c), Err(Failure::Unauthorized { .. })), "Odoo's code 100 is a login problem");
    deliver(&w, &c).expect("the retry logs in again and goes through");
    assert_eq!(w.double.count("account.move", &[("ref", "SHP-2")]), 1);
}

#[test]
fn a_product_on_two_lines_is_delivered_line_by_line_not_twice() {
    let w = world(OdooVersion::V17);
    let partner = w.double.records("res.partner")[0]["id"].as_i64().unwrap();
    let bolt = product(&w.double, "BOLT-M8");
    let line = |qty: f64| json!([0, 0, {"product_id": bolt, "product_uom_qty": qty, "price_unit": 1.0}]);
    let id = w
        .double
        .create("sale.order", json!({"name": "SO000001", "partner_id": partner, "order_line": [line(3.0), line(2.0)]}));
    call_jsonrpc(&w.double, "sale.order", "action_confirm", json!([[id]]));
    let mut second = shipped("BOLT-M8", 2000, &[], &[]);
    second.line_no = 20;
    deliver(&w, &shipment(vec![shipped("BOLT-M8", 3000, &[], &[]), second], "1Z0009", "SHP-1")).expect("validated");
    let mut moved: Vec<f64> = w.double.records("stock.move").iter().map(|m| m["quantity"].as_f64().unwrap()).collect();
    moved.sort_by(f64::total_cmp);
    assert_eq!(moved, [2.0, 3.0], "each move carries its own line's quantity");
}
