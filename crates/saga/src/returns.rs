//! Returns and credit: one saga per return authorisation (RMA). Return authorised →
//! return received from the warehouse (quantity, condition, lots, serials — which must
//! match what was shipped) → a credit note referencing the original invoice at the
//! invoiced price less the restocking fee, held for approval above a limit →
//! `IssueCreditNote` → `CreditNoteIssued` → stock adjustment. One credit note per return
//! receipt, ever; a posted invoice is never deleted — corrections are credit notes.
//!
//! Pure: [`decide`] and [`on_timer`] return decisions; [`ReturnCredit::apply`] folds.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use waybill_domain::command::{AdjustStock, AdjustmentLine, CommandBody, InvoiceLine, IssueCreditNote};
use waybill_domain::event::{
    CommandFailed, CreditNoteIssued, DocumentRejected, EventBody, InboundEvent, ItemCondition, PostingDecision,
    ReturnAuthorized, ReturnReceived,
};
use waybill_domain::journal::{
    BusinessKey, CreditNoteDraft, CreditNoteRecorded, Deadline, DocumentKind, Empty, ExceptionResolved, PostingHeld,
    Refusal,
};
use waybill_domain::{
    ExceptionCategory, JournalBody, JournalEvent, Money, Qty, SagaKind, SourceRef, System, Timestamp,
};

use crate::approval::{self, Posting, Verdict};
use crate::book::{self, SagaBook};
use crate::decision::{DeadLetterKind, Decision, Outbound};
use crate::fulfillment::Fulfillment;
use crate::invoicing::{InvoiceStatus, Invoicing};
use crate::outcome;
use crate::policy::PostingPolicy;

/// Where a receipt's credit note stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CreditStatus {
    /// Waiting for an approver.
    #[default]
    Held,
    /// Sent to finance.
    Requested,
    /// Finance issued it; stock adjustment requested.
    Issued,
    /// An approver rejected it.
    Rejected,
    /// Finance refused it.
    Refused,
}

/// One received return and its credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// What was received.
    pub received: ReturnReceived,
    /// The credit note as computed.
    pub draft: Option<CreditNoteDraft>,
    /// The held posting, if held.
    pub posting: Option<Posting>,
    /// Status.
    pub status: CreditStatus,
    /// Credit note number.
    pub document_number: Option<String>,
}

/// State of one returns saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnCredit {
    /// What every saga keeps: applied seq, causes, open exceptions, completion.
    #[serde(flatten)]
    pub book: SagaBook,
    /// The authorisation.
    pub rma: Option<ReturnAuthorized>,
    /// Receipts by id.
    pub receipts: BTreeMap<String, Receipt>,
    /// Quantity received so far per order line.
    pub returned: BTreeMap<i32, Qty>,
    /// Serials received so far.
    pub returned_serials: BTreeSet<String>,
}

impl ReturnCredit {
    /// Saga kind.
    pub const KIND: SagaKind = SagaKind::ReturnsCredit;

    /// Saga id of an RMA.
    pub fn saga_id(rma_id: &str) -> String {
        Self::KIND.saga_id(rma_id)
    }

    /// Posting id of the credit note for a receipt.
    pub fn posting_id(receipt_id: &str) -> String {
        format!("{}{receipt_id}", DocumentKind::CreditNote.posting_prefix())
    }

    fn rma_id(&self) -> &str {
        self.rma.as_ref().map(|r| r.rma_id.as_str()).unwrap_or("")
    }

    fn order_ref(&self) -> &str {
        self.rma.as_ref().map(|r| r.order_ref.as_str()).unwrap_or("")
    }

    /// True once finished.
    pub fn is_finished(&self) -> bool {
        self.book.is_finished()
    }

