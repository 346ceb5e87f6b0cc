//! The read models, as stored and as returned by queries. Plain data with serde derives:
//! the gRPC layer and the CLI render them. Field order is the serialized order, and every
//! collection is a `Vec` in a defined order, so equal views serialize to equal bytes.

use std::fmt;

use serde::{Deserialize, Serialize};
use waybill_domain::journal::DocumentKind;
use waybill_domain::reconcile::{Movements, StockReconciliation};
use waybill_domain::{ExceptionCategory, Money, Qty, SagaKind, SourceRef, Timestamp};

/// Where an order stands, derived from its journal events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    /// Journal events were seen for the order but not its acceptance (the journal was
    /// truncated by retention before the projections were built).
    Unknown,
    /// The saga accepted the order.
    Accepted,
    /// Master-data checks failed; the order waits for a fix.
    OnHold,
    /// Stock reservation was requested.
    Reserving,
    /// The warehouse reserved stock (possibly short).
    Reserved,
    /// Released to the warehouse for picking.
    Released,
    /// Partly picked; more picks follow.
    Picking,
    /// Picking is complete.
    Picked,
    /// At least one shipment left the warehouse.
    Shipped,
    /// Every shipment was delivered.
    Delivered,
    /// The order-to-fulfillment saga finished with goods delivered.
    Completed,
    /// The order ended before any goods left: nothing could be reserved, or the
    /// warehouse picked none of what it reserved. Odoo's backorder carries the demand.
    Backordered,
    /// The order was cancelled.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 13] = [
        OrderStatus::Unknown,
        OrderStatus::Accepted,
        OrderStatus::OnHold,
        OrderStatus::Reserving,
        OrderStatus::Reserved,
        OrderStatus::Released,
        OrderStatus::Picking,
        OrderStatus::Picked,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Completed,
        OrderStatus::Backordered,
        OrderStatus::Cancelled,
    ];

    /// Lowercase name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Unknown => "unknown",
            OrderStatus::Accepted => "accepted",
            OrderStatus::OnHold => "on-hold",
            OrderStatus::Reserving => "reserving",
            OrderStatus::Reserved => "reserved",
            OrderStatus::Released => "released",
            OrderStatus::Picking => "picking",
            OrderStatus::Picked => "picked",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Completed => "completed",
            OrderStatus::Backordered => "backordered",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

impl OrderStatus {
    /// The status named `s` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The order's fulfilment has ended: completed, backordered or cancelled.
    pub const fn is_final(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Backordered | OrderStatus::Cancelled)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sale order as the sagas saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Sale order name (`SO0042`).
    pub order_ref: String,
    /// Current status.
    pub status: OrderStatus,
    /// Customer reference, once the order was accepted.
    pub customer_ref: Option<String>,
    /// Delivery address reference.
    pub ship_to: Option<String>,
    /// Currency.
    pub currency: Option<String>,
    /// The legal entity the order (or purchase order, or statement) belongs to, once
    /// the record that opened it named one.
    #[serde(default)]
    pub entity: Option<String>,
    /// The customer's own order reference.
    pub client_order_ref: Option<String>,
    /// Lines, by line number.
    pub lines: Vec<OrderLineView>,
    /// Shipments, in the order they were first recorded.
    pub shipments: Vec<ShipmentView>,
    /// Master-data problems that put the order on hold (latest check).
    pub problems: Vec<String>,
    /// The warehouse's own order id, once it accepted the release.
    pub wms_order_id: Option<String>,
    /// When the pick confirmation is due, once released.
    pub pick_due_at: Option<Timestamp>,
    /// Cancellation reason, when cancelled.
    pub cancel_reason: Option<String>,
    /// Exceptions raised by the order's sagas and not resolved yet.
    pub open_exceptions: u32,
    /// The sagas of this order, by saga id, with the last applied seq of each (a copy of
    /// an applied journal event is recognised by it).
    pub sagas: Vec<SagaProgress>,
    /// Earliest decision time among the order's journal events.
    pub first_event_at: Timestamp,
    /// Latest decision time among the order's journal events.
    pub last_event_at: Timestamp,
    /// When the order-to-fulfillment saga completed.
    pub completed_at: Option<Timestamp>,
    /// Postings (invoices, credit notes) that were held for approval.
    pub postings: Vec<PostingView>,
    /// Documents finance posted: invoices and credit notes.
    pub documents: Vec<DocumentView>,
}

