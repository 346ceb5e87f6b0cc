//! Inbound business events: what Odoo, the warehouse, carriers, finance and operators
//! tell Waybill. Each is one Avro record `waybill.event.<Name>` with the common
//! [`EventMeta`] in field `meta` and the event's own fields in `data`.

use serde::{Deserialize, Serialize};

use crate::cash::{LineAssignment, StatementLinePosted, StatementLineRejected, StatementReceived};
use crate::purchase::{
    GoodsReceipt, PurchaseOrderClosed, PurchaseOrderConfirmed, ReceiptCancelled, ReceiptValidated, ShipNotice,
    VendorBill, VendorBillPosted, VendorBillRejected, VendorCreditIssued,
};
use crate::reconcile::StockObserved;
use crate::value::{Money, Qty, SourceRef, System, Timestamp};

/// Fields every inbound event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// Unique id of this event, assigned by the sender. A redelivery carries the same id.
    pub event_id: String,
    /// The originating system and its id for the record this event is about.
    pub source: SourceRef,
    /// The key that routes the event to its saga: the Odoo sale order name.
    pub correlation_key: String,
    /// When it happened at the source.
    pub occurred_at: Timestamp,
    /// Who acted at the source: the person or service identity that caused this event.
    /// Through HTTP ingestion it is the identity Waybill authenticated (a body naming
    /// anyone else is refused); on a Kafka inbound topic it is the producer's claim,
    /// which can only restrict (a held posting's requester may not approve it), never
    /// grant. `None` when the producer named nobody.
    #[serde(default)]
    pub actor: Option<String>,
}

/// An inbound event: common fields plus the event itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// Common fields.
    pub meta: EventMeta,
    /// The event.
    pub body: EventBody,
}

/// Every inbound event Waybill understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    // ---- order to fulfillment ----
    /// Odoo confirmed a sale order and released it for fulfilment.
    OrderReleased(OrderReleased),
    /// The warehouse answered a reservation request: reserved and short per line.
    StockReserved(StockReserved),
    /// The warehouse accepted the release of an order for picking.
    ReleasedToWarehouse(ReleasedToWarehouse),
    /// The warehouse confirmed a (possibly partial) pick.
    PickConfirmed(PickConfirmed),
    /// Goods left the warehouse as a shipment.
    GoodsIssued(GoodsIssued),
    /// A carrier accepted a shipment.
    CarrierBooked(CarrierBooked),
    /// Proof of delivery.
    Delivered(Delivered),
    /// The order was cancelled in Odoo.
    OrderCancelled(OrderCancelled),
    // ---- ship to invoice ----
    /// Finance posted an invoice.
    InvoicePosted(InvoicePosted),
    /// Finance refused an invoice.
    InvoiceRejected(DocumentRejected),
    /// An approver approved a held posting (through the control plane).
    PostingApproved(PostingDecision),
    /// An approver rejected a held posting (through the control plane).
    PostingRejected(PostingDecision),
    // ---- returns and credit ----
    /// A return was authorised (RMA).
    ReturnAuthorized(ReturnAuthorized),
    /// Returned goods were received at the warehouse.
    ReturnReceived(ReturnReceived),
    /// Finance issued a credit note.
    CreditNoteIssued(CreditNoteIssued),
    /// Finance refused a credit note.
    CreditNoteRejected(DocumentRejected),
    // ---- procure to receive (keyed `po:<purchase order>`) ----
    /// Odoo confirmed a purchase order.
    PurchaseOrderConfirmed(PurchaseOrderConfirmed),
    /// Odoo closed a purchase order: nothing more will be received.
    PurchaseOrderClosed(PurchaseOrderClosed),
    /// The supplier's advance shipping notice, as the warehouse received it.
    ShipNoticeReceived(ShipNotice),
    /// The warehouse received goods against a purchase order.
    GoodsReceived(GoodsReceipt),
    /// Odoo validated the incoming picking of a receipt.
    ReceiptValidated(ReceiptValidated),
    /// A receipt was cancelled at the warehouse.
    ReceiptCancelled(ReceiptCancelled),
    /// Finance received a supplier's invoice (vendor bill).
    VendorBillReceived(VendorBill),
    /// Finance posted a vendor bill.
    VendorBillPosted(VendorBillPosted),
    /// Finance refused a vendor bill.
    VendorBillRejected(VendorBillRejected),
    /// Finance issued a vendor credit note for a cancelled receipt.
    VendorCreditNoteIssued(VendorCreditIssued),
    // ---- cash application (keyed `stmt:<statement>`) ----
    /// A bank statement or settlement report was imported, with the receivables open then.
    StatementReceived(Box<StatementReceived>),
    /// Finance posted the journal entry of a statement line.
    StatementLinePosted(StatementLinePosted),
    /// Finance refused the journal entry of a statement line.
    StatementLineRejected(StatementLineRejected),
    // ---- reconciliation (keyed `recon:<kind>:<subject>`) ----
    /// A reconciliation run read one product's stock at the warehouse system, with what
    /// Waybill had journaled for it at the same moment.
    StockObserved(StockObserved),
    // ---- workbench (through the control plane) ----
    /// An operator asked to re-issue the command of the step an exception is about, with
    /// the same idempotency key.
    ExceptionRetryRequested(ExceptionAction),
    /// An operator resolved an exception by hand, with a note.
    ExceptionResolveRequested(ExceptionAction),
    /// An operator assigned an open exception to an owner (a person or team), or to a new
    /// owner.
    ExceptionAssignRequested(ExceptionAssignment),
    /// An operator asked to feed an order's inbound events through its sagas again
    /// (boxed: it is the largest event and rare).
    SagaReplayRequested(Box<ReplayRequest>),
    /// An operator applied an unmatched bank-statement line by hand: the invoices it pays
    /// and the customer whose account keeps the rest (keyed `stmt:<statement>`).
    StatementLineAssignRequested(LineAssignment),
    // ---- delivery outcomes (written by the connectors) ----
    /// A target system refused a command for a business reason, or the connector gave up
    /// after its retries; reported by the connector of the target system.
    CommandFailed(CommandFailed),
    /// A target system has not answered for longer than the connector's configured time.
    TargetUnavailable(TargetOutage),
    /// A target system that was unavailable answers again.
    TargetRecovered(TargetOutage),
    // ---- the coordinator's own ----
    /// The coordinator logged the time against which its partition's saga timers fire
    /// (written to `waybill.control`; not about one order).
    TimerTick(TimerTick),
}

