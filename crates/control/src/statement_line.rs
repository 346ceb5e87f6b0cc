//! Applying an unmatched bank-statement line by hand (`AssignStatementLine`): an operator
//! names the line's `UNMATCHED_PAYMENT` exception (or the statement and the line), the
//! invoices it pays and, for what they leave of it, the customer whose account keeps it.
//!
//! Like every workbench action it is checked here for a quick, clear answer — the role,
//! the request's own fields ([`validate::statement_line_assignment`]), then the saga
//! crate's own rule, [`by_hand::check`], run on the statement's saga as its journal has it
//! (one rule, no copy) — then written to `waybill.control` keyed by the statement, decided
//! by the saga (which checks again: the authority), and answered with the saga's verdict.
//! Attempts answered here go to `waybill.audit`.
//!
//! The pure helpers the command line and the web workbench share to read what people type
//! (`INV/2026/0001=120.00`) are here too: [`parse_allocation`], [`parse_amount`].

use waybill_domain::cash::{InvoiceAllocation, KEY_PREFIX, LineAssignment, correlation_key};
use waybill_domain::{EventBody, EventMeta, ExceptionCategory, InboundEvent, Money, SourceRef, System, Timestamp};
use waybill_projection::ExceptionView;
use waybill_saga::AnyFlow;
use waybill_saga::cash::by_hand::{self, RefusalKind};
use waybill_saga::cash::{StatementFlow, entry_key};

use crate::auth::{Principal, Role};
use crate::error::{Error, Result};
use crate::proto;
use crate::service::Control;
use crate::validate;
use crate::workbench::{Call, Verdict, check_open, exception_proto, request_id};

/// The action's name in the audit (`waybill approvals audit`).
pub const ACTION: &str = by_hand::ACTION;

/// What an assignment asks for, in words, as the audit's reason: "INV/2026/0001 120.00,
/// the rest on account of C0001: confirmed by the customer".
pub fn describe(allocations: &[InvoiceAllocation], on_account: Option<&str>, note: &str) -> String {
    let mut parts: Vec<String> = allocations.iter().map(|a| format!("{} {}", a.invoice, a.amount)).collect();
    if let Some(c) = on_account {
        parts.push(if allocations.is_empty() {
            format!("on account of {c}")
        } else {
            format!("the rest on account of {c}")
        });
    }
    let what = parts.join(", ");
    match note.trim() {
        "" => what,
        note => format!("{what}: {note}"),
    }
}

/// An amount people type (`120`, `120.5`, `1200.00`) in minor units; at most two
/// decimals, no sign, no thousands separators.
pub fn parse_amount(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (major, minor) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || (!minor.is_empty() && (minor.len() > 2 || !digits(minor))) || t.ends_with('.') {
        return Err(format!(
            "{text:?} is not an amount: write it like 120.00 (a dot before at most two decimals, no sign or thousands separators)"
        ));
    }
    let minor = format!("{minor:0<2}");
    let value = major.parse::<i64>().ok().and_then(|m| m.checked_mul(100)).zip(minor.parse::<i64>().ok());
    value.and_then(|(m, c)| m.checked_add(c)).ok_or_else(|| format!("{text:?} is too large an amount"))
}

/// One allocation as people type it: `INVOICE=AMOUNT` (`INV/2026/0001=120.00`).
pub fn parse_allocation(text: &str) -> Result<proto::LineAllocation, String> {
    let Some((invoice, amount)) = text.rsplit_once('=') else {
        return Err(format!("{text:?} is not an allocation: write INVOICE=AMOUNT, like INV/2026/0001=120.00"));
    };
    let invoice = invoice.trim();
    if invoice.is_empty() {
        return Err(format!("{text:?} names no invoice: write INVOICE=AMOUNT, like INV/2026/0001=120.00"));
    }
    let amount_minor = parse_amount(amount).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(proto::LineAllocation { invoice: invoice.to_string(), amount_minor })
}