    /// The earliest approval SLA of a held credit note.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.receipts
            .values()
            .filter(|r| r.status == CreditStatus::Held)
            .filter_map(|r| r.posting.as_ref())
            .filter(|p| !p.escalated)
            .map(|p| p.sla_due_at)
            .min()
    }

    fn receipt_of_posting(&self, posting_id: &str) -> Option<&Receipt> {
        self.receipts.values().find(|r| r.posting.as_ref().is_some_and(|p| p.posting_id == posting_id))
    }

    fn receipt_mut(&mut self, key: &str) -> Option<&mut Receipt> {
        self.receipts.get_mut(key)
    }

    /// Folds one journal event.
    pub fn apply(&mut self, event: &JournalEvent) {
        if !self.book.fold(event) {
            return;
        }
        match &event.body {
            JournalBody::ReturnOpened(rma) => self.rma = Some(rma.clone()),
            JournalBody::ReturnReceiptRecorded(r) => {
                for l in &r.lines {
                    *self.returned.entry(l.line_no).or_default() += l.quantity;
                    self.returned_serials.extend(l.serials.iter().cloned());
                }
                self.receipts.insert(
                    r.receipt_id.clone(),
                    Receipt {
                        received: r.clone(),
                        draft: None,
                        posting: None,
                        status: CreditStatus::Held,
                        document_number: None,
                    },
                );
            }
            JournalBody::CreditNoteDrafted(c) => {
                if let Some(r) = self.receipt_mut(&c.receipt_id) {
                    r.draft = Some(c.clone());
                }
            }
            JournalBody::PostingHeld(h) => {
                if let Some(r) = self.receipt_mut(&h.business_key) {
                    r.posting = Some(Posting::held(h));
                    r.status = CreditStatus::Held;
                }
            }
            JournalBody::PostingApproved(o) | JournalBody::PostingRejected(o) => {
                let approved = matches!(event.body, JournalBody::PostingApproved(_));
                if let Some(r) = self
                    .receipts
                    .values_mut()
                    .find(|r| r.posting.as_ref().is_some_and(|p| p.posting_id == o.posting_id))
                {
                    let p = r.posting.as_mut().expect("matched above");
                    if approved {
                        p.approve(o);
                    } else {
                        p.reject(o);
                        r.status = CreditStatus::Rejected;
                    }
                }
            }
            JournalBody::PostingEscalated(_) => {
                // The escalation names no posting: mark every held one that was due.
                for r in self.receipts.values_mut().filter(|r| r.status == CreditStatus::Held) {
                    if let Some(p) = &mut r.posting
                        && p.sla_due_at <= event.meta.at
                    {
                        p.escalated = true;
                    }
                }
            }
            JournalBody::ControlRefused(x) => {
                if let Some(r) = self
                    .receipts
                    .values_mut()
                    .find(|r| r.posting.as_ref().is_some_and(|p| p.posting_id == x.posting_id))
                {
                    r.posting.as_mut().expect("matched above").touched_by.insert(x.actor.clone());
                }
            }
            JournalBody::CreditNoteRequested(k) => {
                if let Some(r) = self.receipt_mut(&k.key) {
                    r.status = CreditStatus::Requested;
                }
            }
            JournalBody::CreditNoteRecorded(c) => {
                if let Some(r) = self.receipt_mut(&c.receipt_id) {
                    r.status = CreditStatus::Issued;
                    r.document_number = Some(c.document_number.clone());
                }
            }
            JournalBody::FinanceRefused(x) => {
                // The receipt finance refused; records before v3 do not name it, and
                // then the first one waiting is meant.
                let refused = match &x.business_key {
                    Some(key) => self.receipt_mut(key).filter(|r| r.status == CreditStatus::Requested),
                    None => self.receipts.values_mut().find(|r| r.status == CreditStatus::Requested),
                };
                if let Some(r) = refused {
                    r.status = CreditStatus::Refused;
                }
            }
            JournalBody::ExceptionRetried(x) => {
                let receipt = x.idempotency_key.strip_prefix("credit:").unwrap_or_default().to_string();
                if let Some(r) = self.receipt_mut(&receipt).filter(|r| r.status == CreditStatus::Refused) {
                    r.status = CreditStatus::Requested;
                }
            }
            _ => {}
        }
    }
}

/// What a returns decision may consult.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Posting policy.
    pub policy: &'a PostingPolicy,
    /// The order's fulfilment (what was shipped).
    pub fulfillment: &'a Fulfillment,
    /// The order's invoices by shipment id.
    pub invoices: &'a BTreeMap<String, Invoicing>,
    /// Decision time.
    pub now: Timestamp,
}

