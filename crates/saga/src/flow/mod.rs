//! Flows: the sagas of one correlation key, and the pure heart of the coordinator.
//!
//! A [`Flow`] is everything the coordinator keeps for one correlation key — an order's
//! fulfilment, invoices and returns ([`OrderFlow`]) — and decides which of its sagas an
//! inbound event goes to. Every saga of a key lives on the key's partition, so one
//! coordinator owns them all and they may read each other's state (an invoice reads what
//! its shipment carried, a return what was shipped and invoiced).
//!
//! What is the same for every flow is written here once, against the [`Flow`] and
//! [`Saga`] traits: [`step`] (operators' retries, resolutions and assignments, replays,
//! then the flow's own routing), [`tick`] (each saga's timers, then the watchdog),
//! committing a decision (ids, folding, closing overdue exceptions), the next deadline,
//! stalls and re-issuing a refused command. The coordinator, the state store and the
//! metrics work on [`crate::registry::AnyFlow`], the flows registered in one place.

mod operator;
mod order;
mod replay;

pub use order::OrderFlow;
pub use replay::{ReplayRecord, replay};

use serde::Serialize;
use serde::de::DeserializeOwned;
use waybill_domain::event::EventBody;
use waybill_domain::journal::JournalBody;
use waybill_domain::{Command, InboundEvent, JournalEvent, Timestamp};

use crate::catalog::Catalog;
use crate::decision::{Cause, DeadLetter, DeadLetterKind, Decision, Outbound, materialize};
use crate::entity::{Entities, Entity};
use crate::policy::Policy;
use crate::saga::Saga;
use crate::watch::{self, Stall};

/// The outputs of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Journal events, with sequence numbers.
    pub journal: Vec<waybill_domain::JournalEvent>,
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

/// Everything a decision may consult besides state and input.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// Master data.
    pub catalog: &'a Catalog,
    /// Policy: the entity's, once [`step`] has scoped the decision to the flow's entity.
    pub policy: &'a Policy,
    /// The legal entity the decision is made for; `None` with no entities configured or
    /// before the flow's entity is known.
    pub entity: Option<&'a Entity>,
    /// Every configured entity (what a flow that opens resolves its entity among).
    pub entities: &'a Entities,
}

impl<'a> Env<'a> {
    /// The deployment's environment: its master data and policy (with its entities).
    pub fn new(catalog: &'a Catalog, policy: &'a Policy) -> Self {
        Env { catalog, policy, entity: None, entities: &policy.entities }
    }

    /// The environment of a decision about a flow of entity `code` (the one its opening
    /// record named), or, before it has one, of the entity `event` opens it under: that
    /// entity's policy; unchanged when neither names a configured entity. Allocates
    /// nothing: it runs for every input.
    pub fn scoped(&self, code: Option<&str>, event: Option<&EventBody>) -> Env<'a> {
        let entity = code
            .and_then(|c| self.entities.get(c))
            .or_else(|| event.and_then(|b| self.entities.of_event(b).ok().flatten()));
        match entity {
            Some(e) => Env { policy: &e.policy, entity: Some(e), ..*self },
            None => *self,
        }
    }

    /// The entity's code, for the record that opens a flow.
    pub fn entity_code(&self) -> Option<String> {
        self.entity.map(|e| e.code.clone())
    }
}

