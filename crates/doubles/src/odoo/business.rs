//! Where the ORM hands over to the business rules: defaults and constraints on create,
//! write and unlink, and the business methods (`action_confirm`, `button_validate`, …).

use serde_json::{Map, Value, json};

use super::error::{OResult, OdooError};
use super::orm::Ctx;
use super::store::{Rec, Store, as_id};
use super::{account, purchase, sale, stock};

/// A context flag is set when present and truthy.
pub(crate) fn flag(ctx: &Ctx, key: &str) -> bool {
    ctx.get(key).is_some_and(|v| !super::store::falsy(v))
}

/// Ids from a context value (`active_ids`, `button_validate_picking_ids`): a list or one id.
pub(crate) fn ctx_ids(ctx: &Ctx, key: &str) -> Vec<i64> {
    match ctx.get(key) {
        Some(Value::Array(a)) => a.iter().filter_map(as_id).collect(),
        Some(v) => as_id(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// An `ir.actions.act_window` dictionary opening `res_model`.
pub(crate) fn window_action(name: &str, res_model: &str, res_id: Option<i64>, target: &str, context: Value) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("type".into(), json!("ir.actions.act_window"));
    m.insert("res_model".into(), json!(res_model));
    m.insert("view_mode".into(), json!("form"));
    m.insert("views".into(), json!([[false, "form"]]));
    m.insert("target".into(), json!(target));
    m.insert("context".into(), context);
    if let Some(id) = res_id {
        m.insert("res_id".into(), json!(id));
    }
    Value::Object(m)
}

fn set_default(rec: &mut Rec, field: &str, v: Value) {
    if !rec.contains_key(field) {
        rec.insert(field.to_string(), v);
    }
}

pub(crate) fn before_create(store: &mut Store, model: &str, rec: &mut Rec, ctx: &Ctx) -> OResult<()> {
    let today = store.now_string()[..10].to_string();
    let now = store.now_string();
    match model {
        "res.partner" | "product.product" => {
            set_default(rec, "active", json!(true));
            if model == "product.product" {
                set_default(rec, "tracking", json!("none"));
                set_default(rec, "type", json!("consu"));
            }
        }
        "ir.model.data" => {
            let key = (rec.get("module").cloned(), rec.get("name").cloned());
            if store.rows(model).any(|r| (r.get("module").cloned(), r.get("name").cloned()) == key) {
                return Err(OdooError::validation(
                    "The operation cannot be completed: duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"",
                ));
            }
        }
        "stock.lot" => stock::check_lot_unique(store, rec)?,
        "sale.order" | "sale.order.line" | "sale.order.cancel" => sale::before_create(store, model, rec, &now)?,
        "purchase.order" | "purchase.order.line" => purchase::before_create(store, model, rec, &now)?,
        "stock.picking" => {
            set_default(rec, "state", json!("draft"));
            set_default(rec, "scheduled_date", json!(now));
        }
        "stock.move" | "stock.move.line" | "stock.return.picking" => stock::before_create(store, model, rec, ctx)?,
        "account.move"
        | "account.move.line"
        | "account.move.reversal"
        | "account.payment.register"
        | "account.payment" => account::before_create(store, model, rec, ctx, &today)?,
        _ => {}
    }
    Ok(())
}

pub(crate) fn after_create(store: &mut Store, model: &str, id: i64, ctx: &Ctx) -> OResult<()> {
    if model == "stock.return.picking" {
        stock::default_return_lines(store, id, ctx)?;
    }
    Ok(())
}

pub(crate) fn before_write(store: &Store, model: &str, id: i64, rec: &Rec) -> OResult<()> {
    if model == "account.move" && store.get(model, id, "state") == json!("posted") {
        let locked = ["partner_id", "move_type", "invoice_line_ids", "name"];
        if let Some(f) = rec.keys().find(|k| locked.contains(&k.as_str())) {
            return Err(OdooError::user(format!(
                "You cannot modify the field {f} of a posted entry ({}); reset it to draft or issue a credit note.",
                store.display_name(model, id)
            )));
        }
    }
    Ok(())
}

pub(crate) fn before_unlink(store: &Store, model: &str, id: i64) -> OResult<()> {
    match model {
        "sale.order" if !matches!(store.get(model, id, "state").as_str(), Some("draft") | Some("cancel")) => {
            Err(OdooError::user(
                "You can not delete a sent quotation or a confirmed sales order. You must first cancel it.",
            ))
        }
        "account.move" => {
            let name = store.get(model, id, "name");
            if store.get(model, id, "state") == json!("posted") || name.as_str().is_some_and(|n| n != "/") {
                Err(OdooError::user("You cannot delete an entry which has been posted once."))
            } else {
                Ok(())
            }
        }
        "purchase.order" => purchase::before_unlink(store, id),
        "stock.picking" if store.get(model, id, "state") == json!("done") => {
            Err(OdooError::user("You cannot delete a transfer that is done."))
        }
        _ => Ok(()),
    }
}

/// The parameters of each business method after `self` (they take no arguments in 17+).
pub(crate) fn business_method(model: &str, method: &str) -> bool {
    matches!(
        (model, method),
        ("sale.order", "action_confirm" | "action_cancel" | "action_draft")
            | ("sale.order.cancel", "action_cancel")
            | ("purchase.order", "button_confirm" | "button_cancel" | "button_done" | "button_unlock" | "button_draft")
            | ("stock.picking", "button_validate" | "action_cancel" | "action_assign")
            | ("stock.backorder.confirmation", "process" | "process_cancel_backorder")
            | ("stock.return.picking", "action_create_returns" | "create_returns")
            | ("account.move", "action_post" | "button_draft" | "button_cancel")
            | ("account.move.reversal", "refund_moves" | "reverse_moves")
            | ("account.payment.register", "action_create_payments")
            | ("account.payment", "action_post")
    )
}

/// Run a business method on `ids`.
pub(crate) fn call(store: &mut Store, model: &str, method: &str, ids: &[i64], ctx: &Ctx) -> OResult<Value> {
    super::orm::check_ids(store, model, ids)?;
    match (model, method) {
        ("sale.order", "action_confirm") => sale::action_confirm(store, ids),
        ("sale.order", "action_cancel") => sale::action_cancel(store, ids, ctx),
        ("sale.order", "action_draft") => sale::action_draft(store, ids),
        ("sale.order.cancel", "action_cancel") => sale::wizard_cancel(store, ids, ctx),
        ("purchase.order", "button_confirm") => purchase::button_confirm(store, ids),
        ("purchase.order", "button_cancel") => purchase::button_cancel(store, ids),
        ("purchase.order", "button_done") => purchase::button_done(store, ids),
        ("purchase.order", "button_unlock") => purchase::button_unlock(store, ids),
        ("purchase.order", "button_draft") => purchase::button_draft(store, ids),
        ("stock.picking", "button_validate") => stock::button_validate(store, ids, ctx),
        ("stock.picking", "action_cancel") => stock::cancel_pickings(store, ids).map(|_| json!(true)),
        ("stock.picking", "action_assign") => Ok(json!(true)),
        ("stock.backorder.confirmation", "process") => stock::backorder_process(store, ids, ctx, false),
        ("stock.backorder.confirmation", "process_cancel_backorder") => stock::backorder_process(store, ids, ctx, true),
        ("stock.return.picking", _) => stock::create_returns(store, ids),
        ("account.move", "action_post") => account::action_post(store, ids),
        ("account.move", "button_draft") => account::button_draft(store, ids),
        ("account.move", "button_cancel") => account::button_cancel(store, ids),
        ("account.move.reversal", _) => account::refund_moves(store, ids),
        ("account.payment.register", _) => account::create_payments(store, ids),
        ("account.payment", "action_post") => account::post_payments(store, ids),
        _ => Err(OdooError::new(
            super::error::Exc::AttributeError,
            format!("The method '{model}.{method}' does not exist"),
        )),
    }
}