impl EventBody {
    /// Record names of the control events: decisions on held postings and workbench
    /// actions, which carry who acted and in which role, and the coordinators' own timer
    /// ticks. They are decided only when read from `waybill.control`, which only Waybill
    /// writes (DESIGN.md invariant 6); anywhere else they are dead letters.
    pub const CONTROL_NAMES: [&'static str; 9] = [
        "PostingApproved",
        "PostingRejected",
        "ExceptionRetryRequested",
        "ExceptionResolveRequested",
        "ExceptionAssignRequested",
        "SagaReplayRequested",
        "StatementLineAssignRequested",
        "TimerTick",
        "StockObserved",
    ];

    /// Whether this is a control event (see [`EventBody::CONTROL_NAMES`]).
    pub const fn is_control(&self) -> bool {
        matches!(
            self,
            EventBody::PostingApproved(_)
                | EventBody::PostingRejected(_)
                | EventBody::ExceptionRetryRequested(_)
                | EventBody::ExceptionResolveRequested(_)
                | EventBody::ExceptionAssignRequested(_)
                | EventBody::SagaReplayRequested(_)
                | EventBody::StatementLineAssignRequested(_)
                | EventBody::TimerTick(_)
                | EventBody::StockObserved(_)
        )
    }

    /// The Avro record name (without namespace) of this event.
    pub const fn name(&self) -> &'static str {
        match self {
            EventBody::OrderReleased(_) => "OrderReleased",
            EventBody::StockReserved(_) => "StockReserved",
            EventBody::ReleasedToWarehouse(_) => "ReleasedToWarehouse",
            EventBody::PickConfirmed(_) => "PickConfirmed",
            EventBody::GoodsIssued(_) => "GoodsIssued",
            EventBody::CarrierBooked(_) => "CarrierBooked",
            EventBody::Delivered(_) => "Delivered",
            EventBody::OrderCancelled(_) => "OrderCancelled",
            EventBody::InvoicePosted(_) => "InvoicePosted",
            EventBody::InvoiceRejected(_) => "InvoiceRejected",
            EventBody::PostingApproved(_) => "PostingApproved",
            EventBody::PostingRejected(_) => "PostingRejected",
            EventBody::ReturnAuthorized(_) => "ReturnAuthorized",
            EventBody::ReturnReceived(_) => "ReturnReceived",
            EventBody::CreditNoteIssued(_) => "CreditNoteIssued",
            EventBody::CreditNoteRejected(_) => "CreditNoteRejected",
            EventBody::PurchaseOrderConfirmed(_) => "PurchaseOrderConfirmed",
            EventBody::PurchaseOrderClosed(_) => "PurchaseOrderClosed",
            EventBody::ShipNoticeReceived(_) => "ShipNoticeReceived",
            EventBody::GoodsReceived(_) => "GoodsReceived",
            EventBody::ReceiptValidated(_) => "ReceiptValidated",
            EventBody::ReceiptCancelled(_) => "ReceiptCancelled",
            EventBody::VendorBillReceived(_) => "VendorBillReceived",
            EventBody::VendorBillPosted(_) => "VendorBillPosted",
            EventBody::VendorBillRejected(_) => "VendorBillRejected",
            EventBody::VendorCreditNoteIssued(_) => "VendorCreditNoteIssued",
            EventBody::StatementReceived(_) => "StatementReceived",
            EventBody::StatementLinePosted(_) => "StatementLinePosted",
            EventBody::StatementLineRejected(_) => "StatementLineRejected",
            EventBody::StockObserved(_) => "StockObserved",
            EventBody::ExceptionRetryRequested(_) => "ExceptionRetryRequested",
            EventBody::ExceptionResolveRequested(_) => "ExceptionResolveRequested",
            EventBody::ExceptionAssignRequested(_) => "ExceptionAssignRequested",
            EventBody::SagaReplayRequested(_) => "SagaReplayRequested",
            EventBody::StatementLineAssignRequested(_) => "StatementLineAssignRequested",
            EventBody::TimerTick(_) => "TimerTick",
            EventBody::CommandFailed(_) => "CommandFailed",
            EventBody::TargetUnavailable(_) => "TargetUnavailable",
            EventBody::TargetRecovered(_) => "TargetRecovered",
        }
    }

    /// Record names of the events a system reports about itself as a command target
    /// (delivery outcomes): each is owned by the system it names in `target`, so only
    /// that system's connector may send it.
    pub const TARGET_REPORT_NAMES: [&'static str; 3] = ["CommandFailed", "TargetUnavailable", "TargetRecovered"];

    /// For a delivery outcome, the target system it reports about (its owner); `None`
    /// for every other event.
    pub const fn reported_target(&self) -> Option<System> {
        match self {
            EventBody::CommandFailed(f) => Some(f.target),
            EventBody::TargetUnavailable(o) | EventBody::TargetRecovered(o) => Some(o.target),
            _ => None,
        }
    }
}

