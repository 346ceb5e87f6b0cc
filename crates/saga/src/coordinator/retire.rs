//! Retiring finished flows once their retention has passed (`[coordinator]
//! retire_finished_after_days`), so that what a partition keeps — in the state store, in
//! each snapshot generation, in memory on restore — follows the flows that work, not every
//! flow that ever finished.
//!
//! Standing subjects (a product's stock reconciliation, a system's health) are never
//! retired ([`crate::flow::Flow::retires`]).
//!
//! **When.** A flow is retired by the first timer tick whose logged time is at least the
//! retention past the flow's [`AnyFlow::finished_at`] (the latest decision of its sagas,
//! all finished). The tick takes every flow finished by then, in (finished at, key)
//! order, at most [`PER_TICK`] of them; if more are due another tick follows at once.
//! Which flows a tick retires is a function of the state the journal gives and the
//! tick's logged time only: a re-run after a crash retires the same flows at the same
//! tick (the store's index of finished flows may hold stale entries, which are checked
//! against the flow itself and never count).
//!
//! **What.** The tick journals `FlowRetired` on the flow's home saga, the last record of
//! this incarnation of the key, and the coordinator forgets the flow: the save deletes it
//! from the store, and with snapshots on writes a tombstone (a null value, which Kafka's
//! compaction removes with the key). A restore that folds the journal through a
//! `FlowRetired` drops the flow the same way, and the projector drops the key's record.
//!
//! **A later input for the key** is decided as for a key never seen: a new incarnation,
//! its sagas' sequence numbers from 1. So that a record replayed from its source long
//! after (a release, a shipment) does not start again what was done, an input for a key
//! of which the coordinator holds no state is refused — a dead letter that says why —
//! when it occurred more than the retention before it was logged (`turn::handle` applies
//! it; both times are logged inputs). A flow finished within the retention still has its
//! state, so a repeated input is recognised there as before.

use std::sync::atomic::Ordering;

use waybill_domain::journal::InputPosition;
use waybill_domain::{InboundEvent, Timestamp};

use super::outputs::{Observation, Outputs};
use super::{Coordinator, Worker};
use crate::Result;
use crate::decision::Cause;
use crate::registry::AnyFlow;

/// Most flows one tick retires (a deployment that turns retention on over years of
/// history retires them over many ticks, each one batch).
pub(super) const PER_TICK: usize = 2048;

