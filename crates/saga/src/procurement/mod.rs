//! Procure-to-receive: one saga per purchase order (`p2r:<po>`), keyed `po:<po>`.
//!
//! Odoo confirms the order; the supplier's advance shipping notice arrives (through the
//! warehouse, which receives it by EDI or from the supplier portal); the warehouse
//! receives goods — with lots, serials, bins and damaged quantities — and each receipt
//! is checked against the order and its notice (`receive.rs`) and sent to Odoo for
//! validation once (`receipt:<id>`). Each supplier invoice is matched three ways —
//! order × receipts × bill, on quantity and price, within the supplier's tolerances
//! (`bill.rs`) — and posted to finance once (`bill:<supplier>/<number>`), or held for an
//! approver through the same control plane, four-eyes and limits as customer invoices.
//! A receipt cancelled after it was billed is credited (`vcn:<receipt>`) and its goods
//! returned in Odoo (`rtv:<receipt>`); nothing is deleted.
//!
//! The saga completes when every receipt is validated, every reversal credited, and
//! what was received is billed (within tolerance) — once the order is received in full
//! or closed. A receipt, a bill or a cancellation that arrives after that reopens it
//! until it is settled again.

mod bill;
mod receive;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waybill_domain::event::EventBody;
use waybill_domain::journal::DocumentKind;
use waybill_domain::purchase::{
    GoodsReceipt, PurchaseOrderConfirmed, ReceiptPosting, ReceiptReversal, ShipNotice, VendorBill,
};
use waybill_domain::{
    CommandBody, ExceptionCategory, InboundEvent, JournalBody, JournalEvent, Qty, SagaKind, SourceRef, System,
    Timestamp,
};

use crate::approval::Posting;
use crate::book::{self, SagaBook};
use crate::decision::{Cause, DeadLetterKind, Decision, Outbound};
use crate::flow::{Env, Flow, Step, commit, reject};
use crate::saga::{Lifecycle, Saga};
use crate::watch::{self, Described, Wait};

/// Where a receipt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiptStatus {
    /// Odoo was asked to validate it.
    Requested,
    /// Odoo validated it.
    Validated,
    /// It was cancelled and reversed.
    Reversed,
}

/// One receipt of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The receipt as the warehouse reported it.
    pub receipt: GoodsReceipt,
    /// Status.
    pub status: ReceiptStatus,
    /// Odoo's picking, once validated.
    pub picking_ref: Option<String>,
    /// The reversal, once cancelled.
    pub reversal: Option<ReceiptReversal>,
    /// Finance's credit note number, once the reversal was credited.
    pub credit_number: Option<String>,
}

/// Where a vendor bill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BillStatus {
    /// It bills more than was received and more goods may come: it waits for them.
    Waiting,
    /// Outside tolerance: an approver decides.
    Held,
    /// Sent to finance.
    Requested,
    /// Finance posted it.
    Posted,
    /// An approver rejected it: nothing is posted; the supplier must send a corrected bill.
    Rejected,
    /// Finance refused it: an operator retries it once fixed.
    Refused,
}

/// One supplier invoice of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// The bill as finance received it.
    pub bill: VendorBill,
    /// Status.
    pub status: BillStatus,
    /// The differences beyond tolerance it was matched (and approved) with.
    pub variances: Vec<String>,
    /// The held posting, when it was held.
    pub posting: Option<Posting>,
    /// Finance's document number, once posted.
    pub document_number: Option<String>,
}

impl Bill {
    /// Whether the bill counts as billed: sent, posted, or waiting for an approver.
    fn is_committed(&self) -> bool {
        matches!(self.status, BillStatus::Held | BillStatus::Requested | BillStatus::Posted | BillStatus::Refused)
    }
}

/// State of one procure-to-receive saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Procurement {
    /// What every saga keeps: applied seq, causes, open exceptions, completion.
    #[serde(flatten)]
    pub book: SagaBook,
    /// The order as Odoo confirmed it.
    pub order: Option<PurchaseOrderConfirmed>,
    /// Odoo closed the order: nothing more will be received.
    pub closed: bool,
    /// Advance shipping notices, by id.
    pub notices: BTreeMap<String, ShipNotice>,
    /// Receipts, by id.
    pub receipts: BTreeMap<String, Receipt>,
    /// Vendor bills, by the supplier's invoice number.
    pub bills: BTreeMap<String, Bill>,
    /// Bill numbers in the order the bills arrived (a credit takes the latest bill's price).
    pub bill_order: Vec<String>,
}

