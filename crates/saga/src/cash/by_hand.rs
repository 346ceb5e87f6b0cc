//! Applying an unmatched statement line by hand: an operator names the invoices the line
//! pays and, for what they leave of it, the customer whose account keeps it.
//!
//! One rule, [`check`], used twice: the control plane runs it on the saga as the journal
//! has it, for a quick, clear answer before it appends the request to `waybill.control`;
//! the saga runs it again when it reads the logged request ([`decide`]) — the authority, in
//! order with everything else on the partition — so a replay of the journal decides the
//! same. An accepted assignment journals the line's entry (`LineApplied`, rule
//! [`RULE`]), closes its `UNMATCHED_PAYMENT` exception and sends the line's one
//! `PostStatementLine` (`stmt-line:<statement>#<line>`); finance's answer is handled as
//! for a line the matcher applied. A refusal is journaled as `ControlRefused`, so the
//! audit has it.

use std::collections::BTreeSet;

use waybill_domain::cash::{BankLine, InvoiceAllocation, LineAssignment, StatementEntry, StatementReceived};
use waybill_domain::journal::{ControlRefusal, ExceptionResolved};
use waybill_domain::{ExceptionCategory, JournalBody, Money};

use super::{CashApplication, entry_key, post};
use crate::decision::Decision;

/// The rule name of a line applied by hand (`StatementEntry::rule`).
pub const RULE: &str = "manual";

/// The action's name in `ControlRefused` and the audit.
pub const ACTION: &str = "assign-line";

/// Why an assignment was refused: the control plane maps it to a status code, the saga
/// journals the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The statement, line or exception named is not one this saga has.
    Unknown,
    /// The line cannot be applied by hand now: it has its journal entry already, or its
    /// exception is not an open unmatched payment.
    NotOpen,
    /// The allocation does not fit the line or the receivables open on the statement.
    Invalid,
}

/// A refused assignment: what kind of refusal, and what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The kind.
    pub kind: RefusalKind,
    /// What was wrong and what to do, in the operator's words.
    pub reason: String,
}

fn refuse<T>(kind: RefusalKind, reason: String) -> Result<T, Refusal> {
    Err(Refusal { kind, reason })
}

/// An accepted assignment: the exception it closes and the line's journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The line's `UNMATCHED_PAYMENT` exception.
    pub exception_id: String,
    /// The journal entry to send (rule [`RULE`]).
    pub entry: StatementEntry,
}

/// Checks an operator's assignment against what the saga knows: the statement line
/// (amount, fee, currency), the receivables open when the statement was imported, and
/// what the statement's other lines already applied to them. Accepted only for a line
/// waiting in the unmatched-payments queue and without a journal entry (one per line,
/// ever), when every invoice is one of the statement's open items in the line's currency,
/// every amount is positive, no invoice gets more than it still has open, and the
/// allocations come to the line's amount — or less, with a customer named to keep the
/// rest on account.
pub fn check(s: &CashApplication, a: &LineAssignment) -> Result<Applied, Refusal> {
    let Some(st) = s.statement.as_deref() else {
        return refuse(
            RefusalKind::Unknown,
            format!(
                "bank statement {:?} has not been imported, so it has no line to apply; check the statement key with `waybill exceptions list --category unmatched-payment`",
                a.statement_key
            ),
        );
    };
    if !a.statement_key.is_empty() && a.statement_key != st.statement_key {
        return refuse(
            RefusalKind::Unknown,
            format!(
                "the request names statement {:?}, but this is statement {:?}; name the exception or the line of the right statement",
                a.statement_key, st.statement_key
            ),
        );
    }
    let (exception_id, line) = line_in_queue(s, st, a)?;
    let gross = Money(line.amount.0 + line.fee.0);
    let what = describe(line, gross);
    if gross.0 <= 0 {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "{what} is money out, not a customer's payment: there is nothing to apply to invoices; book it in finance and resolve exception {exception_id} with a note"
            ),
        );
    }
    if a.note.trim().is_empty() {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "applying {what} by hand needs a note saying how the allocation was established (who confirmed it)"
            ),
        );
    }
    let on_account = match a.on_account.as_deref().map(str::trim) {
        Some("") => {
            return refuse(
                RefusalKind::Invalid,
                "the customer to keep the rest on account is blank; name the customer (finance's customer reference), or leave it out".into(),
            );
        }
        other => other.map(str::to_string),
    };
    if a.allocations.is_empty() && on_account.is_none() {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "name the invoices {what} pays (invoice and amount), or the customer whose account keeps it (on account)"
            ),
        );
    }
    let allocations = check_allocations(s, st, line, &a.allocations)?;
    let total: Money = allocations.iter().map(|x| x.amount).sum();
    let currency = &line.currency;
    if total > gross {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "the allocations come to {total} {currency}, {} more than {what}; lower them",
                Money(total.0 - gross.0)
            ),
        );
    }
    let remainder = Money(gross.0 - total.0);
    match &on_account {
        None if remainder.0 > 0 => {
            return refuse(
                RefusalKind::Invalid,
                format!(
                    "the allocations come to {total} {currency} but {what}: {remainder} {currency} is not allocated; apply it to an invoice or leave it on the customer's account (on account)"
                ),
            );
        }
        Some(customer) if remainder.0 == 0 => {
            return refuse(
                RefusalKind::Invalid,
                format!(
                    "the allocations already come to {what}, so nothing is left for {customer}'s account; leave out on account"
                ),
            );
        }
        _ => {}
    }
    let entry = StatementEntry {
        statement_key: st.statement_key.clone(),
        line_id: line.line_id.clone(),
        rule: RULE.to_string(),
        amount: line.amount,
        currency: line.currency.clone(),
        booking_date: line.booking_date,
        counterparty: line.counterparty.clone(),
        allocations,
        fee: line.fee,
        write_off: Money(0),
        remainder,
        on_account,
    };
    Ok(Applied { exception_id, entry })
}

