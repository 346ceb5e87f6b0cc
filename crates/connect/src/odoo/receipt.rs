//! Receipts in Odoo: validating the incoming picking of a purchase order with what the
//! warehouse accepted, and sending a cancelled receipt's goods back to the vendor.
//!
//! Which picking holds which receipt: Odoo's `origin` on an incoming picking is the
//! purchase order's name (Odoo sets it on confirmation and its backorders copy it), and
//! `name` is Odoo's own sequence, so the receipt id goes in `carrier_tracking_ref`
//! ("Tracking Reference", from `stock_delivery`, which the delivery path already needs):
//! a plain text field searched by equality, not copied to the backorder Odoo creates for
//! what is still to come (`copy=False`), and meaning "which physical shipment this was"
//! on a receipt as much as on a delivery. The other candidates are worse: `note` is HTML
//! that Odoo sanitises and buyers edit, and `partner_ref` belongs to the order, not to one
//! of its receipts. A return to the vendor is found from its receipt by Odoo's own
//! `return_id`, so it needs no marker.

use std::collections::HashMap;

use serde_json::{Value, json};
use waybill_domain::purchase::{ReceiptPosting, ReceiptValidated, ReceivedLine};

use super::stock::{Wanted, validate, wanted, write_move_lines};
use super::{Orm, OrmCall, id_of, m2o, products, str_field};
use crate::Failure;

/// Validates the purchase order's open receipt with what receipt `p` accepted, and
/// answers the picking's name.
///
/// Idempotent on the receipt id: a done incoming picking of the order that carries it
/// means an earlier attempt got through (perhaps with an unknown outcome), and its name
/// is the answer — a second picking is never validated for one receipt. Otherwise the
/// open receipt (oldest first: after a partial receipt Odoo's backorder is the next one)
/// gets the accepted quantities, lots and serials on its move lines (damaged goods are
/// not received into stock), the receipt id, and `button_validate` with
/// `skip_backorder`; Odoo keeps what is still to come on a backorder.
pub(super) fn validate_receipt(orm: &Orm<'_>, p: &ReceiptPosting) -> Result<ReceiptValidated, Failure> {
    let answer = |picking: &Value| ReceiptValidated {
        po_ref: p.po_ref.clone(),
        receipt_id: p.receipt_id.clone(),
        picking_ref: str_field(picking, "name").unwrap_or_default(),
    };
    if let Some(done) = done_receipt(orm, p)? {
        return Ok(answer(&done));
    }
    let order = PoLines::read(orm, p)?;
    let open = super::stock::open_pickings(orm, &p.po_ref, "incoming")?;
    let Some(picking) = open.first() else {
        return Err(Failure::Refused {
            reason: format!(
                "purchase order {} has no open receipt in Odoo to validate receipt {} on (was the order cancelled or locked, or the goods received by hand?); receive them in Odoo by hand and resolve, or reopen the order",
                p.po_ref, p.receipt_id
            ),
        });
    };
    let picking_id = id_of(picking);
    let (moves, lines) = moves_and_lines(orm, picking_id)?;
    // Every accepted line must land on a move of this picking, or it would be lost.
    for l in p.lines.iter().filter(|l| l.quantity.0 > 0) {
        let line = order.line_of(l);
        if !moves.iter().any(|mv| order.owns(mv, line, l)) {
            return Err(Failure::Refused {
                reason: format!(
                    "receipt {} accepts {} × {} on line {} of purchase order {}, but Odoo's open receipt {} expects nothing more of it; receive the extra goods in Odoo by hand and resolve",
                    p.receipt_id,
                    l.quantity,
                    l.sku,
                    l.po_line_no,
                    p.po_ref,
                    str_field(picking, "name").unwrap_or_default()
                ),
            });
        }
    }
    write_move_lines(orm, picking_id, &moves, &lines, |mv| order.wanted(mv, &p.lines))?;
    orm.write("stock.picking", &[picking_id], json!({"carrier_tracking_ref": p.receipt_id}))?;
    match validate(orm, picking_id)?.as_deref() {
        Some("done") => Ok(answer(picking)),
        other => Err(Failure::Transient {
            reason: format!(
                "receipt {} of purchase order {} is {} after validation, not done",
                str_field(picking, "name").unwrap_or_default(),
                p.po_ref,
                other.unwrap_or("gone")
            ),
        }),
    }
}