/// The sagas of one correlation key: how they are addressed, and how inbound business
/// events reach them. Everything else (operators' actions, replay, timers, the
/// watchdog, committing decisions) is provided on top of this.
pub trait Flow: Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// One saga instance of the flow (`Fulfillment`, `Invoice("SHP-1")`, …).
    type Target: Clone + std::fmt::Debug + PartialEq;

    /// The flow's name in logs and errors (`order`, `purchase order`, `bank statement`).
    const FAMILY: &'static str;

    /// What this flow's record is, for people: [`Flow::FAMILY`], unless a flow keeps
    /// records of more than one kind (the order flow also keeps a system's health).
    fn family(&self) -> &'static str {
        Self::FAMILY
    }

    /// Whether a correlation key is one of this flow's (by its prefix: `po:`, `stmt:`);
    /// the registry asks the flows in order, and the last one takes every other key.
    fn owns(key: &str) -> bool;

    /// A new, empty flow for `key`.
    fn create(key: &str) -> Self;

    /// The correlation key.
    fn key(&self) -> &str;

    /// The legal entity the flow's records belong to, once the record that opened it
    /// named it (`OrderAccepted`, `PurchaseOpened`, `StatementOpened`); `None` for flows
    /// of no entity and when no entities are configured.
    fn entity(&self) -> Option<&str> {
        None
    }

    /// Every saga instance the flow has, in a fixed order (timers fire in this order).
    fn targets(&self) -> Vec<Self::Target>;

    /// The saga id of an instance (`o2f:SO1`, `s2i:SHP-1`).
    fn saga_id(&self, target: &Self::Target) -> String;

    /// The instance, if it exists.
    fn saga(&self, target: &Self::Target) -> Option<&dyn Saga>;

    /// The instance, created empty if it does not exist yet.
    fn saga_mut(&mut self, target: &Self::Target) -> &mut dyn Saga;

    /// The instance of a saga id of this flow, if it exists.
    fn target_of(&self, saga_id: &str) -> Option<Self::Target>;

    /// The instance a journal event of this flow belongs to (by its kind and saga id);
    /// `None` for a kind this flow does not hold.
    fn target_of_event(&self, event: &JournalEvent) -> Option<Self::Target>;

    /// The instance that journals what belongs to no other: refusals of operators'
    /// actions on unknown exceptions, a replay's summary, rule violations.
    fn home(&self) -> Self::Target;

    /// Whether operators' actions (retry, resolve, assign, replay) are decided here now;
    /// `false` leaves them to [`Flow::route`] (e.g. an order Waybill has not seen).
    fn takes_actions(&self) -> bool;

    /// `None` once the flow has begun; before, what it waits for, in words that finish
    /// "replay of …" (`order "SO1", which Waybill has not seen released`): a replay of a
    /// flow that has not begun is refused.
    fn not_begun(&self) -> Option<String>;

    /// Decides an inbound business event: routes it to its saga(s) and commits each
    /// decision with [`commit`].
    fn route(&mut self, event: &InboundEvent, env: &Env<'_>, cause: &Cause, out: &mut Step);

    /// Whether the flow is retired once finished and its retention passed (see
    /// `coordinator::retire`): true for flows of business records (orders, purchase
    /// orders, statements), which grow with history; false for standing subjects that
    /// a later run reads again (a product's stock baseline, a system's health), which are
    /// few and whose state a retirement would lose.
    fn retires(&self) -> bool {
        true
    }

    /// A stage of the business process that a journal event ends, with when it began
    /// (`release_to_goods_issue`): the stage-duration histogram. `None` for most events.
    fn stage(&self, _event: &JournalEvent) -> Option<(&'static str, Timestamp)> {
        None
    }
}

/// Routes an inbound event to the sagas of its flow, decides, gives the outputs their
/// ids and folds them into `flow`.
pub fn step<F: Flow>(flow: &mut F, event: &InboundEvent, env: &Env<'_>, cause: &Cause) -> Step {
    // Every decision about the flow is made under its entity's policy: the one its
    // opening record named, or, for the event that opens it, the one the event names.
    let env = &env.scoped(flow.entity(), Some(&event.body));
    let mut out = Step::default();
    let id = &event.meta.event_id;
    match &event.body {
        // A tick belongs to no flow: the coordinator fires the partition's due timers
        // when it consumes one ([`tick`]).
        EventBody::TimerTick(_) => {}
        EventBody::ExceptionRetryRequested(a) if flow.takes_actions() => {
            operator::retry_or_resolve(flow, id, a, true, cause, &mut out)
        }
        EventBody::ExceptionResolveRequested(a) if flow.takes_actions() => {
            operator::retry_or_resolve(flow, id, a, false, cause, &mut out)
        }
        EventBody::ExceptionAssignRequested(a) if flow.takes_actions() => {
            operator::assign(flow, id, a, cause, &mut out)
        }
        EventBody::SagaReplayRequested(r) if flow.takes_actions() && flow.not_begun().is_none() => {
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
            return replay(flow, id, r, &records, env, cause);
        }
        _ => flow.route(event, env, cause, &mut out),
    }
    out
}

