//! All sagas of one order, keyed by the correlation key (the Odoo sale order name).
//! Every saga of an order lives on the same partition, so one coordinator owns them
//! all and they may read each other's state: the invoice of a shipment reads what the
//! shipment carried, a return reads what was shipped and invoiced.
//!
//! [`step`] is the pure heart of the coordinator: route the event to its saga(s),
//! decide, give the outputs their ids, and fold the journal events into the state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waybill_domain::event::{
    EventBody, ExceptionAction, ExceptionAssignment, ReplayInput, ReplayRequest, TargetOutage,
};
use waybill_domain::journal::{
    ControlRefusal, ExceptionAssigned, ExceptionResolved, ExceptionRetried, InputPosition, SagaReplayed,
};
use waybill_domain::{
    Command, ExceptionCategory, InboundEvent, JournalBody, JournalEvent, SagaKind, System, Timestamp,
};

use crate::book::{self, SagaBook};
use crate::catalog::Catalog;
use crate::decision::{Cause, DeadLetter, DeadLetterKind, Decision, Outbound, materialize};
use crate::fulfillment::{self, Fulfillment, Status};
use crate::health::{self, TargetHealth};
use crate::invoicing::{self, Invoicing};
use crate::outcome;
use crate::policy::{InvoiceTrigger, Policy};
use crate::returns::{self, ReturnCredit};
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
    Health(System),
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
            SagaKind::TargetHealth => self.health.apply(event),
        }
    }

    /// The earliest pending timer of any saga of this order: the sagas' own (pick due,
    /// approval SLA) and the watchdog's ([`watch`]) for a saga nothing else watches.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let own = self
            .fulfillment
            .next_deadline()
            .into_iter()
            .chain(self.invoices.values().filter_map(Invoicing::next_deadline))
            .chain(self.returns.values().filter_map(ReturnCredit::next_deadline));
        let watchdog = watch::fulfillment(&self.fulfillment)
            .into_iter()
            .chain(self.invoices.values().filter_map(watch::invoice))
            .chain(self.returns.values().filter_map(watch::credit))
            .map(|w| w.due_at);
        own.chain(watchdog).min()
    }

    /// The sagas of this order that have stalled silently: not finished, with no pending
    /// timer and no open exception (DESIGN.md invariant 10; empty when it holds).
    pub fn stalls(&self) -> Vec<watch::Stall> {
        watch::stalls(self)
    }

    /// True when every saga of the order has finished.
    pub fn is_finished(&self) -> bool {
        self.fulfillment.is_finished()
            && self.invoices.values().all(Invoicing::is_finished)
            && self.returns.values().all(ReturnCredit::is_finished)
    }

    fn commit(&mut self, target: &Target, mut decision: Decision, cause: &Cause, out: &mut Step) {
        if decision.is_noop() {
            return;
        }
        if let Some(book) = self.book(target) {
            watch::close_on_progress(&mut decision, book);
            if *target == Target::Fulfillment {
                let order_ref = self.fulfillment.order.as_ref().map_or(self.key.as_str(), |o| o.order_ref.as_str());
                outcome::close_answered(&mut decision, book, |j| fulfillment::answers(order_ref, j));
            }
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
            Target::Health(t) => (SagaKind::TargetHealth, TargetHealth::saga_id(*t), self.health.book.seq),
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

    fn book(&self, target: &Target) -> Option<&SagaBook> {
        match target {
            Target::Fulfillment => Some(&self.fulfillment.book),
            Target::Invoice(s) => self.invoices.get(s).map(|i| &i.book),
            Target::Return(r) => self.returns.get(r).map(|x| &x.book),
            Target::Health(_) => Some(&self.health.book),
        }
    }

    /// The saga instance of a saga id of this order.
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

    /// Rebuilds the command the saga `saga_id` of this order issued under `key`, exactly as
    /// it was first sent (what a retry of its `DELIVERY_FAILED` exception sends again):
    /// `None` when that saga does not exist or never issued `key`, `Err` with the reason
    /// when it did but cannot rebuild it exactly.
    pub fn reissue(&self, saga_id: &str, key: &str) -> Option<Result<Outbound, String>> {
        match self.target_of(saga_id)? {
            Target::Fulfillment => fulfillment::reissue(&self.fulfillment, key),
            Target::Invoice(s) => invoicing::reissue(&self.invoices[&s], key),
            Target::Return(r) => returns::reissue(&self.returns[&r], key),
            Target::Health(_) => None,
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
    let target_key = TargetOutage::target_of_key(&flow.key);
    let requested_by = crate::approval::requester(&event.meta);
    match &event.body {
        // A tick belongs to no order: the coordinator fires the partition's due timers
        // when it consumes one ([`tick`]).
        EventBody::TimerTick(_) => {}
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
            flow.commit(&target, decision, cause, &mut out);
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
                    let ctx =
                        fulfillment::Context { catalog: env.catalog, policy: &env.policy.fulfillment, now: cause.at };
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
            flow.commit(&target.unwrap_or(Target::Fulfillment), decision, cause, &mut out);
        }
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
        // A target's key holds its health saga only: operators act on its exceptions,
        // nothing else belongs there.
        EventBody::ExceptionRetryRequested(a) if target_key.is_some() => {
            workbench(flow, &event.meta.event_id, a, true, cause, &mut out)
        }
        EventBody::ExceptionResolveRequested(a) if target_key.is_some() => {
            workbench(flow, &event.meta.event_id, a, false, cause, &mut out)
        }
        EventBody::ExceptionAssignRequested(a) if target_key.is_some() => {
            assign(flow, &event.meta.event_id, a, cause, &mut out)
        }
        _ if target_key.is_some() => {
            let d = reject(format!(
                "{} keyed {:?}, which is a target's outage key, not an order; key it by the order name",
                event.body.name(),
                flow.key
            ));
            flow.commit(&Target::Fulfillment, d, cause, &mut out);
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
        EventBody::ExceptionRetryRequested(a) => workbench(flow, &event.meta.event_id, a, true, cause, &mut out),
        EventBody::ExceptionResolveRequested(a) => workbench(flow, &event.meta.event_id, a, false, cause, &mut out),
        EventBody::ExceptionAssignRequested(a) => assign(flow, &event.meta.event_id, a, cause, &mut out),
        EventBody::SagaReplayRequested(r) => {
            // The records a replay names are read by the coordinator ([`replay`]); a
            // request stepped on its own carries none of them.
            let records: Vec<ReplayRecord> = r
                .inputs
                .iter()
                .map(|i| ReplayRecord {
                    input: i.clone(),
                    event: Err("the record was not loaded for the replay".to_string()),
                })
                .collect();
            return replay(flow, &event.meta.event_id, r, &records, env, cause);
        }
    }
    out
}

/// An operator's retry (`retry = true`) or resolution of an exception of this order. The
/// saga that raised it decides: a retry re-issues the failed step's command with its
/// original idempotency key (never a second, different command for the business key); a
/// resolution closes the exception with the operator's note. Either is refused — journaled
/// as `ControlRefused`, so the audit has it — when the exception is not open or, for a
/// retry, has no command to re-issue.
fn workbench(flow: &mut OrderFlow, event_id: &str, a: &ExceptionAction, retry: bool, cause: &Cause, out: &mut Step) {
    let action = if retry { "retry" } else { "resolve" };
    let refuse = |reason: String| refusal(&a.exception_id, action, &a.actor, reason);
    let Some(target) = saga_of(flow, &a.exception_id, action, &a.actor, cause, out) else { return };
    let book = flow.book(&target).expect("target_of found the saga");
    if book.seen.contains(event_id) {
        return; // a redelivered control record: done the first time
    }
    let d = if !book.open_exceptions.contains_key(&a.exception_id) {
        refuse(book::not_open(book, &a.exception_id))
    } else if retry {
        let command: Result<Outbound, String> = match &target {
            Target::Fulfillment => fulfillment::retry(&flow.fulfillment, &a.exception_id),
            Target::Invoice(s) => invoicing::retry(&flow.invoices[s], &a.exception_id),
            Target::Return(r) => returns::retry(&flow.returns[r], &a.exception_id),
            Target::Health(_) => health::retry(&flow.health, &a.exception_id),
        };
        match command {
            Ok(o) => {
                let mut d = Decision::noop();
                d.record(JournalBody::ExceptionRetried(ExceptionRetried {
                    exception_id: a.exception_id.clone(),
                    idempotency_key: o.idempotency_key.clone(),
                    actor: a.actor.clone(),
                    role: a.role.clone(),
                    note: a.note.clone(),
                }));
                // No business event answers this command, so nothing else would close its
                // exception: the retry does (a new refusal opens a new one).
                let refused = book.open_exceptions.get(&a.exception_id) == Some(&ExceptionCategory::DeliveryFailed);
                if refused && !outcome::is_answered(&o.body) {
                    d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                        exception_id: a.exception_id.clone(),
                        resolution: format!(
                            "{} sent again by {} ({}); {} confirms nothing for {}, so the retry closes this exception — a new refusal opens a new one",
                            o.body.name(),
                            a.actor,
                            a.role,
                            outcome::system_title(o.target),
                            o.body.name()
                        ),
                    }));
                }
                d.send(o.target, o.idempotency_key, o.body);
                d
            }
            Err(reason) => refuse(reason),
        }
    } else if a.note.trim().is_empty() {
        refuse(format!("resolving exception {} needs a note saying what was done", a.exception_id))
    } else {
        let mut d = Decision::noop();
        d.record(JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: a.exception_id.clone(),
            resolution: format!("resolved by {} ({}): {}", a.actor, a.role, a.note.trim()),
        }));
        d
    };
    flow.commit(&target, d, cause, out);
}