/// Decides an inbound event addressed to this return.
pub fn decide(s: &ReturnCredit, event: &InboundEvent, ctx: &Context<'_>) -> Decision {
    if s.book.seen.contains(&event.meta.event_id) {
        return Decision::noop();
    }
    match &event.body {
        EventBody::ReturnAuthorized(rma) => on_authorized(s, rma, ctx),
        EventBody::ReturnReceived(r) if s.rma.is_some() => {
            on_received(s, r, ctx, &crate::approval::requester(&event.meta))
        }
        EventBody::PostingApproved(d) => on_decision(s, d, ctx, true),
        EventBody::PostingRejected(d) => on_decision(s, d, ctx, false),
        EventBody::CreditNoteIssued(c) => on_issued(s, c),
        EventBody::CreditNoteRejected(r) => on_refused(s, r),
        EventBody::CommandFailed(f) => on_command_failed(s, f),
        _ => Decision::noop(),
    }
}

/// The key of the one `IssueCreditNote` of a return receipt.
pub fn credit_key(receipt_id: &str) -> String {
    format!("credit:{receipt_id}")
}

/// The key of the `AdjustStock` of a return receipt.
pub fn adjust_key(receipt_id: &str) -> String {
    format!("adjust:{receipt_id}")
}

/// Rebuilds the command this saga issued under `key`, exactly as first sent: a receipt's
/// `IssueCreditNote` (its draft) or, once the credit note is issued, its `AdjustStock`
/// (what was received). `None` when it never issued `key`.
pub fn reissue(s: &ReturnCredit, key: &str) -> Option<Result<Outbound, String>> {
    if let Some(receipt) = key.strip_prefix("credit:").and_then(|id| s.receipts.get(id)) {
        let sent = matches!(receipt.status, CreditStatus::Requested | CreditStatus::Issued | CreditStatus::Refused);
        return receipt.draft.as_ref().filter(|_| sent).map(|d| Ok(issue_credit_note(d)));
    }
    let receipt = key.strip_prefix("adjust:").and_then(|id| s.receipts.get(id))?;
    (receipt.status == CreditStatus::Issued).then(|| Ok(adjust_stock(s, receipt)))
}

/// The stock adjustment of a receipt whose credit note was issued: what was received, in
/// the return's order and the returns warehouse.
fn adjust_stock(s: &ReturnCredit, receipt: &Receipt) -> Outbound {
    let r = &receipt.received;
    Outbound {
        target: System::Wms,
        idempotency_key: adjust_key(&r.receipt_id),
        body: CommandBody::AdjustStock(AdjustStock {
            order_ref: s.rma.as_ref().map_or_else(|| r.order_ref.clone(), |x| x.order_ref.clone()),
            receipt_id: r.receipt_id.clone(),
            warehouse: RETURNS_WAREHOUSE.to_string(),
            lines: r
                .lines
                .iter()
                .map(|l| AdjustmentLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    condition: l.condition,
                    lots: l.lots.clone(),
                })
                .collect(),
        }),
    }
}

/// The warehouse returned goods are received into.
const RETURNS_WAREHOUSE: &str = "WH-MAIN";

/// A target refused a command of this return. A refused `IssueCreditNote` is exactly
/// finance refusing the credit note (`CreditNoteRejected`: the same exception and retry);
/// a refused `AdjustStock` raises `DELIVERY_FAILED`.
fn on_command_failed(s: &ReturnCredit, f: &CommandFailed) -> Decision {
    let order_ref = s.rma.as_ref().map(|r| r.order_ref.as_str()).unwrap_or_default();
    let Some(rebuilt) = reissue(s, &f.idempotency_key) else {
        return outcome::never_issued(f, order_ref);
    };
    if let Ok(o) = &rebuilt
        && let CommandBody::IssueCreditNote(c) = &o.body
    {
        if let Err(why) = outcome::check_report(f, o) {
            return Decision::reject(DeadLetterKind::Rule, why);
        }
        // A report while finance's refusal of this credit note is open (the same refusal
        // reported twice, or the retried one refused again) changes nothing.
        let refused = SourceRef::new(System::Finance, c.receipt_id.clone());
        if s.book.open_of(ExceptionCategory::PostingRejected).any(|id| s.book.subjects.get(id) == Some(&refused)) {
            return Decision::noop();
        }
        let refusal = DocumentRejected {
            order_ref: order_ref.to_string(),
            business_key: c.receipt_id.clone(),
            reason: f.reason.trim().to_string(),
        };
        return on_refused(s, &refusal);
    }
    outcome::decide_failure(&s.book, &ReturnCredit::saga_id(s.rma_id()), order_ref, f, &rebuilt, false)
}