/// The idempotency keys of the flow's commands, one per business key.
pub mod keys {
    /// Validate a receipt in Odoo: one per receipt.
    pub fn receipt(receipt_id: &str) -> String {
        format!("receipt:{receipt_id}")
    }
    /// Return a cancelled receipt's goods: one per receipt.
    pub fn return_to_vendor(receipt_id: &str) -> String {
        format!("rtv:{receipt_id}")
    }
    /// Post a vendor bill: one per supplier and invoice number, ever.
    pub fn bill(supplier_ref: &str, bill_number: &str) -> String {
        format!("bill:{supplier_ref}/{bill_number}")
    }
    /// Credit a cancelled, billed receipt: one per receipt.
    pub fn vendor_credit(receipt_id: &str) -> String {
        format!("vcn:{receipt_id}")
    }
}

impl Procurement {
    /// Saga kind.
    pub const KIND: SagaKind = SagaKind::PurchaseToReceive;

    /// Saga id of a purchase order's saga: `p2r:P00042`.
    pub fn saga_id(po_ref: &str) -> String {
        Self::KIND.saga_id(po_ref)
    }

    /// Posting id of a held vendor bill: `bill:AF-2026-118`.
    pub fn posting_id(bill_number: &str) -> String {
        format!("{}{bill_number}", DocumentKind::VendorBill.posting_prefix())
    }

    fn po_ref(&self) -> &str {
        self.order.as_ref().map_or("", |o| o.po_ref.as_str())
    }

    fn supplier_ref(&self) -> &str {
        self.order.as_ref().map_or("", |o| o.supplier_ref.as_str())
    }

    fn id(&self) -> String {
        Self::saga_id(self.po_ref())
    }

    /// Quantity accepted on a PO line over the receipts not reversed.
    pub fn received(&self, po_line_no: i32) -> Qty {
        self.receipts
            .values()
            .filter(|r| r.status != ReceiptStatus::Reversed)
            .flat_map(|r| r.receipt.lines.iter())
            .filter(|l| l.po_line_no == po_line_no)
            .map(|l| l.quantity)
            .sum()
    }

    /// Quantity billed on a PO line by the bills that count (held, sent, posted).
    pub fn billed(&self, po_line_no: i32, except: Option<&str>) -> Qty {
        self.bills
            .iter()
            .filter(|(n, b)| b.is_committed() && Some(n.as_str()) != except)
            .flat_map(|(_, b)| b.bill.lines.iter())
            .filter(|l| l.po_line_no == po_line_no)
            .map(|l| l.quantity)
            .sum()
    }

    /// Quantity of a PO line credited back by the reversals of cancelled, billed receipts.
    pub fn credited(&self, po_line_no: i32) -> Qty {
        self.receipts
            .values()
            .filter_map(|r| r.reversal.as_ref()?.credit.as_ref())
            .flat_map(|c| c.lines.iter())
            .filter(|l| l.po_line_no == po_line_no)
            .map(|l| l.quantity)
            .sum()
    }

    /// Quantity of a PO line billed and not credited back: what the supplier is owed for.
    pub fn net_billed(&self, po_line_no: i32) -> Qty {
        self.billed(po_line_no, None).saturating_sub(self.credited(po_line_no))
    }

