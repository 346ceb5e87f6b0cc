//! The money side of procure-to-receive: vendor bills matched three ways (order ×
//! receipts × bill), held for an approver outside tolerance, posted to finance once per
//! supplier invoice, and the order's completion.

use waybill_domain::event::{CommandFailed, PostingDecision};
use waybill_domain::journal::{Deadline, DocumentKind, Empty, ExceptionResolved, PostingHeld, Refusal};
use waybill_domain::purchase::{BillMatch, VendorBill, VendorBillPosted};
use waybill_domain::{CommandBody, ExceptionCategory, JournalBody, Money, Qty, SourceRef, System, Timestamp};

use super::{BillStatus, Procurement, ReceiptStatus, keys, reissue};
use crate::approval::{self, Verdict};
use crate::decision::{DeadLetterKind, Decision, Outbound};
use crate::flow::{Env, reject};
use crate::outcome;
use crate::policy::{PostingPolicy, Tolerance};

/// The one `PostVendorBill` of a supplier invoice: its key is the supplier and the
/// invoice number, its body the bill as received.
pub(super) fn post_vendor_bill(supplier_ref: &str, b: &VendorBill) -> Outbound {
    Outbound {
        target: System::Finance,
        idempotency_key: keys::bill(supplier_ref, &b.bill_number),
        body: CommandBody::PostVendorBill(b.clone()),
    }
}

/// A vendor bill arrived. It is recorded once per supplier invoice number — the same bill
/// again is a redelivery; another bill under a number already used is refused — and
/// matched by [`settle`] once the decision is folded.
pub(super) fn on_bill(s: &Procurement, b: &VendorBill) -> Decision {
    let order = s.order.as_ref().expect("decide checks the order is known");
    if let Some(known) = s.bills.get(&b.bill_number) {
        if &known.bill == b {
            return Decision::noop();
        }
        return reject(format!(
            "bill {} for purchase order {} was received before with other lines or amount; a corrected invoice needs a new number (or a credit note from the supplier)",
            b.bill_number, b.po_ref
        ));
    }
    if b.supplier_ref != order.supplier_ref {
        return reject(format!(
            "bill {} comes from supplier {}, but purchase order {} was placed with {}; check the bill's vendor in finance",
            b.bill_number, b.supplier_ref, b.po_ref, order.supplier_ref
        ));
    }
    if b.currency != order.currency {
        return reject(format!(
            "bill {} is in {}, but purchase order {} is in {}; ask the supplier for an invoice in the order's currency",
            b.bill_number, b.currency, b.po_ref, order.currency
        ));
    }
    if b.lines.is_empty() {
        return reject(format!("bill {} for purchase order {} has no lines", b.bill_number, b.po_ref));
    }
    for l in &b.lines {
        match order.lines.iter().find(|x| x.line_no == l.po_line_no) {
            Some(x) if x.sku == l.sku && l.quantity.0 > 0 => {}
            Some(x) if x.sku != l.sku => {
                return reject(format!(
                    "bill {} bills {} on line {} of purchase order {}, which orders {} there; correct the bill in finance",
                    b.bill_number, l.sku, l.po_line_no, b.po_ref, x.sku
                ));
            }
            Some(_) => {
                return reject(format!(
                    "bill {} line {} bills {}; a bill line must bill a positive quantity (a credit note is a separate document)",
                    b.bill_number, l.po_line_no, l.quantity
                ));
            }
            None => {
                return reject(format!(
                    "bill {} bills line {} of purchase order {}, which has no such line; correct the bill in finance",
                    b.bill_number, l.po_line_no, b.po_ref
                ));
            }
        }
    }
    let sum: Money = b.lines.iter().map(|l| l.unit_price.times(l.quantity)).sum();
    if sum != b.amount {
        return reject(format!(
            "bill {} totals {} but its lines add up to {}; correct the bill in finance",
            b.bill_number, b.amount, sum
        ));
    }
    let mut d = Decision::noop();
    d.record(JournalBody::BillReceived(b.clone()));
    d
}

/// What a bill line may still bill: received, less what other bills (held, sent,
/// posted) billed, plus what credit notes gave back.
fn unbilled(s: &Procurement, po_line_no: i32, bill_number: &str) -> Qty {
    let billed = s.billed(po_line_no, Some(bill_number)).saturating_sub(s.credited(po_line_no));
    s.received(po_line_no).saturating_sub(billed)
}

