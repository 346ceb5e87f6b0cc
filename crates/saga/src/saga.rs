//! The [`Saga`] trait: what every saga is, whatever flow it belongs to.
//!
//! A saga is a pure state machine folded from its own journal events. The parts that
//! are the same for every saga — sequence numbers and causes ([`SagaBook`]), the
//! watchdog, operators' retries and resolutions, replay, re-issuing a refused command —
//! are written once against this trait ([`crate::flow`]); a saga supplies only its
//! business rules. How inbound events reach a saga (routing, and the context its
//! `decide` reads) is its flow's job ([`crate::flow::Flow`]), because sagas of one
//! correlation key may read each other's state.

use waybill_domain::journal::JournalMeta;
use waybill_domain::{JournalBody, JournalEvent, SagaKind, Timestamp};

use crate::book::SagaBook;
use crate::decision::{Decision, Outbound};
use crate::watch::Wait;

/// One saga instance's state and its pure, key-independent rules.
pub trait Saga {
    /// Which saga this is (the prefix of its saga ids and the `kind` label of its metrics).
    fn kind(&self) -> SagaKind;

    /// What every saga keeps: applied sequence, causes seen, open exceptions, last change.
    fn book(&self) -> &SagaBook;

    /// Folds one of its journal events; copies already applied are ignored.
    fn apply(&mut self, event: &JournalEvent);

    /// True once the saga has nothing left to do.
    fn is_finished(&self) -> bool {
        self.book().is_finished()
    }

    /// True once the saga has begun (a saga that has not begun is never a stall).
    fn is_started(&self) -> bool {
        self.book().seq > 0
    }

    /// Its status in its own words (what a stall report names).
    fn status(&self) -> String;

    /// Its own pending timer (a pick's due time, an approval's SLA), if any.
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }

    /// Fires its own timers due at `now`, deciding in `env` (the flow's entity's) like an
    /// inbound event.
    fn on_timer(&self, _env: &crate::flow::Env<'_>, _now: Timestamp) -> Decision {
        Decision::noop()
    }

    /// What the watchdog waits for when nothing else watches the saga (DESIGN.md
    /// invariant 10): `None` while a timer or an open exception watches it, when it has
    /// finished, or when it is of a kind that never waits on a step.
    fn watchdog(&self) -> Option<Wait> {
        None
    }

    /// Raises `STEP_OVERDUE` into `d` when the watchdog is due at `now`.
    fn fire_watchdog(&self, _d: &mut Decision, _saga_id: &str, _now: Timestamp) {}

    /// The command an operator's retry of the open exception `exception_id` sends again,
    /// with its original idempotency key; `Err` says why there is none.
    fn retry(&self, exception_id: &str) -> Result<Outbound, String>;

    /// Rebuilds the command the saga issued under `key`, exactly as first sent: `None`
    /// when it never issued `key`, `Err` when it did but cannot rebuild it exactly.
    fn reissue(&self, _key: &str) -> Option<Result<Outbound, String>> {
        None
    }

    /// Where one of its journal events stands in the saga's life, for the
    /// `waybill_sagas_{started,completed,failed}_total` counters: every saga completes with
    /// `Completed`; a saga names the event it starts with and the ones that mean it failed.
    fn lifecycle(&self, body: &JournalBody) -> Option<Lifecycle> {
        matches!(body, JournalBody::Completed(_)).then_some(Lifecycle::Completed)
    }

    /// Adjusts a decision before it is journaled (`key`: the flow's correlation key):
    /// e.g. closes the `DELIVERY_FAILED` exceptions of commands the decision's journal
    /// events answer.
    fn settle(&self, _key: &str, _decision: &mut Decision) {}
}

/// A journal event that starts, completes or fails a saga ([`Saga::lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The saga began.
    Started,
    /// The saga reached its goal.
    Completed,
    /// The saga ended without reaching it (cancelled, rejected, refused).
    Failed,
}

/// The default lifecycle plus a saga's own start and failure events.
pub(crate) fn lifecycle(body: &JournalBody, starts: bool, fails: bool) -> Option<Lifecycle> {
    if starts {
        Some(Lifecycle::Started)
    } else if fails {
        Some(Lifecycle::Failed)
    } else {
        matches!(body, JournalBody::Completed(_)).then_some(Lifecycle::Completed)
    }
}

/// The state `saga` will have once `decision` is committed: its journal events folded
/// into a copy, with the sequence numbers commit will give them. For rules that depend on
/// the state after the decision (a saga completes, waiting work can go on).
pub(crate) fn folded<S: Saga + Clone>(saga: &S, saga_id: &str, decision: &Decision, at: Timestamp) -> S {
    let mut next = saga.clone();
    let seq = saga.book().seq;
    for (n, body) in decision.journal.iter().enumerate() {
        let meta = JournalMeta {
            saga_id: saga_id.to_string(),
            kind: saga.kind(),
            seq: seq + 1 + n as i64,
            correlation_key: String::new(),
            caused_by: String::new(),
            input: None,
            at,
        };
        next.apply(&JournalEvent { meta, body: body.clone() });
    }
    next
}