/// A posting held for approval, with its evidence and decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingView {
    /// `inv:<shipment>` or `cn:<receipt>`.
    pub posting_id: String,
    /// Saga that holds it.
    pub saga_id: String,
    /// Invoice or credit note.
    pub document: DocumentKind,
    /// Shipment or return receipt.
    pub business_key: String,
    /// Why it was held.
    pub reasons: Vec<String>,
    /// Amount, minor units.
    pub amount: Money,
    /// The amount's currency, when the hold named it.
    #[serde(default)]
    pub currency: Option<String>,
    /// The legal entity whose approval limits apply.
    #[serde(default)]
    pub entity: Option<String>,
    /// Current version (approvers must name it).
    pub version: i64,
    /// `held`, `approved` or `rejected`.
    pub state: String,
    /// Who requested it.
    pub requested_by: String,
    /// When it was held.
    pub held_at: Timestamp,
    /// When it is (or was) escalated.
    pub sla_due_at: Timestamp,
    /// The SLA passed undecided.
    pub escalated: bool,
    /// Who decided, in which role, why.
    pub decided_by: Option<String>,
    /// Role of the decider.
    pub decided_role: Option<String>,
    /// Reason given with the decision.
    pub decision_reason: Option<String>,
    /// When it was decided.
    pub decided_at: Option<Timestamp>,
    /// Control actions the saga refused (stale version, four-eyes, limit), oldest first.
    pub refusals: Vec<String>,
    /// Everyone who requested the posting or had a decision on it refused: none of them
    /// may approve it (four-eyes), as the saga keeps it.
    #[serde(default)]
    pub touched_by: Vec<String>,
}

/// A document finance posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentView {
    /// Invoice or credit note.
    pub kind: DocumentKind,
    /// Shipment or return receipt.
    pub business_key: String,
    /// Finance's number.
    pub number: String,
    /// Amount, minor units.
    pub amount: Money,
    /// When it was recorded.
    pub at: Timestamp,
}

impl OrderView {
    /// An order known only by its reference.
    pub fn new(order_ref: &str, at: Timestamp) -> Self {
        OrderView {
            order_ref: order_ref.to_string(),
            status: OrderStatus::Unknown,
            customer_ref: None,
            ship_to: None,
            currency: None,
            entity: None,
            client_order_ref: None,
            lines: Vec::new(),
            shipments: Vec::new(),
            problems: Vec::new(),
            wms_order_id: None,
            pick_due_at: None,
            cancel_reason: None,
            open_exceptions: 0,
            sagas: Vec::new(),
            first_event_at: at,
            last_event_at: at,
            completed_at: None,
            postings: Vec::new(),
            documents: Vec::new(),
        }
    }

    /// The line with number `line_no`.
    pub fn line(&self, line_no: i32) -> Option<&OrderLineView> {
        self.lines.iter().find(|l| l.line_no == line_no)
    }

    /// Progress of saga `saga_id`.
    pub fn saga(&self, saga_id: &str) -> Option<&SagaProgress> {
        self.sagas.binary_search_by(|s| s.saga_id.as_str().cmp(saga_id)).ok().map(|i| &self.sagas[i])
    }

    /// The shipment `shipment_id`.
    pub fn shipment(&self, shipment_id: &str) -> Option<&ShipmentView> {
        self.shipments.iter().find(|s| s.shipment_id == shipment_id)
    }
}

/// Quantities of one order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineView {
    /// Line number.
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Unit of measure.
    pub uom: String,
    /// Warehouse that ships the line (empty when the line was never accepted).
    pub warehouse: String,
    /// Ordered.
    pub ordered: Qty,
    /// Reserved (sum over allocations).
    pub reserved: Qty,
    /// Could not be reserved (sum over allocations).
    pub short: Qty,
    /// Backordered in Odoo.
    pub backordered: Qty,
    /// Picked (sum over pick confirmations).
    pub picked: Qty,
    /// Shipped (sum over shipments).
    pub shipped: Qty,
}

/// One shipment of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentView {
    /// Shipment id.
    pub shipment_id: String,
    /// When goods issue was recorded.
    pub shipped_at: Option<Timestamp>,
    /// Units shipped (all lines).
    pub quantity: Qty,
    /// Number of packages.
    pub packages: u32,
    /// Carrier code, once assigned.
    pub carrier: Option<String>,
    /// Carrier tracking reference.
    pub tracking_ref: Option<String>,
    /// True once proof of delivery arrived.
    pub delivered: bool,
    /// When delivery was confirmed.
    pub delivered_at: Option<Timestamp>,
    /// Who signed.
    pub signed_by: Option<String>,
}

impl ShipmentView {
    pub(crate) fn new(shipment_id: &str) -> Self {
        ShipmentView {
            shipment_id: shipment_id.to_string(),
            shipped_at: None,
            quantity: Qty::ZERO,
            packages: 0,
            carrier: None,
            tracking_ref: None,
            delivered: false,
            delivered_at: None,
            signed_by: None,
        }
    }
}

/// How far one saga of an order has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaProgress {
    /// Saga id (`o2f:SO0042`).
    pub saga_id: String,
    /// Saga kind.
    pub kind: SagaKind,
    /// Last applied sequence number.
    pub last_seq: i64,
    /// Last event name.
    pub last_event: String,
    /// When the saga completed.
    pub completed_at: Option<Timestamp>,
}