/// A `ControlRefused` decision: the saga refused an operator's `action` on an exception.
fn refusal(exception_id: &str, action: &str, actor: &str, reason: String) -> Decision {
    let mut d = Decision::noop();
    d.record(JournalBody::ControlRefused(ControlRefusal {
        posting_id: exception_id.to_string(),
        action: action.to_string(),
        actor: actor.to_string(),
        reason,
    }));
    d
}

/// The saga of this order that raised `exception_id`; when none did, journals the
/// refusal of the operator's `action` and returns `None`.
fn saga_of(
    flow: &mut OrderFlow,
    exception_id: &str,
    action: &str,
    actor: &str,
    cause: &Cause,
    out: &mut Step,
) -> Option<Target> {
    let target = book::saga_of_exception(exception_id).and_then(|saga| flow.target_of(saga));
    if target.is_none() {
        let d = refusal(
            exception_id,
            action,
            actor,
            format!(
                "exception {exception_id} does not belong to a saga of order {}; check the id with `waybill exceptions list`",
                flow.key
            ),
        );
        // Journaled by the saga the key holds: a target's health, or the order's fulfilment.
        let home = TargetOutage::target_of_key(&flow.key).map_or(Target::Fulfillment, Target::Health);
        flow.commit(&home, d, cause, out);
    }
    target
}

