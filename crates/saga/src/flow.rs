//! All sagas of one order, keyed by the correlation key (the Odoo sale order name).
//! Every saga of an order lives on the same partition, so one coordinator owns them
//! all and they may read each other's state: the invoice of a shipment reads what the
//! shipment carried, a return reads what was shipped and invoiced.
//!
//! [`step`] is the pure heart of the coordinator: route the event to its saga(s),
//! decide, give the outputs their ids, and fold the journal events into the state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waybill_domain::event::EventBody;
use waybill_domain::{Command, InboundEvent, JournalBody, JournalEvent, SagaKind, Timestamp};

use crate::catalog::Catalog;
use crate::decision::{Cause, DeadLetter, DeadLetterKind, Decision, materialize};
use crate::fulfillment::{self, Fulfillment, Status};
use crate::invoicing::{self, Invoicing};
use crate::policy::{InvoiceTrigger, Policy};
use crate::returns::{self, ReturnCredit};

/// State of every saga of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFlow {
    /// The correlation key.
    pub key: String,
    /// Order to fulfillment.
    pub fulfillment: Fulfillment,
    /// Ship-to-invoice, one per shipment id.
    #[serde(default)]
    pub invoices: BTreeMap<String, Invoicing>,
    /// Returns and credit, one per RMA id.
    #[serde(default)]
    pub returns: BTreeMap<String, ReturnCredit>,
}

/// The outputs of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Journal events, with sequence numbers.
    pub journal: Vec<JournalEvent>,
    /// Commands, with idempotency keys.
    pub commands: Vec<Command>,
    /// Whether the input goes to the dead-letter topic.
    pub dead_letter: Option<DeadLetter>,
}

impl Step {
    /// True when the step changed nothing.
    pub fn is_noop(&self) -> bool {
        self.journal.is_empty() && self.commands.is_empty() && self.dead_letter.is_none()
    }
}

/// Which saga instance a decision belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Fulfillment,
    Invoice(String),
    Return(String),
}

impl OrderFlow {
    /// A new flow for `key`.
    pub fn new(key: impl Into<String>) -> Self {
        OrderFlow { key: key.into(), ..OrderFlow::default() }
    }

    /// Folds one journal event (ignoring copies already applied).
    pub fn apply(&mut self, event: &JournalEvent) {
        let id = &event.meta.saga_id;
        match event.meta.kind {
            SagaKind::OrderToFulfillment => self.fulfillment.apply(event),
            SagaKind::ShipToInvoice => {
                let shipment = id.strip_prefix("s2i:").unwrap_or(id).to_string();
                self.invoices.entry(shipment).or_default().apply(event);
            }
            SagaKind::ReturnsCredit => {
                let rma = id.strip_prefix("ret:").unwrap_or(id).to_string();
                self.returns.entry(rma).or_default().apply(event);
            }
        }
    }

    /// The earliest pending timer of any saga of this order.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let invoices = self.invoices.values().filter_map(Invoicing::next_deadline);
        let returns = self.returns.values().filter_map(ReturnCredit::next_deadline);
        self.fulfillment.next_deadline().into_iter().chain(invoices).chain(returns).min()
    }

    /// True when every saga of the order has finished.
    pub fn is_finished(&self) -> bool {
        self.fulfillment.is_finished()
            && self.invoices.values().all(Invoicing::is_finished)
            && self.returns.values().all(ReturnCredit::is_finished)
    }

    fn commit(&mut self, target: &Target, decision: Decision, cause: &Cause, out: &mut Step) {
        if decision.is_noop() {
            return;
        }
        let (kind, saga_id, last_seq) = match target {
            Target::Fulfillment => {
                (SagaKind::OrderToFulfillment, Fulfillment::KIND.saga_id(&self.key), self.fulfillment.book.seq)
            }
            Target::Invoice(s) => {
                (SagaKind::ShipToInvoice, Invoicing::saga_id(s), self.invoices.get(s).map_or(0, |i| i.book.seq))
            }
            Target::Return(r) => {
                (SagaKind::ReturnsCredit, ReturnCredit::saga_id(r), self.returns.get(r).map_or(0, |x| x.book.seq))
            }
        };
        let (journal, commands) = materialize(kind, &saga_id, &self.key, last_seq, &decision, cause);
        for e in &journal {
            self.apply(e);
        }
        out.journal.extend(journal);
        out.commands.extend(commands);
        if out.dead_letter.is_none() {
            out.dead_letter = decision.dead_letter;
        }
    }

    fn return_of_receipt(&self, receipt_id: &str) -> Option<String> {
        self.returns.iter().find(|(_, r)| r.receipts.contains_key(receipt_id)).map(|(id, _)| id.clone())
    }

    fn invoice_trigger(&self, policy: &Policy) -> InvoiceTrigger {
        let customer = self.fulfillment.order.as_ref().map(|o| o.customer_ref.as_str()).unwrap_or("");
        if policy.posting.invoice_on_delivery_for.contains(customer) {
            InvoiceTrigger::Delivery
        } else {
            policy.posting.invoice_on
        }
    }

    /// Starts the invoice of `shipment_id` if the shipment is recorded and not invoiced.
    fn start_invoice(&mut self, shipment_id: &str, env: &Env<'_>, requested_by: &str, cause: &Cause, out: &mut Step) {
        let (Some(order), Some(issued)) = (
            self.fulfillment.order.as_ref(),
            self.fulfillment.shipments.get(shipment_id).and_then(|s| s.issued.as_ref()),
        ) else {
            return;
        };
        let draft = invoicing::draft_for(order, issued);
        let state = self.invoices.get(shipment_id).cloned().unwrap_or_default();
        let ctx =
            invoicing::StartContext { policy: &env.policy.posting, catalog: env.catalog, requested_by, now: cause.at };
        let decision = invoicing::start(&state, draft, &ctx);
        self.commit(&Target::Invoice(shipment_id.to_string()), decision, cause, out);
    }
}

