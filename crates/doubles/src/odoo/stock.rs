//! Pickings: validation with its lot, serial and backorder rules, the backorder wizard,
//! and the return wizard.

use serde_json::{Value, json};

use super::business::{ctx_ids, flag, window_action};
use super::error::{OResult, OdooError};
use super::orm::{self, Ctx};
use super::store::{Rec, Store, as_f64, as_id, falsy};

/// Odoo's default locations (`stock.stock_location_suppliers`, `…_customers`, `WH/Stock`).
pub(crate) const VENDORS: i64 = 4;
pub(crate) const CUSTOMERS: i64 = 5;
pub(crate) const WH_STOCK: i64 = 8;

const EPS: f64 = 1e-9;

pub(crate) struct NewPicking {
    pub(crate) code: &'static str,
    pub(crate) origin: Value,
    pub(crate) partner: Value,
    pub(crate) sale_id: Option<i64>,
    /// The purchase order received (incoming) or returned to its vendor (outgoing).
    pub(crate) purchase_id: Option<i64>,
    pub(crate) backorder_id: Option<i64>,
    pub(crate) return_id: Option<i64>,
    /// (product, quantity, sale line)
    pub(crate) moves: Vec<(i64, f64, Option<i64>)>,
    /// The move each new move returns, aligned with `moves` when non-empty.
    pub(crate) returned_moves: Vec<i64>,
    /// The purchase order line of each move, aligned with `moves` when non-empty.
    pub(crate) purchase_lines: Vec<i64>,
}

/// Create a picking in state `assigned` with its moves and reserved move lines.
pub(crate) fn new_picking(store: &mut Store, p: NewPicking) -> i64 {
    // Goods of a purchase order come from (and go back to) the vendors' location.
    let partner_location = if p.purchase_id.is_some() { VENDORS } else { CUSTOMERS };
    let (prefix, from, to) = if p.code == "incoming" {
        ("WH/IN", partner_location, WH_STOCK)
    } else {
        ("WH/OUT", WH_STOCK, partner_location)
    };
    let n = store.next_seq(prefix);
    let now = store.now_string();
    let mut rec = Rec::new();
    rec.insert("name".into(), json!(format!("{prefix}/{n:05}")));
    rec.insert("origin".into(), p.origin);
    rec.insert("state".into(), json!("assigned"));
    rec.insert("picking_type_code".into(), json!(p.code));
    rec.insert("partner_id".into(), p.partner);
    rec.insert("sale_id".into(), p.sale_id.map_or(json!(false), |i| json!(i)));
    rec.insert("purchase_id".into(), p.purchase_id.map_or(json!(false), |i| json!(i)));
    rec.insert("backorder_id".into(), p.backorder_id.map_or(json!(false), |i| json!(i)));
    rec.insert("return_id".into(), p.return_id.map_or(json!(false), |i| json!(i)));
    rec.insert("scheduled_date".into(), json!(now));
    rec.insert("location_id".into(), json!(from));
    rec.insert("location_dest_id".into(), json!(to));
    let picking = store.insert("stock.picking", rec);
    for (i, (product, qty, sale_line)) in p.moves.into_iter().enumerate() {
        let mut m = Rec::new();
        m.insert("name".into(), json!(store.display_name("product.product", product)));
        m.insert("picking_id".into(), json!(picking));
        m.insert("product_id".into(), json!(product));
        m.insert("product_uom_qty".into(), json!(qty));
        m.insert("quantity".into(), json!(qty));
        m.insert("picked".into(), json!(false));
        m.insert("state".into(), json!("assigned"));
        m.insert("location_id".into(), json!(from));
        m.insert("location_dest_id".into(), json!(to));
        m.insert("sale_line_id".into(), sale_line.map_or(json!(false), |l| json!(l)));
        m.insert("origin_returned_move_id".into(), p.returned_moves.get(i).map_or(json!(false), |r| json!(r)));
        let purchase_line = p.purchase_lines.get(i).copied().filter(|l| *l > 0);
        m.insert("purchase_line_id".into(), purchase_line.map_or(json!(false), |l| json!(l)));
        let mv = store.insert("stock.move", m);
        let mut l = Rec::new();
        l.insert("move_id".into(), json!(mv));
        l.insert("picking_id".into(), json!(picking));
        l.insert("product_id".into(), json!(product));
        l.insert("quantity".into(), json!(qty));
        l.insert("picked".into(), json!(false));
        l.insert("state".into(), json!("assigned"));
        l.insert("location_id".into(), json!(from));
        l.insert("location_dest_id".into(), json!(to));
        store.insert("stock.move.line", l);
    }
    picking
}

