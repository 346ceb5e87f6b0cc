//! Saga journal events: the record of every saga decision. The journal topic is the
//! changelog of saga state: folding a saga's journal events in sequence order rebuilds
//! its state exactly. Each is one Avro record `waybill.journal.<Name>` with
//! [`JournalMeta`] in `meta` and the event in `data`.
//!
//! The journal also carries [`Checkpoint`] records: after each batch the coordinator
//! names the input positions the batch covered, so a new owner of a partition finds its
//! resume point in the journal alone (DESIGN.md, invariant 2).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cash::{StatementEntry, StatementLinePosted, StatementReceived};
use crate::command::{BackorderLine, InvoiceLine};
use crate::event::{GoodsIssued, LineReservation, OrderReleased, PickConfirmed, ReturnAuthorized, ReturnReceived};
use crate::purchase::{
    BillMatch, GoodsReceipt, PurchaseOrderClosed, PurchaseOrderConfirmed, ReceiptReversal, ReceiptValidated,
    ShipNotice, VendorBill, VendorBillPosted, VendorCreditIssued,
};
use crate::reconcile::StockReconciliation;
use crate::value::{Money, SourceRef, Timestamp};

/// The kinds of saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaKind {
    /// Order released → reservation → warehouse → pick → goods issue → carrier → POD.
    OrderToFulfillment,
    /// Goods issued → invoice readiness → (held posting → approval) → invoice posted.
    ShipToInvoice,
    /// Return authorised → received → credit note → stock adjustment.
    ReturnsCredit,
    /// One per command target: is the system answering? Keyed by `target:<system>`, not
    /// by an order.
    TargetHealth,
    /// Purchase order confirmed → advance shipping notice → receipts → three-way-matched
    /// vendor bills. Keyed by `po:<purchase order>`.
    PurchaseToReceive,
    /// A bank statement's lines applied to invoices, one journal entry each. Keyed by
    /// `stmt:<statement>`.
    CashApplication,
    /// One reconciliation subject (a product's stock) compared run after run with its
    /// system of record. Keyed by `recon:<kind>:<subject>`.
    Reconciliation,
}

impl SagaKind {
    /// Short prefix used in saga ids.
    pub const fn prefix(self) -> &'static str {
        match self {
            SagaKind::OrderToFulfillment => "o2f",
            SagaKind::ShipToInvoice => "s2i",
            SagaKind::ReturnsCredit => "ret",
            SagaKind::TargetHealth => "tgt",
            SagaKind::PurchaseToReceive => "p2r",
            SagaKind::CashApplication => "cash",
            SagaKind::Reconciliation => "rec",
        }
    }

    /// The saga id for `kind` and a business key: `o2f:SO0042`.
    pub fn saga_id(self, key: &str) -> String {
        format!("{}:{key}", self.prefix())
    }
}

impl fmt::Display for SagaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SagaKind::OrderToFulfillment => "order-to-fulfillment",
            SagaKind::ShipToInvoice => "ship-to-invoice",
            SagaKind::ReturnsCredit => "returns-credit",
            SagaKind::TargetHealth => "target-health",
            SagaKind::PurchaseToReceive => "purchase-to-receive",
            SagaKind::CashApplication => "cash-application",
            SagaKind::Reconciliation => "reconciliation",
        })
    }
}

/// What went wrong, in business terms; the workbench groups exceptions by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExceptionCategory {
    /// Unknown SKU, unit-of-measure mismatch, missing tax code, unknown customer.
    MasterData,
    /// Stock could not be reserved in full; the rest is backordered.
    StockShortage,
    /// The warehouse did not confirm a pick in time.
    PickOverdue,
    /// A pick or shipment does not match the order (over-pick, missing lot, unknown line).
    PickMismatch,
    /// A cancellation arrived after the goods left.
    LateCancellation,
    /// An inbound record could not be decoded or broke a rule; it is in the dead-letter topic.
    BadInput,
    /// A held posting was rejected, or finance refused a document.
    PostingRejected,
    /// A return does not match what was shipped.
    ReturnMismatch,
    /// Anything else.
    Other,
    /// A held posting waited past its approval SLA.
    ApprovalOverdue,
    /// A saga waited too long for its next step (a reservation answer, a goods issue,
    /// a proof of delivery, finance's answer, returned goods) with nothing else open
    /// that says so.
    StepOverdue,
    /// A target system refused a command (or its connector gave up delivering it); fix
    /// the cause in that system, then retry the exception to send the same command again.
    DeliveryFailed,
    /// A target system has not answered for longer than its connector allows; commands
    /// wait in its topic and the exception closes when it answers again.
    TargetUnavailable,
    /// A receipt does not match its purchase order or notice (over- or under-receipt
    /// beyond the supplier's tolerance, damaged goods, an unknown line or lot).
    ReceiptMismatch,
    /// A statement line could not be applied to open invoices (no reference, ambiguous,
    /// another currency, money out): someone applies it by hand.
    UnmatchedPayment,
    /// What a system of record holds differs from what Waybill expects beyond tolerance
    /// (a product's stock at the warehouse).
    ReconciliationMismatch,
}