fn mismatch(s: &ReturnCredit, subject: SourceRef, message: String) -> Decision {
    let mut d = Decision::noop();
    d.raise(
        &ReturnCredit::saga_id(s.rma_id()),
        s.book.exceptions_raised,
        ExceptionCategory::ReturnMismatch,
        subject,
        message,
    );
    d
}

fn on_authorized(s: &ReturnCredit, rma: &ReturnAuthorized, ctx: &Context<'_>) -> Decision {
    if s.rma.is_some() {
        return Decision::noop();
    }
    let mut problems = Vec::new();
    for l in &rma.lines {
        let shipped = ctx.fulfillment.lines.get(&l.line_no).map(|p| p.shipped).unwrap_or_default();
        if l.quantity > shipped {
            problems.push(format!("line {}: {} authorised but {} shipped", l.line_no, l.quantity, shipped));
        }
    }
    let mut d = Decision::noop();
    d.record(JournalBody::ReturnOpened(rma.clone()));
    if !problems.is_empty() {
        let s2 = ReturnCredit { rma: Some(rma.clone()), ..s.clone() };
        let m = mismatch(
            &s2,
            SourceRef::new(System::Odoo, rma.rma_id.clone()),
            format!(
                "return {} for order {}: {}; correct the authorisation in Odoo",
                rma.rma_id,
                rma.order_ref,
                problems.join("; ")
            ),
        );
        d.journal.extend(m.journal);
    }
    d
}