pub(crate) fn cancel_pickings(store: &mut Store, ids: &[i64]) -> OResult<()> {
    for &p in ids {
        if store.get("stock.picking", p, "state") == json!("done") {
            return Err(OdooError::user("You cannot cancel a transfer that is done."));
        }
        for m in store.children("stock.move", "picking_id", p) {
            store.set("stock.move", m, &[("state", json!("cancel"))]);
        }
        store.set("stock.picking", p, &[("state", json!("cancel"))]);
    }
    Ok(())
}

pub(crate) fn check_lot_unique(store: &Store, rec: &Rec) -> OResult<()> {
    let key = (rec.get("name").cloned(), rec.get("product_id").and_then(as_id));
    if store.rows("stock.lot").any(|r| (r.get("name").cloned(), r.get("product_id").and_then(as_id)) == key) {
        return Err(OdooError::validation(format!(
            "The combination of lot/serial number and product must be unique within a company.\nThe following combinations contain duplicates:\n - {}",
            key.0.and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        )));
    }
    Ok(())
}

pub(crate) fn before_create(store: &mut Store, model: &str, rec: &mut Rec, ctx: &Ctx) -> OResult<()> {
    match model {
        "stock.move.line" => {
            if let Some(mv) = rec.get("move_id").and_then(as_id) {
                for f in ["picking_id", "product_id", "location_id", "location_dest_id"] {
                    if !rec.contains_key(f) {
                        rec.insert(f.into(), store.get("stock.move", mv, f));
                    }
                }
            }
            rec.entry("quantity").or_insert(json!(0.0));
            rec.entry("picked").or_insert(json!(false));
            rec.entry("state").or_insert(json!("assigned"));
        }
        "stock.move" => {
            rec.entry("state").or_insert(json!("draft"));
            rec.entry("quantity").or_insert(json!(0.0));
            rec.entry("picked").or_insert(json!(false));
        }
        _ => {
            // stock.return.picking: default_get from the context's active picking.
            let picking = rec
                .get("picking_id")
                .and_then(as_id)
                .or_else(|| ctx.get("active_id").and_then(as_id))
                .or_else(|| ctx_ids(ctx, "active_ids").first().copied());
            let Some(picking) = picking.filter(|p| store.exists("stock.picking", *p)) else {
                return Err(OdooError::user("You may only return Done pickings."));
            };
            if store.get("stock.picking", picking, "state") != json!("done") {
                return Err(OdooError::user("You may only return Done pickings."));
            }
            rec.insert("picking_id".into(), json!(picking));
        }
    }
    Ok(())
}

/// Return lines for each done move when the caller gave none (Odoo's `default_get`).
pub(crate) fn default_return_lines(store: &mut Store, wizard: i64, ctx: &Ctx) -> OResult<()> {
    if !store.children("stock.return.picking.line", "wizard_id", wizard).is_empty() {
        return Ok(());
    }
    let picking = as_id(&store.get("stock.return.picking", wizard, "picking_id")).unwrap_or(0);
    for mv in store.children("stock.move", "picking_id", picking) {
        if store.get("stock.move", mv, "state") != json!("done") {
            continue;
        }
        let vals = json!({
            "wizard_id": wizard,
            "product_id": store.get("stock.move", mv, "product_id"),
            "quantity": store.get("stock.move", mv, "quantity"),
            "move_id": mv,
        });
        orm::create(store, "stock.return.picking.line", &vals, ctx)?;
    }
    Ok(())
}