impl ExceptionCategory {
    /// Every category, for reports.
    pub const ALL: [ExceptionCategory; 16] = [
        ExceptionCategory::MasterData,
        ExceptionCategory::StockShortage,
        ExceptionCategory::PickOverdue,
        ExceptionCategory::PickMismatch,
        ExceptionCategory::LateCancellation,
        ExceptionCategory::BadInput,
        ExceptionCategory::PostingRejected,
        ExceptionCategory::ReturnMismatch,
        ExceptionCategory::Other,
        ExceptionCategory::ApprovalOverdue,
        ExceptionCategory::StepOverdue,
        ExceptionCategory::DeliveryFailed,
        ExceptionCategory::TargetUnavailable,
        ExceptionCategory::ReceiptMismatch,
        ExceptionCategory::UnmatchedPayment,
        ExceptionCategory::ReconciliationMismatch,
    ];

    /// Lowercase name, for tables and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExceptionCategory::MasterData => "master-data",
            ExceptionCategory::StockShortage => "stock-shortage",
            ExceptionCategory::PickOverdue => "pick-overdue",
            ExceptionCategory::PickMismatch => "pick-mismatch",
            ExceptionCategory::LateCancellation => "late-cancellation",
            ExceptionCategory::BadInput => "bad-input",
            ExceptionCategory::PostingRejected => "posting-rejected",
            ExceptionCategory::ReturnMismatch => "return-mismatch",
            ExceptionCategory::Other => "other",
            ExceptionCategory::ApprovalOverdue => "approval-overdue",
            ExceptionCategory::StepOverdue => "step-overdue",
            ExceptionCategory::DeliveryFailed => "delivery-failed",
            ExceptionCategory::TargetUnavailable => "target-unavailable",
            ExceptionCategory::ReceiptMismatch => "receipt-mismatch",
            ExceptionCategory::UnmatchedPayment => "unmatched-payment",
            ExceptionCategory::ReconciliationMismatch => "reconciliation-mismatch",
        }
    }
}

impl fmt::Display for ExceptionCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A position in an input topic partition: the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InputPosition {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the record, or for a checkpoint the next offset to read.
    pub offset: i64,
}

/// Fields every journal event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalMeta {
    /// Saga id, e.g. `o2f:SO0042`.
    pub saga_id: String,
    /// Saga kind.
    pub kind: SagaKind,
    /// Per-saga sequence number, from 1, without gaps. `(saga_id, seq)` identifies the
    /// event; a reader that has applied `seq` drops any later copy of it.
    pub seq: i64,
    /// The order this saga belongs to (the partition key).
    pub correlation_key: String,
    /// The inbound event id that caused it (or `timer:<name>` for timers).
    pub caused_by: String,
    /// Where the causing input was read, if it came from a topic.
    pub input: Option<InputPosition>,
    /// Decision time.
    pub at: Timestamp,
}

impl JournalMeta {
    /// The stable id of this journal event: `saga_id#seq`.
    pub fn event_id(&self) -> String {
        format!("{}#{}", self.saga_id, self.seq)
    }
}

/// A journal event with its common fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEvent {
    /// Common fields.
    pub meta: JournalMeta,
    /// The event.
    pub body: JournalBody,
}