/// Whether more goods can still come for a line: the order is open and the line is
/// short of what was ordered beyond the under-receipt tolerance.
fn more_may_come(s: &Procurement, po_line_no: i32, tol: &Tolerance) -> bool {
    let Some(order) = &s.order else { return false };
    let ordered = order.lines.iter().find(|l| l.line_no == po_line_no).map_or(Qty(0), |l| l.quantity);
    !s.closed && (s.received(po_line_no).0 as f64) < ordered.0 as f64 * (1.0 - tol.under_receipt_pct / 100.0)
}

/// The three-way match of a bill against the order and the receipts: `None` while it
/// bills goods that have not arrived yet but may; otherwise its differences beyond the
/// supplier's tolerance (none: it matches).
pub(crate) fn three_way(s: &Procurement, b: &VendorBill, tol: &Tolerance) -> Option<Vec<String>> {
    let order = s.order.as_ref()?;
    let mut variances = Vec::new();
    for l in &b.lines {
        let available = unbilled(s, l.po_line_no, &b.bill_number);
        if l.quantity > available && more_may_come(s, l.po_line_no, tol) {
            return None;
        }
        if l.quantity.0 as f64 > available.0 as f64 * (1.0 + tol.bill_quantity_pct / 100.0) {
            variances.push(format!(
                "line {} {}: {} billed but {} received and not yet billed (tolerance {} %)",
                l.po_line_no, l.sku, l.quantity, available, tol.bill_quantity_pct
            ));
        }
        let Some(po_line) = order.lines.iter().find(|x| x.line_no == l.po_line_no) else { continue };
        if po_line.unit_price.0 != 0 {
            let diff = (l.unit_price.0 - po_line.unit_price.0) as f64 * 100.0 / po_line.unit_price.0.abs() as f64;
            if diff.abs() > tol.bill_price_pct {
                variances.push(format!(
                    "line {} {}: unit price {} is {:.1} % {} the order's {} (tolerance {} %)",
                    l.po_line_no,
                    l.sku,
                    l.unit_price,
                    diff.abs(),
                    if diff > 0.0 { "above" } else { "below" },
                    po_line.unit_price,
                    tol.bill_price_pct
                ));
            }
        } else if l.unit_price.0 != 0 {
            variances.push(format!(
                "line {} {}: unit price {} billed for a line ordered free of charge",
                l.po_line_no, l.sku, l.unit_price
            ));
        }
    }
    Some(variances)
}

fn after(s: &Procurement, d: &Decision, at: Timestamp) -> Procurement {
    crate::saga::folded(s, &s.id(), d, at)
}

/// After any decision of the saga: matches the bills that wait (in the order they
/// arrived, each seeing the ones matched before it) — sent to finance within tolerance,
/// held for an approver outside it — and completes the order when nothing is left.
pub(super) fn settle(s: &Procurement, d: &mut Decision, env: &Env<'_>, requested_by: &str, at: Timestamp) {
    if s.order.is_none() && !d.journal.iter().any(|j| matches!(j, JournalBody::PurchaseOpened(_))) {
        return;
    }
    let mut state = after(s, d, at);
    if state.book.is_finished() {
        return;
    }
    let Some(supplier) = state.order.as_ref().map(|o| o.supplier_ref.clone()) else { return };
    let tol = env.policy.procurement.tolerance_for(&supplier).clone();
    for number in state.bill_order.clone() {
        let Some(b) = state.bills.get(&number).filter(|b| b.status == BillStatus::Waiting) else { continue };
        let bill = b.bill.clone();
        let Some(mut variances) = three_way(&state, &bill, &tol) else { continue };
        let currency = state.order.as_ref().map(|o| o.currency.clone());
        variances.extend(currency.as_deref().and_then(|c| env.policy.posting.foreign_currency("vendor bill", c)));
        let mut step = Decision::noop();
        if variances.is_empty() {
            step.record(JournalBody::BillMatched(BillMatch { bill_number: number.clone(), variances }));
            let o = post_vendor_bill(&supplier, &bill);
            step.send(o.target, o.idempotency_key, o.body);
        } else {
            step.record(JournalBody::PostingHeld(PostingHeld {
                posting_id: Procurement::posting_id(&number),
                document: DocumentKind::VendorBill,
                business_key: number.clone(),
                reasons: variances,
                amount: bill.amount,
                version: 1,
                requested_by: requested_by.to_string(),
                sla_due_at: at.plus_secs(env.policy.posting.approval_sla_secs),
                currency: state.order.as_ref().map(|o| o.currency.clone()),
                entity: None,
            }));
        }
        state = after(&state, &step, at);
        d.journal.extend(step.journal);
        d.commands.extend(step.commands);
    }
    if is_complete(&state, &tol) {
        d.record(JournalBody::Completed(Empty {}));
    }
}

