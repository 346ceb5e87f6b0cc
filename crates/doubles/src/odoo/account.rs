//! `account.move` posting and numbering, credit notes through `account.move.reversal`,
//! payments through `account.payment.register` and `account.payment`.

use serde_json::{Value, json};

use super::business::{ctx_ids, window_action};
use super::error::{OResult, OdooError};
use super::orm::{self, Ctx};
use super::store::{Rec, Store, as_f64, as_id, falsy};

const EPS: f64 = 0.005;

fn active_moves(store: &Store, rec: &Rec, ctx: &Ctx) -> Vec<i64> {
    if let Some(Value::Array(ids)) = rec.get("move_ids") {
        let ids: Vec<i64> = ids.iter().filter_map(as_id).collect();
        if !ids.is_empty() {
            return ids;
        }
    }
    let model_ok = ctx.get("active_model").is_none_or(|m| m == "account.move");
    if !model_ok {
        return Vec::new();
    }
    let mut ids = ctx_ids(ctx, "active_ids");
    if ids.is_empty() {
        ids = ctx_ids(ctx, "active_id");
    }
    ids.into_iter().filter(|i| store.exists("account.move", *i)).collect()
}

pub(crate) fn before_create(store: &mut Store, model: &str, rec: &mut Rec, ctx: &Ctx, today: &str) -> OResult<()> {
    match model {
        "account.move" => {
            rec.entry("move_type").or_insert(json!("entry"));
            rec.entry("state").or_insert(json!("draft"));
            rec.insert("name".into(), json!("/"));
            rec.entry("payment_state").or_insert(json!("not_paid"));
            rec.entry("date").or_insert(json!(today));
        }
        "account.move.line" => {
            rec.entry("quantity").or_insert(json!(1.0));
            if !rec.contains_key("name")
                && let Some(p) = rec.get("product_id").and_then(as_id)
            {
                rec.insert("name".into(), json!(store.display_name("product.product", p)));
            }
        }
        "account.move.reversal" => {
            let moves = active_moves(store, rec, ctx);
            if moves.is_empty() || moves.iter().any(|m| store.get("account.move", *m, "state") != json!("posted")) {
                return Err(OdooError::user("You can only reverse posted moves."));
            }
            rec.insert("move_ids".into(), json!(moves));
            rec.entry("date").or_insert(json!(today));
        }
        "account.payment.register" => {
            let moves = active_moves(store, rec, ctx);
            if moves.is_empty() || moves.iter().any(|m| store.get("account.move", *m, "state") != json!("posted")) {
                return Err(OdooError::user("You can only register payment for posted journal entries."));
            }
            let residual: f64 = moves.iter().map(|m| as_f64(&store.get("account.move", *m, "amount_residual"))).sum();
            if residual < EPS {
                return Err(OdooError::user(
                    "You can't register a payment because there is nothing left to pay on the selected journal items.",
                ));
            }
            let names: Vec<String> = moves.iter().map(|m| store.display_name("account.move", *m)).collect();
            rec.insert("move_ids".into(), json!(moves));
            rec.entry("amount").or_insert(json!(residual));
            rec.entry("payment_date").or_insert(json!(today));
            rec.entry("communication").or_insert(json!(names.join(" ")));
        }
        _ => {
            // account.payment
            rec.entry("state").or_insert(json!("draft"));
            rec.entry("payment_type").or_insert(json!("inbound"));
            rec.entry("partner_type").or_insert(json!("customer"));
            rec.entry("date").or_insert(json!(today));
            rec.insert("name".into(), json!("/"));
        }
    }
    Ok(())
}

fn year_of(date: &Value, fallback: &str) -> String {
    date.as_str().unwrap_or(fallback).chars().take(4).collect()
}