/// Every saga journal event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalBody {
    /// The saga accepted the order; the order is copied so state is self-contained.
    OrderAccepted(OrderReleased),
    /// The order failed master-data checks and is on hold.
    MasterDataFailed(Problems),
    /// Stock reservation was requested.
    ReservationRequested(Empty),
    /// The warehouse reserved stock (with shortages per line).
    StockAllocated(Allocation),
    /// Short quantities were backordered in Odoo.
    Backordered(Backorder),
    /// Reserved lines were released to the warehouse; the pick is due by `due_at`.
    ReleaseRequested(ReleaseRequested),
    /// The warehouse accepted the release.
    WarehouseAccepted(WarehouseAccepted),
    /// A pick was confirmed.
    PickRecorded(PickConfirmed),
    /// The pick was not confirmed in time.
    PickOverdue(Deadline),
    /// Goods were issued.
    ShipmentRecorded(GoodsIssued),
    /// A carrier took the shipment.
    CarrierAssigned(CarrierAssigned),
    /// Proof of delivery received.
    DeliveryConfirmed(DeliveryConfirmed),
    /// The order was cancelled and compensations were issued.
    Cancelled(Cancelled),
    /// An exception was raised.
    ExceptionRaised(ExceptionRaised),
    /// An exception was resolved.
    ExceptionResolved(ExceptionResolved),
    /// The saga finished.
    Completed(Empty),
    // ---- ship to invoice ----
    /// The invoice of a shipment was computed.
    InvoiceDrafted(InvoiceDraft),
    /// A posting (invoice or credit note) was held for approval.
    PostingHeld(PostingHeld),
    /// An approver approved a held posting.
    PostingApproved(PostingOutcome),
    /// An approver rejected a held posting.
    PostingRejected(PostingOutcome),
    /// A held posting waited past its approval SLA.
    PostingEscalated(Deadline),
    /// A control action was refused (stale version, four-eyes, approval limit).
    ControlRefused(ControlRefusal),
    /// The invoice was sent to finance.
    InvoiceRequested(Empty),
    /// Finance posted the invoice.
    InvoiceRecorded(InvoiceRecorded),
    /// Finance refused a document.
    FinanceRefused(Refusal),
    // ---- returns and credit ----
    /// A return was authorised.
    ReturnOpened(ReturnAuthorized),
    /// Returned goods were received and checked.
    ReturnReceiptRecorded(ReturnReceived),
    /// The credit note of a receipt was computed.
    CreditNoteDrafted(CreditNoteDraft),
    /// The credit note was sent to finance.
    CreditNoteRequested(BusinessKey),
    /// Finance issued the credit note.
    CreditNoteRecorded(CreditNoteRecorded),
    /// The warehouse was asked to adjust stock for a receipt.
    StockAdjustmentRequested(BusinessKey),
    // ---- workbench ----
    /// An operator's retry re-issued the command of the failed step (same idempotency key).
    ExceptionRetried(ExceptionRetried),
    /// An operator's replay of the order's inbound events finished.
    SagaReplayed(SagaReplayed),
    /// An operator assigned an open exception to an owner (or to a new owner).
    ExceptionAssigned(ExceptionAssigned),
    // ---- procure to receive ----
    /// A purchase order was confirmed.
    PurchaseOpened(PurchaseOrderConfirmed),
    /// A purchase order was closed: nothing more will be received.
    PurchaseClosed(PurchaseOrderClosed),
    /// An advance shipping notice was recorded.
    ShipNoticeRecorded(ShipNotice),
    /// A receipt was checked against the order and its notice and recorded; Odoo was
    /// asked to validate it.
    ReceiptRecorded(GoodsReceipt),
    /// Odoo validated a receipt.
    ReceiptConfirmed(ReceiptValidated),
    /// A cancelled receipt was reversed (and credited, when it had been billed).
    ReceiptReversed(ReceiptReversal),
    /// A vendor bill arrived; it waits for its goods, or is matched at once.
    BillReceived(VendorBill),
    /// A vendor bill was matched three ways within tolerance (or approved) and sent to
    /// finance.
    BillMatched(BillMatch),
    /// Finance posted a vendor bill.
    BillRecorded(VendorBillPosted),
    /// Finance issued a vendor credit note.
    VendorCreditRecorded(VendorCreditIssued),
    // ---- cash application ----
    /// A statement was imported, with the receivables open then.
    StatementOpened(Box<StatementReceived>),
    /// A statement line was applied (to invoices, or as a charge) and sent to finance.
    LineApplied(StatementEntry),
    /// Finance posted a statement line's journal entry.
    LineRecorded(StatementLinePosted),
    /// A statement waits for cash application's next scheduled window.
    ApplicationScheduled(Deadline),
    // ---- reconciliation ----
    /// An observation of a product's stock set its baseline, found a mismatch, saw the
    /// systems agree again, or was accepted by an operator.
    StockReconciled(StockReconciliation),
    // ---- every flow ----
    /// A finished flow's retention passed: the coordinator forgets its state (the last
    /// record of this incarnation of the correlation key; a later input for the key is
    /// decided as for a key never seen).
    FlowRetired(FlowRetired),
}

