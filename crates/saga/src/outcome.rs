//! Delivery outcomes the connectors report about the commands they deliver: a target
//! that refused a command (`CommandFailed`, decided by the saga that issued it) — the
//! rules every saga shares. Whether a target is up at all is [`crate::health`]'s.
//!
//! A refused command raises a `DELIVERY_FAILED` exception whose subject is the command
//! (`waybill:<idempotency key>`), so the exception names the one command an operator's
//! retry sends again — rebuilt from the saga's state by its `reissue`, identical to the
//! first (same target, key and body). A second report of the same refusal while the
//! exception is open changes nothing. The exception closes by itself when the answer
//! the command asked for arrives; a command no event answers (a compensation, a
//! backorder, a shipment confirmation, a stock adjustment) closes it with the retry.
//!
//! Pure: no I/O.

use waybill_domain::event::CommandFailed;
use waybill_domain::journal::ExceptionResolved;
use waybill_domain::{CommandBody, ExceptionCategory, JournalBody, SourceRef, System};

use crate::book::SagaBook;
use crate::decision::{DeadLetterKind, Decision, Outbound};

/// A system as a sentence names it: `Odoo`, `the warehouse system`, `finance`.
pub fn system_name(s: System) -> &'static str {
    match s {
        System::Odoo => "Odoo",
        System::Wms => "the warehouse system",
        System::Carrier => "the carrier",
        System::Finance => "finance",
        System::Bank => "the bank",
        System::Channel => "the sales channel",
        System::Operator => "the operator",
        System::Waybill => "Waybill",
        System::Other => "the target system",
    }
}

/// Where a refusal by `s` is fixed: `in Odoo`, `with the carrier`.
pub fn fix_where(s: System) -> String {
    match s {
        System::Carrier | System::Bank | System::Channel => format!("with {}", system_name(s)),
        _ => format!("in {}", system_name(s)),
    }
}

/// [`system_name`] at the start of a sentence.
pub fn system_title(s: System) -> String {
    let name = system_name(s);
    let mut chars = name.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The subject of a `DELIVERY_FAILED` exception: the command, by its idempotency key.
pub fn subject(idempotency_key: &str) -> SourceRef {
    SourceRef::new(System::Waybill, idempotency_key)
}

/// The open `DELIVERY_FAILED` exception of the command `idempotency_key`, if any.
pub fn open_failure<'a>(book: &'a SagaBook, idempotency_key: &str) -> Option<&'a String> {
    let subject = subject(idempotency_key);
    book.open_of(ExceptionCategory::DeliveryFailed).find(|id| book.subjects.get(*id) == Some(&subject))
}

/// Whether a business event answers this command, so that its arrival closes a
/// `DELIVERY_FAILED` exception (a reservation, a release, a carrier booking, an invoice,
/// a credit note). A command nothing answers is confirmed by nobody: its exception
/// closes with the retry that sends it again.
pub const fn is_answered(body: &CommandBody) -> bool {
    matches!(
        body,
        CommandBody::ReserveStock(_)
            | CommandBody::ReleaseToWarehouse(_)
            | CommandBody::BookCarrier(_)
            | CommandBody::PostInvoice(_)
            | CommandBody::IssueCreditNote(_)
            | CommandBody::ValidateReceipt(_)
            | CommandBody::PostVendorBill(_)
            | CommandBody::IssueVendorCreditNote(_)
            | CommandBody::PostStatementLine(_)
    )
}

/// The command's business key in words, for exception texts: `shipment SHP-1`.
fn what(body: &CommandBody) -> String {
    match body {
        CommandBody::ReserveStock(r) => format!("stock reservation in warehouse {}", r.warehouse),
        CommandBody::ReleaseToWarehouse(r) => format!("release to warehouse {}", r.warehouse),
        CommandBody::CancelReservation(_) => "cancelling the stock reservation".to_string(),
        CommandBody::CancelWarehouseRelease(_) => "withdrawing the release to the warehouse".to_string(),
        CommandBody::CreateBackorder(b) => format!("backorder of {} line(s)", b.lines.len()),
        CommandBody::BookCarrier(b) => format!("shipment {}", b.shipment_id),
        CommandBody::ConfirmShipment(c) => format!("shipment {}", c.shipment_id),
        CommandBody::PostInvoice(p) => format!("invoice of shipment {}", p.shipment_id),
        CommandBody::IssueCreditNote(c) => format!("credit note of return receipt {}", c.receipt_id),
        CommandBody::AdjustStock(a) => format!("stock adjustment for return receipt {}", a.receipt_id),
        CommandBody::ValidateReceipt(r) => format!("receipt {} of purchase order {}", r.receipt_id, r.po_ref),
        CommandBody::ReturnToVendor(r) => format!("return of receipt {} to the supplier", r.receipt_id),
        CommandBody::PostVendorBill(b) => format!("vendor bill {}", b.bill_number),
        CommandBody::IssueVendorCreditNote(c) => format!("vendor credit note of receipt {}", c.receipt_id),
        CommandBody::PostStatementLine(e) => format!("journal entry of statement line {}", e.line_id),
    }
}

