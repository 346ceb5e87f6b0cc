//! The business rules of ODOO.md, one test each.

use serde_json::{Value, json};
use waybill_doubles::odoo::OdooVersion;

use super::{ACME, DRILL, PAINT, WIDGET, confirmed_order, start};

fn line_of(rpc: &super::support::Rpc, picking: i64, product: i64) -> i64 {
    rpc.ok(
        "stock.move.line",
        "search",
        json!([[["picking_id", "=", picking], ["product_id", "=", product]]]),
        json!({}),
    )[0]
    .as_i64()
    .unwrap()
}

fn state(rpc: &super::support::Rpc, model: &str, id: i64) -> Value {
    rpc.ok(model, "read", json!([[id], ["state"]]), json!({}))[0]["state"].clone()
}

#[test]
fn confirming_creates_the_outgoing_picking_and_a_second_confirm_is_refused() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let (order, picking) = confirmed_order(&rpc, "SO0042", &[(WIDGET, 3.0)]);
    let p = &rpc.ok(
        "stock.picking",
        "read",
        json!([[picking], ["name", "origin", "state", "picking_type_code"]]),
        json!({}),
    )[0];
    assert_eq!((p["name"].clone(), p["origin"].clone()), (json!("WH/OUT/00001"), json!("S00001")));
    assert_eq!((p["state"].clone(), p["picking_type_code"].clone()), (json!("assigned"), json!("outgoing")));
    let err = rpc.err("sale.order", "action_confirm", json!([[order]]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.UserError");
    assert_eq!(err["data"]["message"], "Some orders are not in a state requiring confirmation.");
    assert_eq!(odoo.count("stock.picking", &[("origin", "S00001")]), 1);
    assert_eq!(odoo.count("sale.order", &[("client_order_ref", "SO0042"), ("state", "sale")]), 1);
}

#[test]
fn a_line_without_product_is_refused() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let err = rpc.err(
        "sale.order",
        "create",
        json!([{"partner_id": ACME, "order_line": [[0, 0, {"name": "free text", "product_uom_qty": 1}]]}]),
        json!({}),
    );
    assert_eq!(err["data"]["name"], "odoo.exceptions.ValidationError");
    assert_eq!(odoo.records("sale.order").len(), 0, "the failed call left nothing behind");
}

#[test]
fn cancelling_a_confirmed_order_returns_the_wizard_and_changes_nothing() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let (order, picking) = confirmed_order(&rpc, "SO1", &[(WIDGET, 1.0)]);
    let action = rpc.ok("sale.order", "action_cancel", json!([[order]]), json!({}));
    assert_eq!(action["res_model"], "sale.order.cancel");
    assert_eq!(state(&rpc, "sale.order", order), "sale");
    // The wizard, created as the action says, cancels.
    let wizard = rpc.ok("sale.order.cancel", "create", json!([{}]), json!({"context": action["context"]}));
    rpc.ok("sale.order.cancel", "action_cancel", json!([[wizard]]), json!({}));
    assert_eq!(state(&rpc, "sale.order", order), "cancel");
    assert_eq!(state(&rpc, "stock.picking", picking), "cancel");
    // Directly with the warning disabled, too.
    let (order2, _) = confirmed_order(&rpc, "SO2", &[(WIDGET, 1.0)]);
    rpc.ok("sale.order", "action_cancel", json!([[order2]]), json!({"context": {"disable_cancel_warning": true}}));
    assert_eq!(state(&rpc, "sale.order", order2), "cancel");
}

