//! Deliveries in Odoo: validating the outgoing picking of a shipment, and the backorder
//! note.

use serde_json::{Value, json};
use waybill_domain::Qty;
use waybill_domain::command::{BackorderRequest, ConfirmShipment};
use waybill_domain::event::LotQty;

use super::{Orm, OrmCall, id_of, m2o, products, qty_float, qty_of, str_field};
use crate::Failure;

/// Validates the order's open delivery with what the shipment carried.
///
/// Idempotent: a delivery of the order already validated with this shipment's tracking
/// reference means an earlier attempt got through, and nothing more is done. Otherwise
/// the open delivery (oldest first: after a partial shipment Odoo's backorder is the next
/// one) gets the shipped quantities, lots and serials on its move lines — rewritten, not
/// added, so a repeat after a crash mid-way writes the same — and the tracking reference,
/// then `button_validate` with `skip_backorder`, so Odoo keeps what was not shipped on a
/// backorder instead of opening its wizard. If Odoo answers with the backorder wizard
/// anyway, the wizard is run with `button_validate_picking_ids`, as Odoo's own client does.
pub(super) fn confirm_shipment(orm: &Orm<'_>, c: &ConfirmShipment) -> Result<(), Failure> {
    let done = orm.search_read(
        "stock.picking",
        json!([
            ["origin", "=", c.order_ref],
            ["picking_type_code", "=", "outgoing"],
            ["carrier_tracking_ref", "=", c.tracking_ref],
            ["state", "=", "done"]
        ]),
        &["id"],
        None,
    )?;
    if !done.is_empty() {
        return Ok(());
    }
    let open = open_pickings(orm, &c.order_ref, "outgoing")?;
    let Some(picking) = open.first() else {
        return Err(Failure::Refused {
            reason: format!(
                "order {} has no open delivery in Odoo to validate for shipment {} (was it cancelled, or validated by hand without tracking reference {}?)",
                c.order_ref, c.shipment_id, c.tracking_ref
            ),
        });
    };
    let picking_id = id_of(picking);
    let lines = orm.search_read(
        "stock.move.line",
        json!([["picking_id", "=", picking_id]]),
        &["id", "product_id", "move_id", "quantity", "location_id", "location_dest_id"],
        Some("id asc"),
    )?;
    let moves = orm.search_read(
        "stock.move",
        json!([["picking_id", "=", picking_id]]),
        &["id", "product_id", "product_uom_qty", "location_id", "location_dest_id", "sale_line_id"],
        Some("id asc"),
    )?;
    let codes: Vec<&str> = c.lines.iter().map(|l| l.sku.as_str()).collect();
    let catalog = if codes.is_empty() { Default::default() } else { products(orm, &codes)? };
    // Waybill numbers an order's lines 10, 20, … in Odoo's order (`sequence, id`), as the
    // poller released them: a move belongs to the shipped line of its sale line (when that
    // sale line is of the same product), so a product ordered on two lines is not shipped
    // twice.
    let sale_lines: Vec<(i64, i64)> =
        match orm.search_read("sale.order", json!([["name", "=", c.order_ref]]), &["id"], None)?.first() {
            Some(order) => orm
                .search_read(
                    "sale.order.line",
                    json!([["order_id", "=", id_of(order)]]),
                    &["id", "product_id"],
                    Some("sequence asc, id asc"),
                )?
                .iter()
                .map(|l| (id_of(l), m2o(&l["product_id"]).unwrap_or_default()))
                .collect(),
            None => Vec::new(),
        };
    let sale_line_of = |l: &waybill_domain::event::ShippedLine| {
        let product = catalog.get(&l.sku).map(|p| p.0)?;
        let k = usize::try_from(l.line_no / 10 - 1).ok()?;
        sale_lines.get(k).filter(|(_, p)| *p == product).map(|(id, _)| *id)
    };
    // What each move line should carry: (quantity, lot name) per product, in order.
    write_move_lines(orm, picking_id, &moves, &lines, |mv| {
        let product = m2o(&mv["product_id"]).unwrap_or_default();
        if c.lines.is_empty() {
            // A command without lines (written before they were carried): the whole demand.
            return vec![(qty_of(&mv["product_uom_qty"]).0 as f64 / 1000.0, None)];
        }
        c.lines
            .iter()
            .filter(|l| match (m2o(&mv["sale_line_id"]), sale_line_of(l)) {
                (Some(move_line), Some(line)) => move_line == line,
                _ => catalog.get(&l.sku).map(|p| p.0) == Some(product),
            })
            .flat_map(|l| wanted(l.quantity, &l.lots, &l.serials))
            .collect()
    })?;
    orm.write("stock.picking", &[picking_id], json!({"carrier_tracking_ref": c.tracking_ref}))?;
    match validate(orm, picking_id)?.as_deref() {
        Some("done") => Ok(()),
        other => Err(Failure::Transient {
            reason: format!(
                "delivery {} of order {} is {} after validation, not done",
                str_field(picking, "name").unwrap_or_default(),
                c.order_ref,
                other.unwrap_or("gone")
            ),
        }),
    }
}

/// What the move lines of one move should carry: (quantity, lot or serial name), in order.
pub(super) type Wanted = Vec<(f64, Option<String>)>;