/// An operator's assignment of an exception of this order to an owner (a person or
/// team). The saga that raised it decides: an open exception is assigned (or reassigned
/// to a new owner, naming the previous one); assigning it to the owner it already has
/// changes nothing (idempotent, nothing is journaled). Refused — journaled as
/// `ControlRefused`, so the audit has it — when the exception is not open (assigning a
/// resolved exception makes no one work it) or the owner is blank. Assigning never
/// closes an exception nor counts as the saga's progress.
fn assign(flow: &mut OrderFlow, event_id: &str, a: &ExceptionAssignment, cause: &Cause, out: &mut Step) {
    let Some(target) = saga_of(flow, &a.exception_id, "assign", &a.actor, cause, out) else { return };
    let book = flow.book(&target).expect("target_of found the saga");
    if book.seen.contains(event_id) {
        return; // a redelivered control record: done the first time
    }
    let owner = a.owner.trim();
    let current = book.owners.get(&a.exception_id);
    let d = if !book.open_exceptions.contains_key(&a.exception_id) {
        refusal(&a.exception_id, "assign", &a.actor, book::not_open(book, &a.exception_id))
    } else if owner.is_empty() {
        refusal(
            &a.exception_id,
            "assign",
            &a.actor,
            format!("assigning exception {} needs an owner: the person or team who is to work it", a.exception_id),
        )
    } else if current.is_some_and(|c| c == owner) {
        Decision::noop() // already theirs: assigning again changes nothing
    } else {
        let mut d = Decision::noop();
        d.record(JournalBody::ExceptionAssigned(ExceptionAssigned {
            exception_id: a.exception_id.clone(),
            owner: owner.to_string(),
            previous_owner: current.cloned(),
            actor: a.actor.clone(),
            role: a.role.clone(),
            note: a.note.trim().to_string(),
        }));
        d
    };
    flow.commit(&target, d, cause, out);
}

/// A record named by a replay, as the coordinator read it from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRecord {
    /// Where it was read, as the request names it.
    pub input: ReplayInput,
    /// The decoded event, or why it could not be read or decoded.
    pub event: Result<InboundEvent, String>,
}