#[test]
fn a_done_delivery_blocks_cancelling_the_order() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let (order, picking) = confirmed_order(&rpc, "SO1", &[(WIDGET, 1.0)]);
    assert_eq!(rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({})), json!(true));
    let err =
        rpc.err("sale.order", "action_cancel", json!([[order]]), json!({"context": {"disable_cancel_warning": true}}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.UserError");
    assert_eq!(state(&rpc, "sale.order", order), "sale");
}

#[test]
fn validating_needs_quantities_and_lots_and_serials_have_quantity_one() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let (_, picking) = confirmed_order(&rpc, "SO1", &[(PAINT, 2.0), (DRILL, 2.0)]);
    let paint = line_of(&rpc, picking, PAINT);
    let drill = line_of(&rpc, picking, DRILL);
    for l in [paint, drill] {
        rpc.ok("stock.move.line", "write", json!([[l], {"quantity": 0}]), json!({}));
    }
    let err = rpc.err("stock.picking", "button_validate", json!([[picking]]), json!({}));
    assert!(err["data"]["message"].as_str().unwrap().contains("no quantities"), "{err}");

    rpc.ok("stock.move.line", "write", json!([[paint], {"quantity": 2, "picked": true}]), json!({}));
    rpc.ok("stock.move.line", "write", json!([[drill], {"quantity": 2, "picked": true}]), json!({}));
    let err = rpc.err("stock.picking", "button_validate", json!([[picking]]), json!({}));
    let message = err["data"]["message"].as_str().unwrap();
    assert!(message.starts_with("You need to supply a Lot/Serial number for products"), "{message}");
    assert!(message.contains("[LOT] Paint") && message.contains("[SER] Drill"));

    rpc.ok("stock.move.line", "write", json!([[paint], {"lot_name": "L-1"}]), json!({}));
    rpc.ok("stock.move.line", "write", json!([[drill], {"lot_name": "SN-1"}]), json!({}));
    let err = rpc.err("stock.picking", "button_validate", json!([[picking]]), json!({}));
    assert!(err["data"]["message"].as_str().unwrap().contains("unique serial number"), "{err}");

    rpc.ok("stock.move.line", "write", json!([[drill], {"quantity": 1}]), json!({}));
    let move_id = rpc.ok("stock.move.line", "read", json!([[drill], ["move_id"]]), json!({}))[0]["move_id"][0].clone();
    rpc.ok(
        "stock.move.line",
        "create",
        json!([{"move_id": move_id, "quantity": 1, "lot_name": "SN-2", "picked": true}]),
        json!({}),
    );
    assert_eq!(rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({})), json!(true));
    let p = &rpc.ok("stock.picking", "read", json!([[picking], ["state", "date_done"]]), json!({}))[0];
    assert_eq!(p["state"], "done");
    assert!(p["date_done"].is_string());
    assert_eq!(odoo.count("stock.lot", &[]), 3);
    // A lot name is unique per product.
    let err = rpc.err("stock.lot", "create", json!([{"name": "SN-1", "product_id": DRILL}]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.ValidationError");
}

#[test]
fn less_than_ordered_returns_the_backorder_wizard_which_needs_its_context() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let (_, picking) = confirmed_order(&rpc, "SO1", &[(WIDGET, 5.0)]);
    let line = line_of(&rpc, picking, WIDGET);
    rpc.ok("stock.move.line", "write", json!([[line], {"quantity": 3, "picked": true}]), json!({}));
    let action = rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({}));
    assert_eq!(action["res_model"], "stock.backorder.confirmation");
    assert_eq!(action["context"]["button_validate_picking_ids"], json!([picking]));
    assert_eq!(state(&rpc, "stock.picking", picking), "assigned");

    // The trap: the wizard without button_validate_picking_ids does nothing.
    let bare = rpc.ok("stock.backorder.confirmation", "create", json!([{"pick_ids": [[4, picking]]}]), json!({}));
    assert_eq!(rpc.ok("stock.backorder.confirmation", "process", json!([[bare]]), json!({})), json!(true));
    assert_eq!(state(&rpc, "stock.picking", picking), "assigned");

    let ctx = json!({"context": action["context"]});
    let wizard = rpc.ok("stock.backorder.confirmation", "create", json!([{}]), ctx.clone());
    rpc.ok("stock.backorder.confirmation", "process", json!([[wizard]]), ctx);
    assert_eq!(state(&rpc, "stock.picking", picking), "done");
    let back = rpc.ok(
        "stock.picking",
        "search_read",
        json!([[["backorder_id", "=", picking]], ["name", "origin", "state", "move_ids"]]),
        json!({}),
    );
    assert_eq!(back.as_array().unwrap().len(), 1);
    assert_eq!((back[0]["name"].clone(), back[0]["origin"].clone()), (json!("WH/OUT/00002"), json!("S00001")));
    let mv = rpc.ok("stock.move", "read", json!([back[0]["move_ids"], ["product_uom_qty"]]), json!({}));
    assert_eq!(mv[0]["product_uom_qty"], json!(2.0));
    assert_eq!(odoo.count("stock.picking", &[("origin", "S00001")]), 2);
}

