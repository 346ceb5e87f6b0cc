//! Purchase orders as events: an order confirmed in Odoo (`purchase`) is
//! `PurchaseOrderConfirmed`; one locked (`done`) or cancelled after its confirmation is
//! `PurchaseOrderClosed`. Both are keyed `po:<name>`.
//!
//! How Odoo's fields become the event's:
//! - `supplier_ref` is the vendor's `ref` (`res.partner`), or, when the vendor has none,
//!   its display name as `partner_id` reads (`[id, "Acme Fasteners GmbH"]`); the name
//!   keeps vendors without references apart, where an id would mean nothing to a buyer.
//!   `supplier_name` is that display name.
//! - `line_no` is the line's position × 10 in Odoo's order (`sequence, id`), not its
//!   `sequence`: Odoo gives every line sequence 10 unless the buyer drags lines around, so
//!   the sequence does not tell lines apart. The Odoo adapter maps a receipt's
//!   `po_line_no` back to the line by the same rule, as sale orders' lines are.
//! - `quantity` is `product_qty`, `unit_price` `price_unit` in minor units, `currency`
//!   the name of `currency_id` (EUR when the order has none), `expected_at` the order's
//!   `date_planned` (its `date_order` when empty).
//!
//! A locked order was confirmed first: when the poller reads an order locked or cancelled
//! whose confirmation it cannot have read (confirmed after the cursor, or inside the
//! overlap window without a read in state `purchase`), it writes `PurchaseOrderConfirmed`
//! before `PurchaseOrderClosed`, so the saga never hears of a closing before its order.
//! An order whose confirmation was read gets only the closing. A cancelled order is
//! closed only if it had been confirmed (`date_approve` is set): a request for quotation
//! cancelled as a draft was never Waybill's business.
//!
//! Locked means state `done`, as Odoo 17 has it (`button_done`). Two limits follow:
//! a company with "Lock Confirmed Orders" (`po_lock = 'lock'`) has Odoo lock every order
//! as it confirms it, so there every confirmed order would be closed at once; and from
//! 18.0 Odoo locks with a `locked` flag (`button_lock`) and keeps state `purchase`, which
//! this poller does not read (the field does not exist on 17, so it cannot be asked for
//! unconditionally).

use serde_json::{Value, json};
use waybill_domain::purchase::{self as po, PurchaseLine, PurchaseOrderClosed, PurchaseOrderConfirmed};
use waybill_domain::{EventBody, EventMeta, InboundEvent, SourceRef, System, Timestamp};

use super::{Cursor, Poller, ids, parse, shift};
use crate::odoo::{id_of, m2o, m2o_name, money_of, qty_of, str_field};

pub(super) const ORDER_FIELDS: &[&str] = &[
    "id",
    "name",
    "state",
    "partner_id",
    "partner_ref",
    "currency_id",
    "company_id",
    "write_date",
    "date_order",
    "date_approve",
    "date_planned",
];

const LINE_FIELDS: &[&str] = &["id", "order_id", "sequence", "product_id", "product_qty", "price_unit"];