    /// Folds one journal event (copies already applied are ignored).
    pub fn apply(&mut self, event: &JournalEvent) {
        if !self.book.fold(event) {
            return;
        }
        match &event.body {
            JournalBody::PurchaseOpened(o) => self.order = Some(o.clone()),
            JournalBody::PurchaseClosed(_) => self.closed = true,
            JournalBody::ShipNoticeRecorded(n) => {
                self.notices.insert(n.asn_id.clone(), n.clone());
            }
            JournalBody::ReceiptRecorded(r) => {
                // Goods that arrive after the order completed (a delivery under way when
                // the buyer closed it) reopen it until they are validated and billed.
                self.book.completed_at = None;
                let receipt = Receipt {
                    receipt: r.clone(),
                    status: ReceiptStatus::Requested,
                    picking_ref: None,
                    reversal: None,
                    credit_number: None,
                };
                self.receipts.insert(r.receipt_id.clone(), receipt);
            }
            JournalBody::ReceiptConfirmed(v) => {
                if let Some(r) = self.receipts.get_mut(&v.receipt_id).filter(|r| r.status == ReceiptStatus::Requested) {
                    r.status = ReceiptStatus::Validated;
                    r.picking_ref = Some(v.picking_ref.clone());
                }
            }
            JournalBody::ReceiptReversed(x) => {
                if let Some(r) = self.receipts.get_mut(&x.receipt_id) {
                    r.status = ReceiptStatus::Reversed;
                    r.reversal = Some(x.clone());
                }
                // A cancellation reopens a completed order: the goods went back, so the
                // credit (or a replacement delivery, or closing the order) is awaited —
                // and watched — before it completes again.
                self.book.completed_at = None;
            }
            JournalBody::VendorCreditRecorded(c) => {
                if let Some(r) = self.receipts.get_mut(&c.receipt_id) {
                    r.credit_number = Some(c.credit_number.clone());
                }
            }
            JournalBody::BillReceived(b) => {
                // So does a bill that arrives after it completed.
                self.book.completed_at = None;
                self.bill_order.push(b.bill_number.clone());
                let bill = Bill {
                    bill: b.clone(),
                    status: BillStatus::Waiting,
                    variances: vec![],
                    posting: None,
                    document_number: None,
                };
                self.bills.insert(b.bill_number.clone(), bill);
            }
            JournalBody::BillMatched(m) => {
                if let Some(b) = self.bills.get_mut(&m.bill_number) {
                    b.status = BillStatus::Requested;
                    b.variances = m.variances.clone();
                }
            }
            JournalBody::PostingHeld(h) => {
                if let Some(b) = self.bills.get_mut(&h.business_key) {
                    b.status = BillStatus::Held;
                    b.variances = h.reasons.clone();
                    b.posting = Some(Posting::held(h));
                }
            }
            JournalBody::PostingApproved(o) => {
                if let Some(p) = self.posting_mut(&o.posting_id) {
                    p.approve(o);
                }
            }
            JournalBody::PostingRejected(o) => {
                if let Some(b) = self.bill_of_posting_mut(&o.posting_id) {
                    b.status = BillStatus::Rejected;
                    if let Some(p) = &mut b.posting {
                        p.reject(o);
                    }
                }
            }
            JournalBody::PostingEscalated(d) => {
                let due = self
                    .bills
                    .values_mut()
                    .filter(|b| b.status == BillStatus::Held)
                    .filter_map(|b| b.posting.as_mut())
                    .find(|p| !p.escalated && p.sla_due_at == d.due_at);
                if let Some(p) = due {
                    p.escalated = true;
                }
            }
            JournalBody::ControlRefused(r) => {
                // Only refused decisions on a posting touch it (not workbench actions).
                if let Some(p) = self.posting_mut(&r.posting_id) {
                    p.touched_by.insert(r.actor.clone());
                }
            }
            JournalBody::BillRecorded(p) => {
                if let Some(b) = self.bills.get_mut(&p.bill_number) {
                    b.status = BillStatus::Posted;
                    b.document_number = Some(p.document_number.clone());
                }
            }
            JournalBody::FinanceRefused(r) => {
                let refused = r.business_key.as_ref().and_then(|k| self.bills.get_mut(k));
                if let Some(b) = refused.filter(|b| b.status == BillStatus::Requested) {
                    b.status = BillStatus::Refused;
                }
            }
            // A retry sends the refused bill again.
            JournalBody::ExceptionRetried(x) => {
                let supplier = self.supplier_ref().to_string();
                let retried = self.bills.values_mut().find(|b| {
                    b.status == BillStatus::Refused && keys::bill(&supplier, &b.bill.bill_number) == x.idempotency_key
                });
                if let Some(b) = retried {
                    b.status = BillStatus::Requested;
                }
            }
            _ => {}
        }
    }

    fn posting_mut(&mut self, posting_id: &str) -> Option<&mut Posting> {
        self.bill_of_posting_mut(posting_id).and_then(|b| b.posting.as_mut())
    }

    fn bill_of_posting_mut(&mut self, posting_id: &str) -> Option<&mut Bill> {
        let number = posting_id.strip_prefix(DocumentKind::VendorBill.posting_prefix())?;
        self.bills.get_mut(number)
    }