fn on_received(s: &ReturnCredit, r: &ReturnReceived, ctx: &Context<'_>, requested_by: &str) -> Decision {
    if s.receipts.contains_key(&r.receipt_id) {
        return Decision::noop(); // one credit note per receipt, ever
    }
    let rma = s.rma.as_ref().expect("checked by the caller");
    let mut problems = Vec::new();
    let mut serials_now = BTreeSet::new();
    for l in &r.lines {
        let authorised: Qty = rma.lines.iter().filter(|x| x.line_no == l.line_no).map(|x| x.quantity).sum();
        let before = s.returned.get(&l.line_no).copied().unwrap_or_default();
        if l.quantity + before > authorised {
            problems.push(format!(
                "line {}: receiving {} on top of {} exceeds the {} authorised",
                l.line_no, l.quantity, before, authorised
            ));
        }
        let shipped = ctx.fulfillment.lines.get(&l.line_no).cloned().unwrap_or_default();
        if l.quantity + before > shipped.shipped {
            problems.push(format!("line {}: more returned than the {} shipped", l.line_no, shipped.shipped));
        }
        for serial in &l.serials {
            if !shipped.serials.contains(serial) {
                problems.push(format!("line {}: serial {serial:?} was never shipped on this order", l.line_no));
            } else if s.returned_serials.contains(serial) || !serials_now.insert(serial.clone()) {
                problems.push(format!("line {}: serial {serial:?} was already returned", l.line_no));
            }
        }
        for lot in &l.lots {
            if !shipped.lots.contains(&lot.lot) {
                problems.push(format!("line {}: lot {:?} was never shipped on this order", l.line_no, lot.lot));
            }
        }
    }
    let subject = SourceRef::new(System::Wms, r.receipt_id.clone());
    if !problems.is_empty() {
        return mismatch(
            s,
            subject,
            format!(
                "return receipt {} for {} of order {}: {}; check the returned goods and correct the receipt in the warehouse system",
                r.receipt_id,
                rma.rma_id,
                rma.order_ref,
                problems.join("; ")
            ),
        );
    }
    // The invoice lines being credited, at the invoiced price.
    let mut lines = Vec::new();
    let mut invoice_number = None;
    let mut fee = Money(0);
    for l in &r.lines {
        let Some((number, il)) = ctx.invoices.values().filter(|i| i.status == InvoiceStatus::Posted).find_map(|i| {
            let draft = i.draft.as_ref()?;
            let il = draft.lines.iter().find(|x| x.line_no == l.line_no)?;
            Some((i.invoice_number.clone().unwrap_or_default(), il.clone()))
        }) else {
            return mismatch(
                s,
                subject,
                format!(
                    "return receipt {} of order {}: line {} has no posted invoice to credit yet; replay the receipt once the invoice is posted",
                    r.receipt_id, rma.order_ref, l.line_no
                ),
            );
        };
        let line = InvoiceLine { quantity: l.quantity, ..il };
        if l.condition == ItemCondition::Restock {
            let value = line.unit_price.times(line.quantity);
            fee = fee + Money((value.0 as f64 * ctx.policy.restocking_fee_pct / 100.0).round() as i64);
        }
        invoice_number.get_or_insert(number);
        lines.push(line);
    }
    let gross: Money = lines.iter().map(|l| l.unit_price.times(l.quantity)).sum();
    let draft = CreditNoteDraft {
        order_ref: rma.order_ref.clone(),
        receipt_id: r.receipt_id.clone(),
        invoice_number: invoice_number.unwrap_or_default(),
        lines,
        restocking_fee: fee,
        total: Money(gross.0 - fee.0),
    };
    let mut d = Decision::noop();
    d.record(JournalBody::ReturnReceiptRecorded(r.clone()));
    d.record(JournalBody::CreditNoteDrafted(draft.clone()));
    let currency = ctx.fulfillment.order.as_ref().map(|o| o.currency.clone());
    let mut reasons = Vec::new();
    if draft.total.0 > ctx.policy.hold_credit_notes_above.0 {
        reasons.push(format!(
            "credit note {} above the approval limit {}",
            draft.total, ctx.policy.hold_credit_notes_above
        ));
    }
    reasons.extend(currency.as_deref().and_then(|c| ctx.policy.foreign_currency("credit note", c)));
    if !reasons.is_empty() {
        d.record(JournalBody::PostingHeld(PostingHeld {
            posting_id: ReturnCredit::posting_id(&r.receipt_id),
            document: DocumentKind::CreditNote,
            business_key: r.receipt_id.clone(),
            reasons,
            amount: draft.total,
            version: 1,
            requested_by: requested_by.to_string(),
            sla_due_at: ctx.now.plus_secs(ctx.policy.approval_sla_secs),
            currency,
            entity: None,
        }));
    } else {
        request_credit(&mut d, &draft);
    }
    d
}

fn request_credit(d: &mut Decision, draft: &CreditNoteDraft) {
    d.record(JournalBody::CreditNoteRequested(BusinessKey { key: draft.receipt_id.clone() }));
    let o = issue_credit_note(draft);
    d.send(o.target, o.idempotency_key, o.body);
}

/// The one `IssueCreditNote` of a receipt: its key is the receipt id, its body the draft.
fn issue_credit_note(draft: &CreditNoteDraft) -> Outbound {
    Outbound {
        target: System::Finance,
        idempotency_key: credit_key(&draft.receipt_id),
        body: CommandBody::IssueCreditNote(IssueCreditNote {
            order_ref: draft.order_ref.clone(),
            receipt_id: draft.receipt_id.clone(),
            invoice_number: draft.invoice_number.clone(),
            lines: draft.lines.clone(),
            restocking_fee: draft.restocking_fee,
            total: draft.total,
        }),
    }
}