/// One line of a released sale order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Line number within the order (Odoo `sale.order.line` sequence).
    pub line_no: i32,
    /// Product code (Odoo `default_code`).
    pub sku: String,
    /// Unit of measure name as Odoo sends it (`Units`, `kg`, `Box of 12`).
    pub uom: String,
    /// Ordered quantity.
    pub quantity: Qty,
    /// Unit price in the order currency's minor units.
    pub unit_price: Money,
    /// Tax code; `None` when Odoo sent no tax (a master-data problem).
    pub tax_code: Option<String>,
    /// Requested delivery date.
    pub requested_date: Timestamp,
    /// Warehouse code that ships the line.
    pub warehouse: String,
}

/// How the Odoo connector names a company (`company_id`) no entity maps:
/// `odoo-company-<res.company id>`; it resolves to the entity whose `odoo_company_id` is
/// that id once one is configured.
pub const ODOO_COMPANY: &str = "odoo-company-";

/// Odoo confirmed a sale order (`action_confirm`) and released it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReleased {
    /// Sale order name (`SO0042`).
    pub order_ref: String,
    /// Customer reference (Odoo partner ref or id).
    pub customer_ref: String,
    /// Delivery address reference (`partner_shipping_id`).
    pub ship_to: String,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The customer's own order reference (`client_order_ref`).
    pub client_order_ref: Option<String>,
    /// The legal entity (company) the order belongs to, by its code in `[entities]`
    /// (Odoo's `company_id`, mapped by the connector); `None`: the default entity. In
    /// the journal (`OrderAccepted`), the entity the saga resolved.
    pub company: Option<String>,
    /// The lines.
    pub lines: Vec<OrderLine>,
}