/// `stock.return.picking.action_create_returns` (`create_returns` before 17).
pub(crate) fn create_returns(store: &mut Store, ids: &[i64]) -> OResult<Value> {
    let wizard = orm::ensure_one("stock.return.picking", ids)?;
    let picking = as_id(&store.get("stock.return.picking", wizard, "picking_id")).unwrap_or(0);
    let lines = store.children("stock.return.picking.line", "wizard_id", wizard);
    let mut moves = Vec::new();
    let mut returned = Vec::new();
    let mut purchase_lines = Vec::new();
    for l in lines {
        let qty = as_f64(&store.get("stock.return.picking.line", l, "quantity"));
        if qty > EPS {
            let product = as_id(&store.get("stock.return.picking.line", l, "product_id")).unwrap_or(0);
            let mv = as_id(&store.get("stock.return.picking.line", l, "move_id"));
            moves.push((product, qty, None));
            returned.push(mv.unwrap_or(0));
            // A return to the vendor stays on its purchase line (purchase_stock's
            // `to_refund`), so validating it lowers what the line has received.
            purchase_lines.push(mv.and_then(|m| as_id(&store.get("stock.move", m, "purchase_line_id"))).unwrap_or(0));
        }
    }
    if moves.is_empty() {
        return Err(OdooError::user("Please specify at least one non-zero quantity."));
    }
    let code = if store.get("stock.picking", picking, "picking_type_code") == json!("incoming") {
        "outgoing"
    } else {
        "incoming"
    };
    let origin = format!("Return of {}", store.display_name("stock.picking", picking));
    let new_id = new_picking(
        store,
        NewPicking {
            code,
            origin: json!(origin),
            partner: store.get("stock.picking", picking, "partner_id"),
            sale_id: as_id(&store.get("stock.picking", picking, "sale_id")),
            purchase_id: as_id(&store.get("stock.picking", picking, "purchase_id")),
            backorder_id: None,
            return_id: Some(picking),
            moves,
            returned_moves: returned,
            purchase_lines,
        },
    );
    Ok(window_action("Returned Picking", "stock.picking", Some(new_id), "current", json!({})))
}

struct Plan {
    picking: i64,
    /// (move, demand, done)
    moves: Vec<(i64, f64, f64)>,
    /// Lines that count, and those to drop.
    keep: Vec<i64>,
    drop: Vec<i64>,
}

fn tracking(store: &Store, product: i64) -> String {
    store.get("product.product", product, "tracking").as_str().unwrap_or("none").to_string()
}