impl JournalBody {
    /// The legal entity a record that opens a flow resolved (an order's or purchase
    /// order's company, a statement's entity); `None` for every other record.
    pub fn opened_entity(&self) -> Option<&str> {
        match self {
            JournalBody::OrderAccepted(o) => o.company.as_deref(),
            JournalBody::PurchaseOpened(p) => p.company.as_deref(),
            JournalBody::StatementOpened(s) => s.entity.as_deref(),
            _ => None,
        }
    }

    /// The Avro record name (without namespace) of this event.
    pub const fn name(&self) -> &'static str {
        match self {
            JournalBody::OrderAccepted(_) => "OrderAccepted",
            JournalBody::MasterDataFailed(_) => "MasterDataFailed",
            JournalBody::ReservationRequested(_) => "ReservationRequested",
            JournalBody::StockAllocated(_) => "StockAllocated",
            JournalBody::Backordered(_) => "Backordered",
            JournalBody::ReleaseRequested(_) => "ReleaseRequested",
            JournalBody::WarehouseAccepted(_) => "WarehouseAccepted",
            JournalBody::PickRecorded(_) => "PickRecorded",
            JournalBody::PickOverdue(_) => "PickOverdue",
            JournalBody::ShipmentRecorded(_) => "ShipmentRecorded",
            JournalBody::CarrierAssigned(_) => "CarrierAssigned",
            JournalBody::DeliveryConfirmed(_) => "DeliveryConfirmed",
            JournalBody::Cancelled(_) => "Cancelled",
            JournalBody::ExceptionRaised(_) => "ExceptionRaised",
            JournalBody::ExceptionResolved(_) => "ExceptionResolved",
            JournalBody::Completed(_) => "Completed",
            JournalBody::InvoiceDrafted(_) => "InvoiceDrafted",
            JournalBody::PostingHeld(_) => "PostingHeld",
            JournalBody::PostingApproved(_) => "PostingApproved",
            JournalBody::PostingRejected(_) => "PostingRejected",
            JournalBody::PostingEscalated(_) => "PostingEscalated",
            JournalBody::ControlRefused(_) => "ControlRefused",
            JournalBody::InvoiceRequested(_) => "InvoiceRequested",
            JournalBody::InvoiceRecorded(_) => "InvoiceRecorded",
            JournalBody::FinanceRefused(_) => "FinanceRefused",
            JournalBody::ReturnOpened(_) => "ReturnOpened",
            JournalBody::ReturnReceiptRecorded(_) => "ReturnReceiptRecorded",
            JournalBody::CreditNoteDrafted(_) => "CreditNoteDrafted",
            JournalBody::CreditNoteRequested(_) => "CreditNoteRequested",
            JournalBody::CreditNoteRecorded(_) => "CreditNoteRecorded",
            JournalBody::StockAdjustmentRequested(_) => "StockAdjustmentRequested",
            JournalBody::ExceptionRetried(_) => "ExceptionRetried",
            JournalBody::SagaReplayed(_) => "SagaReplayed",
            JournalBody::ExceptionAssigned(_) => "ExceptionAssigned",
            JournalBody::PurchaseOpened(_) => "PurchaseOpened",
            JournalBody::PurchaseClosed(_) => "PurchaseClosed",
            JournalBody::ShipNoticeRecorded(_) => "ShipNoticeRecorded",
            JournalBody::ReceiptRecorded(_) => "ReceiptRecorded",
            JournalBody::ReceiptConfirmed(_) => "ReceiptConfirmed",
            JournalBody::ReceiptReversed(_) => "ReceiptReversed",
            JournalBody::BillReceived(_) => "BillReceived",
            JournalBody::BillMatched(_) => "BillMatched",
            JournalBody::BillRecorded(_) => "BillRecorded",
            JournalBody::VendorCreditRecorded(_) => "VendorCreditRecorded",
            JournalBody::StatementOpened(_) => "StatementOpened",
            JournalBody::LineApplied(_) => "LineApplied",
            JournalBody::LineRecorded(_) => "LineRecorded",
            JournalBody::ApplicationScheduled(_) => "ApplicationScheduled",
            JournalBody::StockReconciled(_) => "StockReconciled",
            JournalBody::FlowRetired(_) => "FlowRetired",
        }
    }
}

