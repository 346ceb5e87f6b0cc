//! The Odoo adapter: Waybill's commands as Odoo ORM calls, and the poller that brings
//! Odoo's own changes in ([`poller`]).
//!
//! Every command is idempotent at Odoo, the way integrators do it (see the OCA connector
//! and EDI modules): before creating anything the adapter looks for what an earlier
//! attempt made, by the command's natural key — `ref` on invoices and credit notes, the
//! carrier tracking reference on a validated delivery, a marker in the order's chatter
//! for a backorder note. An ambiguous failure (a timeout, a reset connection) therefore
//! needs no special path: the retry re-reads first and finds the record if Odoo
//! committed it. Methods that answer with a wizard instead of finishing
//! (`button_validate`, the reversal wizard) are driven to the end and the state re-read.
//!
//! Which commands: `ConfirmShipment` (validate the delivery with its lots and serials;
//! Odoo creates the backorder for what was not shipped), `CreateBackorder` (a note on the
//! order saying what is backordered and why), `ValidateReceipt` (validate a purchase
//! order's incoming picking with what the warehouse accepted, answered by
//! `ReceiptValidated`), `ReturnToVendor` (the return wizard on a validated receipt, the
//! return validated) — and, when finance is Odoo Accounting,
//! `PostInvoice` (customer invoice, posted) and `IssueCreditNote` (through the reversal
//! wizard, posted, carrying `reversed_entry_id`).

mod account;
pub mod poller;
mod receipt;
pub mod rpc;
mod stock;

use serde_json::{Value, json};
use waybill_domain::{Command, CommandBody, EventBody, InboundEvent, Money, Qty, System};
use waybill_telemetry::TraceHeaders;

use crate::{Adapter, Call, Failure};
pub use rpc::{Odoo, OrmCall, Protocol};

/// The Odoo adapter for one Waybill system (`odoo`, or `finance` when finance is Odoo
/// Accounting): the answers it gives come from that system.
#[derive(Debug)]
pub struct OdooAdapter {
    odoo: std::sync::Arc<Odoo>,
    system: System,
}

impl OdooAdapter {
    /// Carries out `system`'s commands in `odoo`.
    pub fn new(odoo: std::sync::Arc<Odoo>, system: System) -> Self {
        OdooAdapter { odoo, system }
    }
}

impl Adapter for OdooAdapter {
    fn deliver(&self, command: &Command, call: Call<'_>) -> Result<Vec<InboundEvent>, Failure> {
        let orm = Orm { odoo: &self.odoo, trace: call.trace, throttle: call.throttle, calls: std::cell::Cell::new(0) };
        match &command.body {
            CommandBody::ConfirmShipment(c) => stock::confirm_shipment(&orm, c).map(|()| Vec::new()),
            CommandBody::CreateBackorder(b) => {
                stock::note_backorder(&orm, b, &command.meta.idempotency_key).map(|()| Vec::new())
            }
            CommandBody::ValidateReceipt(p) => receipt::validate_receipt(&orm, p).map(|v| {
                let picking = v.picking_ref.clone();
                vec![crate::answer(self.system, command, picking, EventBody::ReceiptValidated(v))]
            }),
            CommandBody::ReturnToVendor(p) => receipt::return_to_vendor(&orm, p).map(|()| Vec::new()),
            CommandBody::PostInvoice(p) => account::post_invoice(&orm, p)
                .map(|body| vec![crate::answer(self.system, command, invoice_ref(&body), body)]),
            CommandBody::IssueCreditNote(c) => account::issue_credit_note(&orm, c)
                .map(|body| vec![crate::answer(self.system, command, invoice_ref(&body), body)]),
            other => Err(Failure::Refused {
                reason: format!(
                    "the Odoo connector does not carry out {}; route the {} system's commands to the connector of the system that does",
                    other.name(),
                    command.meta.target
                ),
            }),
        }
    }

    fn refusal(&self, command: &Command, reason: &str) -> Option<EventBody> {
        crate::http::refusal_event(command, reason)
    }
}

fn invoice_ref(body: &EventBody) -> String {
    match body {
        EventBody::InvoicePosted(p) => p.invoice_number.clone(),
        EventBody::CreditNoteIssued(c) => c.credit_note_number.clone(),
        _ => String::new(),
    }
}