    /// The earliest approval SLA of a held bill not escalated yet.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.bills
            .values()
            .filter(|b| b.status == BillStatus::Held)
            .filter_map(|b| b.posting.as_ref())
            .filter(|p| !p.escalated && p.approved.is_none())
            .map(|p| p.sla_due_at)
            .min()
    }

    /// What is still open, in the order the watchdog reports it; `None` when nothing is.
    fn open_step(&self) -> Option<watch::Step> {
        let order = self.order.as_ref()?;
        if self.receipts.values().any(|r| r.status == ReceiptStatus::Requested) {
            return Some(watch::Step::ReceiptValidation);
        }
        let sent = |s: BillStatus| self.bills.values().any(|b| b.status == s);
        let credit_open = self
            .receipts
            .values()
            .any(|r| r.reversal.as_ref().is_some_and(|x| x.credit.is_some()) && r.credit_number.is_none());
        if sent(BillStatus::Requested) || credit_open {
            return Some(watch::Step::FinanceAnswer);
        }
        if sent(BillStatus::Refused) {
            return Some(watch::Step::FinanceRetry);
        }
        if sent(BillStatus::Held) {
            return Some(watch::Step::Approval);
        }
        let goods_due = !self.closed && order.lines.iter().any(|l| self.received(l.line_no) < l.quantity);
        if sent(BillStatus::Waiting) || goods_due {
            return Some(watch::Step::SupplierGoods);
        }
        let unbilled = order.lines.iter().any(|l| self.net_billed(l.line_no) < self.received(l.line_no));
        if unbilled {
            return Some(if sent(BillStatus::Rejected) {
                watch::Step::BillCorrection
            } else {
                watch::Step::SupplierBill
            });
        }
        None
    }

    fn describe(&self, step: watch::Step) -> Described {
        let po = self.po_ref().to_string();
        let supplier =
            self.order.as_ref().map_or(String::new(), |o| format!("{} ({})", o.supplier_name, o.supplier_ref));
        let list = |pick: &dyn Fn(&Bill) -> bool| -> String {
            let v: Vec<&str> = self.bills.values().filter(|b| pick(b)).map(|b| b.bill.bill_number.as_str()).collect();
            v.join(", ")
        };
        let (waiting_for, chase, subject) = match step {
            watch::Step::ReceiptValidation => {
                let open: Vec<&str> = self
                    .receipts
                    .iter()
                    .filter(|(_, r)| r.status == ReceiptStatus::Requested)
                    .map(|(id, _)| id.as_str())
                    .collect();
                (
                    format!("Odoo to validate receipt(s) {}", open.join(", ")),
                    "check the receipt in Odoo (Inventory ▸ Receipts)",
                    SourceRef::new(System::Odoo, open.first().map_or(po.clone(), |x| x.to_string())),
                )
            }
            watch::Step::FinanceAnswer => (
                format!(
                    "finance's answer to bill(s) {} or a vendor credit note",
                    list(&|b| b.status == BillStatus::Requested)
                ),
                "chase finance",
                SourceRef::new(System::Finance, po.clone()),
            ),
            watch::Step::FinanceRetry => (
                format!("a retry of bill(s) {} that finance refused", list(&|b| b.status == BillStatus::Refused)),
                "fix it in finance and retry the posting",
                SourceRef::new(System::Finance, po.clone()),
            ),
            watch::Step::Approval => (
                format!("an approver's decision on bill(s) {}", list(&|b| b.status == BillStatus::Held)),
                "ask an approver to decide it",
                SourceRef::new(System::Waybill, po.clone()),
            ),
            watch::Step::SupplierGoods => {
                let order = self.order.as_ref().expect("open_step needs the order");
                let short: Vec<String> = order
                    .lines
                    .iter()
                    .filter(|l| self.received(l.line_no) < l.quantity)
                    .map(|l| {
                        format!("line {} {}: {} of {} received", l.line_no, l.sku, self.received(l.line_no), l.quantity)
                    })
                    .collect();
                (
                    format!("the rest of the goods from {supplier} ({})", short.join("; ")),
                    "chase the supplier, or close the order in Odoo if nothing more will come",
                    SourceRef::new(System::Odoo, po.clone()),
                )
            }
            watch::Step::BillCorrection => (
                format!(
                    "a corrected bill from {supplier} for what was received (bill(s) {} rejected)",
                    list(&|b| b.status == BillStatus::Rejected)
                ),
                "ask the supplier for a corrected invoice",
                SourceRef::new(System::Finance, po.clone()),
            ),
            _ => (
                format!("the bill from {supplier} for the goods received"),
                "ask the supplier for their invoice",
                SourceRef::new(System::Finance, po.clone()),
            ),
        };
        Described { saga: format!("purchase order {po}"), waiting_for, chase, subject }
    }
}