/// Fires the timers of `flow` that are due at `cause.at`: for each saga, its own first,
/// then the watchdog if it still has neither a timer nor an open exception.
pub fn tick<F: Flow>(flow: &mut F, env: &Env<'_>, cause: &Cause) -> Step {
    let env = &env.scoped(flow.entity(), None);
    let mut out = Step::default();
    let now = cause.at;
    for target in flow.targets() {
        let Some(saga) = flow.saga(&target) else { continue };
        let decision = saga.on_timer(env, now);
        commit(flow, &target, decision, cause, &mut out);
        let mut d = Decision::noop();
        let saga_id = flow.saga_id(&target);
        if let Some(saga) = flow.saga(&target) {
            saga.fire_watchdog(&mut d, &saga_id, now);
        }
        commit(flow, &target, d, cause, &mut out);
    }
    out
}

/// Journals the retirement of a finished flow whose retention passed, on its home saga
/// (`FlowRetired`, the last record of this incarnation of the key). The coordinator then
/// forgets the flow.
pub fn retire<F: Flow>(flow: &mut F, finished_at: Timestamp, retention_secs: i64, cause: &Cause) -> Step {
    let mut out = Step::default();
    let decision = Decision {
        journal: vec![JournalBody::FlowRetired(waybill_domain::journal::FlowRetired { finished_at, retention_secs })],
        ..Decision::noop()
    };
    let home = flow.home();
    commit(flow, &home, decision, cause, &mut out);
    out
}

/// Journals `decision` as the saga `target` of `flow`: closes the saga's overdue
/// exceptions when it moves on, lets the saga settle it, gives every output its
/// deterministic id, folds the journal events into the state and adds them to `out`.
pub fn commit<F: Flow>(flow: &mut F, target: &F::Target, mut decision: Decision, cause: &Cause, out: &mut Step) {
    if decision.is_noop() {
        return;
    }
    let (kind, last_seq) = {
        let saga = flow.saga_mut(target);
        watch::close_on_progress(&mut decision, saga.book());
        (saga.kind(), saga.book().seq)
    };
    if let Some(saga) = flow.saga(target) {
        saga.settle(flow.key(), &mut decision);
    }
    stamp_entity(flow, &mut decision);
    let saga_id = flow.saga_id(target);
    let (journal, commands) = materialize(kind, &saga_id, flow.key(), last_seq, &decision, cause);
    for e in &journal {
        apply(flow, e);
    }
    out.journal.extend(journal);
    out.commands.extend(commands);
    if out.dead_letter.is_none() {
        out.dead_letter = decision.dead_letter;
    }
}

/// Names the flow's entity on the exceptions and held postings of `decision` (the
/// entity is the flow's, or the one the decision's opening record names): the queues
/// filter by it, and a held posting is decided under that entity's approval limits.
fn stamp_entity<F: Flow>(flow: &F, decision: &mut Decision) {
    let unstamped = |j: &JournalBody| match j {
        JournalBody::ExceptionRaised(x) => x.entity.is_none(),
        JournalBody::PostingHeld(p) => p.entity.is_none(),
        _ => false,
    };
    if !decision.journal.iter().any(unstamped) {
        return;
    }
    let Some(entity) = flow
        .entity()
        .map(str::to_owned)
        .or_else(|| decision.journal.iter().find_map(|j| j.opened_entity().map(str::to_owned)))
    else {
        return;
    };
    for j in &mut decision.journal {
        match j {
            JournalBody::ExceptionRaised(x) if x.entity.is_none() => x.entity = Some(entity.clone()),
            JournalBody::PostingHeld(p) if p.entity.is_none() => p.entity = Some(entity.clone()),
            _ => {}
        }
    }
}