/// An operator's replay: feeds `records` (the order's inbound events, in the order they
/// were first consumed) through [`step`] again, on the current state.
///
/// Semantics: each record is stepped with its own event id as the cause (so the sagas'
/// dedup by event id and by business key applies: a record that was applied changes
/// nothing, and a later redelivery of a record the replay applied is dropped). Nothing is
/// dead-lettered again — a record still refused is listed in the outcome instead (it is in
/// the dead-letter topic already); a dead-lettered record that now applies closes its
/// `BAD_INPUT` exception. Approvals and workbench actions are never replayed. The replay
/// ends with a `SagaReplayed` journal event (caused by the request) that says what it did.
/// Replaying the same records twice issues nothing the second time.
pub fn replay(
    flow: &mut OrderFlow,
    request_id: &str,
    r: &ReplayRequest,
    records: &[ReplayRecord],
    env: &Env<'_>,
    cause: &Cause,
) -> Step {
    let mut out = Step::default();
    if flow.fulfillment.book.seen.contains(request_id) {
        return out; // a redelivered request: replayed the first time
    }
    if flow.fulfillment.status == Status::New {
        let d =
            reject(format!("replay of order {:?}, which Waybill has not seen released; nothing to replay", flow.key));
        flow.commit(&Target::Fulfillment, d, cause, &mut out);
        return out;
    }
    let mut applied = 0;
    let mut refused = Vec::new();
    let mut closed = Vec::new();
    for rec in records {
        let at = format!("{}/{}@{}", rec.input.topic, rec.input.partition, rec.input.offset);
        let event = match &rec.event {
            Ok(e) if e.meta.correlation_key != flow.key => {
                refused.push(format!("{at}: belongs to order {:?}, not {}", e.meta.correlation_key, flow.key));
                continue;
            }
            Ok(e) if e.body.is_control() => {
                refused.push(format!("{at}: {} is an operator's action and is not replayed", e.body.name()));
                continue;
            }
            Ok(e) => e,
            Err(why) => {
                refused.push(format!("{at}: {why}"));
                continue;
            }
        };
        let input =
            InputPosition { topic: rec.input.topic.clone(), partition: rec.input.partition, offset: rec.input.offset };
        let sub = Cause { id: event.meta.event_id.clone(), input: Some(input), at: cause.at };
        let mut s = step(flow, event, env, &sub);
        let changed = !s.journal.is_empty() || !s.commands.is_empty();
        match s.dead_letter.take() {
            Some(dl) => refused.push(format!("{at}: {}", dl.reason)),
            None if changed => {
                if let Some(x) = &rec.input.dead_letter {
                    closed.push(x.clone());
                }
            }
            None => {}
        }
        if changed {
            applied += 1;
        }
        out.journal.extend(s.journal);
        out.commands.extend(s.commands);
    }
    let mut d = Decision::noop();
    for x in closed {
        d.record(JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: x,
            resolution: format!("dead-lettered record applied by a replay of {} ({})", r.actor, r.role),
        }));
    }
    d.record(JournalBody::SagaReplayed(SagaReplayed {
        saga_id: r.saga_id.clone(),
        actor: r.actor.clone(),
        role: r.role.clone(),
        inputs: records.len() as i32,
        applied,
        commands: out.commands.iter().map(|c| c.meta.idempotency_key.clone()).collect(),
        refused,
    }));
    flow.commit(&Target::Fulfillment, d, cause, &mut out);
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

/// Fires the timers of `flow` that are due at `cause.at`: each saga's own first, then the
/// watchdog of a saga that still has neither a timer nor an open exception.
pub fn tick(flow: &mut OrderFlow, cause: &Cause) -> Step {
    let mut out = Step::default();
    let now = cause.at;
    let decision = fulfillment::on_timer(&flow.fulfillment, now);
    flow.commit(&Target::Fulfillment, decision, cause, &mut out);
    let mut d = Decision::noop();
    let f = &flow.fulfillment;
    watch::fire_fulfillment(&mut d, &Fulfillment::KIND.saga_id(&flow.key), f, now);
    flow.commit(&Target::Fulfillment, d, cause, &mut out);
    let shipments: Vec<String> = flow.invoices.keys().cloned().collect();
    for s in shipments {
        let decision = invoicing::on_timer(&flow.invoices[&s], now);
        flow.commit(&Target::Invoice(s.clone()), decision, cause, &mut out);
        let mut d = Decision::noop();
        let i = &flow.invoices[&s];
        watch::fire_invoice(&mut d, &Invoicing::saga_id(&s), i, now);
        flow.commit(&Target::Invoice(s), d, cause, &mut out);
    }
    let rmas: Vec<String> = flow.returns.keys().cloned().collect();
    for r in rmas {
        let decision = returns::on_timer(&flow.returns[&r], now);
        flow.commit(&Target::Return(r.clone()), decision, cause, &mut out);
        let mut d = Decision::noop();
        let x = &flow.returns[&r];
        watch::fire_credit(&mut d, &ReturnCredit::saga_id(&r), x, now);
        flow.commit(&Target::Return(r), d, cause, &mut out);
    }
    out
}