impl Saga for Procurement {
    fn kind(&self) -> SagaKind {
        Self::KIND
    }
    fn book(&self) -> &SagaBook {
        &self.book
    }
    fn apply(&mut self, event: &JournalEvent) {
        Procurement::apply(self, event)
    }
    fn is_started(&self) -> bool {
        self.order.is_some()
    }
    fn status(&self) -> String {
        match self.open_step() {
            Some(watch::Step::ReceiptValidation) => "receiving",
            Some(watch::Step::SupplierGoods) => "waiting-for-goods",
            Some(watch::Step::Approval) => "bill-held",
            Some(watch::Step::FinanceAnswer | watch::Step::FinanceRetry) => "billing",
            Some(_) => "waiting-for-bill",
            None if self.book.is_finished() => "completed",
            None => "open",
        }
        .to_string()
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        Procurement::next_deadline(self)
    }
    fn on_timer(&self, _env: &crate::flow::Env<'_>, now: Timestamp) -> Decision {
        bill::on_timer(self, now)
    }
    fn watchdog(&self) -> Option<Wait> {
        let since = watch::unwatched(&self.book, self.next_deadline())?;
        Some(watch::wait(since, self.open_step()?))
    }
    fn fire_watchdog(&self, d: &mut Decision, saga_id: &str, now: Timestamp) {
        if let Some(w) = self.watchdog().filter(|w| now >= w.due_at) {
            watch::raise(d, saga_id, &self.book, self.describe(w.step), now);
        }
    }
    fn retry(&self, exception_id: &str) -> Result<Outbound, String> {
        retry(self, exception_id)
    }
    fn reissue(&self, key: &str) -> Option<Result<Outbound, String>> {
        reissue(self, key)
    }
    fn lifecycle(&self, body: &JournalBody) -> Option<Lifecycle> {
        crate::saga::lifecycle(body, matches!(body, JournalBody::PurchaseOpened(_)), false)
    }
    fn settle(&self, _key: &str, decision: &mut Decision) {
        crate::outcome::close_answered(decision, &self.book, |j| answers(self, j));
    }
}

/// The command key a journal event answers (its arrival closes the command's
/// `DELIVERY_FAILED` exception).
fn answers(s: &Procurement, body: &JournalBody) -> Option<String> {
    match body {
        JournalBody::ReceiptConfirmed(v) => Some(keys::receipt(&v.receipt_id)),
        JournalBody::BillRecorded(p) => Some(keys::bill(s.supplier_ref(), &p.bill_number)),
        JournalBody::VendorCreditRecorded(c) => Some(keys::vendor_credit(&c.receipt_id)),
        _ => None,
    }
}

/// Rebuilds the command this saga issued under `key`, exactly as first sent.
pub fn reissue(s: &Procurement, key: &str) -> Option<Result<Outbound, String>> {
    let po = s.po_ref();
    if let Some(id) = key.strip_prefix("receipt:") {
        let r = s.receipts.get(id)?;
        return Some(Ok(validate_receipt(po, &r.receipt)));
    }
    if let Some(id) = key.strip_prefix("rtv:") {
        let r = s.receipts.get(id).filter(|r| r.status == ReceiptStatus::Reversed)?;
        return Some(Ok(return_to_vendor(po, &r.receipt)));
    }
    if let Some(id) = key.strip_prefix("vcn:") {
        let credit = s.receipts.get(id)?.reversal.as_ref()?.credit.clone()?;
        return Some(Ok(Outbound {
            target: System::Finance,
            idempotency_key: key.to_string(),
            body: CommandBody::IssueVendorCreditNote(credit),
        }));
    }
    let b = s.bills.values().find(|b| keys::bill(s.supplier_ref(), &b.bill.bill_number) == key)?;
    let sent = matches!(b.status, BillStatus::Requested | BillStatus::Posted | BillStatus::Refused);
    sent.then(|| Ok(bill::post_vendor_bill(s.supplier_ref(), &b.bill)))
}

