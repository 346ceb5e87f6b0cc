//! The models the double knows, their fields and default orders (Odoo 17+ names).

/// A field's type, as far as reading, writing and searching need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Char,
    Int,
    Float,
    Bool,
    Sel(&'static [&'static str]),
    Date,
    Datetime,
    M2o(&'static str),
    /// Comodel and its many2one back to us.
    O2m(&'static str, &'static str),
    M2m(&'static str),
    /// Read-only, computed on read (`display_name`, totals).
    Computed,
}

/// One model: name, fields, `_order`, whether it is a wizard.
#[derive(Debug)]
pub(crate) struct ModelDef {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [(&'static str, Kind)],
    pub(crate) order: &'static str,
}

impl ModelDef {
    pub(crate) fn field(&self, name: &str) -> Option<Kind> {
        match name {
            "id" => Some(Kind::Int),
            "display_name" => Some(Kind::Computed),
            "create_date" | "write_date" => Some(Kind::Datetime),
            _ => self.fields.iter().find(|(n, _)| *n == name).map(|(_, k)| *k),
        }
    }

    /// Every field name, `id` first, as `read` without `fields` returns them.
    pub(crate) fn all_fields(&self) -> Vec<&'static str> {
        let mut out = vec!["id"];
        out.extend(self.fields.iter().map(|(n, _)| *n));
        out.extend(["display_name", "create_date", "write_date"]);
        out
    }
}

const PICKING_STATES: &[&str] = &["draft", "waiting", "confirmed", "assigned", "done", "cancel"];
const MOVE_STATES: &[&str] = &["draft", "waiting", "confirmed", "partially_available", "assigned", "done", "cancel"];

use Kind::*;

pub(crate) static MODELS: &[ModelDef] = &[
    ModelDef {
        name: "res.partner",
        fields: &[("name", Char), ("ref", Char), ("email", Char), ("active", Bool)],
        order: "name asc, id desc",
    },
    ModelDef {
        name: "product.product",
        fields: &[
            ("default_code", Char),
            ("name", Char),
            ("barcode", Char),
            ("tracking", Sel(&["none", "lot", "serial"])),
            ("type", Sel(&["consu", "service", "product", "combo"])),
            ("list_price", Float),
            ("active", Bool),
        ],
        order: "default_code asc, name asc, id asc",
    },
    ModelDef {
        name: "ir.model.data",
        fields: &[("module", Char), ("name", Char), ("model", Char), ("res_id", Int)],
        order: "module asc, name asc, id asc",
    },
    ModelDef { name: "stock.location", fields: &[("name", Char), ("usage", Char)], order: "id asc" },
    ModelDef { name: "stock.warehouse", fields: &[("name", Char), ("code", Char)], order: "id asc" },
    ModelDef { name: "res.currency", fields: &[("name", Char)], order: "name asc, id asc" },
    ModelDef {
        name: "res.company",
        fields: &[("name", Char), ("currency_id", M2o("res.currency"))],
        order: "name asc, id asc",
    },
    ModelDef { name: "uom.uom", fields: &[("name", Char)], order: "name asc, id asc" },
    ModelDef { name: "account.tax", fields: &[("name", Char), ("amount", Float)], order: "name asc, id asc" },
    ModelDef {
        name: "mail.message",
        fields: &[("model", Char), ("res_id", Int), ("body", Char), ("message_type", Char)],
        order: "id desc",
    },
    ModelDef {
        name: "stock.lot",
        fields: &[("name", Char), ("product_id", M2o("product.product"))],
        order: "name asc, id asc",
    },
    ModelDef {
        name: "sale.order",
        fields: &[
            ("name", Char),
            ("partner_id", M2o("res.partner")),
            ("partner_shipping_id", M2o("res.partner")),
            ("client_order_ref", Char),
            ("origin", Char),
            ("state", Sel(&["draft", "sent", "sale", "cancel"])),
            ("date_order", Datetime),
            ("commitment_date", Datetime),
            ("currency_id", M2o("res.currency")),
            ("company_id", M2o("res.company")),
            ("warehouse_id", M2o("stock.warehouse")),
            ("order_line", O2m("sale.order.line", "order_id")),
            ("picking_ids", O2m("stock.picking", "sale_id")),
            ("amount_total", Computed),
        ],
        order: "date_order desc, id desc",
    },
    ModelDef {
        name: "sale.order.line",
        fields: &[
            ("order_id", M2o("sale.order")),
            ("sequence", Int),
            ("product_id", M2o("product.product")),
            ("name", Char),
            ("product_uom", M2o("uom.uom")),
            ("tax_id", M2m("account.tax")),
            ("product_uom_qty", Float),
            ("price_unit", Float),
            ("qty_delivered", Float),
            ("price_subtotal", Computed),
        ],
        order: "order_id asc, id asc",
    },
    ModelDef {
        name: "purchase.order",
        fields: &[
            ("name", Char),
            ("partner_id", M2o("res.partner")),
            ("partner_ref", Char),
            ("origin", Char),
            ("state", Sel(&["draft", "sent", "to approve", "purchase", "done", "cancel"])),
            ("priority", Sel(&["0", "1"])),
            ("date_order", Datetime),
            ("date_approve", Datetime),
            ("date_planned", Datetime),
            ("currency_id", M2o("res.currency")),
            ("company_id", M2o("res.company")),
            ("order_line", O2m("purchase.order.line", "order_id")),
            ("picking_ids", O2m("stock.picking", "purchase_id")),
            ("amount_total", Computed),
        ],
        order: "priority desc, id desc",
    },
    ModelDef {
        name: "purchase.order.line",
        fields: &[
            ("order_id", M2o("purchase.order")),
            ("sequence", Int),
            ("product_id", M2o("product.product")),
            ("name", Char),
            ("product_uom", M2o("uom.uom")),
            ("product_qty", Float),
            ("price_unit", Float),
            ("qty_received", Float),
            ("date_planned", Datetime),
            ("move_ids", O2m("stock.move", "purchase_line_id")),
            ("price_subtotal", Computed),
        ],
        order: "order_id asc, sequence asc, id asc",
    },
    ModelDef { name: "sale.order.cancel", fields: &[("order_id", M2o("sale.order"))], order: "id asc" },
    ModelDef {
        name: "stock.picking",
        fields: &[
            ("name", Char),
            ("origin", Char),
            ("state", Sel(PICKING_STATES)),
            ("picking_type_code", Sel(&["incoming", "outgoing", "internal"])),
            ("partner_id", M2o("res.partner")),
            ("sale_id", M2o("sale.order")),
            ("purchase_id", M2o("purchase.order")),
            ("carrier_tracking_ref", Char),
            ("scheduled_date", Datetime),
            ("date_done", Datetime),
            ("backorder_id", M2o("stock.picking")),
            ("return_id", M2o("stock.picking")),
            ("location_id", M2o("stock.location")),
            ("location_dest_id", M2o("stock.location")),
            ("move_ids", O2m("stock.move", "picking_id")),
            ("move_line_ids", O2m("stock.move.line", "picking_id")),
        ],
        order: "scheduled_date asc, id desc",
    },
    ModelDef {
        name: "stock.move",
        fields: &[
            ("name", Char),
            ("picking_id", M2o("stock.picking")),
            ("product_id", M2o("product.product")),
            ("product_uom_qty", Float),
            ("quantity", Float),
            ("picked", Bool),
            ("state", Sel(MOVE_STATES)),
            ("location_id", M2o("stock.location")),
            ("location_dest_id", M2o("stock.location")),
            ("sale_line_id", M2o("sale.order.line")),
            ("purchase_line_id", M2o("purchase.order.line")),
            ("origin_returned_move_id", M2o("stock.move")),
            ("move_line_ids", O2m("stock.move.line", "move_id")),
        ],
        order: "id asc",
    },
    ModelDef {
        name: "stock.move.line",
        fields: &[
            ("move_id", M2o("stock.move")),
            ("picking_id", M2o("stock.picking")),
            ("product_id", M2o("product.product")),
            ("quantity", Float),
            ("picked", Bool),
            ("lot_id", M2o("stock.lot")),
            ("lot_name", Char),
            ("location_id", M2o("stock.location")),
            ("location_dest_id", M2o("stock.location")),
            ("result_package_id", Int),
            ("state", Sel(MOVE_STATES)),
        ],
        order: "id asc",
    },
    ModelDef { name: "stock.backorder.confirmation", fields: &[("pick_ids", M2m("stock.picking"))], order: "id asc" },
    ModelDef {
        name: "stock.return.picking",
        fields: &[
            ("picking_id", M2o("stock.picking")),
            ("product_return_moves", O2m("stock.return.picking.line", "wizard_id")),
        ],
        order: "id asc",
    },
    ModelDef {
        name: "stock.return.picking.line",
        fields: &[
            ("wizard_id", M2o("stock.return.picking")),
            ("product_id", M2o("product.product")),
            ("quantity", Float),
            ("move_id", M2o("stock.move")),
        ],
        order: "id asc",
    },
    ModelDef {
        name: "account.move",
        fields: &[
            ("name", Char),
            ("move_type", Sel(&["entry", "out_invoice", "out_refund", "in_invoice", "in_refund"])),
            ("state", Sel(&["draft", "posted", "cancel"])),
            ("partner_id", M2o("res.partner")),
            ("invoice_origin", Char),
            ("ref", Char),
            ("payment_reference", Char),
            ("invoice_date", Date),
            ("date", Date),
            ("invoice_line_ids", O2m("account.move.line", "move_id")),
            ("reversed_entry_id", M2o("account.move")),
            ("amount_total", Computed),
            ("amount_residual", Computed),
            ("payment_state", Sel(&["not_paid", "in_payment", "paid", "partial", "reversed", "invoicing_legacy"])),
        ],
        order: "date desc, name desc, id desc",
    },
    ModelDef {
        name: "account.move.line",
        fields: &[
            ("move_id", M2o("account.move")),
            ("product_id", M2o("product.product")),
            ("name", Char),
            ("quantity", Float),
            ("price_unit", Float),
            ("price_subtotal", Computed),
        ],
        order: "id asc",
    },
    ModelDef {
        name: "account.move.reversal",
        fields: &[
            ("move_ids", M2m("account.move")),
            ("new_move_ids", M2m("account.move")),
            ("reason", Char),
            ("date", Date),
        ],
        order: "id asc",
    },
    ModelDef {
        name: "account.payment.register",
        fields: &[
            ("move_ids", M2m("account.move")),
            ("amount", Float),
            ("payment_date", Date),
            ("communication", Char),
        ],
        order: "id asc",
    },
    ModelDef {
        name: "account.payment",
        fields: &[
            ("name", Char),
            ("amount", Float),
            ("partner_id", M2o("res.partner")),
            ("payment_type", Sel(&["inbound", "outbound"])),
            ("partner_type", Sel(&["customer", "supplier"])),
            ("ref", Char),
            ("memo", Char),
            ("date", Date),
            ("state", Sel(&["draft", "in_process", "posted", "paid", "cancel"])),
            ("reconciled_invoice_ids", M2m("account.move")),
        ],
        order: "date desc, name desc, id desc",
    },
];

pub(crate) fn model(name: &str) -> Option<&'static ModelDef> {
    MODELS.iter().find(|m| m.name == name)
}
