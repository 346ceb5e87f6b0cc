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
//! alone (the coordinator arms timers from [`crate::flow::next_deadline`]).
//!
//! [`crate::flow::stalls`] (with [`is_silent`]) is the invariant as a pure check over one flow, for tests and metrics.

use waybill_domain::journal::ExceptionResolved;
use waybill_domain::{ExceptionCategory, JournalBody, Qty, SourceRef, System, Timestamp};

use crate::book::SagaBook;
use crate::decision::Decision;
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
/// How long a purchase order may wait for the rest of its goods, or received goods for
/// the supplier's bill, after its last change: fourteen days.
pub const SUPPLIER_WAIT_SECS: f64 = 14.0 * 24.0 * 3600.0;

/// The step an unwatched saga waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A master-data fix and a replay of the order (its exception was resolved).
    MasterDataFix,
    /// The warehouse's answer to the stock reservation.
    Reservation,
    /// The pick confirmation (its overdue exception was resolved).
    Pick,
    /// The warehouse to finish picking.
    RestOfPicking,
    /// The goods issue of what was picked.
    GoodsIssue,
    /// Proof of delivery of the shipments on the road.
    Delivery,
    /// An approver's decision on a held posting.
    Approval,
    /// Finance's answer to a document it was sent.
    FinanceAnswer,
    /// A retry of a document finance refused.
    FinanceRetry,
    /// The next step of an invoice in no other waiting state.
    InvoiceNext,
    /// The goods of an authorised return.
    ReturnedGoods,
    /// The rest of a purchase order's goods.
    SupplierGoods,
    /// Odoo's validation of a receipt.
    ReceiptValidation,
    /// The supplier's bill for goods received.
    SupplierBill,
    /// A corrected bill or a decision on one that cannot be matched.
    BillCorrection,
}

/// What an unwatched saga waits for, and until when. Cheap to compute: the coordinator
/// asks for it after every step; the exception's text is built only when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// When the watchdog raises `STEP_OVERDUE`.
    pub due_at: Timestamp,
    /// The step.
    pub step: Step,
}

/// The saga's last change, when nothing else watches it: not finished, no open exception,
/// no timer of its own. `None` for a saga that has not started.
pub(crate) fn unwatched(book: &SagaBook, own_deadline: Option<Timestamp>) -> Option<Timestamp> {
    if book.seq == 0 || book.is_finished() || !book.open_exceptions.is_empty() || own_deadline.is_some() {
        return None;
    }
    // States stored before `last_at` was kept are dropped by the state store and rebuilt
    // from the journal, which fills it; the epoch is only a safe default.
    Some(book.last_at.unwrap_or(Timestamp(0)))
}

pub(crate) fn wait(since: Timestamp, step: Step) -> Wait {
    let secs = match step {
        Step::Reservation | Step::Pick | Step::RestOfPicking | Step::GoodsIssue => WAREHOUSE_WAIT_SECS,
        Step::Delivery => DELIVERY_WAIT_SECS,
        Step::ReturnedGoods => RETURN_WAIT_SECS,
        Step::SupplierGoods | Step::SupplierBill | Step::BillCorrection => SUPPLIER_WAIT_SECS,
        Step::ReceiptValidation => WAREHOUSE_WAIT_SECS,
        Step::MasterDataFix | Step::Approval | Step::FinanceAnswer | Step::FinanceRetry | Step::InvoiceNext => {
            FINANCE_WAIT_SECS
        }
    };
    Wait { due_at: since.plus_secs(secs), step }
}

/// The watchdog of an order-to-fulfillment saga.
pub fn fulfillment(s: &Fulfillment) -> Option<Wait> {
    let since = unwatched(&s.book, s.next_deadline())?;
    let step = match s.status {
        Status::New | Status::Backordered | Status::Cancelled => return None,
        Status::OnHold => Step::MasterDataFix,
        Status::Reserving => Step::Reservation,
        Status::Released | Status::Picking => Step::Pick,
        Status::Picked | Status::Shipped | Status::Delivered => {
            if !s.pick_complete {
                Step::RestOfPicking
            } else if s.lines.values().any(|l| l.shipped < l.picked) {
                Step::GoodsIssue
            } else {
                Step::Delivery
            }
        }
    };
    Some(wait(since, step))
}