/// Sends what receipt `p` accepted back to the vendor: Odoo's return wizard
/// (`stock.return.picking`) on the receipt's done picking, for the receipt's quantities,
/// then the return picking validated with its lots and serials.
///
/// Idempotent the same way: a done return of that picking (Odoo's `return_id`) means it
/// was sent back already; an open one (a crash after the wizard) is completed rather
/// than a second one created.
pub(super) fn return_to_vendor(orm: &Orm<'_>, p: &ReceiptPosting) -> Result<(), Failure> {
    let Some(receipt) = done_receipt(orm, p)? else {
        return Err(Failure::Refused {
            reason: format!(
                "receipt {} of purchase order {} was never validated in Odoo (no done receipt carries it as tracking reference), so nothing can be returned to the vendor; if the goods were received by hand, return them in Odoo and resolve",
                p.receipt_id, p.po_ref
            ),
        });
    };
    let receipt_id = id_of(&receipt);
    let returns = orm.search_read(
        "stock.picking",
        json!([["return_id", "=", receipt_id], ["state", "!=", "cancel"]]),
        &["id", "name", "state"],
        Some("id asc"),
    )?;
    if returns.iter().any(|r| str_field(r, "state").as_deref() == Some("done")) {
        return Ok(());
    }
    let order = PoLines::read(orm, p)?;
    let ret = match returns.first() {
        Some(open) => id_of(open),
        None => create_return(orm, &order, p, receipt_id)?,
    };
    let (moves, lines) = moves_and_lines(orm, ret)?;
    write_move_lines(orm, ret, &moves, &lines, |mv| order.wanted(mv, &p.lines))?;
    match validate(orm, ret)?.as_deref() {
        Some("done") => Ok(()),
        other => Err(Failure::Transient {
            reason: format!(
                "the return of receipt {} ({}) to the vendor of {} is {} after validation, not done",
                p.receipt_id,
                str_field(&receipt, "name").unwrap_or_default(),
                p.po_ref,
                other.unwrap_or("gone")
            ),
        }),
    }
}

/// Runs the return wizard on the done receipt picking for the receipt's quantities and
/// answers the return picking's id.
fn create_return(orm: &Orm<'_>, order: &PoLines, p: &ReceiptPosting, receipt: i64) -> Result<i64, Failure> {
    let ctx = json!({"active_id": receipt, "active_ids": [receipt], "active_model": "stock.picking"});
    let wizard = orm.create("stock.return.picking", json!({"picking_id": receipt}), Some(ctx))?;
    let receipt_moves = orm.search_read(
        "stock.move",
        json!([["picking_id", "=", receipt]]),
        &["id", "product_id", "purchase_line_id"],
        None,
    )?;
    let wizard_lines = orm.search_read(
        "stock.return.picking.line",
        json!([["wizard_id", "=", wizard]]),
        &["id", "move_id", "quantity"],
        Some("id asc"),
    )?;
    for wl in &wizard_lines {
        let mv = receipt_moves.iter().find(|m| Some(id_of(m)) == m2o(&wl["move_id"]));
        let qty: f64 = mv.map_or(0.0, |mv| order.wanted(mv, &p.lines).iter().map(|(q, _)| q).sum());
        orm.write("stock.return.picking.line", &[id_of(wl)], json!({"quantity": qty}))?;
    }
    let action = orm.call(OrmCall::new("stock.return.picking", "action_create_returns").ids(&[wizard]))?;
    action.get("res_id").and_then(Value::as_i64).ok_or_else(|| Failure::Transient {
        reason: format!(
            "Odoo's return wizard for receipt {} of {} answered {action}, not the return picking",
            p.receipt_id, p.po_ref
        ),
    })
}