/// Everything a decision may consult besides state and input.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// Master data.
    pub catalog: &'a Catalog,
    /// Policy.
    pub policy: &'a Policy,
}

fn reject(reason: String) -> Decision {
    Decision::reject(DeadLetterKind::Rule, reason)
}

/// Routes an inbound event to the sagas of its order, decides, materialises the outputs
/// and applies them to `flow`.
pub fn step(flow: &mut OrderFlow, event: &InboundEvent, env: &Env<'_>, cause: &Cause) -> Step {
    let mut out = Step::default();
    let known = flow.fulfillment.status != Status::New;
    let requested_by = event.meta.source.to_string();
    match &event.body {
        EventBody::OrderReleased(_)
        | EventBody::StockReserved(_)
        | EventBody::ReleasedToWarehouse(_)
        | EventBody::PickConfirmed(_)
        | EventBody::OrderCancelled(_) => {
            let ctx = fulfillment::Context { catalog: env.catalog, policy: &env.policy.fulfillment, now: cause.at };
            let decision = fulfillment::decide(&flow.fulfillment, event, &ctx);
            flow.commit(&Target::Fulfillment, decision, cause, &mut out);
        }
        EventBody::GoodsIssued(g) => {
            let ctx = fulfillment::Context { catalog: env.catalog, policy: &env.policy.fulfillment, now: cause.at };
            let decision = fulfillment::decide(&flow.fulfillment, event, &ctx);
            let recorded = decision.journal.iter().any(|j| matches!(j, JournalBody::ShipmentRecorded(_)));
            flow.commit(&Target::Fulfillment, decision, cause, &mut out);
            if recorded && flow.invoice_trigger(env.policy) == InvoiceTrigger::GoodsIssue {
                flow.start_invoice(&g.shipment_id, env, &requested_by, cause, &mut out);
            }
        }
        EventBody::CarrierBooked(_) | EventBody::Delivered(_) => {
            let ctx = fulfillment::Context { catalog: env.catalog, policy: &env.policy.fulfillment, now: cause.at };
            let decision = fulfillment::decide(&flow.fulfillment, event, &ctx);
            let delivered = decision.journal.iter().find_map(|j| match j {
                JournalBody::DeliveryConfirmed(d) => Some(d.shipment_id.clone()),
                _ => None,
            });
            flow.commit(&Target::Fulfillment, decision, cause, &mut out);
            if let Some(shipment) = delivered
                && flow.invoice_trigger(env.policy) == InvoiceTrigger::Delivery
            {
                flow.start_invoice(&shipment, env, &requested_by, cause, &mut out);
            }
        }
        _ if !known => {
            let d = reject(format!(
                "{} for order {:?}, which Waybill has not seen released; release the order in Odoo first, then replay this record from the dead-letter topic",
                event.body.name(),
                event.meta.correlation_key
            ));
            flow.commit(&Target::Fulfillment, d, cause, &mut out);
        }
        EventBody::InvoicePosted(p) => route_invoice(flow, &p.shipment_id, event, env, cause, &mut out),
        EventBody::InvoiceRejected(r) => route_invoice(flow, &r.business_key, event, env, cause, &mut out),
        EventBody::PostingApproved(d) | EventBody::PostingRejected(d) => {
            if let Some(shipment) = d.posting_id.strip_prefix("inv:") {
                route_invoice(flow, shipment, event, env, cause, &mut out);
            } else if let Some(rma) = d.posting_id.strip_prefix("cn:").and_then(|r| flow.return_of_receipt(r)) {
                route_return(flow, &rma, event, env, cause, &mut out);
            } else {
                let d = reject(format!(
                    "{} names posting {:?}, which order {} does not have; check the posting id",
                    event.body.name(),
                    d.posting_id,
                    flow.key
                ));
                flow.commit(&Target::Fulfillment, d, cause, &mut out);
            }
        }
        EventBody::ReturnAuthorized(r) => route_return(flow, &r.rma_id.clone(), event, env, cause, &mut out),
        EventBody::ReturnReceived(r) => {
            if flow.returns.contains_key(&r.rma_id) {
                route_return(flow, &r.rma_id.clone(), event, env, cause, &mut out);
            } else {
                let d = reject(format!(
                    "return receipt {} names RMA {:?}, which order {} does not have; authorise the return in Odoo first, then replay this record",
                    r.receipt_id, r.rma_id, flow.key
                ));
                flow.commit(&Target::Fulfillment, d, cause, &mut out);
            }
        }
        EventBody::CreditNoteIssued(c) => route_receipt(flow, &c.receipt_id.clone(), event, env, cause, &mut out),
        EventBody::CreditNoteRejected(r) => route_receipt(flow, &r.business_key.clone(), event, env, cause, &mut out),
    }
    out
}