/// What an operator's retry of an exception re-issues: the credit note finance refused,
/// as the same `IssueCreditNote` (same key, same body). A credit note an approver
/// rejected, or a return that does not match the shipment, has nothing to re-issue.
pub fn retry(s: &ReturnCredit, exception_id: &str) -> Result<Outbound, String> {
    let Some(category) = s.book.open_exceptions.get(exception_id) else {
        return Err(book::not_open(&s.book, exception_id));
    };
    let subject = s.book.subjects.get(exception_id);
    let receipt = subject.filter(|x| x.system == System::Finance).and_then(|x| s.receipts.get(&x.id));
    match (category, receipt) {
        (ExceptionCategory::PostingRejected, Some(r))
            if matches!(r.status, CreditStatus::Refused | CreditStatus::Requested) && r.draft.is_some() =>
        {
            Ok(issue_credit_note(r.draft.as_ref().expect("checked")))
        }
        (ExceptionCategory::PostingRejected, _) => Err(format!(
            "exception {exception_id} is not a credit note finance refused (an approver rejected it, or the receipt is unknown to this state); a retry would issue credit without approval — resolve it with a note"
        )),
        (ExceptionCategory::DeliveryFailed, _) => {
            let key = subject.map(|x| x.id.as_str()).unwrap_or_default();
            reissue(s, key).unwrap_or_else(|| {
                Err(format!("exception {exception_id} names command {key:?}, which this return never issued; resolve it with a note"))
            })
        }
        (ExceptionCategory::ReturnMismatch, _) => Err(format!(
            "exception {exception_id} has no command to re-issue: the return does not match what was shipped; correct the receipt in the warehouse system and resend it, then resolve this exception"
        )),
        _ => Err(format!(
            "exception {exception_id} ({category}) has no command to re-issue; fix the cause and resolve it with a note"
        )),
    }
}

fn on_decision(s: &ReturnCredit, dec: &PostingDecision, ctx: &Context<'_>, approve: bool) -> Decision {
    let mut d = Decision::noop();
    let Some(receipt) = s.receipt_of_posting(&dec.posting_id) else { return d };
    let posting = receipt.posting.as_ref().expect("found by posting");
    match approval::check(posting, dec, ctx.policy, approve) {
        Verdict::AlreadyDecided => {}
        Verdict::Refuse(_, r) => {
            d.record(JournalBody::ControlRefused(r));
        }
        Verdict::Accept(outcome) if approve => {
            d.record(JournalBody::PostingApproved(outcome));
            request_credit(&mut d, receipt.draft.as_ref().expect("held after drafting"));
        }
        Verdict::Accept(outcome) => {
            d.record(JournalBody::PostingRejected(outcome));
            d.raise(
                &ReturnCredit::saga_id(s.rma_id()),
                s.book.exceptions_raised,
                ExceptionCategory::PostingRejected,
                SourceRef::new(System::Waybill, dec.posting_id.clone()),
                format!(
                    "order {}: credit note for return receipt {} was rejected by {}: {}; no credit was issued",
                    receipt.received.order_ref, receipt.received.receipt_id, dec.actor, dec.reason
                ),
            );
            // A rejection settles the receipt as an issued credit note does: when it was
            // the last one and every authorised unit is back, the return ends here
            // (nothing else would end it).
            if all_back(s) && settled_except(s, &receipt.received.receipt_id) {
                d.record(JournalBody::Completed(Empty {}));
            }
        }
    }
    d
}

/// Every authorised unit has come back.
fn all_back(s: &ReturnCredit) -> bool {
    let Some(rma) = s.rma.as_ref() else { return false };
    rma.lines.iter().all(|l| s.returned.get(&l.line_no).copied().unwrap_or_default() >= l.quantity)
}

/// Every receipt but `receipt_id` has its credit note issued or rejected.
fn settled_except(s: &ReturnCredit, receipt_id: &str) -> bool {
    s.receipts
        .iter()
        .all(|(id, r)| id == receipt_id || matches!(r.status, CreditStatus::Issued | CreditStatus::Rejected))
}

