//! Purchase orders and their receipts: Odoo's rules for confirming, cancelling and
//! locking an order, receiving it (`qty_received`) and returning goods to the vendor.

use serde_json::{Value, json};
use waybill_doubles::odoo::OdooVersion;

use super::support::Rpc;
use super::{ACME, PAINT, WIDGET, start};

/// A draft purchase order for `lines` (product, qty): (order id, name).
fn draft_po(rpc: &Rpc, lines: &[(i64, f64)]) -> (i64, String) {
    let order_line: Vec<_> =
        lines.iter().map(|(p, q)| json!([0, 0, {"product_id": p, "product_qty": q, "price_unit": 4.0}])).collect();
    let po = rpc
        .ok(
            "purchase.order",
            "create",
            json!([{"partner_id": ACME, "partner_ref": "ACME-SO-7", "date_planned": "2026-12-08 09:00:00", "order_line": order_line}]),
            json!({}),
        )
        .as_i64()
        .unwrap();
    let name = read(rpc, "purchase.order", po, &["name"])["name"].as_str().unwrap().to_string();
    (po, name)
}

fn read(rpc: &Rpc, model: &str, id: i64, fields: &[&str]) -> Value {
    rpc.ok(model, "read", json!([[id], fields]), json!({}))[0].clone()
}

fn receipts(rpc: &Rpc, name: &str) -> Vec<i64> {
    let found = rpc.ok(
        "stock.picking",
        "search",
        json!([[["origin", "=", name], ["picking_type_code", "=", "incoming"]]]),
        json!({"order": "id asc"}),
    );
    found.as_array().unwrap().iter().filter_map(Value::as_i64).collect()
}

fn qty_received(rpc: &Rpc, po: i64) -> Vec<f64> {
    let lines = rpc.ok(
        "purchase.order.line",
        "search_read",
        json!([[["order_id", "=", po]], ["qty_received"]]),
        json!({"order": "sequence asc, id asc"}),
    );
    lines.as_array().unwrap().iter().map(|l| l["qty_received"].as_f64().unwrap()).collect()
}

fn set_line_quantities(rpc: &Rpc, picking: i64, qty: &[(i64, f64, Option<&str>)]) {
    for (product, q, lot) in qty {
        let line = rpc.ok(
            "stock.move.line",
            "search",
            json!([[["picking_id", "=", picking], ["product_id", "=", product]]]),
            json!({}),
        )[0]
        .as_i64()
        .unwrap();
        let mut vals = json!({"quantity": q, "picked": true});
        if let Some(lot) = lot {
            vals["lot_name"] = json!(lot);
        }
        rpc.ok("stock.move.line", "write", json!([[line], vals]), json!({}));
    }
}

#[test]
fn confirming_names_the_order_from_its_sequence_and_creates_one_incoming_picking_only_from_draft() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let (po, name) = draft_po(&rpc, &[(WIDGET, 5.0), (PAINT, 2.0)]);
    assert_eq!(name, "P00001");
    assert_eq!(read(&rpc, "purchase.order", po, &["state"])["state"], "draft");
    assert!(receipts(&rpc, &name).is_empty(), "a request for quotation has no receipt");

    assert_eq!(rpc.ok("purchase.order", "button_confirm", json!([[po]]), json!({})), json!(true));
    let order = read(&rpc, "purchase.order", po, &["state", "date_approve", "partner_id"]);
    assert_eq!(order["state"], "purchase");
    assert!(order["date_approve"].is_string());
    let picks = receipts(&rpc, &name);
    assert_eq!(picks.len(), 1);
    let p = read(&rpc, "stock.picking", picks[0], &["name", "state", "partner_id", "purchase_id", "location_id"]);
    assert_eq!(p["name"], "WH/IN/00001");
    assert_eq!(p["state"], "assigned");
    assert_eq!(p["purchase_id"][0], json!(po));
    assert_eq!(p["location_id"][1], "Partners/Vendors");
    let moves = rpc.ok(
        "stock.move",
        "search_read",
        json!([[["picking_id", "=", picks[0]]], ["product_uom_qty", "purchase_line_id"]]),
        json!({}),
    );
    assert_eq!(moves.as_array().unwrap().len(), 2, "one move per line");
    assert!(moves.as_array().unwrap().iter().all(|m| m["purchase_line_id"].is_array()));

    // Odoo skips an order that is not a draft: no error, and no second receipt.
    assert_eq!(rpc.ok("purchase.order", "button_confirm", json!([[po]]), json!({})), json!(true));
    assert_eq!(receipts(&rpc, &name).len(), 1);
    rpc.ok("purchase.order", "button_done", json!([[po]]), json!({}));
    rpc.ok("purchase.order", "button_confirm", json!([[po]]), json!({}));
    assert_eq!(read(&rpc, "purchase.order", po, &["state"])["state"], "done", "a locked order stays locked");
}