/// `account.move.action_post`.
pub(crate) fn action_post(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if store.get("account.move", id, "state") != json!("draft") {
            return Err(OdooError::user(format!(
                "The entry {} (id {id}) must be in draft.",
                store.display_name("account.move", id)
            )));
        }
        if store.children("account.move.line", "move_id", id).is_empty() {
            return Err(OdooError::user("You need to add a line before posting."));
        }
        let move_type = store.get("account.move", id, "move_type").as_str().unwrap_or("entry").to_string();
        if move_type != "entry" && falsy(&store.get("account.move", id, "partner_id")) {
            let (who, what) = match move_type.as_str() {
                "out_invoice" => ("Customer", "Customer Invoice"),
                "out_refund" => ("Customer", "Customer Credit Note"),
                "in_invoice" => ("Vendor", "Vendor Bill"),
                _ => ("Vendor", "Vendor Credit Note"),
            };
            return Err(OdooError::user(format!(
                "The field '{who}' is required, please complete it to validate the {what}."
            )));
        }
    }
    for &id in ids {
        let today = store.now_string()[..10].to_string();
        let move_type = store.get("account.move", id, "move_type").as_str().unwrap_or("entry").to_string();
        let invoice_date = store.get("account.move", id, "invoice_date");
        let invoice_date = if falsy(&invoice_date) && move_type != "entry" { json!(today) } else { invoice_date };
        let year = year_of(&invoice_date, &today);
        let prefix = match move_type.as_str() {
            "out_invoice" => "INV",
            "out_refund" => "RINV",
            "in_invoice" => "BILL",
            "in_refund" => "RBILL",
            _ => "MISC",
        };
        let key = format!("{prefix}/{year}");
        let n = store.next_seq(&key);
        let total = as_f64(&store.get("account.move", id, "amount_total"));
        store.set(
            "account.move",
            id,
            &[
                ("name", json!(format!("{key}/{n:05}"))),
                ("state", json!("posted")),
                ("invoice_date", invoice_date),
                ("amount_residual", json!(total)),
                ("payment_state", json!("not_paid")),
            ],
        );
        // A credit note reversing an invoice settles it (Odoo reconciles the two).
        if let Some(original) = as_id(&store.get("account.move", id, "reversed_entry_id")) {
            let residual = as_f64(&store.get("account.move", original, "amount_residual"));
            let settled = residual.min(total);
            let left = residual - settled;
            let state = if left < EPS { "reversed" } else { "partial" };
            store.set(
                "account.move",
                original,
                &[("amount_residual", json!(left.max(0.0))), ("payment_state", json!(state))],
            );
            let refund_left = total - settled;
            let refund_state = if refund_left < EPS { "paid" } else { "partial" };
            store.set(
                "account.move",
                id,
                &[("amount_residual", json!(refund_left)), ("payment_state", json!(refund_state))],
            );
        }
    }
    Ok(json!(false))
}

pub(crate) fn button_draft(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if store.get("account.move", id, "payment_state") != json!("not_paid") {
            return Err(OdooError::user(
                "You cannot reset to draft an entry that has payments or credit notes reconciled with it.",
            ));
        }
        store.set("account.move", id, &[("state", json!("draft"))]);
    }
    Ok(json!(false))
}

pub(crate) fn button_cancel(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if store.get("account.move", id, "state") != json!("draft") {
            return Err(OdooError::user("Only draft journal entries can be cancelled."));
        }
        store.set("account.move", id, &[("state", json!("cancel"))]);
    }
    Ok(json!(false))
}