fn on_issued(s: &ReturnCredit, c: &CreditNoteIssued) -> Decision {
    let mut d = Decision::noop();
    let Some(receipt) = s.receipts.get(&c.receipt_id) else { return d };
    if receipt.status != CreditStatus::Requested {
        return d;
    }
    d.record(JournalBody::CreditNoteRecorded(CreditNoteRecorded {
        receipt_id: c.receipt_id.clone(),
        document_number: c.credit_note_number.clone(),
        amount: c.amount,
    }));
    // Finance refused this credit note before and an operator retried it.
    let refused = SourceRef::new(System::Finance, c.receipt_id.clone());
    for id in s.book.open_of(ExceptionCategory::PostingRejected) {
        if s.book.subjects.get(id) == Some(&refused) {
            d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: id.clone(),
                resolution: format!("credit note {} issued after a retry", c.credit_note_number),
            }));
        }
    }
    d.record(JournalBody::StockAdjustmentRequested(BusinessKey { key: c.receipt_id.clone() }));
    let o = adjust_stock(s, receipt);
    d.send(o.target, o.idempotency_key, o.body);
    // Finished when everything authorised came back and every receipt is settled.
    if all_back(s) && settled_except(s, &c.receipt_id) {
        d.record(JournalBody::Completed(Empty {}));
    }
    d
}

fn on_refused(s: &ReturnCredit, r: &DocumentRejected) -> Decision {
    let mut d = Decision::noop();
    if s.receipts.get(&r.business_key).is_none_or(|x| x.status != CreditStatus::Requested) {
        return d;
    }
    d.record(JournalBody::FinanceRefused(Refusal {
        reason: r.reason.clone(),
        business_key: Some(r.business_key.clone()),
    }));
    d.raise(
        &ReturnCredit::saga_id(s.rma_id()),
        s.book.exceptions_raised,
        ExceptionCategory::PostingRejected,
        SourceRef::new(System::Finance, r.business_key.clone()),
        format!(
            "order {}: finance refused the credit note for receipt {}: {}; fix it in finance and retry",
            s.order_ref(),
            r.business_key,
            r.reason
        ),
    );
    d
}

/// Fires approval SLAs of held credit notes.
pub fn on_timer(s: &ReturnCredit, now: Timestamp) -> Decision {
    let mut d = Decision::noop();
    if let Some(due) = s.next_deadline()
        && now >= due
    {
        d.record(JournalBody::PostingEscalated(Deadline { due_at: due }));
        d.raise(
            &ReturnCredit::saga_id(s.rma_id()),
            s.book.exceptions_raised,
            ExceptionCategory::ApprovalOverdue,
            SourceRef::new(System::Waybill, ReturnCredit::saga_id(s.rma_id())),
            format!(
                "order {}: a held credit note of return {} has waited {} past its approval SLA; an approver must decide it",
                s.order_ref(),
                s.rma_id(),
                crate::health::duration(now.micros_since(due))
            ),
        );
    }
    d
}

impl crate::saga::Saga for ReturnCredit {
    fn kind(&self) -> SagaKind {
        Self::KIND
    }
    fn book(&self) -> &SagaBook {
        &self.book
    }
    fn apply(&mut self, event: &JournalEvent) {
        ReturnCredit::apply(self, event)
    }
    fn status(&self) -> String {
        "returning".to_string()
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        ReturnCredit::next_deadline(self)
    }
    fn on_timer(&self, _env: &crate::flow::Env<'_>, now: Timestamp) -> Decision {
        on_timer(self, now)
    }
    fn watchdog(&self) -> Option<crate::watch::Wait> {
        crate::watch::credit(self)
    }
    fn fire_watchdog(&self, d: &mut Decision, saga_id: &str, now: Timestamp) {
        crate::watch::fire_credit(d, saga_id, self, now)
    }
    fn retry(&self, exception_id: &str) -> Result<Outbound, String> {
        retry(self, exception_id)
    }
    fn reissue(&self, key: &str) -> Option<Result<Outbound, String>> {
        reissue(self, key)
    }
    fn lifecycle(&self, body: &JournalBody) -> Option<crate::saga::Lifecycle> {
        let fails = matches!(body, JournalBody::PostingRejected(_) | JournalBody::FinanceRefused(_));
        crate::saga::lifecycle(body, matches!(body, JournalBody::ReturnOpened(_)), fails)
    }
}