/// Checks that a report names the command the saga issued under its key: same command
/// and same target. A report that does not is the connector's mistake, not a refusal.
pub fn check_report(f: &CommandFailed, issued: &Outbound) -> Result<(), String> {
    if f.command == issued.body.name() && f.target == issued.target {
        return Ok(());
    }
    Err(format!(
        "CommandFailed names {} to {} under idempotency key {:?}, but saga {} issued {} to {} under that key; the connector must report the command's own name and target",
        f.command,
        f.target,
        f.idempotency_key,
        f.saga_id,
        issued.body.name(),
        issued.target
    ))
}

/// A report that names a command the saga never issued: a dead letter.
pub fn never_issued(f: &CommandFailed, order_ref: &str) -> Decision {
    Decision::reject(
        DeadLetterKind::Rule,
        format!(
            "CommandFailed reports {} {:?} of saga {} (order {order_ref}), which that saga never issued; the connector must copy the command's meta.saga_id and idempotency key",
            f.command, f.idempotency_key, f.saga_id
        ),
    )
}

/// Decides a refusal of a command the saga issued: raises `DELIVERY_FAILED` unless one is
/// open for the command already, or the answer the command asked for has arrived
/// (`answered`: a late report of a failure a retry has since overcome). `rebuilt` is the
/// saga's `reissue` of the key (`Err`: issued, but the saga cannot rebuild it exactly —
/// then the exception says so and a retry is refused).
pub fn decide_failure(
    book: &SagaBook,
    saga_id: &str,
    order_ref: &str,
    f: &CommandFailed,
    rebuilt: &Result<Outbound, String>,
    answered: bool,
) -> Decision {
    if let Ok(o) = rebuilt
        && let Err(why) = check_report(f, o)
    {
        return Decision::reject(DeadLetterKind::Rule, why);
    }
    if answered || open_failure(book, &f.idempotency_key).is_some() {
        return Decision::noop();
    }
    let system = system_title(f.target);
    let attempts = if f.attempts > 1 { format!(" after {} attempts", f.attempts) } else { String::new() };
    let (what, todo) = match rebuilt {
        Ok(o) => (what(&o.body), format!("fix it {}, then retry the exception", fix_where(f.target))),
        Err(why) => (
            format!("key {}", f.idempotency_key),
            format!(
                "fix it {} and resolve the exception with a note: a retry cannot send it again ({why})",
                fix_where(f.target)
            ),
        ),
    };
    let mut d = Decision::noop();
    d.raise(
        saga_id,
        book.exceptions_raised,
        ExceptionCategory::DeliveryFailed,
        subject(&f.idempotency_key),
        format!("{system} refused {} for {order_ref} ({what}){attempts}: {}; {todo}", f.command, f.reason.trim()),
    );
    d
}

/// Closes the open `DELIVERY_FAILED` exceptions of the commands `d` records an answer to
/// (`answers` maps a journal event of the decision to the key it answers).
pub fn close_answered(d: &mut Decision, book: &SagaBook, answers: impl Fn(&JournalBody) -> Option<String>) {
    let mut answered: Vec<(String, &'static str)> =
        d.journal.iter().filter_map(|j| answers(j).map(|key| (key, j.name()))).collect();
    answered.dedup_by(|a, b| a.0 == b.0);
    for (key, by) in answered {
        if let Some(id) = open_failure(book, &key) {
            d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: id.clone(),
                resolution: format!("{key} delivered after a retry ({by})"),
            }));
        }
    }
}