fn validate_receipt(po_ref: &str, r: &GoodsReceipt) -> Outbound {
    Outbound {
        target: System::Odoo,
        idempotency_key: keys::receipt(&r.receipt_id),
        body: CommandBody::ValidateReceipt(ReceiptPosting {
            po_ref: po_ref.to_string(),
            receipt_id: r.receipt_id.clone(),
            lines: r.lines.clone(),
        }),
    }
}

fn return_to_vendor(po_ref: &str, r: &GoodsReceipt) -> Outbound {
    Outbound {
        target: System::Odoo,
        idempotency_key: keys::return_to_vendor(&r.receipt_id),
        body: CommandBody::ReturnToVendor(ReceiptPosting {
            po_ref: po_ref.to_string(),
            receipt_id: r.receipt_id.clone(),
            lines: r.lines.clone(),
        }),
    }
}

/// What an operator's retry of an exception re-issues: a refused command as first sent
/// (a `DELIVERY_FAILED`, or the bill finance refused). A held bill waits for an
/// approver, a receipt mismatch for the supplier: neither has a command to re-issue.
pub fn retry(s: &Procurement, exception_id: &str) -> Result<Outbound, String> {
    let Some(category) = s.book.open_exceptions.get(exception_id) else {
        return Err(book::not_open(&s.book, exception_id));
    };
    let subject = s.book.subjects.get(exception_id).map(|x| x.id.clone()).unwrap_or_default();
    match category {
        ExceptionCategory::DeliveryFailed => reissue(s, &subject).unwrap_or_else(|| {
            Err(format!("exception {exception_id} names command {subject:?}, which this saga never issued; resolve it with a note"))
        }),
        ExceptionCategory::PostingRejected => match s.bills.get(&subject) {
            Some(b) if b.status == BillStatus::Refused => Ok(bill::post_vendor_bill(s.supplier_ref(), &b.bill)),
            Some(b) if b.status == BillStatus::Rejected => Err(format!(
                "bill {subject} was rejected by an approver; a retry would post it without approval — ask the supplier for a corrected invoice, then resolve this exception"
            )),
            _ => Err(format!(
                "exception {exception_id} has no command to re-issue in the bill's current state; resolve it with a note"
            )),
        },
        ExceptionCategory::ApprovalOverdue => Err(format!(
            "exception {exception_id} waits for an approver, not for a system: decide posting {subject} (`waybill approvals show {subject}`)"
        )),
        ExceptionCategory::ReceiptMismatch => Err(format!(
            "exception {exception_id} has no command to re-issue: settle the difference with the supplier (a credit, a replacement delivery) and resolve it with a note"
        )),
        other => Err(format!(
            "exception {exception_id} ({other}) has no command to re-issue; fix the cause and resolve it with a note"
        )),
    }
}

/// The flow of one purchase order: its procure-to-receive saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseFlow {
    /// The correlation key, `po:<purchase order>`.
    pub key: String,
    /// The saga.
    pub procurement: Procurement,
}

/// The one saga of a purchase order's flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase;

impl PurchaseFlow {
    fn po_ref(&self) -> &str {
        self.key.strip_prefix("po:").unwrap_or(&self.key)
    }
}

impl Flow for PurchaseFlow {
    type Target = Purchase;

    const FAMILY: &'static str = "purchase order";

    fn owns(key: &str) -> bool {
        key.starts_with("po:")
    }