/// Reservation result for one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineReservation {
    /// Order line number.
    pub line_no: i32,
    /// Quantity reserved.
    pub reserved: Qty,
    /// Quantity that could not be reserved.
    pub short: Qty,
}

/// The warehouse's answer to a reservation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    /// Sale order name.
    pub order_ref: String,
    /// Per line.
    pub lines: Vec<LineReservation>,
}

/// The warehouse accepted the order for picking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedToWarehouse {
    /// Sale order name.
    pub order_ref: String,
    /// The warehouse's own order / wave id.
    pub wms_order_id: String,
}

/// A lot and the quantity taken from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotQty {
    /// Lot name.
    pub lot: String,
    /// Quantity from this lot.
    pub quantity: Qty,
}

/// One picked line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickedLine {
    /// Order line number.
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity picked in this confirmation.
    pub quantity: Qty,
    /// Lots picked (lot-tracked products).
    pub lots: Vec<LotQty>,
    /// Serial numbers picked (serial-tracked products), one unit each.
    pub serials: Vec<String>,
    /// Bin location picked from.
    pub bin: String,
}

/// The warehouse confirmed a pick; `complete` says whether more picks will follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickConfirmed {
    /// Sale order name.
    pub order_ref: String,
    /// The warehouse's pick id (unique per pick confirmation).
    pub pick_id: String,
    /// Lines picked.
    pub lines: Vec<PickedLine>,
    /// True when the warehouse will pick nothing more for this release.
    pub complete: bool,
}

/// One shipped line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedLine {
    /// Order line number.
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity shipped.
    pub quantity: Qty,
    /// Lots shipped.
    pub lots: Vec<LotQty>,
    /// Serials shipped.
    pub serials: Vec<String>,
}

/// One package of a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package id (SSCC or the WMS's id).
    pub package_id: String,
    /// Gross weight in grams.
    pub weight_grams: i64,
}

/// Goods left the warehouse (Odoo `button_validate` on the picking, or the WMS's goods
/// issue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodsIssued {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment id (the business key of an invoice: one invoice per shipment).
    pub shipment_id: String,
    /// Lines in the shipment.
    pub lines: Vec<ShippedLine>,
    /// Packages.
    pub packages: Vec<Package>,
}

/// A carrier accepted a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierBooked {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment id.
    pub shipment_id: String,
    /// Carrier code.
    pub carrier: String,
    /// Tracking reference (Odoo `carrier_tracking_ref`).
    pub tracking_ref: String,
}

/// Proof of delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment id.
    pub shipment_id: String,
    /// Who signed, when the carrier reports it.
    pub signed_by: Option<String>,
}

/// Odoo cancelled the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// Sale order name.
    pub order_ref: String,
    /// Reason given in Odoo.
    pub reason: String,
}

/// Finance posted an invoice for a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoicePosted {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment invoiced.
    pub shipment_id: String,
    /// Document number assigned at posting.
    pub invoice_number: String,
    /// Total amount posted, tax included, minor units.
    pub amount: Money,
}

/// Finance refused a document (invoice or credit note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRejected {
    /// Sale order name.
    pub order_ref: String,
    /// Business key of the document (shipment id or return receipt id).
    pub business_key: String,
    /// Finance's reason.
    pub reason: String,
}