impl Coordinator {
    /// The retention in logged micros, when it is on.
    pub(super) fn retention_micros(&self) -> Option<i64> {
        self.config.retire_after.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// Retires the flows finished at least the retention before the tick's logged time
    /// `at` (see the module's documentation).
    pub(super) fn retire_due(
        &self,
        w: &mut Worker,
        at: Timestamp,
        input: &InputPosition,
        out: &mut Outputs,
    ) -> Result<()> {
        let Some(retention) = self.retention_micros() else { return Ok(()) };
        let cutoff = Timestamp(at.0.saturating_sub(retention));
        let p = w.partition;
        // Candidates: the store's index, and flows finished since the last save (the
        // store and the unsaved changes, this turn's included, together are the state
        // the journal gives at this tick).
        let mut due: Vec<(Timestamp, String)> = Vec::new();
        for entry in self.store.finished_between(p, Timestamp(i64::MIN), cutoff) {
            let (finished, key) = entry?;
            if w.retired.contains_key(&key) {
                continue;
            }
            let current = match w.flows.get(&key) {
                Some(f) => f.finished_at(),
                None => self.store.load_any(p, &key)?.and_then(|f| f.finished_at()),
            };
            if current == Some(finished) {
                due.push((finished, key));
                if due.len() > PER_TICK {
                    break;
                }
            } else if !w.flows.contains_key(&key) {
                // The stored flow moved on or is gone: the entry is stale.
                self.store.drop_stale(p, finished, &key)?;
            }
        }
        // Flows changed since the last save, this turn's (decided before the tick in the
        // partition's order) included: the store does not have them yet.
        for key in w.dirty.iter().chain(&out.changed) {
            if let Some(finished) = w.flows.get(key).and_then(|f| f.finished_at()).filter(|t| *t <= cutoff) {
                due.push((finished, key.clone()));
            }
        }
        due.sort();
        due.dedup();
        let full = due.len() > PER_TICK;
        due.truncate(PER_TICK);
        let mut retired = 0usize;
        for (finished, key) in due {
            if !w.flows.contains_key(&key) {
                let Some(flow) = self.store.load_any(p, &key)? else { continue };
                w.flows.insert(key.clone(), flow);
            }
            self.retire_one(w, &key, finished, retention, at, input, out)?;
            retired += 1;
        }
        if retired > 0 {
            tracing::info!(
                waybill.partition = p,
                flows = retired,
                finished_by = %jiff::Timestamp::from_microsecond(cutoff.0).map_or_else(|_| cutoff.0.to_string(), |t| t.to_string()),
                more_due = full,
                "finished flows retired (their retention passed)"
            );
        }
        w.retire_from = if full { Timestamp(i64::MIN) } else { cutoff };
        self.schedule_retirement(w, full.then_some(at))
    }

    /// Journals one flow's retirement and forgets it.
    #[allow(clippy::too_many_arguments)]
    fn retire_one(
        &self,
        w: &mut Worker,
        key: &str,
        finished: Timestamp,
        retention: i64,
        at: Timestamp,
        input: &InputPosition,
        out: &mut Outputs,
    ) -> Result<()> {
        let Some(mut flow) = w.flows.remove(key) else { return Ok(()) };
        let cause = Cause { id: format!("retire:{key}@{}", at.0), input: Some(input.clone()), at };
        let step = flow.retire(finished, retention / 1_000_000, &cause);
        out.add(key, step, None, None)?;
        out.observations.push(Observation::Retired);
        w.retired.insert(key.to_string(), Some(finished));
        w.dirty.remove(key);
        out.changed.remove(key);
        self.stats.retired.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// With retention on: why an input for a key of which no state is held (a flow that
    /// has not begun, of a kind that is retired) is refused when it occurred more than the retention before it was
    /// logged at `logged`: it may belong to a flow already retired, and deciding it
    /// afresh could do again what was done. `None` when it is decided as usual.
    pub(super) fn too_old_for_a_new_flow(
        &self,
        flow: &AnyFlow,
        event: &InboundEvent,
        logged: Timestamp,
    ) -> Option<String> {
        let retention = self.retention_micros()?;
        let age = logged.micros_since(event.meta.occurred_at);
        if age <= retention || flow.has_begun() || !flow.retires() {
            return None;
        }
        let days = |micros: i64| micros as f64 / 86_400e6;
        Some(format!(
            "{} {} for {:?} occurred at {}, {:.1} days before it was logged, but Waybill keeps a finished flow for {:.1} days ([coordinator] retire_finished_after_days) and holds no state of {:?}: the record may belong to a flow already finished and retired, and deciding it as new could do again what was done (a second fulfilment, a second invoice). Check {:?} in its system of record and act there by hand; a record this old that truly starts new work needs a longer retention, then send it again",
            event.body.name(),
            event.meta.event_id,
            event.meta.correlation_key,
            jiff::Timestamp::from_microsecond(event.meta.occurred_at.0)
                .map_or_else(|_| format!("{} µs", event.meta.occurred_at.0), |t| t.to_string()),
            days(age),
            days(retention),
            event.meta.correlation_key,
            event.meta.correlation_key,
        ))
    }

    /// Works out when the next retirement is due: at `now` when a tick left some due,
    /// else the retention past the first finished flow the last one did not look at.
    pub(super) fn schedule_retirement(&self, w: &mut Worker, now: Option<Timestamp>) -> Result<()> {
        let Some(retention) = self.retention_micros() else { return Ok(()) };
        if now.is_some() {
            w.retire_due = now;
            return Ok(());
        }
        let next = self.store.finished_after(w.partition, w.retire_from)?;
        let unsaved = w.dirty.iter().filter_map(|k| w.flows.get(k).and_then(|f| f.finished_at())).min();
        w.retire_due = match (next, unsaved) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|t| Timestamp(t.0.saturating_add(retention)));
        Ok(())
    }
}