/// Check one picking and work out what validating it would do, changing nothing.
fn plan(store: &Store, picking: i64) -> OResult<Plan> {
    let name = store.display_name("stock.picking", picking);
    if matches!(store.get("stock.picking", picking, "state").as_str(), Some("done") | Some("cancel")) {
        return Err(OdooError::user(format!(
            "The transfer {name} is already done or cancelled; it cannot be validated again."
        )));
    }
    let lines = store.children("stock.move.line", "picking_id", picking);
    let moves = store.children("stock.move", "picking_id", picking);
    let any_picked = lines.iter().any(|l| !falsy(&store.get("stock.move.line", *l, "picked")))
        || moves.iter().any(|m| !falsy(&store.get("stock.move", *m, "picked")));
    let (keep, drop): (Vec<i64>, Vec<i64>) = lines.into_iter().partition(|l| {
        let qty = as_f64(&store.get("stock.move.line", *l, "quantity"));
        qty > EPS && (!any_picked || !falsy(&store.get("stock.move.line", *l, "picked")))
    });
    if keep.is_empty() {
        return Err(OdooError::user(
            "You cannot validate a transfer if no quantities are reserved nor done. To force the transfer, encode quantities.",
        ));
    }
    let mut missing_lot = Vec::new();
    let mut serials: Vec<(i64, String)> = Vec::new();
    for &l in &keep {
        let product = as_id(&store.get("stock.move.line", l, "product_id")).unwrap_or(0);
        let track = tracking(store, product);
        if track == "none" {
            continue;
        }
        let lot_id = as_id(&store.get("stock.move.line", l, "lot_id"));
        let lot_name = store.get("stock.move.line", l, "lot_name").as_str().unwrap_or("").to_string();
        let lot = match lot_id {
            Some(id) => store.display_name("stock.lot", id),
            None => lot_name,
        };
        if lot.is_empty() {
            let pname = store.display_name("product.product", product);
            if !missing_lot.contains(&pname) {
                missing_lot.push(pname);
            }
            continue;
        }
        if track == "serial" {
            if (as_f64(&store.get("stock.move.line", l, "quantity")) - 1.0).abs() > EPS {
                return Err(OdooError::user("You can only process 1.0 Units of products with unique serial number."));
            }
            if serials.contains(&(product, lot.clone())) {
                return Err(OdooError::validation(format!(
                    "The serial number has already been assigned: \n Product: {}, Serial Number: {lot}",
                    store.display_name("product.product", product)
                )));
            }
            serials.push((product, lot));
        }
    }
    if !missing_lot.is_empty() {
        return Err(OdooError::user(format!(
            "You need to supply a Lot/Serial number for products {}.",
            missing_lot.join(", ")
        )));
    }
    let moves = moves
        .into_iter()
        .filter(|m| store.get("stock.move", *m, "state") != json!("cancel"))
        .map(|m| {
            let demand = as_f64(&store.get("stock.move", m, "product_uom_qty"));
            let done: f64 = keep
                .iter()
                .filter(|l| as_id(&store.get("stock.move.line", **l, "move_id")) == Some(m))
                .map(|l| as_f64(&store.get("stock.move.line", *l, "quantity")))
                .sum();
            (m, demand, done)
        })
        .collect();
    Ok(Plan { picking, moves, keep, drop })
}

/// `stock.picking.button_validate`.
pub(crate) fn button_validate(store: &mut Store, ids: &[i64], ctx: &Ctx) -> OResult<Value> {
    let plans: Vec<Plan> = ids.iter().map(|p| plan(store, *p)).collect::<OResult<_>>()?;
    let short: Vec<i64> = plans
        .iter()
        .filter(|p| p.moves.iter().any(|(_, demand, done)| done + EPS < *demand))
        .map(|p| p.picking)
        .collect();
    if !short.is_empty() && !flag(ctx, "skip_backorder") {
        let pick_cmds: Vec<Value> = short.iter().map(|p| json!([4, p])).collect();
        return Ok(window_action(
            "Create Backorder?",
            "stock.backorder.confirmation",
            None,
            "new",
            json!({"button_validate_picking_ids": ids, "default_show_transfers": false, "default_pick_ids": pick_cmds}),
        ));
    }
    let not_to_backorder = ctx_ids(ctx, "picking_ids_not_to_backorder");
    for plan in plans {
        apply(store, plan, &not_to_backorder)?;
    }
    Ok(json!(true))
}