#[test]
fn skip_backorder_creates_the_backorder_and_not_to_backorder_cancels_the_rest() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let (_, p1) = confirmed_order(&rpc, "SO1", &[(WIDGET, 5.0)]);
    rpc.ok("stock.move.line", "write", json!([[line_of(&rpc, p1, WIDGET)], {"quantity": 4}]), json!({}));
    rpc.ok("stock.picking", "button_validate", json!([[p1]]), json!({"context": {"skip_backorder": true}}));
    assert_eq!(odoo.count("stock.picking", &[("backorder_id", &p1.to_string())]), 1);

    let (_, p2) = confirmed_order(&rpc, "SO2", &[(WIDGET, 5.0)]);
    rpc.ok("stock.move.line", "write", json!([[line_of(&rpc, p2, WIDGET)], {"quantity": 4}]), json!({}));
    rpc.ok(
        "stock.picking",
        "button_validate",
        json!([[p2]]),
        json!({"context": {"skip_backorder": true, "picking_ids_not_to_backorder": [p2]}}),
    );
    assert_eq!(state(&rpc, "stock.picking", p2), "done");
    assert_eq!(odoo.count("stock.picking", &[("backorder_id", &p2.to_string())]), 0);
    let qty = rpc.ok(
        "sale.order.line",
        "search_read",
        json!([[["order_id.client_order_ref", "=", "SO2"]], ["qty_delivered"]]),
        json!({}),
    );
    assert_eq!(qty[0]["qty_delivered"], json!(4.0));
}

#[test]
fn returns_only_from_done_pickings_with_a_quantity() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let (_, picking) = confirmed_order(&rpc, "SO1", &[(WIDGET, 2.0)]);
    let ctx = json!({"context": {"active_id": picking, "active_ids": [picking], "active_model": "stock.picking"}});
    let err = rpc.err("stock.return.picking", "create", json!([{}]), ctx.clone());
    assert_eq!(err["data"]["message"], "You may only return Done pickings.");

    rpc.ok("stock.picking", "button_validate", json!([[picking]]), json!({}));
    let zero = rpc.ok("stock.return.picking", "create", json!([{}]), ctx.clone());
    let lines = rpc.ok("stock.return.picking.line", "search", json!([[["wizard_id", "=", zero]]]), json!({}));
    rpc.ok("stock.return.picking.line", "write", json!([lines, {"quantity": 0}]), json!({}));
    let err = rpc.err("stock.return.picking", "action_create_returns", json!([[zero]]), json!({}));
    assert_eq!(err["data"]["message"], "Please specify at least one non-zero quantity.");

    let wizard = rpc.ok("stock.return.picking", "create", json!([{}]), ctx);
    for method in ["create_returns", "action_create_returns"] {
        let action = rpc.ok("stock.return.picking", method, json!([[wizard]]), json!({}));
        let ret = action["res_id"].as_i64().unwrap();
        let p = &rpc.ok(
            "stock.picking",
            "read",
            json!([[ret], ["origin", "picking_type_code", "state", "return_id"]]),
            json!({}),
        )[0];
        assert_eq!(p["origin"], "Return of WH/OUT/00001");
        assert_eq!((p["picking_type_code"].clone(), p["state"].clone()), (json!("incoming"), json!("assigned")));
        assert_eq!(p["return_id"][0], json!(picking));
    }
}

fn invoice(rpc: &super::support::Rpc, partner: Value, lines: bool) -> i64 {
    let line_cmds =
        if lines { json!([[0, 0, {"product_id": WIDGET, "quantity": 2, "price_unit": 50.0}]]) } else { json!([]) };
    rpc.ok(
        "account.move",
        "create",
        json!([{"move_type": "out_invoice", "partner_id": partner, "invoice_origin": "S00001", "ref": "SO0042", "invoice_line_ids": line_cmds}]),
        json!({}),
    )
    .as_i64()
    .unwrap()
}

