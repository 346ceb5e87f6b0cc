//! The Odoo double tested over real HTTP, so a connector cannot pass against a lenient one.

mod support;

#[path = "odoo/faults.rs"]
mod faults;
#[path = "odoo/purchase.rs"]
mod purchase;
#[path = "odoo/rules.rs"]
mod rules;
#[path = "odoo/transport.rs"]
mod transport;

use serde_json::json;
use support::Rpc;
use waybill_doubles::odoo::{OdooConfig, OdooDouble, OdooVersion};

/// A double of `version` with a partner, an untracked, a lot- and a serial-tracked product.
pub fn start(version: OdooVersion) -> (OdooDouble, Rpc) {
    let odoo = OdooDouble::start(OdooConfig::version(version));
    odoo.create("res.partner", json!({"name": "Acme"}));
    odoo.create("product.product", json!({"default_code": "WID", "name": "Widget", "list_price": 10.0}));
    odoo.create("product.product", json!({"default_code": "LOT", "name": "Paint", "tracking": "lot"}));
    odoo.create("product.product", json!({"default_code": "SER", "name": "Drill", "tracking": "serial"}));
    let rpc = Rpc { url: odoo.url(), db: odoo.db().into(), uid: 2, key: odoo.api_key("admin").unwrap() };
    (odoo, rpc)
}

pub const ACME: i64 = 1;
pub const WIDGET: i64 = 1;
pub const PAINT: i64 = 2;
pub const DRILL: i64 = 3;

/// A confirmed order for `lines` (product, qty); returns (order id, picking id).
pub fn confirmed_order(rpc: &Rpc, reference: &str, lines: &[(i64, f64)]) -> (i64, i64) {
    let order_line: Vec<_> =
        lines.iter().map(|(p, q)| json!([0, 0, {"product_id": p, "product_uom_qty": q, "price_unit": 5.0}])).collect();
    let order = rpc
        .ok(
            "sale.order",
            "create",
            json!([{"partner_id": ACME, "client_order_ref": reference, "order_line": order_line}]),
            json!({}),
        )
        .as_i64()
        .unwrap();
    assert_eq!(rpc.ok("sale.order", "action_confirm", json!([[order]]), json!({})), json!(true));
    let picking = rpc.ok("stock.picking", "search", json!([[["sale_id", "=", order]]]), json!({}))[0].as_i64().unwrap();
    (order, picking)
}