#[test]
fn a_vendor_is_required_and_a_line_needs_a_product() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let err = rpc.err("purchase.order", "create", json!([{"order_line": []}]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.ValidationError");
    let err = rpc.err(
        "purchase.order",
        "create",
        json!([{"partner_id": ACME, "order_line": [[0, 0, {"product_qty": 1.0}]]}]),
        json!({}),
    );
    assert_eq!(err["data"]["message"], "Missing required fields on accountable purchase order line.");
    assert_eq!(rpc.ok("purchase.order", "search_count", json!([[]]), json!({})), json!(0), "nothing was left behind");
}

#[test]
fn receiving_needs_quantities_and_lots_and_a_partial_receipt_leaves_a_backorder() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let (po, name) = draft_po(&rpc, &[(WIDGET, 5.0), (PAINT, 2.0)]);
    rpc.ok("purchase.order", "button_confirm", json!([[po]]), json!({}));
    let picking = receipts(&rpc, &name)[0];
    set_line_quantities(&rpc, picking, &[(WIDGET, 0.0, None), (PAINT, 0.0, None)]);
    let err = rpc.err("stock.picking", "button_validate", json!([[picking]]), json!({}));
    assert_eq!(
        err["data"]["message"],
        "You cannot validate a transfer if no quantities are reserved nor done. To force the transfer, encode quantities."
    );
    set_line_quantities(&rpc, picking, &[(WIDGET, 3.0, None), (PAINT, 2.0, None)]);
    let err = rpc.err("stock.picking", "button_validate", json!([[picking]]), json!({}));
    assert_eq!(err["data"]["message"], "You need to supply a Lot/Serial number for products [LOT] Paint.");
    assert_eq!(qty_received(&rpc, po), [0.0, 0.0], "a refused validation receives nothing");

    set_line_quantities(&rpc, picking, &[(PAINT, 2.0, Some("L-77"))]);
    let wizard = rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({}));
    assert_eq!(wizard["res_model"], "stock.backorder.confirmation", "less than ordered asks first");
    rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({"context": {"skip_backorder": true}}));
    assert_eq!(read(&rpc, "stock.picking", picking, &["state"])["state"], "done");
    assert_eq!(qty_received(&rpc, po), [3.0, 2.0]);
    let picks = receipts(&rpc, &name);
    assert_eq!(picks.len(), 2, "the backorder for the two widgets still to come");
    let backorder = read(&rpc, "stock.picking", picks[1], &["backorder_id", "state", "purchase_id"]);
    assert_eq!(backorder["backorder_id"][0], json!(picking));
    assert_eq!(backorder["purchase_id"][0], json!(po));

    rpc.ok("stock.picking", "button_validate", json!([[picks[1]]]), json!({}));
    assert_eq!(qty_received(&rpc, po), [5.0, 2.0]);
}

#[test]
fn a_return_to_the_vendor_only_from_a_done_receipt_and_it_lowers_what_was_received() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let (po, name) = draft_po(&rpc, &[(WIDGET, 5.0)]);
    rpc.ok("purchase.order", "button_confirm", json!([[po]]), json!({}));
    let picking = receipts(&rpc, &name)[0];
    let ctx = json!({"context": {"active_id": picking, "active_ids": [picking], "active_model": "stock.picking"}});
    let err = rpc.err("stock.return.picking", "create", json!([{}]), ctx.clone());
    assert_eq!(err["data"]["message"], "You may only return Done pickings.");

    rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({}));
    assert_eq!(qty_received(&rpc, po), [5.0]);
    let wizard = rpc.ok("stock.return.picking", "create", json!([{}]), ctx).as_i64().unwrap();
    let lines = rpc.ok("stock.return.picking.line", "search", json!([[["wizard_id", "=", wizard]]]), json!({}));
    rpc.ok("stock.return.picking.line", "write", json!([lines, {"quantity": 2.0}]), json!({}));
    let action = rpc.ok("stock.return.picking", "action_create_returns", json!([[wizard]]), json!({}));
    let ret = action["res_id"].as_i64().unwrap();
    let r = read(&rpc, "stock.picking", ret, &["origin", "picking_type_code", "return_id", "location_dest_id"]);
    assert_eq!(r["origin"], "Return of WH/IN/00001");
    assert_eq!(r["picking_type_code"], "outgoing");
    assert_eq!(r["return_id"][0], json!(picking));
    assert_eq!(r["location_dest_id"][1], "Partners/Vendors", "back to the vendor, not to a customer");
    assert_eq!(qty_received(&rpc, po), [5.0], "nothing changes until the return is validated");

    rpc.ok("stock.picking", "button_validate", json!([[ret]]), json!({}));
    assert_eq!(qty_received(&rpc, po), [3.0]);
}

#[test]
fn cancelling_needs_no_receipt_done_and_an_unlocked_order() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let (po, name) = draft_po(&rpc, &[(WIDGET, 5.0)]);
    rpc.ok("purchase.order", "button_confirm", json!([[po]]), json!({}));
    rpc.ok("purchase.order", "button_cancel", json!([[po]]), json!({}));
    assert_eq!(read(&rpc, "purchase.order", po, &["state"])["state"], "cancel");
    let picking = receipts(&rpc, &name)[0];
    assert_eq!(read(&rpc, "stock.picking", picking, &["state"])["state"], "cancel", "its receipt went with it");

    let (po, name) = draft_po(&rpc, &[(WIDGET, 5.0)]);
    rpc.ok("purchase.order", "button_confirm", json!([[po]]), json!({}));
    let picking = receipts(&rpc, &name)[0];
    rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({}));
    let err = rpc.err("purchase.order", "button_cancel", json!([[po]]), json!({}));
    assert_eq!(
        err["data"]["message"],
        format!("Unable to cancel purchase order {name} as some receptions have already been done.")
    );
    rpc.ok("purchase.order", "button_done", json!([[po]]), json!({}));
    assert_eq!(read(&rpc, "purchase.order", po, &["state"])["state"], "done", "locked");
    let err = rpc.err("purchase.order", "button_cancel", json!([[po]]), json!({}));
    assert_eq!(
        err["data"]["message"],
        format!("Unable to cancel purchase order(s): {name}. You must first unlock them.")
    );
    rpc.ok("purchase.order", "button_unlock", json!([[po]]), json!({}));
    assert_eq!(read(&rpc, "purchase.order", po, &["state"])["state"], "purchase");
}