/// The gRPC status of a saga's refusal found here.
fn refusal_error(r: by_hand::Refusal) -> Error {
    match r.kind {
        RefusalKind::Unknown => Error::NotFound(r.reason),
        RefusalKind::NotOpen => Error::FailedPrecondition(r.reason),
        RefusalKind::Invalid => Error::InvalidArgument(r.reason),
    }
}

/// The statement's key (without `stmt:`) the request is about: the exception's flow, or
/// the statement it names; both must agree.
fn statement_of(r: &proto::AssignStatementLineRequest, view: Option<ExceptionView>) -> Result<String> {
    let named = r.statement_key.trim();
    let named = named.strip_prefix(KEY_PREFIX).unwrap_or(named);
    if r.exception_id.trim().is_empty() {
        return Ok(named.to_string());
    }
    let (key, x) = check_open(r.exception_id.trim(), view)?;
    if x.category != ExceptionCategory::UnmatchedPayment {
        return Err(Error::FailedPrecondition(format!(
            "exception {} is {}, not an unmatched payment: only a bank-statement line nobody could apply is applied by hand; retry it, or resolve it with a note",
            x.exception_id, x.category
        )));
    }
    let Some(statement) = key.strip_prefix(KEY_PREFIX) else {
        return Err(Error::FailedPrecondition(format!(
            "exception {} belongs to {key}, not to a bank statement; only statement lines are applied by hand",
            x.exception_id
        )));
    };
    if !named.is_empty() && named != statement {
        return Err(Error::InvalidArgument(format!(
            "exception {} is of statement {statement:?}, not {named:?}; name one of them, or both of the same statement",
            x.exception_id
        )));
    }
    Ok(statement.to_string())
}

impl Control {
    /// The statement's saga as its journal has it.
    fn statement_flow(&self, statement_key: &str) -> Result<StatementFlow> {
        let key = correlation_key(statement_key);
        let AnyFlow::Statement(mut flow) = AnyFlow::new(&key) else {
            return Err(Error::Internal(format!("{key} is not a bank statement's flow")));
        };
        for e in self.journal_of(&key)? {
            waybill_saga::flow::apply(flow.as_mut(), &e);
        }
        if flow.cash.statement.is_none() {
            return Err(Error::NotFound(format!(
                "bank statement {statement_key:?} has not been imported; find its unmatched lines with `waybill exceptions list --open --category unmatched-payment`"
            )));
        }
        Ok(*flow)
    }