/// Whether the order is done: no more goods expected, every receipt validated, every
/// reversal credited, no bill waiting, held, unanswered or refused, and what was
/// received is billed.
fn is_complete(s: &Procurement, tol: &Tolerance) -> bool {
    let Some(order) = &s.order else { return false };
    let goods_done = s.closed
        || order
            .lines
            .iter()
            .all(|l| s.received(l.line_no).0 as f64 >= l.quantity.0 as f64 * (1.0 - tol.under_receipt_pct / 100.0));
    let receipts_done = s.receipts.values().all(|r| match r.status {
        ReceiptStatus::Requested => false,
        ReceiptStatus::Validated => true,
        ReceiptStatus::Reversed => r.reversal.as_ref().is_none_or(|x| x.credit.is_none()) || r.credit_number.is_some(),
    });
    let bills_done = s.bills.values().all(|b| matches!(b.status, BillStatus::Posted | BillStatus::Rejected));
    let billed = order.lines.iter().all(|l| {
        let net = s.net_billed(l.line_no);
        net.0 as f64 >= s.received(l.line_no).0 as f64 * (1.0 - tol.bill_quantity_pct / 100.0)
    });
    goods_done && receipts_done && bills_done && billed
}

/// An approver's decision on a held bill, checked as every posting decision is.
pub(super) fn on_decision(s: &Procurement, p: &PostingDecision, policy: &PostingPolicy, approve: bool) -> Decision {
    let held = p
        .posting_id
        .strip_prefix(DocumentKind::VendorBill.posting_prefix())
        .and_then(|n| s.bills.get(n))
        .filter(|b| b.posting.is_some());
    let Some(b) = held else {
        return reject(format!(
            "{} names posting {:?}, which purchase order {} does not have; check the posting id",
            if approve { "PostingApproved" } else { "PostingRejected" },
            p.posting_id,
            s.po_ref()
        ));
    };
    let posting = b.posting.as_ref().expect("filtered above");
    let mut d = Decision::noop();
    match approval::check(posting, p, policy, approve) {
        Verdict::AlreadyDecided => {}
        Verdict::Refuse(_, r) => {
            d.record(JournalBody::ControlRefused(r));
        }
        Verdict::Accept(outcome) if approve => {
            d.record(JournalBody::PostingApproved(outcome));
            close_overdue(&mut d, s, &posting.posting_id, &format!("approved by {}", p.actor));
            d.record(JournalBody::BillMatched(BillMatch {
                bill_number: b.bill.bill_number.clone(),
                variances: b.variances.clone(),
            }));
            let o = post_vendor_bill(s.supplier_ref(), &b.bill);
            d.send(o.target, o.idempotency_key, o.body);
        }
        Verdict::Accept(outcome) => {
            d.record(JournalBody::PostingRejected(outcome));
            close_overdue(&mut d, s, &posting.posting_id, &format!("rejected by {}", p.actor));
            d.raise(
                &s.id(),
                s.book.exceptions_raised,
                ExceptionCategory::PostingRejected,
                SourceRef::new(System::Finance, b.bill.bill_number.clone()),
                format!(
                    "purchase order {}: bill {} ({}) was rejected by {}: {}; nothing was posted — ask the supplier for a corrected invoice",
                    s.po_ref(),
                    b.bill.bill_number,
                    b.bill.amount,
                    p.actor,
                    p.reason
                ),
            );
        }
    }
    d
}

/// Closes the `APPROVAL_OVERDUE` exception of a posting once it is decided.
fn close_overdue(d: &mut Decision, s: &Procurement, posting_id: &str, resolution: &str) {
    let subject = SourceRef::new(System::Waybill, posting_id.to_string());
    for id in s.book.open_of(ExceptionCategory::ApprovalOverdue) {
        if s.book.subjects.get(id) == Some(&subject) {
            d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: id.clone(),
                resolution: resolution.to_string(),
            }));
        }
    }
}