#[test]
fn posting_numbers_once_and_refuses_twice_no_lines_and_no_customer() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.freeze_clock("2030-01-02 10:00:00");
    let inv = invoice(&rpc, json!(ACME), true);
    assert_eq!(rpc.ok("account.move", "read", json!([[inv], ["name"]]), json!({}))[0]["name"], "/");
    rpc.ok("account.move", "action_post", json!([[inv]]), json!({}));
    let row = &rpc.ok(
        "account.move",
        "read",
        json!([[inv], ["name", "state", "amount_total", "amount_residual", "payment_state"]]),
        json!({}),
    )[0];
    assert_eq!(row["name"], "INV/2030/00001");
    assert_eq!((row["state"].clone(), row["amount_total"].clone()), (json!("posted"), json!(100.0)));
    assert_eq!((row["amount_residual"].clone(), row["payment_state"].clone()), (json!(100.0), json!("not_paid")));
    let err = rpc.err("account.move", "action_post", json!([[inv]]), json!({}));
    assert_eq!(err["data"]["message"], format!("The entry INV/2030/00001 (id {inv}) must be in draft."));

    let empty = invoice(&rpc, json!(ACME), false);
    let err = rpc.err("account.move", "action_post", json!([[empty]]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.UserError");
    let nobody = invoice(&rpc, json!(false), true);
    let err = rpc.err("account.move", "action_post", json!([[nobody]]), json!({}));
    assert!(err["data"]["message"].as_str().unwrap().contains("'Customer' is required"));

    let err = rpc.err("account.move", "unlink", json!([[inv]]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.UserError");
    assert_eq!(odoo.count("account.move", &[("name", "INV/2030/00001")]), 1);
    assert_eq!(rpc.ok("account.move", "unlink", json!([[empty]]), json!({})), json!(true));
}

#[test]
fn a_credit_note_through_the_reversal_wizard_carries_reversed_entry_id() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.freeze_clock("2030-01-02 10:00:00");
    let inv = invoice(&rpc, json!(ACME), true);
    let ctx = json!({"context": {"active_model": "account.move", "active_ids": [inv]}});
    let err = rpc.err("account.move.reversal", "create", json!([{"reason": "damaged"}]), ctx.clone());
    assert_eq!(err["data"]["message"], "You can only reverse posted moves.");
    rpc.ok("account.move", "action_post", json!([[inv]]), json!({}));
    let wizard = rpc.ok("account.move.reversal", "create", json!([{"reason": "damaged"}]), ctx);
    let action = rpc.ok("account.move.reversal", "refund_moves", json!([[wizard]]), json!({}));
    let refund = action["res_id"].as_i64().unwrap();
    let r = &rpc.ok(
        "account.move",
        "read",
        json!([[refund], ["move_type", "state", "reversed_entry_id", "amount_total"]]),
        json!({}),
    )[0];
    assert_eq!((r["move_type"].clone(), r["state"].clone()), (json!("out_refund"), json!("draft")));
    assert_eq!(r["reversed_entry_id"][0], json!(inv));
    rpc.ok("account.move", "action_post", json!([[refund]]), json!({}));
    assert_eq!(rpc.ok("account.move", "read", json!([[refund], ["name"]]), json!({}))[0]["name"], "RINV/2030/00001");
    assert_eq!(
        rpc.ok("account.move", "read", json!([[inv], ["payment_state"]]), json!({}))[0]["payment_state"],
        "reversed"
    );
}

#[test]
fn registering_payments_settles_the_invoice_partly_then_fully() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let inv = invoice(&rpc, json!(ACME), true);
    rpc.ok("account.move", "action_post", json!([[inv]]), json!({}));
    let ctx = json!({"context": {"active_model": "account.move", "active_ids": [inv]}});
    let w =
        rpc.ok("account.payment.register", "create", json!([{"amount": 40.0, "communication": "BANK-1"}]), ctx.clone());
    let action = rpc.ok("account.payment.register", "action_create_payments", json!([[w]]), json!({}));
    assert_eq!(action["res_model"], "account.payment");
    let row = &rpc.ok("account.move", "read", json!([[inv], ["amount_residual", "payment_state"]]), json!({}))[0];
    assert_eq!((row["amount_residual"].clone(), row["payment_state"].clone()), (json!(60.0), json!("partial")));
    let w = rpc.ok("account.payment.register", "create", json!([{}]), ctx.clone());
    rpc.ok("account.payment.register", "action_create_payments", json!([[w]]), json!({}));
    assert_eq!(
        rpc.ok("account.move", "read", json!([[inv], ["payment_state"]]), json!({}))[0]["payment_state"],
        "paid"
    );
    assert_eq!(odoo.count("account.payment", &[("state", "posted"), ("ref", "BANK-1")]), 1);
    let err = rpc.err("account.payment.register", "create", json!([{}]), ctx);
    assert_eq!(err["data"]["name"], "odoo.exceptions.UserError");
    // A standalone payment is posted with action_post, once.
    let p = rpc.ok("account.payment", "create", json!([{"amount": 5.0, "partner_id": ACME, "ref": "X"}]), json!({}));
    rpc.ok("account.payment", "action_post", json!([[p]]), json!({}));
    assert_eq!(state(&rpc, "account.payment", p.as_i64().unwrap()), "posted");
    assert!(rpc.err("account.payment", "action_post", json!([[p]]), json!({}))["data"]["message"].is_string());
}

#[test]
fn external_ids_are_unique_per_module_and_name() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let vals = json!([{"module": "waybill", "name": "order_SO1", "model": "sale.order", "res_id": 1}]);
    rpc.ok("ir.model.data", "create", vals.clone(), json!({}));
    let err = rpc.err("ir.model.data", "create", vals, json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.ValidationError");
    assert_eq!(odoo.count("ir.model.data", &[("module", "waybill"), ("name", "order_SO1")]), 1);
}
