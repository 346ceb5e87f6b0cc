//! The sagas of one order, keyed by the Odoo sale order name: order-to-fulfillment, one
//! ship-to-invoice per shipment and one returns-and-credit per RMA. The invoice of a
//! shipment reads what the shipment carried, a return what was shipped and invoiced, so
//! they are one [`Flow`]. A command target's health (`target:odoo`) is kept in a flow of
//! this shape too, under its target's key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waybill_domain::event::{EventBody, TargetOutage};
use waybill_domain::journal::DocumentKind;
use waybill_domain::{InboundEvent, JournalBody, JournalEvent, SagaKind, System, Timestamp};

use super::{Env, Flow, Step, commit, reject};
use crate::decision::{Cause, Outbound};
use crate::fulfillment::{self, Fulfillment, Status};
use crate::health::{self, TargetHealth};
use crate::invoicing::{self, Invoicing};
use crate::policy::{InvoiceTrigger, Policy};
use crate::returns::{self, ReturnCredit};
use crate::saga::Saga;
use crate::watch;

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
    /// In the flow of a target's key (`target:odoo`) only: whether the target answers.
    #[serde(default)]
    pub health: TargetHealth,
}

/// Which saga instance of an order a decision belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Order to fulfillment.
    Fulfillment,
    /// The invoice of a shipment.
    Invoice(String),
    /// The credit of a return (RMA).
    Return(String),
    /// A command target's health (in a target's flow only).
    Health(System),
}

impl OrderFlow {
    /// A new flow for `key`.
    pub fn new(key: impl Into<String>) -> Self {
        OrderFlow { key: key.into(), ..OrderFlow::default() }
    }

    /// Folds one journal event (ignoring copies already applied).
    pub fn apply(&mut self, event: &JournalEvent) {
        super::apply(self, event)
    }

    /// The earliest pending timer of any saga of this order: the sagas' own (pick due,
    /// approval SLA) and the watchdog's ([`watch`]) for a saga nothing else watches.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        super::next_deadline(self)
    }

    /// The sagas of this order that have stalled silently: not finished, with no pending
    /// timer and no open exception (DESIGN.md invariant 10; empty when it holds).
    pub fn stalls(&self) -> Vec<watch::Stall> {
        super::stalls(self)
    }

    /// True when every saga of the order has finished.
    pub fn is_finished(&self) -> bool {
        super::is_finished(self)
    }

    /// Rebuilds the command the saga `saga_id` of this order issued under `key`, exactly as
    /// it was first sent (what a retry of its `DELIVERY_FAILED` exception sends again):
    /// `None` when that saga does not exist or never issued `key`, `Err` with the reason
    /// when it did but cannot rebuild it exactly.
    pub fn reissue(&self, saga_id: &str, key: &str) -> Option<Result<Outbound, String>> {
        super::reissue(self, saga_id, key)
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
        commit(self, &Target::Invoice(shipment_id.to_string()), decision, cause, out);
    }

    fn is_released(&self) -> bool {
        self.fulfillment.status != Status::New
    }
}

impl Flow for OrderFlow {
    type Target = Target;

    const FAMILY: &'static str = "order";

    /// A target's health is a standing subject; an order is retired once finished.
    fn retires(&self) -> bool {
        TargetOutage::target_of_key(&self.key).is_none()
    }

