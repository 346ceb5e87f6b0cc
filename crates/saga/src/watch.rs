//! No silent stall (DESIGN.md invariant 10): every saga that has not finished either has
//! a pending timer or an open exception, so someone is told when it stops moving.
//!
//! Each saga has its own timers for the waits the business names (the pick due time, the
//! approval SLA). Every other wait — for the warehouse's reservation answer, the goods
//! issue of what was picked, a proof of delivery, finance's answer, returned goods, or
//! simply for someone to act after an exception was resolved without the step arriving —
//! is watched here: a saga with no open exception and no timer of its own gets a
//! watchdog deadline, counted from its last change, and when it passes the saga raises a
//! `STEP_OVERDUE` exception that says, in business terms, what it is waiting for. The
//! exception closes itself when the saga moves again; an operator who resolves it without
//! the step arriving starts the clock again.
//!
//! The waits are constants, not policy, because a deadline must be derivable from state
//! alone (the coordinator arms timers from [`crate::OrderFlow::next_deadline`]).
//!
//! [`stalls`] is the invariant as a pure check over one order, for tests and metrics.

use waybill_domain::journal::ExceptionResolved;
use waybill_domain::{ExceptionCategory, JournalBody, Qty, SourceRef, System, Timestamp};

use crate::book::SagaBook;
use crate::decision::Decision;
use crate::flow::OrderFlow;
use crate::fulfillment::{Fulfillment, Status};
use crate::invoicing::{InvoiceStatus, Invoicing};
use crate::returns::{CreditStatus, ReturnCredit};

/// How long an order may wait for the warehouse (reservation answer, picking, goods
/// issue) before the watchdog raises `STEP_OVERDUE`: one working day.
pub const WAREHOUSE_WAIT_SECS: f64 = 24.0 * 3600.0;
/// How long a shipment may travel without a proof of delivery: two weeks.
pub const DELIVERY_WAIT_SECS: f64 = 14.0 * 24.0 * 3600.0;
/// How long a document may wait for finance's answer, or a resolved exception for the
/// step it was about: one working day.
pub const FINANCE_WAIT_SECS: f64 = 24.0 * 3600.0;
/// How long an authorised return may wait for its goods: thirty days.
pub const RETURN_WAIT_SECS: f64 = 30.0 * 24.0 * 3600.0;

/// What an unwatched saga waits for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// When the watchdog raises `STEP_OVERDUE`.
    pub due_at: Timestamp,
    /// The step, in business terms ("goods issue of 3 picked units").
    pub waiting_for: String,
    /// Who has to act.
    pub chase: &'static str,
    /// The record the exception is about.
    pub subject: SourceRef,
}

/// The saga's last change, when nothing else watches it: not finished, no open exception,
/// no timer of its own. `None` for a saga that has not started.
fn unwatched(book: &SagaBook, own_deadline: Option<Timestamp>) -> Option<Timestamp> {
    if book.seq == 0 || book.is_finished() || !book.open_exceptions.is_empty() || own_deadline.is_some() {
        return None;
    }
    // States stored before `last_at` was kept are dropped by the state store and rebuilt
    // from the journal, which fills it; the epoch is only a safe default.
    Some(book.last_at.unwrap_or(Timestamp(0)))
}

fn wait(since: Timestamp, secs: f64, waiting_for: String, chase: &'static str, subject: SourceRef) -> Wait {
    Wait { due_at: since.plus_secs(secs), waiting_for, chase, subject }
}