    /// `AssignStatementLine`, as `who` calling from `peer`.
    pub(crate) fn assign_statement_line(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::AssignStatementLineRequest,
    ) -> Result<proto::ExceptionActionResponse> {
        let exception_id = r.exception_id.trim();
        let view = if exception_id.is_empty() { None } else { self.projections.exception(exception_id)? };
        let allocations: Vec<InvoiceAllocation> = r
            .allocations
            .iter()
            .map(|a| InvoiceAllocation { invoice: a.invoice.trim().to_string(), amount: Money(a.amount_minor) })
            .collect();
        let on_account = Some(r.on_account.trim()).filter(|c| !c.is_empty());
        let reason = describe(&allocations, on_account, &r.note);
        let line_target = format!("{}#{}", r.statement_key.trim(), r.line_id.trim());
        let call = Call {
            who,
            peer,
            action: ACTION,
            target: if exception_id.is_empty() { &line_target } else { exception_id },
            order_ref: view.as_ref().and_then(|v| v.order_ref.clone()).unwrap_or_default(),
            note: &reason,
        };
        let mut assignment = LineAssignment {
            statement_key: String::new(),
            exception_id: exception_id.to_string(),
            line_id: r.line_id.trim().to_string(),
            allocations,
            on_account: on_account.map(str::to_string),
            actor: who.identity.clone(),
            role: who.role.to_string(),
            peer: peer.to_string(),
            request_id: request_id(),
            note: r.note.trim().to_string(),
        };
        let checked = who
            .require(Role::Operator, "applying a statement line by hand")
            .and_then(|()| validate::statement_line_assignment(r))
            .and_then(|()| statement_of(r, view))
            .and_then(|statement| {
                assignment.statement_key = statement;
                let flow = self.statement_flow(&assignment.statement_key)?;
                by_hand::check(&flow.cash, &assignment).map_err(refusal_error)
            });
        let applied = match checked {
            Ok(applied) => applied,
            Err(e) => {
                // The audit names the statement once the request is known to be about one.
                let order_ref = match assignment.statement_key.as_str() {
                    "" => call.order_ref.clone(),
                    statement => correlation_key(statement),
                };
                return self.refuse_at_edge(&Call { order_ref, ..call }, e);
            }
        };
        // The logged request names both: the saga checks that they still agree.
        assignment.exception_id = applied.exception_id.clone();
        assignment.line_id = applied.entry.line_id.clone();
        let key = correlation_key(&assignment.statement_key);
        let event_id = format!("control:{ACTION}:{}:{}", applied.exception_id, assignment.request_id);
        let event = InboundEvent {
            meta: EventMeta {
                event_id: event_id.clone(),
                source: SourceRef::new(System::Operator, who.identity.clone()),
                correlation_key: key.clone(),
                occurred_at: Timestamp::now(),
                actor: Some(who.identity.clone()),
            },
            body: EventBody::StatementLineAssignRequested(assignment.clone()),
        };
        let call = Call { target: &applied.exception_id, order_ref: key, ..call };
        let (answer, partition, offset, deadline) = self.await_verdict(&call, &event)?;
        match answer {
            Verdict::Resolved(_) => {}
            Verdict::Refused(reason) => {
                return Err(Error::FailedPrecondition(format!("the saga refused to apply the line: {reason}")));
            }
            Verdict::Retried(_) | Verdict::Assigned(_) => {
                return Err(Error::Internal(format!(
                    "the saga answered the application of line {} with another action; check `waybill order show {}`",
                    assignment.line_id, call.order_ref
                )));
            }
        }
        self.await_projection(partition, offset, deadline)?;
        let entry_key = entry_key(&applied.entry.statement_key, &applied.entry.line_id);
        Ok(proto::ExceptionActionResponse {
            exception_id: applied.exception_id.clone(),
            action: ACTION.into(),
            outcome: "applied".into(),
            message: format!(
                "line {} applied by hand: {}; journal entry {entry_key} sent to finance, exception {} resolved",
                applied.entry.line_id,
                by_hand::summary(&applied.entry),
                applied.exception_id
            ),
            event_id,
            idempotency_key: entry_key,
            exception: self.projections.exception(&applied.exception_id)?.map(exception_proto),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_allocations_read_as_people_type_them() {
        assert_eq!(parse_amount("120.00"), Ok(120_00));
        assert_eq!(parse_amount("120"), Ok(120_00));
        assert_eq!(parse_amount(" 0.5 "), Ok(50));
        for bad in ["", "-5", "1,200.00", "12.345", "12.", ".5", "1e3", "99999999999999999"] {
            let e = parse_amount(bad).unwrap_err();
            assert!(e.contains("is not an amount") || e.contains("too large"), "{bad:?}: {e}");
        }
        let a = parse_allocation("INV/2026/0001=120.00").unwrap();
        assert_eq!((a.invoice.as_str(), a.amount_minor), ("INV/2026/0001", 120_00));
        assert!(parse_allocation("INV/2026/0001").unwrap_err().contains("write INVOICE=AMOUNT"));
        assert!(parse_allocation("=12").unwrap_err().contains("names no invoice"));
        assert!(parse_allocation("INV-1=12,50").unwrap_err().contains("is not an amount"));
    }

    #[test]
    fn the_audit_reason_names_the_allocation_and_the_note() {
        let a = [InvoiceAllocation { invoice: "INV-1".into(), amount: Money(100_00) }];
        assert_eq!(describe(&a, Some("C1"), "by phone"), "INV-1 100.00, the rest on account of C1: by phone");
        assert_eq!(describe(&[], Some("C1"), ""), "on account of C1");
    }
}
