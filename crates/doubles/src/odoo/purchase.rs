//! `purchase.order`: the `P00001` sequence, confirmation (creating the incoming picking,
//! one move per line, `origin` = the order's name), cancellation, and locking
//! (`button_done`). What the order has received (`qty_received`) follows its incoming
//! pickings and returns as they are validated (in `stock.rs`).

use serde_json::{Value, json};

use super::error::{OResult, OdooError};
use super::stock;
use super::store::{Rec, Store, as_f64, as_id, falsy};

pub(crate) fn before_create(store: &mut Store, model: &str, rec: &mut Rec, now: &str) -> OResult<()> {
    if model == "purchase.order" {
        if rec.get("partner_id").is_none_or(falsy) {
            return Err(OdooError::validation("The field 'Vendor' (partner_id) is required on purchase.order."));
        }
        let named = rec.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty() && n != "New");
        if !named {
            // purchase's own sequence (`purchase.order`, prefix P, padding 5).
            let n = store.next_seq("purchase.order");
            rec.insert("name".into(), json!(format!("P{n:05}")));
        }
        rec.entry("state").or_insert(json!("draft"));
        rec.entry("priority").or_insert(json!("0"));
        rec.entry("date_order").or_insert(json!(now));
        rec.entry("date_planned").or_insert(json!(now));
        return Ok(());
    }
    // purchase.order.line
    let Some(order) = rec.get("order_id").and_then(as_id) else {
        return Err(OdooError::validation(
            "The field 'Order Reference' (order_id) is required on purchase.order.line.",
        ));
    };
    let Some(product) = rec.get("product_id").and_then(as_id) else {
        return Err(OdooError::validation("Missing required fields on accountable purchase order line."));
    };
    rec.entry("sequence").or_insert(json!(10));
    rec.entry("product_qty").or_insert(json!(1.0));
    if !rec.contains_key("price_unit") {
        rec.insert("price_unit".into(), json!(as_f64(&store.get("product.product", product, "list_price"))));
    }
    if !rec.contains_key("name") {
        rec.insert("name".into(), json!(store.display_name("product.product", product)));
    }
    if !rec.contains_key("date_planned") {
        rec.insert("date_planned".into(), store.get("purchase.order", order, "date_planned"));
    }
    rec.entry("qty_received").or_insert(json!(0.0));
    Ok(())
}

/// The order's lines in Odoo's order (`sequence, id`).
fn lines(store: &Store, order: i64) -> Vec<i64> {
    let mut lines = store.children("purchase.order.line", "order_id", order);
    lines.sort_by_key(|l| (store.get("purchase.order.line", *l, "sequence").as_i64().unwrap_or(10), *l));
    lines
}

/// `purchase.order.button_confirm`. As in Odoo, an order not in `draft` or `sent` is
/// skipped without an error (`if order.state not in ['draft', 'sent']: continue`):
/// confirming it again changes nothing and creates no second receipt.
pub(crate) fn button_confirm(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if !matches!(store.get("purchase.order", id, "state").as_str(), Some("draft") | Some("sent")) {
            continue;
        }
        let now = store.now_string();
        store.set("purchase.order", id, &[("state", json!("purchase")), ("date_approve", json!(now))]);
        let goods: Vec<i64> = lines(store, id)
            .into_iter()
            .filter(|l| {
                let p = as_id(&store.get("purchase.order.line", *l, "product_id")).unwrap_or(0);
                store.get("product.product", p, "type") != json!("service")
            })
            .collect();
        if goods.is_empty() {
            continue;
        }
        let moves = goods
            .iter()
            .map(|l| {
                let p = as_id(&store.get("purchase.order.line", *l, "product_id")).unwrap_or(0);
                (p, as_f64(&store.get("purchase.order.line", *l, "product_qty")), None)
            })
            .collect();
        stock::new_picking(
            store,
            stock::NewPicking {
                code: "incoming",
                origin: store.get("purchase.order", id, "name"),
                partner: store.get("purchase.order", id, "partner_id"),
                sale_id: None,
                purchase_id: Some(id),
                backorder_id: None,
                return_id: None,
                moves,
                returned_moves: Vec::new(),
                purchase_lines: goods,
            },
        );
    }
    Ok(json!(true))
}

/// `purchase.order.button_cancel`: a locked order must be unlocked first, and an order
/// with goods already received cannot be cancelled (they go back by a return); the
/// open receipts are cancelled with it.
pub(crate) fn button_cancel(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    let locked: Vec<String> = ids
        .iter()
        .filter(|id| store.get("purchase.order", **id, "state") == json!("done"))
        .map(|id| store.display_name("purchase.order", *id))
        .collect();
    if !locked.is_empty() {
        return Err(OdooError::user(format!(
            "Unable to cancel purchase order(s): {}. You must first unlock them.",
            locked.join(", ")
        )));
    }
    for &id in ids {
        let pickings = store.children("stock.picking", "purchase_id", id);
        let received = pickings.iter().any(|p| {
            store.get("stock.picking", *p, "state") == json!("done")
                && store.get("stock.picking", *p, "picking_type_code") == json!("incoming")
        });
        if received {
            return Err(OdooError::user(format!(
                "Unable to cancel purchase order {} as some receptions have already been done.",
                store.display_name("purchase.order", id)
            )));
        }
        let open: Vec<i64> = pickings
            .into_iter()
            .filter(|p| !matches!(store.get("stock.picking", *p, "state").as_str(), Some("done") | Some("cancel")))
            .collect();
        stock::cancel_pickings(store, &open)?;
        store.set("purchase.order", id, &[("state", json!("cancel"))]);
    }
    Ok(json!(true))
}

/// `purchase.order.button_done` (17.0): lock the order — state `done`, "Locked" in the
/// form; nothing more is expected on it. (From 18.0 Odoo locks with `button_lock`, a
/// `locked` flag beside state `purchase`; the double imitates 17.0 here.)
pub(crate) fn button_done(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        store.set("purchase.order", id, &[("state", json!("done")), ("priority", json!("0"))]);
    }
    Ok(json!(true))
}

/// `purchase.order.button_unlock`: back to `purchase`.
pub(crate) fn button_unlock(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if store.get("purchase.order", id, "state") == json!("done") {
            store.set("purchase.order", id, &[("state", json!("purchase"))]);
        }
    }
    Ok(json!(true))
}

/// `purchase.order.button_draft`: a cancelled order back to a draft request for quotation.
pub(crate) fn button_draft(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if store.get("purchase.order", id, "state") == json!("cancel") {
            store.set("purchase.order", id, &[("state", json!("draft"))]);
        }
    }
    Ok(json!(true))
}

pub(crate) fn before_unlink(store: &Store, id: i64) -> OResult<()> {
    if store.get("purchase.order", id, "state") != json!("cancel") {
        return Err(OdooError::user("In order to delete a purchase order, you must cancel it first."));
    }
    Ok(())
}