/// The watchdog of an order-to-fulfillment saga.
pub fn fulfillment(s: &Fulfillment) -> Option<Wait> {
    let since = unwatched(&s.book, s.next_deadline())?;
    let order_ref = s.order.as_ref().map(|o| o.order_ref.clone()).unwrap_or_default();
    let odoo = SourceRef::new(System::Odoo, order_ref.clone());
    let wms = SourceRef::new(System::Wms, s.wms_order_id.clone().unwrap_or_else(|| order_ref.clone()));
    let w = match s.status {
        Status::New | Status::Backordered | Status::Cancelled => return None,
        Status::OnHold => wait(
            since,
            FINANCE_WAIT_SECS,
            "a master-data fix and a replay of the order".into(),
            "fix the master data in Odoo and replay the order",
            odoo,
        ),
        Status::Reserving => wait(
            since,
            WAREHOUSE_WAIT_SECS,
            "the warehouse's answer to the stock reservation".into(),
            "chase the warehouse",
            wms,
        ),
        Status::Released | Status::Picking => {
            wait(since, WAREHOUSE_WAIT_SECS, "the warehouse's pick confirmation".into(), "chase the warehouse", wms)
        }
        Status::Picked | Status::Shipped | Status::Delivered => {
            let unshipped: Qty = s.lines.values().map(|l| l.picked.saturating_sub(l.shipped)).sum();
            let undelivered: Vec<&str> =
                s.shipments.iter().filter(|(_, x)| !x.delivered).map(|(id, _)| id.as_str()).collect();
            if !s.pick_complete {
                wait(since, WAREHOUSE_WAIT_SECS, "the warehouse to finish picking".into(), "chase the warehouse", wms)
            } else if !unshipped.is_zero() {
                wait(
                    since,
                    WAREHOUSE_WAIT_SECS,
                    format!("the goods issue of {unshipped} picked unit(s)"),
                    "chase the warehouse",
                    wms,
                )
            } else {
                let first = undelivered.first().map(|x| x.to_string()).unwrap_or_else(|| order_ref.clone());
                wait(
                    since,
                    DELIVERY_WAIT_SECS,
                    format!("proof of delivery of shipment(s) {}", undelivered.join(", ")),
                    "chase the carrier",
                    SourceRef::new(System::Carrier, first),
                )
            }
        }
    };
    Some(w)
}

/// The watchdog of a ship-to-invoice saga.
pub fn invoice(s: &Invoicing) -> Option<Wait> {
    let since = unwatched(&s.book, s.next_deadline())?;
    let shipment = s.draft.as_ref().map(|d| d.business_key.clone()).unwrap_or_default();
    let posting = SourceRef::new(System::Waybill, Invoicing::posting_id(&shipment));
    let w = match s.status {
        InvoiceStatus::Held => wait(
            since,
            FINANCE_WAIT_SECS,
            format!("an approver's decision on held posting {}", Invoicing::posting_id(&shipment)),
            "ask an approver to decide it",
            posting,
        ),
        InvoiceStatus::Requested => wait(
            since,
            FINANCE_WAIT_SECS,
            format!("finance's answer to the invoice of shipment {shipment}"),
            "chase finance",
            SourceRef::new(System::Finance, shipment.clone()),
        ),
        InvoiceStatus::Refused => wait(
            since,
            FINANCE_WAIT_SECS,
            format!("a retry of the invoice of shipment {shipment} that finance refused"),
            "fix it in finance and retry the posting",
            SourceRef::new(System::Finance, shipment.clone()),
        ),
        InvoiceStatus::New | InvoiceStatus::Posted | InvoiceStatus::Rejected => wait(
            since,
            FINANCE_WAIT_SECS,
            format!("the next step of the invoice of shipment {shipment}"),
            "check the invoice with `waybill order show`",
            posting,
        ),
    };
    Some(w)
}

/// The watchdog of a returns-and-credit saga.
pub fn credit(s: &ReturnCredit) -> Option<Wait> {
    let since = unwatched(&s.book, s.next_deadline())?;
    let rma = s.rma.as_ref().map(|r| r.rma_id.clone()).unwrap_or_default();
    let pending = |status: CreditStatus| -> Vec<&str> {
        s.receipts.iter().filter(|(_, r)| r.status == status).map(|(id, _)| id.as_str()).collect()
    };
    let (requested, refused, held) =
        (pending(CreditStatus::Requested), pending(CreditStatus::Refused), pending(CreditStatus::Held));
    let w = if let Some(r) = requested.first() {
        wait(
            since,
            FINANCE_WAIT_SECS,
            format!("finance's answer to the credit note of receipt(s) {}", requested.join(", ")),
            "chase finance",
            SourceRef::new(System::Finance, r.to_string()),
        )
    } else if let Some(r) = refused.first() {
        wait(
            since,
            FINANCE_WAIT_SECS,
            format!("a retry of the credit note of receipt(s) {} that finance refused", refused.join(", ")),
            "fix it in finance and retry",
            SourceRef::new(System::Finance, r.to_string()),
        )
    } else if let Some(r) = held.first() {
        wait(
            since,
            FINANCE_WAIT_SECS,
            format!("an approver's decision on the credit note of receipt(s) {}", held.join(", ")),
            "ask an approver to decide it",
            SourceRef::new(System::Waybill, ReturnCredit::posting_id(r)),
        )
    } else {
        wait(
            since,
            RETURN_WAIT_SECS,
            format!("the goods of return {rma}"),
            "chase the customer or close the return in Odoo",
            SourceRef::new(System::Odoo, rma.clone()),
        )
    };
    Some(w)
}

