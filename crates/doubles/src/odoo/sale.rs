//! `sale.order`: the `S00001` sequence, confirmation (creating the outgoing picking) and
//! the cancel wizard trap.

use serde_json::{Value, json};

use super::business::{flag, window_action};
use super::error::{OResult, OdooError};
use super::orm::Ctx;
use super::stock;
use super::store::{Rec, Store, as_f64, as_id};

pub(crate) fn before_create(store: &mut Store, model: &str, rec: &mut Rec, now: &str) -> OResult<()> {
    match model {
        "sale.order" => {
            if rec.get("partner_id").is_none_or(super::store::falsy) {
                return Err(OdooError::validation("The field 'Customer' (partner_id) is required on sale.order."));
            }
            let named = rec.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty() && n != "New");
            if !named {
                let n = store.next_seq("sale.order");
                rec.insert("name".into(), json!(format!("S{n:05}")));
            }
            rec.entry("state").or_insert(json!("draft"));
            rec.entry("date_order").or_insert(json!(now));
            if rec.get("partner_shipping_id").is_none_or(super::store::falsy) {
                let p = rec["partner_id"].clone();
                rec.insert("partner_shipping_id".into(), p);
            }
        }
        "sale.order.line" => {
            // The `accountable_required_fields` SQL constraint of sale.order.line.
            let Some(product) = rec.get("product_id").and_then(as_id) else {
                return Err(OdooError::validation("Missing required fields on accountable sale order line."));
            };
            rec.entry("product_uom_qty").or_insert(json!(1.0));
            if !rec.contains_key("price_unit") {
                rec.insert("price_unit".into(), json!(as_f64(&store.get("product.product", product, "list_price"))));
            }
            if !rec.contains_key("name") {
                rec.insert("name".into(), json!(store.display_name("product.product", product)));
            }
            rec.entry("qty_delivered").or_insert(json!(0.0));
        }
        _ => {
            if rec.get("order_id").is_none_or(super::store::falsy) {
                return Err(OdooError::validation(
                    "The field 'Sale Order' (order_id) is required on sale.order.cancel.",
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn action_confirm(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        let state = store.get("sale.order", id, "state");
        if !matches!(state.as_str(), Some("draft") | Some("sent")) {
            return Err(OdooError::user("Some orders are not in a state requiring confirmation."));
        }
    }
    for &id in ids {
        let now = store.now_string();
        store.set("sale.order", id, &[("state", json!("sale")), ("date_order", json!(now))]);
        let lines = store.children("sale.order.line", "order_id", id);
        let goods: Vec<i64> = lines
            .into_iter()
            .filter(|l| {
                let p = as_id(&store.get("sale.order.line", *l, "product_id")).unwrap_or(0);
                store.get("product.product", p, "type") != json!("service")
            })
            .collect();
        if goods.is_empty() {
            continue;
        }
        let order_name = store.get("sale.order", id, "name");
        let partner = store.get("sale.order", id, "partner_shipping_id");
        let moves: Vec<(i64, f64, Option<i64>)> = goods
            .iter()
            .map(|l| {
                let p = as_id(&store.get("sale.order.line", *l, "product_id")).unwrap_or(0);
                (p, as_f64(&store.get("sale.order.line", *l, "product_uom_qty")), Some(*l))
            })
            .collect();
        stock::new_picking(
            store,
            stock::NewPicking {
                code: "outgoing",
                origin: order_name,
                partner,
                sale_id: Some(id),
                purchase_id: None,
                backorder_id: None,
                return_id: None,
                moves,
                returned_moves: Vec::new(),
                purchase_lines: Vec::new(),
            },
        );
    }
    Ok(json!(true))
}

pub(crate) fn action_cancel(store: &mut Store, ids: &[i64], ctx: &Ctx) -> OResult<Value> {
    let needs_wizard = ids.iter().any(|id| store.get("sale.order", *id, "state") != json!("draft"));
    if needs_wizard && !flag(ctx, "disable_cancel_warning") {
        // 17+: a confirmed order opens the cancel wizard; nothing changes yet.
        let first = ids.first().copied().unwrap_or(0);
        return Ok(window_action(
            "Cancel Sales Order",
            "sale.order.cancel",
            None,
            "new",
            json!({"default_order_id": first}),
        ));
    }
    for &id in ids {
        let pickings = store.children("stock.picking", "sale_id", id);
        if pickings.iter().any(|p| store.get("stock.picking", *p, "state") == json!("done")) {
            return Err(OdooError::user(format!(
                "You cannot cancel {} because a delivery of it is already done; return the goods instead.",
                store.display_name("sale.order", id)
            )));
        }
        stock::cancel_pickings(store, &pickings)?;
        store.set("sale.order", id, &[("state", json!("cancel"))]);
    }
    Ok(json!(true))
}

pub(crate) fn action_draft(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if store.get("sale.order", id, "state") == json!("cancel") {
            store.set("sale.order", id, &[("state", json!("draft"))]);
        }
    }
    Ok(json!(true))
}

/// `sale.order.cancel.action_cancel`: cancels its order with the warning disabled.
pub(crate) fn wizard_cancel(store: &mut Store, ids: &[i64], ctx: &Ctx) -> OResult<Value> {
    let mut ctx = ctx.clone();
    ctx.insert("disable_cancel_warning".into(), json!(true));
    let orders: Vec<i64> = ids.iter().filter_map(|w| as_id(&store.get("sale.order.cancel", *w, "order_id"))).collect();
    action_cancel(store, &orders, &ctx)
}