/// The watchdog of a ship-to-invoice saga.
pub fn invoice(s: &Invoicing) -> Option<Wait> {
    let since = unwatched(&s.book, s.next_deadline())?;
    let step = match s.status {
        InvoiceStatus::Held => Step::Approval,
        InvoiceStatus::Requested => Step::FinanceAnswer,
        InvoiceStatus::Refused => Step::FinanceRetry,
        InvoiceStatus::New | InvoiceStatus::Posted | InvoiceStatus::Rejected => Step::InvoiceNext,
    };
    Some(wait(since, step))
}

/// The watchdog of a returns-and-credit saga.
pub fn credit(s: &ReturnCredit) -> Option<Wait> {
    let since = unwatched(&s.book, s.next_deadline())?;
    let any = |status: CreditStatus| s.receipts.values().any(|r| r.status == status);
    let step = if any(CreditStatus::Requested) {
        Step::FinanceAnswer
    } else if any(CreditStatus::Refused) {
        Step::FinanceRetry
    } else if any(CreditStatus::Held) {
        Step::Approval
    } else {
        Step::ReturnedGoods
    };
    Some(wait(since, step))
}

/// The step in business terms, whom to chase, and the record it is about.
pub(crate) struct Described {
    /// The saga in business terms: `order SO0042`, `the invoice of shipment SHP-1 of order SO0042`.
    pub(crate) saga: String,
    /// What it waits for.
    pub(crate) waiting_for: String,
    /// Whom to chase, and how.
    pub(crate) chase: &'static str,
    /// The record it is about.
    pub(crate) subject: SourceRef,
}

fn describe_fulfillment(s: &Fulfillment, step: Step) -> Described {
    let order_ref = s.order.as_ref().map(|o| o.order_ref.clone()).unwrap_or_default();
    let wms = SourceRef::new(System::Wms, s.wms_order_id.clone().unwrap_or_else(|| order_ref.clone()));
    let (waiting_for, chase, subject) = match step {
        Step::MasterDataFix => (
            "a master-data fix and a replay of the order".to_string(),
            "fix the master data in Odoo and replay the order",
            SourceRef::new(System::Odoo, order_ref.clone()),
        ),
        Step::Reservation => ("the warehouse's answer to the stock reservation".into(), "chase the warehouse", wms),
        Step::RestOfPicking => ("the warehouse to finish picking".into(), "chase the warehouse", wms),
        Step::GoodsIssue => {
            let unshipped: Qty = s.lines.values().map(|l| l.picked.saturating_sub(l.shipped)).sum();
            (format!("the goods issue of {unshipped} picked unit(s)"), "chase the warehouse", wms)
        }
        Step::Delivery => {
            let on_the_road: Vec<&str> =
                s.shipments.iter().filter(|(_, x)| !x.delivered).map(|(id, _)| id.as_str()).collect();
            let first = on_the_road.first().map_or_else(|| order_ref.clone(), |x| x.to_string());
            (
                format!("proof of delivery of shipment(s) {}", on_the_road.join(", ")),
                "chase the carrier",
                SourceRef::new(System::Carrier, first),
            )
        }
        _ => ("the warehouse's pick confirmation".into(), "chase the warehouse", wms),
    };
    Described { saga: format!("order {order_ref}"), waiting_for, chase, subject }
}

fn describe_invoice(s: &Invoicing, step: Step) -> Described {
    let shipment = s.draft.as_ref().map(|d| d.business_key.clone()).unwrap_or_default();
    let order_ref = s.draft.as_ref().map(|d| d.order_ref.clone()).unwrap_or_default();
    let saga = format!("the invoice of shipment {shipment} of order {order_ref}");
    let posting = Invoicing::posting_id(&shipment);
    let finance = SourceRef::new(System::Finance, shipment.clone());
    let (waiting_for, chase, subject) = match step {
        Step::Approval => (
            format!("an approver's decision on held posting {posting}"),
            "ask an approver to decide it",
            SourceRef::new(System::Waybill, posting),
        ),
        Step::FinanceAnswer => {
            (format!("finance's answer to the invoice of shipment {shipment}"), "chase finance", finance)
        }
        Step::FinanceRetry => (
            format!("a retry of the invoice of shipment {shipment} that finance refused"),
            "fix it in finance and retry the posting",
            finance,
        ),
        _ => (
            format!("the next step of the invoice of shipment {shipment}"),
            "check the invoice with `waybill order show`",
            SourceRef::new(System::Waybill, posting),
        ),
    };
    Described { saga, waiting_for, chase, subject }
}

