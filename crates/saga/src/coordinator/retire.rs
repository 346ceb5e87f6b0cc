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
//! tick's logged time only: the store's index of finished flows describes the stored
//! states, and the flows changed since the last save (the tick's own turn included) are
//! read from memory, so a re-run after a crash, with batches cut and saves made at other
//! points, retires the same flows at the same tick.
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
use crate::decision::Cause;
use crate::registry::AnyFlow;
use crate::{Error, Result};

/// Most flows one tick retires (a deployment that turns retention on over years of
/// history retires them over many ticks, each one batch).
pub(super) const PER_TICK: usize = 2048;

impl Coordinator {
    /// The retention in logged micros, when it is on.
    pub(super) fn retention_micros(&self) -> Option<i64> {
        self.config.retire_after.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// When `key`, indexed in the store as finished at `stored`, finished in the state the
    /// journal gives now: the store's, unless the flow changed since the last save (it is
    /// in memory) or was retired since (`None`). The store's index describes the stored
    /// state exactly (`StateStore::save_encoded`), so only the unsaved changes need a look.
    fn finished_now(w: &Worker, key: &str, stored: Timestamp) -> Option<Timestamp> {
        if w.retired.contains(key) {
            return None;
        }
        match w.flows.get(key) {
            Some(f) => f.finished_at(),
            None => Some(stored),
        }
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
        // Candidates: the store's index, and the flows changed since the last save, this
        // turn's (decided before the tick in the partition's order) included — together,
        // the state the journal gives at this tick.
        let mut due: Vec<(Timestamp, String)> = Vec::new();
        for entry in self.store.finished_by(p, cutoff) {
            let (stored, key) = entry?;
            if Self::finished_now(w, &key, stored) == Some(stored) {
                due.push((stored, key));
                if due.len() > PER_TICK {
                    break;
                }
            }
        }
        for key in w.dirty.iter().chain(&out.changed) {
            if let Some(finished) = w.flows.get(key).and_then(AnyFlow::finished_at).filter(|t| *t <= cutoff) {
                due.push((finished, key.clone()));
            }
        }
        due.sort();
        due.dedup();
        let full = due.len() > PER_TICK;
        due.truncate(PER_TICK);
        let retired = due.len();
        for (finished, key) in due {
            let mut flow = match w.flows.remove(&key) {
                Some(f) => f,
                None => self.store.load_any(p, &key)?.ok_or_else(|| Error::State {
                    key: key.clone(),
                    reason: "the store's index of finished flows names it, but the store holds no state of it".into(),
                })?,
            };
            // Journal the retirement on the flow, then forget it.
            let cause = Cause { id: format!("retire:{key}@{}", at.0), input: Some(input.clone()), at };
            let step = flow.retire(finished, retention / 1_000_000, &cause);
            out.add(&key, step, None, None)?;
            out.observations.push(Observation::Retired);
            w.dirty.remove(&key);
            out.changed.remove(&key);
            w.retired.insert(key);
            self.stats.retired.fetch_add(1, Ordering::Relaxed);
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
        if full {
            // More are due now: the next tick follows at once.
            w.retire_due = Some(at);
            return Ok(());
        }
        self.schedule_retirement(w)
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

    /// Works out when the next retirement is due: the retention past the earliest finish
    /// of the state the journal gives (the store's index, as [`Self::finished_now`] reads
    /// it, and the flows changed since the last save).
    pub(super) fn schedule_retirement(&self, w: &mut Worker) -> Result<()> {
        let Some(retention) = self.retention_micros() else { return Ok(()) };
        let mut earliest = w.dirty.iter().filter_map(|k| w.flows.get(k).and_then(AnyFlow::finished_at)).min();
        // Entries that do not describe the flow now (changed or retired since the last
        // save) are passed over; the save that follows removes them.
        for entry in self.store.finished_by(w.partition, Timestamp(i64::MAX)) {
            let (stored, key) = entry?;
            if Self::finished_now(w, &key, stored) == Some(stored) {
                earliest = Some(earliest.map_or(stored, |e: Timestamp| e.min(stored)));
                break;
            }
        }
        w.retire_due = earliest.map(|t| Timestamp(t.0.saturating_add(retention)));
        Ok(())
    }
}
