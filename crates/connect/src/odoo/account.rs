//! Invoices and credit notes in Odoo Accounting, for a distributor whose finance system is
//! Odoo itself.

use serde_json::{Value, json};
use waybill_domain::EventBody;
use waybill_domain::command::{InvoiceLine, IssueCreditNote, PostInvoice};
use waybill_domain::event::{CreditNoteIssued, InvoicePosted};

use super::{Orm, OrmCall, id_of, money_float, products, qty_float, str_field};
use crate::Failure;

const MOVE_FIELDS: &[&str] = &["id", "name", "state", "amount_total", "move_type"];

/// Posts the customer invoice of one shipment: `ref` is the shipment id, the natural key
/// that finds an invoice an earlier attempt created (posted or still draft) instead of
/// creating a second one.
pub(super) fn post_invoice(orm: &Orm<'_>, p: &PostInvoice) -> Result<EventBody, Failure> {
    let found = orm.search_read(
        "account.move",
        json!([["move_type", "=", "out_invoice"], ["ref", "=", p.shipment_id]]),
        MOVE_FIELDS,
        Some("id asc"),
    )?;
    let id = match found.first() {
        Some(m) => id_of(m),
        None => {
            let partner = partner(orm, &p.customer_ref)?;
            let lines = invoice_lines(orm, &p.lines)?;
            orm.create(
                "account.move",
                json!({"move_type": "out_invoice", "partner_id": partner, "ref": p.shipment_id,
                       "invoice_origin": p.order_ref, "invoice_line_ids": lines}),
                None,
            )?
        }
    };
    let number = post(orm, id, &format!("the invoice of shipment {}", p.shipment_id))?;
    Ok(EventBody::InvoicePosted(InvoicePosted {
        order_ref: p.order_ref.clone(),
        shipment_id: p.shipment_id.clone(),
        invoice_number: number,
        amount: p.total,
    }))
}

/// Issues the credit note of one return receipt through Odoo's reversal wizard
/// (`account.move.reversal`, `refund_moves`), so it carries `reversed_entry_id`; its lines
/// become what was credited (less the restocking fee), and it is posted. `ref` carries the
/// receipt id: a credit note an earlier attempt made is found by it, or — if the attempt
/// stopped right after the wizard — by the reversal's own reference, which Odoo writes as
/// "Reversal of: <invoice>, <reason>" with the receipt in the reason.
pub(super) fn issue_credit_note(orm: &Orm<'_>, c: &IssueCreditNote) -> Result<EventBody, Failure> {
    let mut found = orm.search_read(
        "account.move",
        json!([["move_type", "=", "out_refund"], ["ref", "=", c.receipt_id]]),
        MOVE_FIELDS,
        Some("id asc"),
    )?;
    let invoice = orm.search_read(
        "account.move",
        json!([["move_type", "=", "out_invoice"], ["name", "=", c.invoice_number]]),
        &["id", "state", "partner_id"],
        None,
    )?;
    let Some(invoice) = invoice.first() else {
        return Err(Failure::Refused {
            reason: format!(
                "invoice {} is not in Odoo, so return {} cannot be credited against it",
                c.invoice_number, c.receipt_id
            ),
        });
    };
    let invoice_id = id_of(invoice);
    if found.is_empty() {
        found = orm.search_read(
            "account.move",
            json!([
                ["move_type", "=", "out_refund"],
                ["reversed_entry_id", "=", invoice_id],
                ["ref", "ilike", c.receipt_id]
            ]),
            MOVE_FIELDS,
            Some("id asc"),
        )?;
    }
    let id = match found.first() {
        Some(m) if str_field(m, "state").as_deref() == Some("posted") => id_of(m),
        Some(m) => {
            shape_refund(orm, id_of(m), c)?;
            id_of(m)
        }
        None => {
            if str_field(invoice, "state").as_deref() != Some("posted") {
                return Err(Failure::Refused {
                    reason: format!(
                        "invoice {} is not posted in Odoo; only a posted invoice can be reversed",
                        c.invoice_number
                    ),
                });
            }
            let wizard = orm.create(
                "account.move.reversal",
                json!({"reason": format!("Return {}", c.receipt_id)}),
                Some(json!({"active_model": "account.move", "active_ids": [invoice_id]})),
            )?;
            let action = orm.call(
                OrmCall::new("account.move.reversal", "refund_moves")
                    .ids(&[wizard])
                    .context("active_model", json!("account.move"))
                    .context("active_ids", json!([invoice_id])),
            )?;
            let refund = action.get("res_id").and_then(Value::as_i64).ok_or_else(|| Failure::Transient {
                reason: format!("the reversal wizard answered {action} without the credit note it created"),
            })?;
            shape_refund(orm, refund, c)?;
            refund
        }
    };
    let number = post(orm, id, &format!("the credit note of return {}", c.receipt_id))?;
    Ok(EventBody::CreditNoteIssued(CreditNoteIssued {
        order_ref: c.order_ref.clone(),
        receipt_id: c.receipt_id.clone(),
        credit_note_number: number,
        amount: c.total,
    }))
}