/// Raises `STEP_OVERDUE` for `w` into `d` when it is due at `now`.
pub fn fire(d: &mut Decision, saga_id: &str, book: &SagaBook, w: Option<Wait>, now: Timestamp) {
    let Some(w) = w.filter(|w| now >= w.due_at) else { return };
    let since = book.last_at.unwrap_or(Timestamp(0));
    let hours = now.micros_since(since) as f64 / 3_600_000_000.0;
    d.raise(
        saga_id,
        book.exceptions_raised,
        ExceptionCategory::StepOverdue,
        w.subject,
        format!(
            "{saga_id} has not moved for {hours:.1} h: it waits for {}; {} — this exception closes when the saga moves again",
            w.waiting_for, w.chase
        ),
    );
}

/// Journal events that are not progress: they are the watchdog's, an operator's, or a
/// refusal, and must not close a `STEP_OVERDUE` exception.
fn is_progress(j: &JournalBody) -> bool {
    !matches!(
        j,
        JournalBody::ExceptionRaised(_)
            | JournalBody::ExceptionResolved(_)
            | JournalBody::ExceptionRetried(_)
            | JournalBody::ControlRefused(_)
            | JournalBody::SagaReplayed(_)
            | JournalBody::PostingEscalated(_)
            | JournalBody::PickOverdue(_)
    )
}

/// Closes the saga's open `STEP_OVERDUE` exceptions when `d` moves it on.
pub fn close_on_progress(d: &mut Decision, book: &SagaBook) {
    let Some(first) = d.journal.iter().find(|j| is_progress(j)).map(JournalBody::name) else { return };
    let open: Vec<String> = book.open_of(ExceptionCategory::StepOverdue).cloned().collect();
    for id in open {
        d.record(JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: id,
            resolution: format!("the saga moved on ({first})"),
        }));
    }
}

/// A saga that breaks invariant 10: not finished, no pending timer, no open exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Saga id.
    pub saga_id: String,
    /// Its status, as the saga names it.
    pub status: String,
}

/// Every saga of `flow` that has stalled silently (empty when invariant 10 holds). A
/// saga's pending timers are its own ([`Fulfillment::next_deadline`] and the like) and
/// the watchdog's.
pub fn stalls(flow: &OrderFlow) -> Vec<Stall> {
    let mut v = Vec::new();
    let silent = |book: &SagaBook, timer: Option<Timestamp>| {
        book.seq > 0 && !book.is_finished() && book.open_exceptions.is_empty() && timer.is_none()
    };
    let f = &flow.fulfillment;
    if f.status != Status::New && silent(&f.book, f.next_deadline().or(fulfillment(f).map(|w| w.due_at))) {
        v.push(Stall { saga_id: Fulfillment::KIND.saga_id(&flow.key), status: f.status.as_str().to_string() });
    }
    for (shipment, i) in &flow.invoices {
        if silent(&i.book, i.next_deadline().or(invoice(i).map(|w| w.due_at))) {
            v.push(Stall { saga_id: Invoicing::saga_id(shipment), status: format!("{:?}", i.status).to_lowercase() });
        }
    }
    for (rma, r) in &flow.returns {
        if silent(&r.book, r.next_deadline().or(credit(r).map(|w| w.due_at))) {
            v.push(Stall { saga_id: ReturnCredit::saga_id(rma), status: "returning".to_string() });
        }
    }
    v
}
