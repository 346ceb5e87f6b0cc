//! Operators' actions on exceptions — retry, resolve, assign — decided the same way for
//! every saga of every flow: the saga that raised the exception decides, through the
//! [`Saga`](crate::saga::Saga) trait, and a refusal is journaled as `ControlRefused` so
//! the audit has it.

use waybill_domain::event::{ExceptionAction, ExceptionAssignment};
use waybill_domain::journal::{ControlRefusal, ExceptionAssigned, ExceptionResolved, ExceptionRetried};
use waybill_domain::{ExceptionCategory, JournalBody};

use super::{Flow, Step, commit};
use crate::book;
use crate::decision::{Cause, Decision};
use crate::outcome;

/// An operator's retry (`retry = true`) or resolution of an exception of this flow. The
/// saga that raised it decides: a retry re-issues the failed step's command with its
/// original idempotency key (never a second, different command for the business key); a
/// resolution closes the exception with the operator's note. Either is refused — journaled
/// as `ControlRefused`, so the audit has it — when the exception is not open or, for a
/// retry, has no command to re-issue.
pub(super) fn retry_or_resolve<F: Flow>(
    flow: &mut F,
    event_id: &str,
    a: &ExceptionAction,
    retry: bool,
    cause: &Cause,
    out: &mut Step,
) {
    let action = if retry { "retry" } else { "resolve" };
    let refuse = |reason: String| refusal(&a.exception_id, action, &a.actor, reason);
    let Some(target) = saga_of(flow, &a.exception_id, action, &a.actor, cause, out) else { return };
    let saga = flow.saga(&target).expect("target_of found the saga");
    let book = saga.book();
    if book.seen.contains(event_id) {
        return; // a redelivered control record: done the first time
    }
    let d = if !book.open_exceptions.contains_key(&a.exception_id) {
        refuse(book::not_open(book, &a.exception_id))
    } else if retry {
        match saga.retry(&a.exception_id) {
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
    commit(flow, &target, d, cause, out);
}

/// An operator's assignment of an exception of this flow to an owner (a person or team).
/// The saga that raised it decides: an open exception is assigned (or reassigned to a new
/// owner, naming the previous one); assigning it to the owner it already has changes
/// nothing (idempotent, nothing is journaled). Refused — journaled as `ControlRefused`, so
/// the audit has it — when the exception is not open (assigning a resolved exception makes
/// no one work it) or the owner is blank. Assigning never closes an exception nor counts as
/// the saga's progress.
pub(super) fn assign<F: Flow>(flow: &mut F, event_id: &str, a: &ExceptionAssignment, cause: &Cause, out: &mut Step) {
    let Some(target) = saga_of(flow, &a.exception_id, "assign", &a.actor, cause, out) else { return };
    let book = flow.saga(&target).expect("target_of found the saga").book();
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
    commit(flow, &target, d, cause, out);
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

/// The saga of this flow that raised `exception_id`; when none did, journals the refusal
/// of the operator's `action` (by the flow's home saga) and returns `None`.
fn saga_of<F: Flow>(
    flow: &mut F,
    exception_id: &str,
    action: &str,
    actor: &str,
    cause: &Cause,
    out: &mut Step,
) -> Option<F::Target> {
    let target = book::saga_of_exception(exception_id).and_then(|saga| flow.target_of(saga));
    if target.is_none() {
        let d = refusal(
            exception_id,
            action,
            actor,
            format!(
                "exception {exception_id} does not belong to a saga of {} {}; check the id with `waybill exceptions list`",
                flow.family(),
                flow.key()
            ),
        );
        let home = flow.home();
        commit(flow, &home, d, cause, out);
    }
    target
}