fn describe_credit(s: &ReturnCredit, step: Step) -> Described {
    let rma = s.rma.as_ref().map(|r| r.rma_id.clone()).unwrap_or_default();
    let saga = format!("return {rma} of order {}", s.rma.as_ref().map(|r| r.order_ref.as_str()).unwrap_or_default());
    let receipts = |status: CreditStatus| -> Vec<&str> {
        s.receipts.iter().filter(|(_, r)| r.status == status).map(|(id, _)| id.as_str()).collect()
    };
    let (waiting_for, chase, subject) = match step {
        Step::FinanceAnswer | Step::FinanceRetry | Step::Approval => {
            let (status, what, chase) = match step {
                Step::FinanceAnswer => (CreditStatus::Requested, "finance's answer to", "chase finance"),
                Step::FinanceRetry => (CreditStatus::Refused, "a retry of", "fix it in finance and retry"),
                _ => (CreditStatus::Held, "an approver's decision on", "ask an approver to decide it"),
            };
            let ids = receipts(status);
            let first = ids.first().map_or_else(|| rma.clone(), |x| x.to_string());
            let subject = if step == Step::Approval {
                SourceRef::new(System::Waybill, ReturnCredit::posting_id(&first))
            } else {
                SourceRef::new(System::Finance, first)
            };
            (format!("{what} the credit note of receipt(s) {}", ids.join(", ")), chase, subject)
        }
        _ => (
            format!("the goods of return {rma}"),
            "chase the customer or close the return in Odoo",
            SourceRef::new(System::Odoo, rma.clone()),
        ),
    };
    Described { saga, waiting_for, chase, subject }
}

pub(crate) fn raise(d: &mut Decision, saga_id: &str, book: &SagaBook, x: Described, now: Timestamp) {
    let since = book.last_at.unwrap_or(Timestamp(0));
    let idle = crate::health::duration(now.micros_since(since));
    d.raise(
        saga_id,
        book.exceptions_raised,
        ExceptionCategory::StepOverdue,
        x.subject,
        format!(
            "{} has not moved for {idle}: it waits for {}; {} — this exception closes when the saga moves again",
            x.saga, x.waiting_for, x.chase
        ),
    );
}

/// Raises `STEP_OVERDUE` into `d` when the fulfilment saga's watchdog is due at `now`.
pub fn fire_fulfillment(d: &mut Decision, saga_id: &str, s: &Fulfillment, now: Timestamp) {
    if let Some(w) = fulfillment(s).filter(|w| now >= w.due_at) {
        raise(d, saga_id, &s.book, describe_fulfillment(s, w.step), now);
    }
}

/// Raises `STEP_OVERDUE` into `d` when the invoice saga's watchdog is due at `now`.
pub fn fire_invoice(d: &mut Decision, saga_id: &str, s: &Invoicing, now: Timestamp) {
    if let Some(w) = invoice(s).filter(|w| now >= w.due_at) {
        raise(d, saga_id, &s.book, describe_invoice(s, w.step), now);
    }
}

/// Raises `STEP_OVERDUE` into `d` when the returns saga's watchdog is due at `now`.
pub fn fire_credit(d: &mut Decision, saga_id: &str, s: &ReturnCredit, now: Timestamp) {
    if let Some(w) = credit(s).filter(|w| now >= w.due_at) {
        raise(d, saga_id, &s.book, describe_credit(s, w.step), now);
    }
}

/// Journal events that are not progress: they are the watchdog's, an operator's, or a
/// refusal, and must not close a `STEP_OVERDUE` exception.
fn is_progress(j: &JournalBody) -> bool {
    !matches!(
        j,
        JournalBody::ExceptionRaised(_)
            | JournalBody::ExceptionResolved(_)
            | JournalBody::ExceptionRetried(_)
            | JournalBody::ExceptionAssigned(_)
            | JournalBody::ControlRefused(_)
            | JournalBody::SagaReplayed(_)
            | JournalBody::PostingEscalated(_)
            | JournalBody::PickOverdue(_)
            // The end of the flow's state, not a step of a saga.
            | JournalBody::FlowRetired(_)
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

/// True when a saga that has begun is silent: not finished, no open exception, no
/// pending timer (`timer`: its own or the watchdog's). Such a saga breaks invariant 10.
pub fn is_silent(book: &SagaBook, timer: Option<Timestamp>) -> bool {
    book.seq > 0 && !book.is_finished() && book.open_exceptions.is_empty() && timer.is_none()
}