/// Folds one journal event into the saga it belongs to (copies already applied are
/// ignored by the saga).
pub fn apply<F: Flow>(flow: &mut F, event: &JournalEvent) {
    if let Some(target) = flow.target_of_event(event) {
        flow.saga_mut(&target).apply(event);
    }
}

/// The earliest pending timer of any saga of the flow: the sagas' own (pick due,
/// approval SLA) and the watchdog's for a saga nothing else watches.
pub fn next_deadline<F: Flow>(flow: &F) -> Option<Timestamp> {
    flow.targets()
        .iter()
        .filter_map(|t| flow.saga(t))
        .filter_map(|s| s.next_deadline().into_iter().chain(s.watchdog().map(|w| w.due_at)).min())
        .min()
}

/// True when every saga of the flow has finished.
pub fn is_finished<F: Flow>(flow: &F) -> bool {
    flow.targets().iter().filter_map(|t| flow.saga(t)).all(|s| s.is_finished())
}

/// When a finished flow last changed (the latest of its sagas' last decisions): its
/// retention counts from here. `None` while any saga works or has an open exception,
/// when none has begun, and for a flow that is never retired ([`Flow::retires`]).
pub fn finished_at<F: Flow>(flow: &F) -> Option<Timestamp> {
    if !flow.retires() || !is_finished(flow) {
        return None;
    }
    // A saga may end with work still open for a person (goods issued after the order was
    // cancelled): the flow waits for it to be resolved, however old.
    if flow.targets().iter().filter_map(|t| flow.saga(t)).any(|s| !s.book().open_exceptions.is_empty()) {
        return None;
    }
    flow.targets().iter().filter_map(|t| flow.saga(t)).filter_map(|s| s.book().last_at.or(s.book().completed_at)).max()
}

/// True once any saga of the flow has begun (a key with no state yet is decided as new).
pub fn has_begun<F: Flow>(flow: &F) -> bool {
    flow.targets().iter().filter_map(|t| flow.saga(t)).any(|s| s.is_started())
}

/// The sagas of the flow that have stalled silently: begun, not finished, with no
/// pending timer and no open exception (DESIGN.md invariant 10; empty when it holds).
pub fn stalls<F: Flow>(flow: &F) -> Vec<Stall> {
    let mut v = Vec::new();
    for t in flow.targets() {
        let Some(s) = flow.saga(&t) else { continue };
        let timer = s.next_deadline().or(s.watchdog().map(|w| w.due_at));
        if s.is_started() && !s.is_finished() && watch::is_silent(s.book(), timer) {
            v.push(Stall { saga_id: flow.saga_id(&t), status: s.status() });
        }
    }
    v
}

/// Rebuilds the command the saga `saga_id` of this flow issued under `key`, exactly as it
/// was first sent (what a retry of its `DELIVERY_FAILED` exception sends again): `None`
/// when that saga does not exist or never issued `key`, `Err` with the reason when it did
/// but cannot rebuild it exactly.
pub fn reissue<F: Flow>(flow: &F, saga_id: &str, key: &str) -> Option<Result<Outbound, String>> {
    flow.saga(&flow.target_of(saga_id)?)?.reissue(key)
}

/// A decision that sends the input to the dead-letter topic because it breaks a rule.
pub(crate) fn reject(reason: String) -> Decision {
    Decision::reject(DeadLetterKind::Rule, reason)
}