/// Finance posted a bill.
pub(super) fn on_posted(s: &Procurement, p: &VendorBillPosted) -> Decision {
    let mut d = Decision::noop();
    let Some(b) = s.bills.get(&p.bill_number) else {
        return reject(format!(
            "finance posted bill {} for purchase order {}, which Waybill never sent; check the bill number",
            p.bill_number, p.po_ref
        ));
    };
    if !matches!(b.status, BillStatus::Requested | BillStatus::Refused) {
        return d; // posted before (a redelivery), or never sent
    }
    d.record(JournalBody::BillRecorded(p.clone()));
    let subject = SourceRef::new(System::Finance, p.bill_number.clone());
    for id in s.book.open_of(ExceptionCategory::PostingRejected) {
        if s.book.subjects.get(id) == Some(&subject) {
            d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: id.clone(),
                resolution: format!("bill {} posted as {} after a retry", p.bill_number, p.document_number),
            }));
        }
    }
    d
}

/// Finance refused a bill it was sent: `POSTING_REJECTED`, retried as the same command.
pub(super) fn on_refused(s: &Procurement, bill_number: &str, reason: &str) -> Decision {
    let mut d = Decision::noop();
    let Some(b) = s.bills.get(bill_number) else {
        return reject(format!(
            "finance refused bill {bill_number} for purchase order {}, which Waybill never sent; check the bill number",
            s.po_ref()
        ));
    };
    if b.status != BillStatus::Requested {
        return d;
    }
    d.record(JournalBody::FinanceRefused(Refusal {
        reason: reason.to_string(),
        business_key: Some(bill_number.to_string()),
    }));
    d.raise(
        &s.id(),
        s.book.exceptions_raised,
        ExceptionCategory::PostingRejected,
        SourceRef::new(System::Finance, bill_number.to_string()),
        format!(
            "purchase order {}: finance refused bill {bill_number} ({}): {}; fix it in finance and retry the posting",
            s.po_ref(),
            b.bill.amount,
            reason.trim()
        ),
    );
    d
}

/// A connector reported a command of this saga refused: a bill is exactly a finance
/// refusal; anything else is `DELIVERY_FAILED`, retried as the same command.
pub(super) fn on_command_failed(s: &Procurement, f: &CommandFailed) -> Decision {
    let po = s.po_ref();
    let Some(rebuilt) = reissue(s, &f.idempotency_key) else {
        return outcome::never_issued(f, po);
    };
    if let Ok(CommandBody::PostVendorBill(b)) = rebuilt.as_ref().map(|o| &o.body) {
        if let Err(why) = outcome::check_report(f, rebuilt.as_ref().expect("matched Ok")) {
            return Decision::reject(DeadLetterKind::Rule, why);
        }
        return on_refused(s, &b.bill_number, &f.reason);
    }
    let answered = match f.idempotency_key.split_once(':') {
        Some(("receipt", id)) => s.receipts.get(id).is_some_and(|r| r.status != ReceiptStatus::Requested),
        Some(("vcn", id)) => s.receipts.get(id).is_some_and(|r| r.credit_number.is_some()),
        _ => false,
    };
    outcome::decide_failure(&s.book, &s.id(), po, f, &rebuilt, answered)
}

/// Fires the approval SLA of every held bill past it.
pub(super) fn on_timer(s: &Procurement, now: Timestamp) -> Decision {
    let mut d = Decision::noop();
    for b in s.bills.values().filter(|b| b.status == BillStatus::Held) {
        let Some(p) = b.posting.as_ref().filter(|p| !p.escalated && p.approved.is_none() && now >= p.sla_due_at) else {
            continue;
        };
        d.record(JournalBody::PostingEscalated(Deadline { due_at: p.sla_due_at }));
        d.raise(
            &s.id(),
            s.book.exceptions_raised,
            ExceptionCategory::ApprovalOverdue,
            SourceRef::new(System::Waybill, p.posting_id.clone()),
            format!(
                "purchase order {}: bill {} ({}, held posting {}: {}) has waited {} past its approval SLA; an approver must decide it",
                s.po_ref(),
                b.bill.bill_number,
                p.amount,
                p.posting_id,
                p.reasons.join("; "),
                crate::health::duration(now.micros_since(p.sla_due_at))
            ),
        );
    }
    d
}
