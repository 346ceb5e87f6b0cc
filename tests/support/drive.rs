//! Driving a node in process as its source systems would: events appended to their
//! inbound topics stamped now (the node's timers run on the wall clock), waits on the read
//! models, and counts of what reached the log. Shared by the control-plane and workbench
//! tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use waybill_domain::{Command, InboundEvent, Money, System, topic};
use waybill_log::AppendBatch;
use waybill_projection::OrderStatus;
use waybill_saga::catalog::{Catalog, Tracking};
use waybill_server::ingest::{inbound_topic, record_for};
use waybill_server::node::Node;
use waybill_test_util::inbound::*;

/// The master data [`held_posting`] relies on: product `PLAIN` in units, customer `C1`
/// flagged as new (its invoices are held for approval), tax codes `VAT20` and `US-SALES`
/// (the French and American templates' in `deploy/entities/`).
pub fn catalog() -> Catalog {
    let mut c =
        Catalog::default().with_product("PLAIN", "Units", Tracking::None).with_customer("C1").with_tax_code("VAT20");
    c = c.with_tax_code("US-SALES");
    c.new_customers.insert("C1".into());
    c
}

/// Appends `e` to its inbound topic, stamped now.
pub fn append(node: &Node, e: InboundEvent) {
    let e = at_now(e);
    let value = waybill_schema::encode_event(&e).unwrap();
    let record = record_for(&inbound_topic(&e), &e, value);
    node.log.append(AppendBatch { records: vec![record], positions: vec![] }).unwrap();
}

/// Waits (up to 20 s) until `order` has reached `status` or a later one.
pub fn wait_status(node: &Node, order: &str, status: OrderStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = node.projections.order(order).unwrap();
        if o.as_ref().is_some_and(|o| o.status >= status) {
            return;
        }
        assert!(Instant::now() < deadline, "order {order} never reached {status}: {o:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Drives `order` to a held invoice for shipment `SHP-<order>` of `units` × `price` of
/// product `PLAIN` (minor units), requested by `wms:<order>`; returns the posting id.
pub fn held_posting(node: &Node, order: &str, units: i64, price: i64) -> String {
    held_posting_of(node, order, units, price, None)
}

/// An order of a legal entity, as Odoo releases it: `(company, currency, tax code)`.
pub type Company<'a> = (&'a str, &'a str, &'a str);

/// [`held_posting`] for an order of `company` (`None`: the order names none).
pub fn held_posting_of(node: &Node, order: &str, units: i64, price: i64, company: Option<Company<'_>>) -> String {
    append(node, released_by(order, units, price, company));
    wait_status(node, order, OrderStatus::Reserving);
    append(node, reserved(order, &[(1, units, 0)]));
    wait_status(node, order, OrderStatus::Reserved);
    append(node, accepted(order));
    wait_status(node, order, OrderStatus::Released);
    append(node, pick(order, &format!("P-{order}"), vec![picked(1, "PLAIN", units)], true));
    wait_status(node, order, OrderStatus::Picked);
    let shipment = format!("SHP-{order}");
    append(node, issued(order, &shipment, &[(1, "PLAIN", units)]));
    let posting = format!("inv:{shipment}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.projections.posting(&posting).unwrap().is_none() {
        assert!(Instant::now() < deadline, "posting {posting} was never held");
        std::thread::sleep(Duration::from_millis(10));
    }
    posting
}

/// Odoo releases `order` of `company`: `units` of `PLAIN` at `price`.
pub fn released_by(order: &str, units: i64, price: i64, company: Option<Company<'_>>) -> InboundEvent {
    let mut e = released(order, vec![priced_line(1, "PLAIN", "Units", units, Money(price))]);
    if let (Some((code, currency, tax)), waybill_domain::EventBody::OrderReleased(o)) = (company, &mut e.body) {
        o.company = Some(code.into());
        o.currency = currency.into();
        o.lines[0].tax_code = Some(tax.into());
    }
    e
}

/// Records of topic `t` whose value or headers mention `needle`.
pub fn log_records(node: &Node, t: &str, needle: &str) -> usize {
    let log = &node.log;
    let mut n = 0;
    for p in 0..log.partitions(t).unwrap() as i32 {
        for r in log.read(t, p, 0, 100_000).unwrap() {
            let text = String::from_utf8_lossy(&r.value);
            let in_headers = r.headers.iter().any(|h| String::from_utf8_lossy(&h.value).contains(needle));
            if text.contains(needle) || in_headers {
                n += 1;
            }
        }
    }
    n
}

/// The commands sent to `system` under idempotency key `key`.
pub fn commands_with_key(node: &Node, system: System, key: &str) -> Vec<Command> {
    let log = &node.log;
    let t = topic::commands(system);
    let mut out = Vec::new();
    for p in 0..log.partitions(&t).unwrap() as i32 {
        for r in log.read(&t, p, 0, 100_000).unwrap() {
            let c = waybill_schema::decode_command(&r.value).unwrap();
            if c.meta.idempotency_key == key {
                out.push(c);
            }
        }
    }
    out
}
