//! An operator's replay: a flow's inbound records stepped again, on the current state.

use waybill_domain::InboundEvent;
use waybill_domain::JournalBody;
use waybill_domain::event::{ReplayInput, ReplayRequest};
use waybill_domain::journal::{ExceptionResolved, InputPosition, SagaReplayed};

use super::{Env, Flow, Step, commit, reject, step};
use crate::decision::{Cause, Decision};

/// A record named by a replay, as the coordinator read it from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRecord {
    /// Where it was read, as the request names it.
    pub input: ReplayInput,
    /// The decoded event, or why it could not be read or decoded.
    pub event: Result<InboundEvent, String>,
}

/// An operator's replay: feeds `records` (the flow's inbound events, in the order they
/// were first consumed) through [`step`] again, on the current state.
///
/// Semantics: each record is stepped with its own event id as the cause (so the sagas'
/// dedup by event id and by business key applies: a record that was applied changes
/// nothing, and a later redelivery of a record the replay applied is dropped). Nothing is
/// dead-lettered again — a record still refused is listed in the outcome instead (it is in
/// the dead-letter topic already); a dead-lettered record that now applies closes its
/// `BAD_INPUT` exception. Approvals and workbench actions are never replayed. The replay
/// ends with a `SagaReplayed` journal event (caused by the request, journaled by the
/// flow's home saga) that says what it did. Replaying the same records twice issues
/// nothing the second time.
pub fn replay<F: Flow>(
    flow: &mut F,
    request_id: &str,
    r: &ReplayRequest,
    records: &[ReplayRecord],
    env: &Env<'_>,
    cause: &Cause,
) -> Step {
    let mut out = Step::default();
    let home = flow.home();
    if flow.saga(&home).is_some_and(|s| s.book().seen.contains(request_id)) {
        return out; // a redelivered request: replayed the first time
    }
    if let Some(why) = flow.not_begun() {
        commit(flow, &home, reject(format!("replay of {why}; nothing to replay")), cause, &mut out);
        return out;
    }
    let mut applied = 0;
    let mut refused = Vec::new();
    let mut closed = Vec::new();
    for rec in records {
        let at = format!("{}/{}@{}", rec.input.topic, rec.input.partition, rec.input.offset);
        let event = match &rec.event {
            Ok(e) if e.meta.correlation_key != flow.key() => {
                refused.push(format!(
                    "{at}: belongs to {} {:?}, not {}",
                    flow.family(),
                    e.meta.correlation_key,
                    flow.key()
                ));
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
    commit(flow, &home, d, cause, &mut out);
    out
}