/// No fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Empty {}

/// Master-data problems found in an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problems {
    /// One readable line per problem.
    pub problems: Vec<String>,
}

/// Stock allocation per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Per line.
    pub lines: Vec<LineReservation>,
}

/// Quantities backordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backorder {
    /// Lines.
    pub lines: Vec<BackorderLine>,
}

/// Release to the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequested {
    /// When the pick confirmation is due.
    pub due_at: Timestamp,
}

/// The warehouse's acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseAccepted {
    /// The warehouse's own order id.
    pub wms_order_id: String,
}

/// A finished flow was retired once its retention passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRetired {
    /// When its last saga last changed: the retention counts from here.
    pub finished_at: Timestamp,
    /// The retention that passed, in seconds (`[coordinator] retire_finished_after_days`).
    pub retention_secs: i64,
}

/// A deadline that passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// When it was due.
    pub due_at: Timestamp,
}

/// Carrier assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierAssigned {
    /// Shipment.
    pub shipment_id: String,
    /// Carrier code.
    pub carrier: String,
    /// Tracking reference.
    pub tracking_ref: String,
}

/// Proof of delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryConfirmed {
    /// Shipment.
    pub shipment_id: String,
    /// Who signed.
    pub signed_by: Option<String>,
}

/// Cancellation with the compensations issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// Reason from Odoo.
    pub reason: String,
    /// Idempotency keys of the compensating commands issued.
    pub compensations: Vec<String>,
}

/// An exception for the workbench.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRaised {
    /// Stable id: `<saga id>/<category>/<n>`.
    pub exception_id: String,
    /// Category.
    pub category: ExceptionCategory,
    /// What is wrong and what to do, in business terms.
    pub message: String,
    /// The record the exception is about.
    pub subject: SourceRef,
    /// The legal entity of the record the exception is about; `None` for records of no
    /// entity (a system's health, stock) or when no entities are configured (stamped
    /// when the flow commits it).
    pub entity: Option<String>,
}

/// An exception was resolved (automatically or by an operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionResolved {
    /// The exception.
    pub exception_id: String,
    /// How it was resolved.
    pub resolution: String,
}

/// Which document a posting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DocumentKind {
    /// A customer invoice.
    Invoice,
    /// A credit note.
    CreditNote,
    /// A supplier's invoice (vendor bill).
    VendorBill,
}

impl DocumentKind {
    /// The prefix of the posting ids of this document: `inv:`, `cn:`, `bill:`.
    pub const fn posting_prefix(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "inv:",
            DocumentKind::CreditNote => "cn:",
            DocumentKind::VendorBill => "bill:",
        }
    }

    /// The document a posting id is of, by its prefix.
    pub fn of_posting(posting_id: &str) -> Option<DocumentKind> {
        [DocumentKind::Invoice, DocumentKind::CreditNote, DocumentKind::VendorBill]
            .into_iter()
            .find(|d| posting_id.starts_with(d.posting_prefix()))
    }
}

/// An invoice as computed for one shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceDraft {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment id (one invoice per shipment).
    pub business_key: String,
    /// Customer.
    pub customer_ref: String,
    /// Currency.
    pub currency: String,
    /// Lines: shipped quantities at the order's prices.
    pub lines: Vec<InvoiceLine>,
    /// Net total, minor units.
    pub total: Money,
}

/// A posting held for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingHeld {
    /// `inv:<shipment>` or `cn:<receipt>`.
    pub posting_id: String,
    /// Invoice or credit note.
    pub document: DocumentKind,
    /// Shipment id or return receipt id.
    pub business_key: String,
    /// Why the policy held it.
    pub reasons: Vec<String>,
    /// Amount, minor units.
    pub amount: Money,
    /// Version an approver must name.
    pub version: i64,
    /// Who requested it (may not approve it).
    pub requested_by: String,
    /// When it is escalated if undecided.
    pub sla_due_at: Timestamp,
    /// The legal entity whose posting policy held it and whose approval limits apply;
    /// `None` when no entities are configured (stamped when the flow commits it).
    pub entity: Option<String>,
    /// ISO 4217 currency of the amount.
    pub currency: Option<String>,
}

/// An approver's decision as the saga accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingOutcome {
    /// Posting.
    pub posting_id: String,
    /// The posting's version after the decision.
    pub version: i64,
    /// Who decided.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// Their reason or note.
    pub reason: String,
}