/// An approver's decision on a held posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingDecision {
    /// Sale order name.
    pub order_ref: String,
    /// The held posting.
    pub posting_id: String,
    /// The posting version the approver saw.
    pub expected_version: i64,
    /// Identity of the approver.
    pub actor: String,
    /// Reason or note.
    pub reason: String,
    /// The approver's role, as the control plane authenticated it (added in v2 of the
    /// schema; empty in records written before).
    #[serde(default)]
    pub role: String,
}

/// One line of a return authorisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmaLine {
    /// Original order line number.
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity authorised for return.
    pub quantity: Qty,
}

/// A return was authorised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnAuthorized {
    /// Original sale order name.
    pub order_ref: String,
    /// Return authorisation id.
    pub rma_id: String,
    /// Reason given by the customer.
    pub reason: String,
    /// Lines.
    pub lines: Vec<RmaLine>,
}

/// What happens to a returned item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemCondition {
    /// Back to sellable stock.
    Restock,
    /// Damaged: scrapped.
    Scrap,
}

/// One received return line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedLine {
    /// Original order line number.
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity received.
    pub quantity: Qty,
    /// Condition.
    pub condition: ItemCondition,
    /// Lots received.
    pub lots: Vec<LotQty>,
    /// Serials received.
    pub serials: Vec<String>,
}

/// Returned goods were received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnReceived {
    /// Original sale order name.
    pub order_ref: String,
    /// Return authorisation id.
    pub rma_id: String,
    /// Receipt id (the business key of a credit note: one per receipt).
    pub receipt_id: String,
    /// Lines received.
    pub lines: Vec<ReturnedLine>,
}

/// Finance issued a credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteIssued {
    /// Original sale order name.
    pub order_ref: String,
    /// Return receipt credited.
    pub receipt_id: String,
    /// Credit note number.
    pub credit_note_number: String,
    /// Amount credited, minor units.
    pub amount: Money,
}

/// An operator's action on one exception (retry or resolve), as the control plane
/// authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionAction {
    /// Sale order name (the partition key).
    pub order_ref: String,
    /// The exception (`o2f:SO0042/pick-overdue/1`).
    pub exception_id: String,
    /// Identity of the operator.
    pub actor: String,
    /// The operator's role.
    pub role: String,
    /// Network address the call came from.
    pub peer: String,
    /// Id of the control-plane request (one per call).
    pub request_id: String,
    /// The operator's note (required to resolve, optional to retry).
    pub note: String,
}

/// An operator's assignment of one exception to an owner, as the control plane
/// authenticated it. Assigning changes who works the exception, nothing else: it stays
/// open until the saga's progress or a resolution closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionAssignment {
    /// Sale order name (the partition key).
    pub order_ref: String,
    /// The exception (`o2f:SO0042/pick-overdue/1`).
    pub exception_id: String,
    /// Who is to work the exception: a person or team identity (`olga`, `finance-ar`).
    pub owner: String,
    /// Identity of the operator who assigned it.
    pub actor: String,
    /// The operator's role.
    pub role: String,
    /// Network address the call came from.
    pub peer: String,
    /// Id of the control-plane request (one per call).
    pub request_id: String,
    /// The operator's note (optional): why this owner, what to do.
    pub note: String,
}

/// An inbound record to replay, where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayInput {
    /// Inbound topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
    /// The dead-letter exception (`dlq:<topic>:<partition>:<offset>`) to close once the
    /// record is applied, when the record was dead-lettered.
    pub dead_letter: Option<String>,
}

/// An operator's request to replay an order's inbound events through its sagas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Sale order name (the partition key).
    pub order_ref: String,
    /// The saga named by the operator (any saga of the order; all of them are replayed).
    pub saga_id: String,
    /// Identity of the operator.
    pub actor: String,
    /// The operator's role.
    pub role: String,
    /// Network address the call came from.
    pub peer: String,
    /// Id of the control-plane request (one per call).
    pub request_id: String,
    /// The operator's note.
    pub note: String,
    /// The records to replay, in the order they were first consumed.
    pub inputs: Vec<ReplayInput>,
}