/// One journal event in an order's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Decision time.
    pub at: Timestamp,
    /// Saga id.
    pub saga_id: String,
    /// Saga kind.
    pub kind: SagaKind,
    /// Sequence number within the saga.
    pub seq: i64,
    /// Event name (`StockAllocated`).
    pub event: String,
    /// One line for people.
    pub summary: String,
    /// Partition of `waybill.journal` the event was read from.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

impl TimelineEntry {
    /// The event as a lineage entry.
    pub fn lineage(&self) -> LineageEntry {
        LineageEntry {
            kind: LinkKind::Journal,
            id: format!("{}#{}", self.saga_id, self.seq),
            name: self.event.clone(),
            topic: waybill_domain::topic::JOURNAL.to_string(),
            partition: self.partition,
            offset: self.offset,
            at: self.at,
        }
    }
}

/// An exception on the workbench.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionView {
    /// Stable id (`o2f:SO0042/stock-shortage/1`, or `dlq:<topic>:<partition>:<offset>`).
    pub exception_id: String,
    /// Category (`OTHER` until the raise itself has been applied).
    pub category: ExceptionCategory,
    /// What is wrong and what to do.
    pub message: String,
    /// The record it is about.
    pub subject: Option<SourceRef>,
    /// The saga that raised it (none for dead letters).
    pub saga_id: Option<String>,
    /// The order it belongs to, when known.
    pub order_ref: Option<String>,
    /// When it was raised (none while only its resolution has been applied).
    pub raised_at: Option<Timestamp>,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// How it was resolved.
    pub resolution: Option<String>,
    /// For dead letters: `decode`, `unknown-schema` or `rule`.
    pub dead_letter_kind: Option<String>,
    /// The order's customer (Odoo partner ref), as the order view knew it when the
    /// exception was raised; none for dead letters and orders not accepted yet.
    pub customer: Option<String>,
    /// Who works it, once an operator assigned it (the latest assignment; kept after the
    /// exception is resolved).
    pub owner: Option<String>,
    /// When it was (last) assigned.
    pub assigned_at: Option<Timestamp>,
    /// The legal entity of the record it is about, when it has one.
    #[serde(default)]
    pub entity: Option<String>,
}

impl ExceptionView {
    pub(crate) fn new(exception_id: &str) -> Self {
        ExceptionView {
            exception_id: exception_id.to_string(),
            category: ExceptionCategory::Other,
            message: String::new(),
            subject: None,
            saga_id: None,
            order_ref: None,
            raised_at: None,
            resolved_at: None,
            resolution: None,
            dead_letter_kind: None,
            customer: None,
            owner: None,
            assigned_at: None,
            entity: None,
        }
    }

    /// Raised and not resolved.
    pub fn is_open(&self) -> bool {
        self.raised_at.is_some() && self.resolved_at.is_none()
    }
}

/// What kind of record a lineage entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// A saga journal event; `id` is `saga_id#seq`.
    Journal,
    /// A command; `id` is its idempotency key.
    Command,
    /// A dead letter; `id` is its exception id.
    DeadLetter,
}

/// One record related to a source reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageEntry {
    /// Record kind.
    pub kind: LinkKind,
    /// Record id.
    pub id: String,
    /// Event or command name (`ShipmentRecorded`, `PostInvoice`), or `DeadLetter`.
    pub name: String,
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Decision time (for dead letters: when the record was appended).
    pub at: Timestamp,
}

/// What moved one product's stock, in all warehouses, as Waybill journaled it: the
/// expectation a stock reconciliation compares with the warehouse system. Written from
/// every partition, so only by commutative updates (sums, and the latest movement by
/// time then name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuMovements {
    /// Product code.
    pub sku: String,
    /// Summed movements.
    pub movements: Movements,
    /// The latest movement (`ShipmentRecorded SHP-1`), by its time, then its name.
    pub last_movement: Option<String>,
    /// When it happened (the journal event's or command's time).
    pub last_at: Timestamp,
}

/// Where one product's stock reconciliation stands (the fold of its `StockReconciled`
/// records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCheck {
    /// Product code.
    pub sku: String,
    /// The warehouse's figure at the baseline, and Waybill's net movements then.
    pub baseline: Option<(Qty, Qty)>,
    /// The latest record.
    pub last: StockReconciliation,
    /// When it was journaled.
    pub at: Timestamp,
}

impl StockCheck {
    /// A finding is open: the latest record is a mismatch.
    pub fn is_open(&self) -> bool {
        self.last.outcome == waybill_domain::reconcile::ReconcileOutcome::Mismatch
    }
}

/// Quantities per warehouse and SKU, summed over journal events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockPosition {
    /// Warehouse code.
    pub warehouse: String,
    /// Product code.
    pub sku: String,
    /// Ordered (accepted orders).
    pub ordered: Qty,
    /// Reserved by the warehouse.
    pub reserved: Qty,
    /// Could not be reserved.
    pub short: Qty,
    /// Picked.
    pub picked: Qty,
    /// Shipped.
    pub shipped: Qty,
}