/// `account.move.reversal.refund_moves`: draft credit notes with `reversed_entry_id`.
pub(crate) fn refund_moves(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    let wizard = orm::ensure_one("account.move.reversal", ids)?;
    let reason = store.get("account.move.reversal", wizard, "reason");
    let date = store.get("account.move.reversal", wizard, "date");
    let moves: Vec<i64> = match store.get("account.move.reversal", wizard, "move_ids") {
        Value::Array(a) => a.iter().filter_map(as_id).collect(),
        _ => Vec::new(),
    };
    let mut created = Vec::new();
    for m in moves {
        let move_type = match store.get("account.move", m, "move_type").as_str() {
            Some("out_invoice") => "out_refund",
            Some("in_invoice") => "in_refund",
            Some("out_refund") => "out_invoice",
            Some("in_refund") => "in_invoice",
            _ => "entry",
        };
        let name = store.display_name("account.move", m);
        let reference = match reason.as_str() {
            Some(r) if !r.is_empty() => format!("Reversal of: {name}, {r}"),
            _ => format!("Reversal of: {name}"),
        };
        let lines: Vec<Value> = store
            .children("account.move.line", "move_id", m)
            .into_iter()
            .map(|l| {
                json!([0, 0, {
                    "product_id": store.get("account.move.line", l, "product_id"),
                    "name": store.get("account.move.line", l, "name"),
                    "quantity": store.get("account.move.line", l, "quantity"),
                    "price_unit": store.get("account.move.line", l, "price_unit"),
                }])
            })
            .collect();
        let vals = json!({
            "move_type": move_type,
            "partner_id": store.get("account.move", m, "partner_id"),
            "invoice_origin": store.get("account.move", m, "invoice_origin"),
            "ref": reference,
            "date": date,
            "invoice_date": date,
            "reversed_entry_id": m,
            "invoice_line_ids": lines,
        });
        created.push(orm::create(store, "account.move", &vals, &Ctx::new())?);
    }
    store.set("account.move.reversal", wizard, &[("new_move_ids", json!(created))]);
    if let [one] = created.as_slice() {
        return Ok(window_action("Reverse Moves", "account.move", Some(*one), "current", json!({})));
    }
    let mut action = window_action("Reverse Moves", "account.move", None, "current", json!({}));
    action["view_mode"] = json!("list,form");
    action["domain"] = json!([["id", "in", created]]);
    Ok(action)
}

fn payment_name(store: &mut Store, date: &Value) -> String {
    let today = store.now_string()[..10].to_string();
    let key = format!("PBNK1/{}", year_of(date, &today));
    let n = store.next_seq(&key);
    format!("{key}/{n:05}")
}

/// `account.payment.register.action_create_payments`: a posted payment, applied to the
/// invoices oldest first.
pub(crate) fn create_payments(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    let wizard = orm::ensure_one("account.payment.register", ids)?;
    let amount = as_f64(&store.get("account.payment.register", wizard, "amount"));
    if amount <= 0.0 {
        return Err(OdooError::user("The payment amount must be strictly positive."));
    }
    let moves: Vec<i64> = match store.get("account.payment.register", wizard, "move_ids") {
        Value::Array(a) => a.iter().filter_map(as_id).collect(),
        _ => Vec::new(),
    };
    let date = store.get("account.payment.register", wizard, "payment_date");
    let memo = store.get("account.payment.register", wizard, "communication");
    let first = moves.first().copied().unwrap_or(0);
    let inbound =
        matches!(store.get("account.move", first, "move_type").as_str(), Some("out_invoice") | Some("in_refund"));
    let vals = json!({
        "amount": amount,
        "partner_id": store.get("account.move", first, "partner_id"),
        "payment_type": if inbound { "inbound" } else { "outbound" },
        "partner_type": if matches!(store.get("account.move", first, "move_type").as_str(), Some("out_invoice") | Some("out_refund")) { "customer" } else { "supplier" },
        "ref": memo,
        "memo": memo,
        "date": date,
        "reconciled_invoice_ids": [[6, 0, moves]],
    });
    let payment = orm::create(store, "account.payment", &vals, &Ctx::new())?;
    let name = payment_name(store, &date);
    store.set("account.payment", payment, &[("name", json!(name)), ("state", json!("posted"))]);
    let mut left = amount;
    for m in moves {
        let residual = as_f64(&store.get("account.move", m, "amount_residual"));
        let applied = residual.min(left);
        left -= applied;
        let rest = residual - applied;
        let state = if rest < EPS {
            "paid"
        } else if applied > 0.0 {
            "partial"
        } else {
            "not_paid"
        };
        store.set("account.move", m, &[("amount_residual", json!(rest.max(0.0))), ("payment_state", json!(state))]);
    }
    Ok(window_action("Payments", "account.payment", Some(payment), "current", json!({"create": false})))
}

/// `account.payment.action_post`.
pub(crate) fn post_payments(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    for &id in ids {
        if store.get("account.payment", id, "state") != json!("draft") {
            return Err(OdooError::user("Only a draft payment can be posted."));
        }
    }
    for &id in ids {
        let date = store.get("account.payment", id, "date");
        let name = payment_name(store, &date);
        store.set("account.payment", id, &[("name", json!(name)), ("state", json!("posted"))]);
    }
    Ok(json!(false))
}