/// The pickings of `origin` (an order's name) of type `code` (`incoming`, `outgoing`) not
/// done yet, oldest first: after a partial one Odoo's backorder is the next.
pub(super) fn open_pickings(orm: &Orm<'_>, origin: &str, code: &str) -> Result<Vec<Value>, Failure> {
    orm.search_read(
        "stock.picking",
        json!([
            ["origin", "=", origin],
            ["picking_type_code", "=", code],
            ["state", "in", ["confirmed", "waiting", "assigned"]]
        ]),
        &["id", "name", "state"],
        Some("id asc"),
    )
}

/// The move lines a line of goods needs: one per serial, one per lot, or one with the
/// quantity.
pub(super) fn wanted(quantity: Qty, lots: &[LotQty], serials: &[String]) -> Wanted {
    if !serials.is_empty() {
        serials.iter().map(|s| (1.0, Some(s.clone()))).collect()
    } else if !lots.is_empty() {
        lots.iter().map(|lot| (qty_float(lot.quantity), Some(lot.lot.clone()))).collect()
    } else {
        vec![(qty_float(quantity), None)]
    }
}

/// Writes on the move lines of `picking_id` what each of its moves should carry —
/// rewritten, not added: a move's existing lines get the wanted quantities in order, a
/// line is created only for what they cannot hold, and lines left over are set to zero —
/// so writing the same again after a crash leaves the same lines.
pub(super) fn write_move_lines(
    orm: &Orm<'_>,
    picking_id: i64,
    moves: &[Value],
    lines: &[Value],
    wanted_of: impl Fn(&Value) -> Wanted,
) -> Result<(), Failure> {
    for mv in moves {
        let product = m2o(&mv["product_id"]).unwrap_or_default();
        let wanted = wanted_of(mv);
        let existing: Vec<&Value> = lines.iter().filter(|l| m2o(&l["move_id"]) == Some(id_of(mv))).collect();
        for (i, (qty, lot)) in wanted.iter().enumerate() {
            let mut vals = json!({"quantity": qty, "picked": true});
            if let Some(lot) = lot {
                vals["lot_name"] = json!(lot);
            }
            match existing.get(i) {
                Some(line) => orm.write("stock.move.line", &[id_of(line)], vals)?,
                None => {
                    vals["move_id"] = json!(id_of(mv));
                    vals["picking_id"] = json!(picking_id);
                    vals["product_id"] = json!(product);
                    vals["location_id"] = json!(m2o(&mv["location_id"]));
                    vals["location_dest_id"] = json!(m2o(&mv["location_dest_id"]));
                    orm.create("stock.move.line", vals, None)?;
                }
            }
        }
        for line in existing.iter().skip(wanted.len()) {
            orm.write("stock.move.line", &[id_of(line)], json!({"quantity": 0.0, "picked": false}))?;
        }
    }
    Ok(())
}

/// `button_validate` with `skip_backorder`, so Odoo keeps what was not moved on a
/// backorder instead of opening its wizard; if Odoo answers with the backorder wizard
/// anyway, the wizard is run with `button_validate_picking_ids`, as Odoo's own client
/// does. Answers the picking's state read afterwards (`None` if it is gone).
pub(super) fn validate(orm: &Orm<'_>, picking_id: i64) -> Result<Option<String>, Failure> {
    let answer = orm.call(
        OrmCall::new("stock.picking", "button_validate").ids(&[picking_id]).context("skip_backorder", json!(true)),
    )?;
    if answer.get("res_model").and_then(Value::as_str) == Some("stock.backorder.confirmation") {
        let wizard = orm.create(
            "stock.backorder.confirmation",
            json!({"pick_ids": [[4, picking_id]]}),
            Some(json!({"button_validate_picking_ids": [picking_id]})),
        )?;
        orm.call(
            OrmCall::new("stock.backorder.confirmation", "process")
                .ids(&[wizard])
                .context("button_validate_picking_ids", json!([picking_id])),
        )?;
    }
    let state = orm.search_read("stock.picking", json!([["id", "=", picking_id]]), &["state"], None)?;
    Ok(state.first().and_then(|r| str_field(r, "state")))
}

/// Leaves a note in the order's chatter saying what is backordered and why, once: the
/// note carries the command's key, and an order that already has it gets no second one.
/// (Odoo itself creates the backorder picking when the delivery is validated with less
/// than ordered.)
pub(super) fn note_backorder(orm: &Orm<'_>, b: &BackorderRequest, key: &str) -> Result<(), Failure> {
    let order = orm.search_read("sale.order", json!([["name", "=", b.order_ref]]), &["id"], None)?;
    let Some(order) = order.first() else {
        return Err(Failure::Refused { reason: format!("sale order {} is not in Odoo", b.order_ref) });
    };
    let order_id = id_of(order);
    let marker = format!("[waybill {key}]");
    let noted = orm.search_read(
        "mail.message",
        json!([["model", "=", "sale.order"], ["res_id", "=", order_id], ["body", "ilike", marker]]),
        &["id"],
        None,
    )?;
    if !noted.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> =
        b.lines.iter().map(|l| format!("{} × {} (line {})", l.quantity, l.sku, l.line_no)).collect();
    let body = format!("Backordered by Waybill: {}. {marker}", lines.join(", "));
    orm.call(
        OrmCall::new("sale.order", "message_post")
            .ids(&[order_id])
            .param("body", json!(body))
            .param("message_type", json!("comment"))
            .param("subtype_xmlid", json!("mail.mt_note")),
    )?;
    Ok(())
}