/// The done incoming picking of the order that carries the receipt id.
fn done_receipt(orm: &Orm<'_>, p: &ReceiptPosting) -> Result<Option<Value>, Failure> {
    let done = orm.search_read(
        "stock.picking",
        json!([
            ["origin", "=", p.po_ref],
            ["picking_type_code", "=", "incoming"],
            ["carrier_tracking_ref", "=", p.receipt_id],
            ["state", "=", "done"]
        ]),
        &["id", "name"],
        Some("id asc"),
    )?;
    Ok(done.into_iter().next())
}

fn moves_and_lines(orm: &Orm<'_>, picking_id: i64) -> Result<(Vec<Value>, Vec<Value>), Failure> {
    let moves = orm.search_read(
        "stock.move",
        json!([["picking_id", "=", picking_id], ["state", "!=", "cancel"]]),
        &["id", "product_id", "product_uom_qty", "location_id", "location_dest_id", "purchase_line_id"],
        Some("id asc"),
    )?;
    let lines = orm.search_read(
        "stock.move.line",
        json!([["picking_id", "=", picking_id]]),
        &["id", "product_id", "move_id", "quantity"],
        Some("id asc"),
    )?;
    Ok((moves, lines))
}

/// The purchase order's lines in Odoo's order (`sequence, id`) — Waybill's line 10, 20,
/// … as the poller numbered them — and the products of the receipt's codes.
struct PoLines {
    /// (line id, product id), line 10 first.
    lines: Vec<(i64, i64)>,
    /// Product code → product id.
    products: HashMap<String, i64>,
}

impl PoLines {
    fn read(orm: &Orm<'_>, p: &ReceiptPosting) -> Result<PoLines, Failure> {
        let order = orm.search_read("purchase.order", json!([["name", "=", p.po_ref]]), &["id"], None)?;
        let Some(order) = order.first() else {
            return Err(Failure::Refused {
                reason: format!(
                    "purchase order {} is not in Odoo (receipt {}); check the order's name",
                    p.po_ref, p.receipt_id
                ),
            });
        };
        let lines = orm
            .search_read(
                "purchase.order.line",
                json!([["order_id", "=", id_of(order)]]),
                &["id", "product_id"],
                Some("sequence asc, id asc"),
            )?
            .iter()
            .map(|l| (id_of(l), m2o(&l["product_id"]).unwrap_or_default()))
            .collect();
        let codes: Vec<&str> = p.lines.iter().map(|l| l.sku.as_str()).collect();
        let products =
            if codes.is_empty() { HashMap::new() } else { products(orm, &codes)? }.into_iter().map(|(k, v)| (k, v.0));
        Ok(PoLines { lines, products: products.collect() })
    }

    /// The purchase order line a received line is on: the line at its number, if that
    /// line is of the received product.
    fn line_of(&self, l: &ReceivedLine) -> Option<i64> {
        let product = self.products.get(&l.sku)?;
        let k = usize::try_from(l.po_line_no / 10 - 1).ok()?;
        self.lines.get(k).filter(|(_, p)| p == product).map(|(id, _)| *id)
    }

    /// Whether move `mv` carries received line `l` (on purchase order line `line`): by its
    /// purchase line, or by product for a move without one.
    fn owns(&self, mv: &Value, line: Option<i64>, l: &ReceivedLine) -> bool {
        match (m2o(&mv["purchase_line_id"]), line) {
            (Some(move_line), Some(line)) => move_line == line,
            _ => self.products.get(&l.sku).copied() == m2o(&mv["product_id"]),
        }
    }

    /// What move `mv` should carry of `received`.
    fn wanted(&self, mv: &Value, received: &[ReceivedLine]) -> Wanted {
        received
            .iter()
            .filter(|l| l.quantity.0 > 0 && self.owns(mv, self.line_of(l), l))
            .flat_map(|l| wanted(l.quantity, &l.lots, &l.serials))
            .collect()
    }
}