/// Gives a draft credit note its reference and the credited lines (the wizard copied the
/// whole invoice).
fn shape_refund(orm: &Orm<'_>, refund: i64, c: &IssueCreditNote) -> Result<(), Failure> {
    let mut lines = invoice_lines(orm, &c.lines)?;
    if c.restocking_fee.0 != 0 {
        lines.push(
            json!([0, 0, {"name": "Restocking fee", "quantity": 1.0, "price_unit": -money_float(c.restocking_fee)}]),
        );
    }
    let mut commands = vec![json!([5, 0, 0])];
    commands.extend(lines);
    orm.write("account.move", &[refund], json!({"ref": c.receipt_id, "invoice_line_ids": commands}))
}

/// Posts move `id` unless it is posted; returns its number.
fn post(orm: &Orm<'_>, id: i64, what: &str) -> Result<String, Failure> {
    let read = |orm: &Orm<'_>| -> Result<Value, Failure> {
        orm.search_read("account.move", json!([["id", "=", id]]), MOVE_FIELDS, None)?
            .into_iter()
            .next()
            .ok_or_else(|| Failure::Refused { reason: format!("{what} (account.move {id}) is gone from Odoo") })
    };
    let mut m = read(orm)?;
    match str_field(&m, "state").as_deref() {
        Some("posted") => {}
        Some("cancel") => {
            return Err(Failure::Refused {
                reason: format!("{what} is cancelled in Odoo; a cancelled entry is not posted again"),
            });
        }
        _ => {
            orm.call(OrmCall::new("account.move", "action_post").ids(&[id]))?;
            m = read(orm)?;
        }
    }
    match (str_field(&m, "state").as_deref(), str_field(&m, "name")) {
        (Some("posted"), Some(name)) if name != "/" => Ok(name),
        (state, _) => Err(Failure::Transient {
            reason: format!("{what} is {} after posting, not posted with a number", state.unwrap_or("unknown")),
        }),
    }
}

fn partner(orm: &Orm<'_>, customer_ref: &str) -> Result<i64, Failure> {
    let rows = orm.search_read("res.partner", json!([["ref", "=", customer_ref]]), &["id"], Some("id asc"))?;
    rows.first().map(id_of).ok_or_else(|| Failure::Refused {
        reason: format!(
            "customer {customer_ref:?} is not in Odoo (no contact with that reference); create it, then retry"
        ),
    })
}

fn invoice_lines(orm: &Orm<'_>, lines: &[InvoiceLine]) -> Result<Vec<Value>, Failure> {
    let codes: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    let catalog = products(orm, &codes)?;
    Ok(lines
        .iter()
        .map(|l| {
            json!([0, 0, {
                "product_id": catalog[&l.sku].0,
                "name": format!("{} (line {})", l.sku, l.line_no),
                "quantity": qty_float(l.quantity),
                "price_unit": money_float(l.unit_price),
            }])
        })
        .collect())
}