    fn create(key: &str) -> Self {
        PurchaseFlow { key: key.to_string(), procurement: Procurement::default() }
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn entity(&self) -> Option<&str> {
        self.procurement.order.as_ref().and_then(|o| o.company.as_deref())
    }

    fn targets(&self) -> Vec<Purchase> {
        vec![Purchase]
    }

    fn saga_id(&self, _target: &Purchase) -> String {
        Procurement::saga_id(self.po_ref())
    }

    fn saga(&self, _target: &Purchase) -> Option<&dyn Saga> {
        Some(&self.procurement)
    }

    fn saga_mut(&mut self, _target: &Purchase) -> &mut dyn Saga {
        &mut self.procurement
    }

    fn target_of(&self, saga_id: &str) -> Option<Purchase> {
        (saga_id == Procurement::saga_id(self.po_ref())).then_some(Purchase)
    }

    fn target_of_event(&self, event: &JournalEvent) -> Option<Purchase> {
        (event.meta.kind == SagaKind::PurchaseToReceive).then_some(Purchase)
    }

    fn home(&self) -> Purchase {
        Purchase
    }

    fn takes_actions(&self) -> bool {
        self.procurement.order.is_some()
    }

    fn not_begun(&self) -> Option<String> {
        self.procurement
            .order
            .is_none()
            .then(|| format!("purchase order {:?}, which Waybill has not seen confirmed", self.po_ref()))
    }

    fn route(&mut self, event: &InboundEvent, env: &Env<'_>, cause: &Cause, out: &mut Step) {
        let decision = decide(&self.procurement, self.po_ref(), event, env, cause);
        commit(self, &Purchase, decision, cause, out);
    }
}

/// Decides an inbound event for a purchase order's saga.
fn decide(s: &Procurement, po_ref: &str, event: &InboundEvent, env: &Env<'_>, cause: &Cause) -> Decision {
    if s.book.seen.contains(&event.meta.event_id) {
        return Decision::noop(); // a redelivery
    }
    let named = match &event.body {
        EventBody::PurchaseOrderConfirmed(o) => Some(o.po_ref.as_str()),
        EventBody::PurchaseOrderClosed(c) => Some(c.po_ref.as_str()),
        EventBody::ShipNoticeReceived(n) => Some(n.po_ref.as_str()),
        EventBody::GoodsReceived(r) => Some(r.po_ref.as_str()),
        EventBody::ReceiptValidated(v) => Some(v.po_ref.as_str()),
        EventBody::ReceiptCancelled(c) => Some(c.po_ref.as_str()),
        EventBody::VendorBillReceived(b) => Some(b.po_ref.as_str()),
        EventBody::VendorBillPosted(p) => Some(p.po_ref.as_str()),
        EventBody::VendorBillRejected(r) => Some(r.po_ref.as_str()),
        EventBody::VendorCreditNoteIssued(c) => Some(c.po_ref.as_str()),
        // The control plane names the posting's flow by its key.
        EventBody::PostingApproved(d) | EventBody::PostingRejected(d) => {
            Some(d.order_ref.strip_prefix("po:").unwrap_or(&d.order_ref))
        }
        _ => None,
    };
    if let Some(named) = named.filter(|n| *n != po_ref) {
        return reject(format!(
            "{} names purchase order {named:?} but is keyed {:?}; key it po:{named}",
            event.body.name(),
            event.meta.correlation_key
        ));
    }
    if s.order.is_none() && !matches!(event.body, EventBody::PurchaseOrderConfirmed(_)) {
        return reject(format!(
            "{} for purchase order {po_ref:?}, which Waybill has not seen confirmed; confirm the order in Odoo first, then replay this record from the dead-letter topic",
            event.body.name()
        ));
    }
    let requested_by = crate::approval::requester(&event.meta);
    let mut d = match &event.body {
        EventBody::PurchaseOrderConfirmed(o) => receive::on_confirmed(s, o, env),
        EventBody::PurchaseOrderClosed(c) => receive::on_closed(s, c),
        EventBody::ShipNoticeReceived(n) => receive::on_notice(s, n),
        EventBody::GoodsReceived(r) => receive::on_receipt(s, r, env),
        EventBody::ReceiptValidated(v) => receive::on_validated(s, v),
        EventBody::ReceiptCancelled(c) => receive::on_cancelled(s, c),
        EventBody::VendorCreditNoteIssued(c) => receive::on_credited(s, c),
        EventBody::VendorBillReceived(b) => bill::on_bill(s, b),
        EventBody::VendorBillPosted(p) => bill::on_posted(s, p),
        EventBody::VendorBillRejected(r) => bill::on_refused(s, &r.bill_number, &r.reason),
        EventBody::PostingApproved(a) => bill::on_decision(s, a, &env.policy.posting, true),
        EventBody::PostingRejected(r) => bill::on_decision(s, r, &env.policy.posting, false),
        EventBody::CommandFailed(f) => bill::on_command_failed(s, f),
        other => Decision::reject(
            DeadLetterKind::Rule,
            format!(
                "{} keyed {:?}, which is a purchase order's key; only procure-to-receive events belong to it",
                other.name(),
                event.meta.correlation_key
            ),
        ),
    };
    if d.dead_letter.is_none() {
        // What the decision changed may let waiting bills match, or the order complete.
        bill::settle(s, &mut d, env, &requested_by, cause.at);
    }
    d
}