impl Poller {
    /// The events of `orders`, read after `cursor`.
    pub(super) fn purchase_events(&self, orders: &[Value], cursor: &Cursor) -> Result<Vec<InboundEvent>, String> {
        let confirmed: Vec<i64> = orders.iter().filter(|o| was_confirmed(o)).map(id_of).collect();
        let lines = if confirmed.is_empty() {
            Vec::new()
        } else {
            self.search_read(
                "purchase.order.line",
                json!([["order_id", "in", confirmed]]),
                LINE_FIELDS,
                "order_id asc, sequence asc, id asc",
                10_000,
            )?
        };
        let products = self.names("product.product", &ids(&lines, "product_id"), "default_code")?;
        let refs = self.names("res.partner", &ids(orders, "partner_id"), "ref")?;
        let mut out = Vec::new();
        for o in orders.iter().filter(|o| was_confirmed(o)) {
            let name = str_field(o, "name").unwrap_or_default();
            let id = id_of(o);
            let occurred_at = str_field(o, "write_date").and_then(|d| parse(&d)).unwrap_or_else(Timestamp::now);
            let meta = |kind: &str| EventMeta {
                event_id: format!("odoo:{kind}:{name}"),
                source: SourceRef::new(System::Odoo, format!("purchase.order/{id}")),
                correlation_key: po::correlation_key(&name),
                occurred_at,
                actor: None,
            };
            let vendor = m2o(&o["partner_id"]);
            let supplier_name = m2o_name(&o["partner_id"]).unwrap_or_default();
            let supplier_ref = vendor.and_then(|v| refs.get(&v).cloned()).unwrap_or_else(|| supplier_name.clone());
            let lines: Vec<PurchaseLine> = lines
                .iter()
                .filter(|l| m2o(&l["order_id"]) == Some(id))
                .enumerate()
                .map(|(k, l)| {
                    let product = m2o(&l["product_id"]).unwrap_or_default();
                    PurchaseLine {
                        line_no: (k as i32 + 1) * 10,
                        sku: products.get(&product).cloned().unwrap_or_else(|| format!("odoo-product-{product}")),
                        quantity: qty_of(&l["product_qty"]),
                        unit_price: money_of(&l["price_unit"]),
                    }
                })
                .collect();
            let expected_at = str_field(o, "date_planned")
                .or_else(|| str_field(o, "date_order"))
                .and_then(|d| parse(&d))
                .unwrap_or(occurred_at);
            let state = str_field(o, "state");
            let closing = matches!(state.as_deref(), Some("done") | Some("cancel"));
            let overlap = self.cfg.overlap.as_secs() as i64;
            if closing && confirmation_read(cursor, o, overlap) {
                out.push(closed(meta("po-closed"), &name, state.as_deref()));
                continue;
            }
            out.push(InboundEvent {
                meta: meta("po"),
                body: EventBody::PurchaseOrderConfirmed(PurchaseOrderConfirmed {
                    po_ref: name.clone(),
                    supplier_ref,
                    supplier_name,
                    currency: m2o_name(&o["currency_id"]).unwrap_or_else(|| "EUR".into()),
                    company: self.cfg.company(o),
                    lines,
                    expected_at,
                }),
            });
            if closing {
                out.push(closed(meta("po-closed"), &name, state.as_deref()));
            }
        }
        Ok(out)
    }
}

fn closed(meta: EventMeta, name: &str, state: Option<&str>) -> InboundEvent {
    let reason = match state {
        Some("done") => "locked in Odoo: nothing more is expected on it",
        _ => "cancelled in Odoo",
    };
    InboundEvent {
        meta,
        body: EventBody::PurchaseOrderClosed(PurchaseOrderClosed { po_ref: name.to_string(), reason: reason.into() }),
    }
}

/// Whether an earlier poll read order `o` in state `purchase`: it was confirmed before
/// the overlap window (every poll since read it), or inside the window and the cursor
/// saw it confirmed. Confirmed after the cursor, it cannot have been read.
fn confirmation_read(cursor: &Cursor, o: &Value, overlap_secs: i64) -> bool {
    let Some(approved) = str_field(o, "date_approve") else { return false };
    if cursor.write_date.is_empty() || approved > cursor.write_date {
        return false;
    }
    if approved < shift(&cursor.write_date, -overlap_secs) {
        return true;
    }
    let id = id_of(o);
    cursor.seen.iter().any(|(seen, mark)| *seen == id && mark.ends_with(" purchase"))
}

/// Whether Odoo confirmed the order at some point: it is confirmed or locked, or it was
/// cancelled after its confirmation (`date_approve` stays set).
fn was_confirmed(o: &Value) -> bool {
    match str_field(o, "state").as_deref() {
        Some("purchase") | Some("done") => true,
        Some("cancel") => str_field(o, "date_approve").is_some(),
        _ => false,
    }
}