/// A logged time for a partition's saga timers. Timer firings are inputs like any other:
/// when the coordinator of a partition sees its earliest timer due by the clock, it
/// appends a tick to its partition of `waybill.control`; when it consumes the tick, at
/// the tick's place among the partition's inputs, every timer due at or before `at`
/// fires with `at` as the time of the decision. A restore or a re-run after a crash
/// therefore fires the same timers at the same point with the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerTick {
    /// The partition whose timers fire.
    pub partition: i32,
    /// Timers due at or before this time fire; it is the time of their decisions.
    pub at: Timestamp,
}

impl TimerTick {
    /// The correlation key of a tick: not an order (no order name contains `/`), so a
    /// tick never reaches a saga by its key.
    pub fn correlation_key(partition: i32) -> String {
        format!("waybill/timers/{partition}")
    }

    /// The event id of the tick of `partition` at `at`; a tick written again after a
    /// crash at the same time has the same id.
    pub fn event_id(partition: i32, at: Timestamp) -> String {
        format!("tick:{partition}@{}", at.0)
    }

    /// The tick the coordinator of `partition` appends to its partition of
    /// `waybill.control` when a timer is due by `at`.
    pub fn event(partition: i32, at: Timestamp) -> crate::InboundEvent {
        crate::InboundEvent {
            meta: crate::EventMeta {
                event_id: Self::event_id(partition, at),
                source: SourceRef::new(System::Waybill, format!("coordinator/{partition}")),
                correlation_key: Self::correlation_key(partition),
                occurred_at: at,
                actor: None,
            },
            body: EventBody::TimerTick(TimerTick { partition, at }),
        }
    }
}

/// A target system refused a command, or the connector exhausted its retries delivering
/// it. `meta.correlation_key` is the command's correlation key (the order); the saga that
/// issued the command (`saga_id`) raises a `DELIVERY_FAILED` exception, which an
/// operator retries (the same command, same idempotency key) once the cause is fixed in
/// the target system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFailed {
    /// The saga that issued the command (the command's `meta.saga_id`).
    pub saga_id: String,
    /// The command's idempotency key.
    pub idempotency_key: String,
    /// The command's record name, e.g. `ConfirmShipment`.
    pub command: String,
    /// The system that refused it (the command's `meta.target`); only this system's
    /// connector may report it.
    pub target: System,
    /// The target's own message (Odoo's `ValidationError` text, the HTTP body's error),
    /// or why the connector gave up.
    pub reason: String,
    /// Delivery attempts made, the last one included.
    pub attempts: i32,
}

/// A target system is down (`TargetUnavailable`) or answers again (`TargetRecovered`),
/// reported by its connector. Keyed by [`TargetOutage::correlation_key`], not by an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetOutage {
    /// The system that does not answer (or answers again); only its connector may report it.
    pub target: System,
    /// When the outage began: the first failed attempt after the last answer.
    pub since: Timestamp,
    /// What the connector saw (`connection refused`, `HTTP 503`), or for a recovery what
    /// answered.
    pub reason: String,
}

impl TargetOutage {
    /// The correlation key of a target's outage events: `target:<system>` (`target:odoo`).
    /// No order name contains `:`, so it never reaches an order's sagas.
    pub fn correlation_key(target: System) -> String {
        format!("{TARGET_KEY_PREFIX}{target}")
    }

    /// The target a correlation key is the outage key of (`target:odoo` → Odoo).
    pub fn target_of_key(key: &str) -> Option<System> {
        let name = key.strip_prefix(TARGET_KEY_PREFIX)?;
        System::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Whether a correlation key is an order's (a sale order name): not a command target's
/// (`target:odoo`), a purchase order's (`po:P00042`), a bank statement's (`stmt:…`) nor a
/// reconciliation subject's (`recon:…`).
/// Only orders are listed and counted as orders.
pub fn is_order_key(key: &str) -> bool {
    TargetOutage::target_of_key(key).is_none()
        && !key.starts_with(crate::purchase::KEY_PREFIX)
        && !key.starts_with(crate::cash::KEY_PREFIX)
        && !key.starts_with(crate::reconcile::KEY_PREFIX)
}

/// The prefix of a target's correlation key (see [`TargetOutage::correlation_key`]).
pub const TARGET_KEY_PREFIX: &str = "target:";