fn route_invoice(
    flow: &mut OrderFlow,
    shipment: &str,
    event: &InboundEvent,
    env: &Env<'_>,
    cause: &Cause,
    out: &mut Step,
) {
    let decision = match flow.invoices.get(shipment) {
        Some(inv) => invoicing::decide(inv, event, &env.policy.posting),
        None => reject(format!(
            "{} for shipment {shipment:?} of order {}, which has no invoice in progress; check the shipment id",
            event.body.name(),
            flow.key
        )),
    };
    let target =
        if flow.invoices.contains_key(shipment) { Target::Invoice(shipment.to_string()) } else { Target::Fulfillment };
    flow.commit(&target, decision, cause, out);
}

fn route_return(flow: &mut OrderFlow, rma: &str, event: &InboundEvent, env: &Env<'_>, cause: &Cause, out: &mut Step) {
    let state = flow.returns.get(rma).cloned().unwrap_or_default();
    let ctx = returns::Context {
        policy: &env.policy.posting,
        fulfillment: &flow.fulfillment,
        invoices: &flow.invoices,
        now: cause.at,
    };
    let decision = returns::decide(&state, event, &ctx);
    flow.commit(&Target::Return(rma.to_string()), decision, cause, out);
}

fn route_receipt(
    flow: &mut OrderFlow,
    receipt: &str,
    event: &InboundEvent,
    env: &Env<'_>,
    cause: &Cause,
    out: &mut Step,
) {
    match flow.return_of_receipt(receipt) {
        Some(rma) => route_return(flow, &rma, event, env, cause, out),
        None => {
            let d = reject(format!(
                "{} for return receipt {receipt:?} of order {}, which has no credit note in progress; check the receipt id",
                event.body.name(),
                flow.key
            ));
            flow.commit(&Target::Fulfillment, d, cause, out);
        }
    }
}

/// Fires the timers of `flow` that are due at `cause.at`.
pub fn tick(flow: &mut OrderFlow, cause: &Cause) -> Step {
    let mut out = Step::default();
    let decision = fulfillment::on_timer(&flow.fulfillment, cause.at);
    flow.commit(&Target::Fulfillment, decision, cause, &mut out);
    let shipments: Vec<String> = flow.invoices.keys().cloned().collect();
    for s in shipments {
        let decision = invoicing::on_timer(&flow.invoices[&s], cause.at);
        flow.commit(&Target::Invoice(s), decision, cause, &mut out);
    }
    let rmas: Vec<String> = flow.returns.keys().cloned().collect();
    for r in rmas {
        let decision = returns::on_timer(&flow.returns[&r], cause.at);
        flow.commit(&Target::Return(r), decision, cause, &mut out);
    }
    out
}
