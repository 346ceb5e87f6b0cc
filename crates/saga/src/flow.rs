//! All sagas of one order, keyed by the correlation key (the Odoo sale order name).
//! Every saga of an order lives on the same partition, so one coordinator owns them
//! all and they may read each other's state.
//!
//! [`step`] is the pure heart of the coordinator: decide, give the outputs their ids,
//! and fold the journal events into the state.

use serde::{Deserialize, Serialize};
use waybill_domain::{Command, InboundEvent, JournalEvent, SagaKind, Timestamp};

use crate::catalog::Catalog;
use crate::decision::{Cause, DeadLetter, Decision, materialize};
use crate::fulfillment::{self, Fulfillment};
use crate::policy::Policy;

/// State of every saga of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFlow {
    /// The correlation key.
    pub key: String,
    /// Order to fulfillment.
    pub fulfillment: Fulfillment,
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

impl OrderFlow {
    /// A new flow for `key`.
    pub fn new(key: impl Into<String>) -> Self {
        OrderFlow { key: key.into(), ..OrderFlow::default() }
    }

    /// Folds one journal event (ignoring copies already applied).
    pub fn apply(&mut self, event: &JournalEvent) {
        match event.meta.kind {
            SagaKind::OrderToFulfillment => self.fulfillment.apply(event),
            SagaKind::ShipToInvoice | SagaKind::ReturnsCredit => {}
        }
    }

    /// The earliest pending timer of any saga of this order.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.fulfillment.next_deadline()
    }

    /// True when every saga of the order has finished.
    pub fn is_finished(&self) -> bool {
        self.fulfillment.is_finished()
    }

    fn commit(&mut self, kind: SagaKind, decision: Decision, cause: &Cause, out: &mut Step) {
        let last_seq = match kind {
            SagaKind::OrderToFulfillment => self.fulfillment.seq,
            SagaKind::ShipToInvoice | SagaKind::ReturnsCredit => 0,
        };
        let saga_id = kind.saga_id(&self.key);
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
}

/// Everything a decision may consult besides state and input.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// Master data.
    pub catalog: &'a Catalog,
    /// Policy.
    pub policy: &'a Policy,
}

/// Decides an inbound event, materialises the outputs and applies them to `flow`.
pub fn step(flow: &mut OrderFlow, event: &InboundEvent, env: &Env<'_>, cause: &Cause) -> Step {
    let ctx = fulfillment::Context { catalog: env.catalog, policy: &env.policy.fulfillment, now: cause.at };
    let decision = fulfillment::decide(&flow.fulfillment, event, &ctx);
    let mut out = Step::default();
    flow.commit(SagaKind::OrderToFulfillment, decision, cause, &mut out);
    out
}

/// Fires the timers of `flow` that are due at `cause.at`.
pub fn tick(flow: &mut OrderFlow, cause: &Cause) -> Step {
    let decision = fulfillment::on_timer(&flow.fulfillment, cause.at);
    let mut out = Step::default();
    if !decision.is_noop() {
        flow.commit(SagaKind::OrderToFulfillment, decision, cause, &mut out);
    }
    out
}