/// "line L3 (120.00 EUR from Nordwind GmbH)", with what the bank kept when it kept
/// something.
fn describe(line: &BankLine, gross: Money) -> String {
    let payer = line.counterparty.as_deref().map(|p| format!(" from {p}")).unwrap_or_default();
    let fee = if line.fee.0 != 0 {
        format!(": {} received, {} kept by the bank or gateway", line.amount, line.fee)
    } else {
        String::new()
    };
    format!("line {} ({gross} {}{payer}{fee})", line.line_id, line.currency)
}

/// The line the assignment is for, and its open `UNMATCHED_PAYMENT` exception: named by
/// the exception, by the line, or by both (then they must agree).
fn line_in_queue<'a>(
    s: &CashApplication,
    st: &'a StatementReceived,
    a: &LineAssignment,
) -> Result<(String, &'a BankLine), Refusal> {
    let (exception_id, line_id) = (a.exception_id.trim(), a.line_id.trim());
    if exception_id.is_empty() && line_id.is_empty() {
        return refuse(
            RefusalKind::Invalid,
            "name the unmatched-payment exception (cash:…/unmatched-payment/N), or the statement and its line".into(),
        );
    }
    // One journal entry per statement line, ever: a line that has one is never applied
    // again, whichever way it got it.
    if let Some(e) = s.lines.get(line_id).and_then(|l| l.entry.as_ref()) {
        return refuse(RefusalKind::NotOpen, already_applied(e));
    }
    let subject = |id: &str| s.book.subjects.get(id).map(|x| x.id.clone());
    let exception_id = if exception_id.is_empty() {
        let queued = s
            .book
            .open_of(ExceptionCategory::UnmatchedPayment)
            .find(|id| subject(id).as_deref() == Some(line_id))
            .cloned();
        match queued {
            Some(id) => id,
            None if st.lines.iter().all(|l| l.line_id != line_id) => {
                return refuse(
                    RefusalKind::Unknown,
                    format!(
                        "statement {} has no line {line_id:?}; `waybill order show stmt:{}` lists its lines",
                        st.statement_id, st.statement_key
                    ),
                );
            }
            None => {
                return refuse(
                    RefusalKind::NotOpen,
                    format!(
                        "line {line_id} of statement {} is not waiting in the unmatched-payments queue (its exception was resolved); book any change in finance",
                        st.statement_id
                    ),
                );
            }
        }
    } else {
        match s.book.open_exceptions.get(exception_id) {
            None => return refuse(RefusalKind::NotOpen, crate::book::not_open(&s.book, exception_id)),
            Some(ExceptionCategory::UnmatchedPayment) => exception_id.to_string(),
            Some(other) => {
                return refuse(
                    RefusalKind::NotOpen,
                    format!(
                        "exception {exception_id} is {other}, not an unmatched payment: only a line nobody could apply is applied by hand; retry it, or resolve it with a note"
                    ),
                );
            }
        }
    };
    let about = subject(&exception_id).unwrap_or_default();
    if !line_id.is_empty() && about != line_id {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "exception {exception_id} is about line {about}, not line {line_id}; name one of them, or both of the same line"
            ),
        );
    }
    if let Some(e) = s.lines.get(&about).and_then(|l| l.entry.as_ref()) {
        return refuse(RefusalKind::NotOpen, already_applied(e));
    }
    match st.lines.iter().find(|l| l.line_id == about) {
        Some(line) => Ok((exception_id, line)),
        None => refuse(
            RefusalKind::Unknown,
            format!("exception {exception_id} names line {about:?}, which statement {} does not have", st.statement_id),
        ),
    }
}

fn already_applied(e: &StatementEntry) -> String {
    format!(
        "line {} has its journal entry already ({}, rule {}): one journal entry per statement line, ever; to change how it is applied, correct the entry in finance",
        e.line_id,
        entry_key(&e.statement_key, &e.line_id),
        e.rule
    )
}