/// A control action the saga refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRefusal {
    /// What it concerned: the posting (`approve`, `reject`), the exception (`retry`,
    /// `resolve`, `assign`, `assign-line`; `line <id>` for a statement line named without
    /// its exception) or the saga (`replay`).
    pub posting_id: String,
    /// `approve`, `reject`, `retry`, `resolve`, `assign`, `assign-line` or `replay`.
    pub action: String,
    /// Who asked.
    pub actor: String,
    /// Why it was refused and what to do.
    pub reason: String,
}

/// Finance's acknowledgement of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceRecorded {
    /// Document number.
    pub document_number: String,
    /// Amount posted.
    pub amount: Money,
}

/// A refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Why.
    pub reason: String,
    /// The document refused: the shipment of an invoice, the receipt of a credit note.
    /// `None` in records written before `FinanceRefused` v3.
    #[serde(default)]
    pub business_key: Option<String>,
}

/// A business key (receipt id, shipment id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessKey {
    /// The key.
    pub key: String,
}

/// A credit note as computed for one return receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteDraft {
    /// Original sale order name.
    pub order_ref: String,
    /// Return receipt (one credit note per receipt).
    pub receipt_id: String,
    /// The invoice credited.
    pub invoice_number: String,
    /// Lines at the invoiced price.
    pub lines: Vec<InvoiceLine>,
    /// Restocking fee deducted, minor units.
    pub restocking_fee: Money,
    /// Net credit, minor units.
    pub total: Money,
}

/// Finance's acknowledgement of a credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteRecorded {
    /// Receipt credited.
    pub receipt_id: String,
    /// Credit note number.
    pub document_number: String,
    /// Amount credited.
    pub amount: Money,
}

/// An operator's retry: the failed step's command was sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRetried {
    /// The exception retried (it stays open until the saga's progress closes it).
    pub exception_id: String,
    /// Idempotency key of the re-issued command (the original's).
    pub idempotency_key: String,
    /// Who asked.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// Their note.
    pub note: String,
}

/// An exception's assignment to an owner, as the saga accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionAssigned {
    /// The exception assigned (it stays open; assigning changes only who works it).
    pub exception_id: String,
    /// The new owner: a person or team identity.
    pub owner: String,
    /// The owner before, when it was assigned already (a reassignment).
    #[serde(default)]
    pub previous_owner: Option<String>,
    /// Who assigned it.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// Their note (may be empty).
    pub note: String,
}

/// An operator's replay of an order's inbound events, as the saga carried it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaReplayed {
    /// The saga the operator named.
    pub saga_id: String,
    /// Who asked.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// Records replayed.
    pub inputs: i32,
    /// Records that changed something (the others had been applied already).
    pub applied: i32,
    /// Idempotency keys of the commands the replay issued.
    pub commands: Vec<String>,
    /// Records still refused, each with the reason.
    pub refused: Vec<String>,
}

/// The coordinator's record that one batch is complete: its journal events (the range
/// `journal_from..journal_until` of this journal partition) and every command and dead
/// letter of its inputs are in the log, and the input positions it names are covered.
/// Written once per processed batch, after the batch's other records.
///
/// A journal event that no checkpoint's range covers belongs to a batch cut short (a
/// crash on a backend without atomic batches); every reader of the journal discards it,
/// and the batch's inputs are decided again. A checkpoint without a range (written
/// before ranges existed, or by a backend whose batches are atomic) covers every
/// journal event since the previous checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Journal partition (equal to the input partition: topics are co-partitioned).
    pub partition: i32,
    /// Next offset to read, per input topic.
    pub positions: Vec<InputPosition>,
    /// When the batch was written.
    pub at: Timestamp,
    /// Offset of the batch's first journal event (with `journal_until`: the range the
    /// checkpoint covers; both `None` when it names no range).
    #[serde(default)]
    pub journal_from: Option<i64>,
    /// One past the offset of the batch's last journal event (`journal_from` when the
    /// batch wrote no journal event).
    #[serde(default)]
    pub journal_until: Option<i64>,
}

impl Checkpoint {
    /// Whether the journal event at `offset`, read after the previous checkpoint of its
    /// partition and before this one, belongs to this checkpoint's batch. Events that do
    /// not are the remains of a batch cut short: discard them.
    pub fn covers(&self, offset: i64) -> bool {
        match (self.journal_from, self.journal_until) {
            (Some(from), Some(until)) => (from..until).contains(&offset),
            _ => true,
        }
    }
}