fn apply(store: &mut Store, plan: Plan, not_to_backorder: &[i64]) -> OResult<()> {
    let picking = plan.picking;
    for l in plan.drop {
        store.remove("stock.move.line", l);
    }
    for &l in &plan.keep {
        let mut vals = vec![("picked", json!(true)), ("state", json!("done"))];
        if as_id(&store.get("stock.move.line", l, "lot_id")).is_none() {
            let product = as_id(&store.get("stock.move.line", l, "product_id")).unwrap_or(0);
            let name = store.get("stock.move.line", l, "lot_name");
            if tracking(store, product) != "none" {
                let existing = store.ids("stock.lot").into_iter().find(|lot| {
                    store.get("stock.lot", *lot, "name") == name
                        && as_id(&store.get("stock.lot", *lot, "product_id")) == Some(product)
                });
                let lot = match existing {
                    Some(lot) => lot,
                    None => {
                        orm::create(store, "stock.lot", &json!({"name": name, "product_id": product}), &Ctx::new())?
                    }
                };
                vals.push(("lot_id", json!(lot)));
            }
        }
        store.set("stock.move.line", l, &vals);
    }
    let mut backorder_moves = Vec::new();
    let mut backorder_lines = Vec::new();
    let outgoing = store.get("stock.picking", picking, "picking_type_code") == json!("outgoing");
    for (m, demand, done) in plan.moves {
        if done + EPS < demand && !not_to_backorder.contains(&picking) {
            let product = as_id(&store.get("stock.move", m, "product_id")).unwrap_or(0);
            backorder_moves.push((product, demand - done, as_id(&store.get("stock.move", m, "sale_line_id"))));
            backorder_lines.push(as_id(&store.get("stock.move", m, "purchase_line_id")).unwrap_or(0));
        }
        let state = if done > EPS { "done" } else { "cancel" };
        store.set(
            "stock.move",
            m,
            &[
                ("quantity", json!(done)),
                ("product_uom_qty", json!(done.max(0.0))),
                ("picked", json!(done > EPS)),
                ("state", json!(state)),
            ],
        );
        if let Some(line) = as_id(&store.get("stock.move", m, "sale_line_id")) {
            let delivered = as_f64(&store.get("sale.order.line", line, "qty_delivered"));
            let delta = if outgoing { done } else { -done };
            store.set("sale.order.line", line, &[("qty_delivered", json!(delivered + delta))]);
        }
        if let Some(line) = as_id(&store.get("stock.move", m, "purchase_line_id")) {
            let received = as_f64(&store.get("purchase.order.line", line, "qty_received"));
            let delta = if outgoing { -done } else { done };
            store.set("purchase.order.line", line, &[("qty_received", json!(received + delta))]);
        }
    }
    let now = store.now_string();
    store.set("stock.picking", picking, &[("state", json!("done")), ("date_done", json!(now))]);
    if !backorder_moves.is_empty() {
        let code = if outgoing { "outgoing" } else { "incoming" };
        new_picking(
            store,
            NewPicking {
                code,
                origin: store.get("stock.picking", picking, "origin"),
                partner: store.get("stock.picking", picking, "partner_id"),
                sale_id: as_id(&store.get("stock.picking", picking, "sale_id")),
                purchase_id: as_id(&store.get("stock.picking", picking, "purchase_id")),
                backorder_id: Some(picking),
                return_id: None,
                moves: backorder_moves,
                returned_moves: Vec::new(),
                purchase_lines: backorder_lines,
            },
        );
    }
    Ok(())
}

/// `stock.backorder.confirmation.process` / `process_cancel_backorder`: validate the
/// pickings named by the context's `button_validate_picking_ids`, or do nothing.
pub(crate) fn backorder_process(store: &mut Store, ids: &[i64], ctx: &Ctx, cancel_backorder: bool) -> OResult<Value> {
    let to_validate = ctx_ids(ctx, "button_validate_picking_ids");
    if to_validate.is_empty() {
        return Ok(json!(true));
    }
    let mut ctx = ctx.clone();
    ctx.insert("skip_backorder".into(), json!(true));
    if cancel_backorder {
        let mut picks = Vec::new();
        for w in ids {
            if let Value::Array(a) = store.get("stock.backorder.confirmation", *w, "pick_ids") {
                picks.extend(a.iter().filter_map(as_id));
            }
        }
        if picks.is_empty() {
            picks = to_validate.clone();
        }
        ctx.insert("picking_ids_not_to_backorder".into(), json!(picks));
    }
    button_validate(store, &to_validate, &ctx)
}