/// Each allocation on its own: a positive amount, once per invoice, to a receivable open
/// on the statement in the line's currency, and no more than the invoice still has open
/// after the statement's other lines.
fn check_allocations(
    s: &CashApplication,
    st: &StatementReceived,
    line: &BankLine,
    allocations: &[InvoiceAllocation],
) -> Result<Vec<InvoiceAllocation>, Refusal> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(allocations.len());
    for x in allocations {
        let invoice = x.invoice.trim();
        if invoice.is_empty() {
            return refuse(
                RefusalKind::Invalid,
                "an allocation names no invoice; give each one as NUMBER=AMOUNT".into(),
            );
        }
        if !seen.insert(invoice) {
            return refuse(
                RefusalKind::Invalid,
                format!("invoice {invoice} is named twice; give each invoice once, with the whole amount it gets"),
            );
        }
        if x.amount.0 <= 0 {
            return refuse(
                RefusalKind::Invalid,
                format!(
                    "the amount for invoice {invoice} is {}: amounts are positive; leave out an invoice the line does not pay",
                    x.amount
                ),
            );
        }
        let Some(item) = st.open_items.iter().find(|i| i.number == invoice) else {
            return refuse(RefusalKind::Invalid, not_open_item(st, invoice));
        };
        if item.currency != line.currency {
            return refuse(
                RefusalKind::Invalid,
                format!(
                    "invoice {invoice} is in {}, line {} in {}: a payment in another currency is applied in finance with the exchange rate; book it there and resolve the exception with a note",
                    item.currency, line.line_id, line.currency
                ),
            );
        }
        let elsewhere: Money = s
            .lines
            .values()
            .filter_map(|l| l.entry.as_ref())
            .flat_map(|e| &e.allocations)
            .filter(|y| y.invoice == invoice)
            .map(|y| y.amount)
            .sum();
        let open = Money(item.open_amount.0 - elsewhere.0);
        if x.amount > open {
            let before = if elsewhere.0 > 0 {
                format!(" ({} at import, {elsewhere} applied to other lines of the statement)", item.open_amount)
            } else {
                String::new()
            };
            return refuse(
                RefusalKind::Invalid,
                format!(
                    "invoice {invoice} has {open} {} open{before}; {} is {} too much: apply at most {open} and leave the rest on the customer's account (on account)",
                    item.currency,
                    x.amount,
                    Money(x.amount.0 - open.0)
                ),
            );
        }
        out.push(InvoiceAllocation { invoice: invoice.to_string(), amount: x.amount });
    }
    Ok(out)
}

/// Most open invoices a refusal lists.
const LISTED: usize = 8;

fn not_open_item(st: &StatementReceived, invoice: &str) -> String {
    let mut numbers: Vec<&str> = st.open_items.iter().map(|i| i.number.as_str()).collect();
    numbers.sort_unstable();
    let listed = if numbers.is_empty() {
        "none were".to_string()
    } else if numbers.len() > LISTED {
        format!("{}, … and {} more", numbers[..LISTED].join(", "), numbers.len() - LISTED)
    } else {
        numbers.join(", ")
    };
    format!(
        "invoice {invoice} is not among the receivables open when statement {} was imported ({listed}); check the number — an invoice posted or paid since is applied in finance by hand, then resolve the exception with a note",
        st.statement_id
    )
}

/// What the allocation does, in words: "INV/2026/0001 120.00 EUR, 30.00 EUR on account of C0001".
pub fn summary(e: &StatementEntry) -> String {
    let mut parts: Vec<String> =
        e.allocations.iter().map(|x| format!("{} {} {}", x.invoice, x.amount, e.currency)).collect();
    if e.remainder.0 != 0 {
        let whose = e.on_account.as_deref().map(|c| format!(" of {c}")).unwrap_or_default();
        parts.push(format!("{} {} on account{whose}", e.remainder, e.currency));
    }
    parts.join(", ")
}

/// The saga's decision on a logged assignment: [`check`] again, on the saga's own state.
/// Accepted: the line's entry is journaled and sent, and its exception closed. Refused:
/// `ControlRefused` with the reason.
pub(super) fn decide(s: &CashApplication, a: &LineAssignment) -> Decision {
    let mut d = Decision::noop();
    let checked = check(s, a);
    match checked {
        Ok(Applied { exception_id, entry }) => {
            let key = entry_key(&entry.statement_key, &entry.line_id);
            d.record(JournalBody::LineApplied(entry.clone()));
            d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id,
                resolution: format!(
                    "applied by hand by {} ({}): {}; journal entry {key} sent to finance — {}",
                    a.actor,
                    a.role,
                    summary(&entry),
                    a.note.trim()
                ),
            }));
            let o = post(&entry);
            d.send(o.target, o.idempotency_key, o.body);
        }
        Err(r) => {
            let subject =
                if a.exception_id.is_empty() { format!("line {}", a.line_id) } else { a.exception_id.clone() };
            d.record(JournalBody::ControlRefused(ControlRefusal {
                posting_id: subject,
                action: ACTION.to_string(),
                actor: a.actor.clone(),
                reason: r.reason,
            }));
        }
    }
    d
}
