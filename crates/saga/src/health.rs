//! Target health: one small saga per command target (`tgt:odoo`), in the flow of the
//! key `target:<system>`. Its connector reports when the target has not answered for
//! longer than it allows (`TargetUnavailable`) and when it answers again
//! (`TargetRecovered`). The first raises one `TARGET_UNAVAILABLE` exception per outage —
//! a repeat while it is open changes nothing — and the second resolves it. Commands are
//! not lost meanwhile: they wait in `waybill.commands.<system>` and the connector
//! delivers them once the target is back. An operator cannot retry the exception (the
//! connector closes it when the target answers) but may resolve it with a note.
//!
//! Pure: [`decide`] returns a decision; [`TargetHealth::apply`] folds.

use serde::{Deserialize, Serialize};
use waybill_domain::event::{EventBody, InboundEvent, TargetOutage};
use waybill_domain::journal::ExceptionResolved;
use waybill_domain::{ExceptionCategory, JournalBody, JournalEvent, SagaKind, SourceRef, System, Timestamp, topic};

use crate::book::{self, SagaBook};
use crate::decision::{DeadLetterKind, Decision};
use crate::outcome::{system_name, system_title};

/// State of one target's health saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// What every saga keeps: applied seq, causes, open exceptions.
    #[serde(flatten)]
    pub book: SagaBook,
}

impl TargetHealth {
    /// Saga kind.
    pub const KIND: SagaKind = SagaKind::TargetHealth;

    /// Saga id of a target's health: `tgt:odoo`.
    pub fn saga_id(target: System) -> String {
        Self::KIND.saga_id(target.as_str())
    }

    /// Folds one journal event (copies already applied are ignored).
    pub fn apply(&mut self, event: &JournalEvent) {
        self.book.fold(event);
    }

    /// True while an outage of the target is open.
    pub fn is_down(&self) -> bool {
        self.book.open_of(ExceptionCategory::TargetUnavailable).next().is_some()
    }
}

/// Checks that an outage report is keyed by its target (`target:odoo`) and names a system
/// Waybill sends commands to.
pub fn check_report(event: &InboundEvent, o: &TargetOutage) -> Result<(), String> {
    let want = TargetOutage::correlation_key(o.target);
    if !topic::COMMAND_TARGETS.contains(&o.target) {
        return Err(format!(
            "{} reports system {}, which Waybill sends no commands to; only the connectors of {} report outages",
            event.body.name(),
            o.target,
            topic::COMMAND_TARGETS.map(System::as_str).join(", ")
        ));
    }
    if event.meta.correlation_key != want {
        return Err(format!(
            "{} for {} is keyed {:?}; the connector must key it {want:?} so that every report of one target reaches the same saga",
            event.body.name(),
            o.target,
            event.meta.correlation_key
        ));
    }
    Ok(())
}

/// Decides an outage report addressed to this target (checked by [`check_report`]).
pub fn decide(s: &TargetHealth, event: &InboundEvent) -> Decision {
    if s.book.seen.contains(&event.meta.event_id) {
        return Decision::noop();
    }
    match &event.body {
        EventBody::TargetUnavailable(o) if !s.is_down() => {
            let mut d = Decision::noop();
            let commands = topic::commands(o.target);
            d.raise(
                &TargetHealth::saga_id(o.target),
                s.book.exceptions_raised,
                ExceptionCategory::TargetUnavailable,
                SourceRef::new(System::Waybill, commands.clone()),
                format!(
                    "{} has not answered since {} ({}); commands wait in {commands} and are delivered when it is back — see docs/operations.md 'a system is down'",
                    system_title(o.target),
                    utc(o.since),
                    o.reason.trim()
                ),
            );
            d
        }
        EventBody::TargetRecovered(o) => {
            let mut d = Decision::noop();
            let down_for = event.meta.occurred_at.micros_since(o.since);
            for id in s.book.open_of(ExceptionCategory::TargetUnavailable) {
                d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                    exception_id: id.clone(),
                    resolution: format!("{} answered again after {}", system_title(o.target), duration(down_for)),
                }));
            }
            d
        }
        EventBody::TargetUnavailable(_) => Decision::noop(),
        other => Decision::reject(
            DeadLetterKind::Rule,
            format!(
                "{} for {}, which is a target's outage key, not an order; key it by the order name",
                other.name(),
                event.meta.correlation_key
            ),
        ),
    }
}

/// An operator's retry of an outage: refused, with what to do instead.
pub fn retry(s: &TargetHealth, exception_id: &str) -> Result<crate::decision::Outbound, String> {
    let Some(category) = s.book.open_exceptions.get(exception_id) else {
        return Err(book::not_open(&s.book, exception_id));
    };
    let target = exception_id
        .strip_prefix("tgt:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|t| t.parse::<System>().ok())
        .unwrap_or(System::Other);
    Err(format!(
        "exception {exception_id} ({category}) has no command to re-issue: the connector delivers the waiting commands and closes it when {} answers again; once you have checked the outage is over and the connector runs, resolve it with a note",
        system_name(target)
    ))
}

/// `2026-01-01 10:42 UTC`.
pub(crate) fn utc(t: Timestamp) -> String {
    let c = t.civil();
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", c.year, c.month, c.day, c.hour, c.minute)
}

/// `3 min 12 s`, `2 h 5 min`, `1 d 3 h`.
pub(crate) fn duration(micros: i64) -> String {
    let s = micros.max(0) / Timestamp::MICROS_PER_SEC;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A target's health never waits on a step: while the target is down its open
/// `TARGET_UNAVAILABLE` exception watches it, and while it answers there is nothing to
/// do (finished, until the next outage report).
impl crate::saga::Saga for TargetHealth {
    fn kind(&self) -> SagaKind {
        Self::KIND
    }
    fn book(&self) -> &SagaBook {
        &self.book
    }
    fn apply(&mut self, event: &JournalEvent) {
        TargetHealth::apply(self, event)
    }
    fn is_finished(&self) -> bool {
        !self.is_down()
    }
    fn status(&self) -> String {
        if self.is_down() { "down" } else { "up" }.to_string()
    }
    fn retry(&self, exception_id: &str) -> Result<crate::decision::Outbound, String> {
        retry(self, exception_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_a_person_writes_them() {
        assert_eq!(utc(Timestamp(1_767_225_600_000_000)), "2026-01-01 00:00 UTC");
        assert_eq!(utc(Timestamp(1_767_225_600_000_000 + 38_520 * 1_000_000)), "2026-01-01 10:42 UTC");
        assert_eq!(utc(Timestamp(951_782_400_000_000)), "2000-02-29 00:00 UTC");
        assert_eq!(duration(192 * 1_000_000), "3 min 12 s");
        assert_eq!(duration(59 * 1_000_000), "59 s");
        assert_eq!(duration(7_500 * 1_000_000), "2 h 5 min");
        assert_eq!(duration(97_200 * 1_000_000), "1 d 3 h");
    }
}