/// ORM helpers over one call's trace context.
struct Orm<'a> {
    odoo: &'a Odoo,
    trace: Option<&'a TraceHeaders>,
    /// The target's throttle: every request after the first takes a token.
    throttle: Option<&'a crate::target::Target>,
    calls: std::cell::Cell<u32>,
}

impl Orm<'_> {
    fn call(&self, c: OrmCall) -> Result<Value, Failure> {
        let n = self.calls.get();
        self.calls.set(n + 1);
        if n > 0
            && let Some(t) = self.throttle
        {
            t.wait_token();
        }
        self.odoo.call(&c, self.trace)
    }

    fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        order: Option<&str>,
    ) -> Result<Vec<Value>, Failure> {
        let mut c = OrmCall::new(model, "search_read").param("domain", domain).param("fields", json!(fields));
        if let Some(o) = order {
            c = c.param("order", json!(o));
        }
        match self.call(c)? {
            Value::Array(rows) => Ok(rows),
            other => Err(Failure::Transient { reason: format!("{model}.search_read answered {other}, not a list") }),
        }
    }

    fn create(&self, model: &str, vals: Value, context: Option<Value>) -> Result<i64, Failure> {
        let mut c = OrmCall::new(model, "create").param("vals_list", json!([vals]));
        if let Some(Value::Object(ctx)) = context {
            c.context = ctx;
        }
        let v = self.call(c)?;
        v.as_i64()
            .or_else(|| v.as_array().and_then(|a| a.first()).and_then(Value::as_i64))
            .ok_or_else(|| Failure::Transient { reason: format!("{model}.create answered {v}, not an id") })
    }

    fn write(&self, model: &str, ids: &[i64], vals: Value) -> Result<(), Failure> {
        self.call(OrmCall::new(model, "write").ids(ids).param("vals", vals)).map(|_| ())
    }
}

/// The id in a many2one value (`[id, "name"]`, or `false`).
fn m2o(v: &Value) -> Option<i64> {
    v.as_array().and_then(|a| a.first()).and_then(Value::as_i64).or_else(|| v.as_i64())
}

/// The display name in a many2one value.
fn m2o_name(v: &Value) -> Option<String> {
    v.as_array().and_then(|a| a.get(1)).and_then(Value::as_str).map(str::to_string)
}

fn str_field(row: &Value, field: &str) -> Option<String> {
    row.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

fn id_of(row: &Value) -> i64 {
    row.get("id").and_then(Value::as_i64).unwrap_or_default()
}

/// A quantity as Odoo's float in the unit of measure.
fn qty_float(q: Qty) -> f64 {
    q.0 as f64 / 1000.0
}

/// A float quantity from Odoo.
fn qty_of(v: &Value) -> Qty {
    Qty((v.as_f64().unwrap_or(0.0) * 1000.0).round() as i64)
}

/// Money as Odoo's float in the currency.
fn money_float(m: Money) -> f64 {
    m.0 as f64 / 100.0
}

/// Money from Odoo's float.
fn money_of(v: &Value) -> Money {
    Money((v.as_f64().unwrap_or(0.0) * 100.0).round() as i64)
}

/// Products by `default_code`: code → (id, tracking).
fn products(orm: &Orm<'_>, codes: &[&str]) -> Result<std::collections::HashMap<String, (i64, String)>, Failure> {
    let rows = orm.search_read(
        "product.product",
        json!([["default_code", "in", codes]]),
        &["id", "default_code", "tracking"],
        None,
    )?;
    let found: std::collections::HashMap<String, (i64, String)> = rows
        .iter()
        .filter_map(|r| {
            Some((str_field(r, "default_code")?, (id_of(r), str_field(r, "tracking").unwrap_or_else(|| "none".into()))))
        })
        .collect();
    if let Some(missing) = codes.iter().find(|c| !found.contains_key(**c)) {
        return Err(Failure::Refused {
            reason: format!(
                "product {missing:?} is not in Odoo (no product.product with that internal reference); create it in Odoo, then retry"
            ),
        });
    }
    Ok(found)
}