    fn family(&self) -> &'static str {
        if TargetOutage::target_of_key(&self.key).is_some() { "system health" } else { Self::FAMILY }
    }

    /// Every key no other flow claims: an order's name, or a target's `target:<system>`.
    fn owns(_key: &str) -> bool {
        true
    }

    fn create(key: &str) -> Self {
        OrderFlow::new(key)
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn entity(&self) -> Option<&str> {
        self.fulfillment.order.as_ref().and_then(|o| o.company.as_deref())
    }

    fn targets(&self) -> Vec<Target> {
        if let Some(t) = TargetOutage::target_of_key(&self.key) {
            return vec![Target::Health(t)];
        }
        let mut v = Vec::with_capacity(1 + self.invoices.len() + self.returns.len());
        v.push(Target::Fulfillment);
        v.extend(self.invoices.keys().cloned().map(Target::Invoice));
        v.extend(self.returns.keys().cloned().map(Target::Return));
        v
    }

    fn saga_id(&self, target: &Target) -> String {
        match target {
            Target::Fulfillment => Fulfillment::KIND.saga_id(&self.key),
            Target::Invoice(s) => Invoicing::saga_id(s),
            Target::Return(r) => ReturnCredit::saga_id(r),
            Target::Health(t) => TargetHealth::saga_id(*t),
        }
    }

    fn saga(&self, target: &Target) -> Option<&dyn Saga> {
        match target {
            Target::Fulfillment => Some(&self.fulfillment),
            Target::Invoice(s) => self.invoices.get(s).map(|i| i as &dyn Saga),
            Target::Return(r) => self.returns.get(r).map(|x| x as &dyn Saga),
            Target::Health(_) => Some(&self.health),
        }
    }

    fn saga_mut(&mut self, target: &Target) -> &mut dyn Saga {
        match target {
            Target::Fulfillment => &mut self.fulfillment,
            Target::Invoice(s) => self.invoices.entry(s.clone()).or_default(),
            Target::Return(r) => self.returns.entry(r.clone()).or_default(),
            Target::Health(_) => &mut self.health,
        }
    }

    fn target_of(&self, saga_id: &str) -> Option<Target> {
        if let Some(t) = TargetOutage::target_of_key(&self.key) {
            return (saga_id == TargetHealth::saga_id(t)).then_some(Target::Health(t));
        }
        if saga_id == Fulfillment::KIND.saga_id(&self.key) {
            return Some(Target::Fulfillment);
        }
        if let Some(s) = saga_id.strip_prefix("s2i:").filter(|s| self.invoices.contains_key(*s)) {
            return Some(Target::Invoice(s.to_string()));
        }
        saga_id.strip_prefix("ret:").filter(|r| self.returns.contains_key(*r)).map(|r| Target::Return(r.to_string()))
    }

    fn target_of_event(&self, event: &JournalEvent) -> Option<Target> {
        let id = &event.meta.saga_id;
        Some(match event.meta.kind {
            SagaKind::OrderToFulfillment => Target::Fulfillment,
            SagaKind::ShipToInvoice => Target::Invoice(id.strip_prefix("s2i:").unwrap_or(id).to_string()),
            SagaKind::ReturnsCredit => Target::Return(id.strip_prefix("ret:").unwrap_or(id).to_string()),
            SagaKind::TargetHealth => Target::Health(TargetOutage::target_of_key(&self.key).unwrap_or(System::Other)),
            SagaKind::PurchaseToReceive | SagaKind::CashApplication | SagaKind::Reconciliation => return None,
        })
    }

    fn home(&self) -> Target {
        TargetOutage::target_of_key(&self.key).map_or(Target::Fulfillment, Target::Health)
    }

    fn takes_actions(&self) -> bool {
        self.is_released() || TargetOutage::target_of_key(&self.key).is_some()
    }

    fn not_begun(&self) -> Option<String> {
        (!self.is_released()).then(|| format!("order {:?}, which Waybill has not seen released", self.key))
    }

    fn route(&mut self, event: &InboundEvent, env: &Env<'_>, cause: &Cause, out: &mut Step) {
        route(self, event, env, cause, out)
    }

    fn stage(&self, event: &JournalEvent) -> Option<(&'static str, Timestamp)> {
        match &event.body {
            JournalBody::ShipmentRecorded(_) => {
                self.fulfillment.accepted_at.map(|accepted| ("release_to_goods_issue", accepted))
            }
            JournalBody::InvoiceRecorded(_) => {
                let shipment = event.meta.saga_id.strip_prefix("s2i:").unwrap_or_default();
                let issued = self.fulfillment.shipments.get(shipment).and_then(|s| s.recorded_at)?;
                Some(("goods_issue_to_invoice_posted", issued))
            }
            _ => None,
        }
    }
}

/// Routes an inbound business event to the sagas of its order, decides, and commits each
/// decision (operators' actions and replays are decided by [`super::step`] once the order
/// is known).
fn route(flow: &mut OrderFlow, event: &InboundEvent, env: &Env<'_>, cause: &Cause, out: &mut Step) {
    let known = flow.is_released();
    let target_key = TargetOutage::target_of_key(&flow.key);
    let requested_by = crate::approval::requester(&event.meta);
    match &event.body {
        // A target's outage is keyed by the target, not by an order.
        EventBody::TargetUnavailable(o) | EventBody::TargetRecovered(o) => {
            let decision = match health::check_report(event, o) {
                Ok(()) => health::decide(&flow.health, event),
                Err(why) => reject(why),
            };
            let target = match TargetOutage::target_of_key(&flow.key) {
                Some(t) if t == o.target => Target::Health(t),
                _ => Target::Fulfillment,
            };
            commit(flow, &target, decision, cause, out);
        }
        // A refused command goes to the saga that issued it.
        EventBody::CommandFailed(f) => {
            let target = flow.target_of(&f.saga_id).filter(|_| known);
            let decision = match &target {
                None if !known => reject(format!(
                    "CommandFailed reports that {} refused {} {:?} for order {:?}, which Waybill has not seen released; the connector must key the report by the command's correlation key (the order)",
                    f.target, f.command, f.idempotency_key, event.meta.correlation_key
                )),
                None => reject(format!(
                    "CommandFailed names saga {:?}, which order {} does not have; the connector must copy the command's meta.saga_id",
                    f.saga_id, flow.key
                )),
                Some(Target::Fulfillment) => {
                    let ctx = fulfillment::Context::of(env, cause.at);
                    fulfillment::decide(&flow.fulfillment, event, &ctx)
                }
                Some(Target::Invoice(s)) => invoicing::decide(&flow.invoices[s], event, &env.policy.posting),
                Some(Target::Return(r)) => {
                    let ctx = returns::Context {
                        policy: &env.policy.posting,
                        fulfillment: &flow.fulfillment,
                        invoices: &flow.invoices,
                        now: cause.at,
                    };
                    returns::decide(&flow.returns[r], event, &ctx)
                }
                Some(Target::Health(_)) => reject(format!(
                    "CommandFailed names saga {:?}, which issues no commands; the connector must copy the command's meta.saga_id",
                    f.saga_id
                )),
            };
            commit(flow, &target.unwrap_or(Target::Fulfillment), decision, cause, out);
        }
        EventBody::OrderReleased(_)
        | EventBody::StockReserved(_)
        | EventBody::ReleasedToWarehouse(_)
        | EventBody::PickConfirmed(_)
        | EventBody::OrderCancelled(_) => {
            let ctx = fulfillment::Context::of(env, cause.at);
            let decision = fulfillment::decide(&flow.fulfillment, event, &ctx);
            commit(flow, &Target::Fulfillment, decision, cause, out);
        }
        EventBody::GoodsIssued(g) => {
            let ctx = fulfillment::Context::of(env, cause.at);
            let decision = fulfillment::decide(&flow.fulfillment, event, &ctx);
            let recorded = decision.journal.iter().any(|j| matches!(j, JournalBody::ShipmentRecorded(_)));
            commit(flow, &Target::Fulfillment, decision, cause, out);
            if recorded && flow.invoice_trigger(env.policy) == InvoiceTrigger::GoodsIssue {
                flow.start_invoice(&g.shipment_id, env, &requested_by, cause, out);
            }
        }
        EventBody::CarrierBooked(_) | EventBody::Delivered(_) => {
            let ctx = fulfillment::Context::of(env, cause.at);
            let decision = fulfillment::decide(&flow.fulfillment, event, &ctx);
            let delivered = decision.journal.iter().find_map(|j| match j {
                JournalBody::DeliveryConfirmed(d) => Some(d.shipment_id.clone()),
                _ => None,
            });
            commit(flow, &Target::Fulfillment, decision, cause, out);
            if let Some(shipment) = delivered
                && flow.invoice_trigger(env.policy) == InvoiceTrigger::Delivery
            {
                flow.start_invoice(&shipment, env, &requested_by, cause, out);
            }
        }
        // A purchase order's events belong to its own flow (`po:<name>`).
        EventBody::PurchaseOrderConfirmed(_)
        | EventBody::PurchaseOrderClosed(_)
        | EventBody::ShipNoticeReceived(_)
        | EventBody::GoodsReceived(_)
        | EventBody::ReceiptValidated(_)
        | EventBody::ReceiptCancelled(_)
        | EventBody::VendorBillReceived(_)
        | EventBody::VendorBillPosted(_)
        | EventBody::VendorBillRejected(_)
        | EventBody::VendorCreditNoteIssued(_) => {
            let d = reject(format!(
                "{} keyed {:?}, which is not a purchase order's key; key procure-to-receive events po:<purchase order>",
                event.body.name(),
                flow.key
            ));
            commit(flow, &flow.home(), d, cause, out);
        }
        // A statement's events belong to its own flow (`stmt:<statement>`).
        EventBody::StatementReceived(_) | EventBody::StatementLinePosted(_) | EventBody::StatementLineRejected(_) => {
            let d = reject(format!(
                "{} keyed {:?}, which is not a bank statement's key; key cash-application events stmt:<statement>",
                event.body.name(),
                flow.key
            ));
            commit(flow, &flow.home(), d, cause, out);
        }
        // A reconciliation run's observations belong to their subject (`recon:…`).
        EventBody::StockObserved(o) => {
            let d = reject(format!(
                "StockObserved keyed {:?}, which is not a reconciliation subject's key; key it {}",
                flow.key,
                waybill_domain::reconcile::stock_key(&o.sku)
            ));
            commit(flow, &flow.home(), d, cause, out);
        }
        _ if target_key.is_some() => {
            let d = reject(format!(
                "{} keyed {:?}, which is a target's outage key, not an order; key it by the order name",
                event.body.name(),
                flow.key
            ));
            commit(flow, &Target::Fulfillment, d, cause, out);
        }
        _ if !known => {
            let d = reject(format!(
                "{} for order {:?}, which Waybill has not seen released; release the order in Odoo first, then replay this record from the dead-letter topic",
                event.body.name(),
                event.meta.correlation_key
            ));
            commit(flow, &Target::Fulfillment, d, cause, out);
        }
        EventBody::InvoicePosted(p) => route_invoice(flow, &p.shipment_id, event, env, cause, out),
        EventBody::InvoiceRejected(r) => route_invoice(flow, &r.business_key, event, env, cause, out),
        EventBody::PostingApproved(d) | EventBody::PostingRejected(d) => {
            let invoice = DocumentKind::Invoice.posting_prefix();
            let credit_note = DocumentKind::CreditNote.posting_prefix();
            if let Some(shipment) = d.posting_id.strip_prefix(invoice) {
                route_invoice(flow, shipment, event, env, cause, out);
            } else if let Some(rma) = d.posting_id.strip_prefix(credit_note).and_then(|r| flow.return_of_receipt(r)) {
                route_return(flow, &rma, event, env, cause, out);
            } else {
                let d = reject(format!(
                    "{} names posting {:?}, which order {} does not have; check the posting id",
                    event.body.name(),
                    d.posting_id,
                    flow.key
                ));
                commit(flow, &Target::Fulfillment, d, cause, out);
            }
        }
        EventBody::ReturnAuthorized(r) => route_return(flow, &r.rma_id.clone(), event, env, cause, out),
        EventBody::ReturnReceived(r) => {
            if flow.returns.contains_key(&r.rma_id) {
                route_return(flow, &r.rma_id.clone(), event, env, cause, out);
            } else {
                let d = reject(format!(
                    "return receipt {} names RMA {:?}, which order {} does not have; authorise the return in Odoo first, then replay this record",
                    r.receipt_id, r.rma_id, flow.key
                ));
                commit(flow, &Target::Fulfillment, d, cause, out);
            }
        }
        EventBody::CreditNoteIssued(c) => route_receipt(flow, &c.receipt_id.clone(), event, env, cause, out),
        EventBody::CreditNoteRejected(r) => route_receipt(flow, &r.business_key.clone(), event, env, cause, out),
        // Only a bank statement's lines are applied by hand (the control plane keys the
        // request by the statement; nothing else writes it).
        EventBody::StatementLineAssignRequested(a) => {
            let d = reject(format!(
                "StatementLineAssignRequested for line {:?} of statement {:?} is keyed {:?}, an order's key; key it stmt:{}",
                a.line_id, a.statement_key, flow.key, a.statement_key
            ));
            commit(flow, &Target::Fulfillment, d, cause, out);
        }
        // Decided by [`super::step`] once the order is known (and refused above before).
        EventBody::TimerTick(_)
        | EventBody::ExceptionRetryRequested(_)
        | EventBody::ExceptionResolveRequested(_)
        | EventBody::ExceptionAssignRequested(_)
        | EventBody::SagaReplayRequested(_) => {}
    }
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
    commit(flow, &target, decision, cause, out);
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
    commit(flow, &Target::Return(rma.to_string()), decision, cause, out);
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
            commit(flow, &Target::Fulfillment, d, cause, out);
        }
    }
}
