//! Order-to-fulfillment: order released → master-data checks → stock reservation →
//! release to the warehouse → pick confirmed (partial picks, lots, serials) → goods
//! issued → carrier booked → proof of delivery. Shortages become backorders (an order
//! with nothing reserved, or whose picking finished with nothing picked, ends entirely
//! backordered), a late pick raises an exception, a cancellation before goods issue
//! compensates. Waits with no timer here are watched by [`crate::watch`].
//!
//! Everything here is pure: [`decide`] maps (state, event, context) to a [`Decision`];
//! [`Fulfillment::apply`] folds journal events into state. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use waybill_domain::command::{
    BackorderLine, BackorderRequest, BookCarrier, CommandBody, ConfirmShipment, OrderOnly, StockRequest,
};
use waybill_domain::event::{
    CarrierBooked, CommandFailed, Delivered, EventBody, GoodsIssued, InboundEvent, OrderCancelled, OrderLine,
    OrderReleased, PickConfirmed, ReleasedToWarehouse, StockReserved,
};
use waybill_domain::journal::{
    Allocation, Backorder, Cancelled, CarrierAssigned, Deadline, DeliveryConfirmed, Empty, ExceptionResolved, Problems,
    ReleaseRequested, WarehouseAccepted,
};
use waybill_domain::{ExceptionCategory, JournalBody, JournalEvent, Qty, SagaKind, SourceRef, System, Timestamp};

use crate::book::{self, SagaBook};
use crate::catalog::{Catalog, Tracking};
use crate::decision::{DeadLetterKind, Decision, Outbound};
use crate::entity::{Entities, Entity};
use crate::flow::Env;
use crate::outcome;
use crate::policy::FulfillmentPolicy;

/// Where an order is in its fulfilment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// No order yet.
    #[default]
    New,
    /// Failed master-data checks; waiting for a fix and a replay.
    OnHold,
    /// Waiting for the warehouse's reservation.
    Reserving,
    /// Released to the warehouse, not yet acknowledged.
    Released,
    /// The warehouse is picking.
    Picking,
    /// Picking finished.
    Picked,
    /// At least one shipment left.
    Shipped,
    /// Every shipment delivered.
    Delivered,
    /// Entirely backordered: nothing could be reserved, or the warehouse picked none
    /// of what it reserved. The order ends; Odoo's backorder carries the demand.
    Backordered,
    /// Cancelled before goods issue.
    Cancelled,
}

impl Status {
    /// Lowercase name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::OnHold => "on-hold",
            Status::Reserving => "reserving",
            Status::Released => "released",
            Status::Picking => "picking",
            Status::Picked => "picked",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Backordered => "backordered",
            Status::Cancelled => "cancelled",
        }
    }

    /// Goods have not left yet: cancellation can still be compensated.
    fn before_goods_issue(self) -> bool {
        self < Status::Shipped
    }
}

/// Per-line progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineProgress {
    /// Reserved by the warehouse.
    pub reserved: Qty,
    /// Could not be reserved.
    pub short: Qty,
    /// Picked so far.
    pub picked: Qty,
    /// Shipped so far.
    pub shipped: Qty,
    /// Backordered.
    pub backordered: Qty,
    /// Lots picked.
    pub lots: BTreeSet<String>,
    /// Serials picked.
    pub serials: BTreeSet<String>,
}

/// A shipment of the order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// Carrier code once booked.
    pub carrier: Option<String>,
    /// Tracking reference once booked.
    pub tracking_ref: Option<String>,
    /// Proof of delivery received.
    pub delivered: bool,
    /// What the shipment carried (what its invoice bills).
    #[serde(default)]
    pub issued: Option<GoodsIssued>,
    /// When the goods issue was recorded.
    #[serde(default)]
    pub recorded_at: Option<Timestamp>,
}

/// State of one order-to-fulfillment saga. Rebuilt by folding its journal events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fulfillment {
    /// What every saga keeps: applied seq, causes, open exceptions, completion.
    #[serde(flatten)]
    pub book: SagaBook,
    /// Status.
    pub status: Status,
    /// The order as released.
    pub order: Option<OrderReleased>,
    /// Progress per line number.
    pub lines: BTreeMap<i32, LineProgress>,
    /// Problems that put the order on hold.
    pub hold_problems: Vec<String>,
    /// The warehouse's order id.
    pub wms_order_id: Option<String>,
    /// When the pick is due.
    pub pick_due_at: Option<Timestamp>,
    /// Pick ids already recorded.
    pub picks: BTreeSet<String>,
    /// The warehouse said picking is finished.
    pub pick_complete: bool,
    /// Shipments by id.
    pub shipments: BTreeMap<String, Shipment>,
    /// When the order was accepted.
    pub accepted_at: Option<Timestamp>,
    /// Idempotency keys of every command the saga issued (what [`reissue`] can rebuild).
    #[serde(default)]
    pub issued: BTreeSet<String>,
    /// The lines of each `CreateBackorder` issued, by idempotency key.
    #[serde(default)]
    pub backorders: BTreeMap<String, Vec<BackorderLine>>,
    /// Odoo's reason for the cancellation (the compensations carry it).
    #[serde(default)]
    pub cancel_reason: Option<String>,
}

/// What a decision may consult besides state and event.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Master data.
    pub catalog: &'a Catalog,
    /// Policy.
    pub policy: &'a FulfillmentPolicy,
    /// The legal entities, among which an order's company is resolved when it is
    /// accepted (the entity's tax codes are the ones its lines may use).
    pub entities: &'a Entities,
    /// Decision time.
    pub now: Timestamp,
}

impl<'a> Context<'a> {
    /// The context of a decision made in `env` at `now`.
    pub fn of(env: &Env<'a>, now: Timestamp) -> Self {
        Context { catalog: env.catalog, policy: &env.policy.fulfillment, entities: env.entities, now }
    }
}

impl Fulfillment {
    /// The saga kind.
    pub const KIND: SagaKind = SagaKind::OrderToFulfillment;

    /// True once the saga has finished (completed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.book.is_finished()
    }

    /// The pending timer, if any: when the pick becomes overdue.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.status {
            Status::Released | Status::Picking if !self.overdue_raised() => self.pick_due_at,
            _ => None,
        }
    }

    fn overdue_raised(&self) -> bool {
        // A PickOverdue clears the due time (see apply).
        self.pick_due_at.is_none()
    }

    fn order_ref(&self) -> &str {
        self.order.as_ref().map(|o| o.order_ref.as_str()).unwrap_or("")
    }

    fn saga_id(&self) -> String {
        Self::KIND.saga_id(self.order_ref())
    }

    /// Folds one journal event into the state. Events at or below the current sequence
    /// number are ignored, so applying a journal twice is harmless.
    pub fn apply(&mut self, event: &JournalEvent) {
        if !self.book.fold(event) {
            return;
        }
        match &event.body {
            JournalBody::OrderAccepted(order) => {
                self.status = Status::Reserving;
                self.lines = order.lines.iter().map(|l| (l.line_no, LineProgress::default())).collect();
                self.order = Some(order.clone());
                self.accepted_at = Some(event.meta.at);
            }
            JournalBody::MasterDataFailed(p) => {
                self.status = Status::OnHold;
                self.hold_problems = p.problems.clone();
            }
            JournalBody::ReservationRequested(_) => {
                self.status = Status::Reserving;
                self.hold_problems.clear();
                self.issued.insert(keys::reserve(self.order_ref()));
            }
            JournalBody::StockAllocated(a) => {
                for r in &a.lines {
                    let l = self.lines.entry(r.line_no).or_default();
                    l.reserved = r.reserved;
                    l.short = r.short;
                }
            }
            JournalBody::Backordered(b) => {
                // The reservation's shortfall is backordered while reserving; whatever
                // picking leaves behind, later.
                let key = if self.status == Status::Reserving {
                    keys::backorder_of_reservation(self.order_ref())
                } else {
                    keys::backorder_of_pick(self.order_ref())
                };
                self.issued.insert(key.clone());
                self.backorders.insert(key, b.lines.clone());
                for r in &b.lines {
                    self.lines.entry(r.line_no).or_default().backordered += r.quantity;
                }
                if self.status == Status::Reserving {
                    self.status = Status::Backordered;
                }
            }
            JournalBody::ReleaseRequested(r) => {
                self.issued.insert(keys::release(self.order_ref()));
                self.status = Status::Released;
                self.pick_due_at = Some(r.due_at);
            }
            JournalBody::WarehouseAccepted(w) => {
                self.wms_order_id = Some(w.wms_order_id.clone());
                if self.status == Status::Released {
                    self.status = Status::Picking;
                }
            }
            JournalBody::PickRecorded(p) => {
                self.picks.insert(p.pick_id.clone());
                for pl in &p.lines {
                    let l = self.lines.entry(pl.line_no).or_default();
                    l.picked += pl.quantity;
                    l.lots.extend(pl.lots.iter().map(|x| x.lot.clone()));
                    l.serials.extend(pl.serials.iter().cloned());
                }
                if self.status < Status::Picking {
                    self.status = Status::Picking;
                }
                if p.complete {
                    self.pick_complete = true;
                    self.pick_due_at = None;
                    if self.status < Status::Picked {
                        self.status = Status::Picked;
                    }
                }
            }
            JournalBody::PickOverdue(_) => self.pick_due_at = None,
            JournalBody::ShipmentRecorded(g) => {
                for sl in &g.lines {
                    self.lines.entry(sl.line_no).or_default().shipped += sl.quantity;
                }
                self.shipments
                    .insert(g.shipment_id.clone(), Shipment { issued: Some(g.clone()), ..Shipment::default() });
                self.issued.insert(keys::carrier(&g.shipment_id));
                self.status = Status::Shipped;
            }
            JournalBody::CarrierAssigned(c) => {
                let s = self.shipments.entry(c.shipment_id.clone()).or_default();
                s.carrier = Some(c.carrier.clone());
                s.tracking_ref = Some(c.tracking_ref.clone());
                self.issued.insert(keys::confirm_shipment(&c.shipment_id));
            }
            JournalBody::DeliveryConfirmed(d) => {
                self.shipments.entry(d.shipment_id.clone()).or_default().delivered = true;
                if self.shipments.values().all(|s| s.delivered) {
                    self.status = Status::Delivered;
                }
            }
            JournalBody::Cancelled(c) => {
                self.issued.extend(c.compensations.iter().cloned());
                self.cancel_reason = Some(c.reason.clone());
                self.status = Status::Cancelled;
                self.pick_due_at = None;
            }
            // Finished before any goods left (and not cancelled): nothing could be
            // reserved, or the warehouse picked nothing of what it reserved.
            JournalBody::Completed(_) if self.status < Status::Shipped => {
                self.status = Status::Backordered;
                self.pick_due_at = None;
            }
            // Events of the invoicing and returns sagas never reach this saga.
            _ => {}
        }
    }
}

/// Decides what an inbound event means for the saga in state `s`.
pub fn decide(s: &Fulfillment, event: &InboundEvent, ctx: &Context<'_>) -> Decision {
    let id = &event.meta.event_id;
    if let EventBody::OrderReleased(order) = &event.body {
        return on_order_released(s, order, ctx);
    }
    if s.status == Status::New {
        return Decision::reject(
            DeadLetterKind::Rule,
            format!(
                "{} for order {:?}, which Waybill has not seen released; release the order in Odoo first, then replay this record from the dead-letter topic",
                event.body.name(),
                event.meta.correlation_key
            ),
        );
    }
    if s.book.seen.contains(id) {
        return Decision::noop();
    }
    if let EventBody::CommandFailed(f) = &event.body {
        return on_command_failed(s, f);
    }
    if let (Status::Cancelled, EventBody::GoodsIssued(g)) = (s.status, &event.body) {
        return on_goods_issued_after_cancellation(s, g);
    }
    if s.status == Status::Cancelled || s.status == Status::Backordered {
        // Late answers to work that was withdrawn: nothing more to do.
        return Decision::noop();
    }
    match &event.body {
        EventBody::StockReserved(r) => on_stock_reserved(s, r, ctx),
        EventBody::ReleasedToWarehouse(r) => on_released(s, r),
        EventBody::PickConfirmed(p) => on_pick(s, p, ctx),
        EventBody::GoodsIssued(g) => on_goods_issued(s, g),
        EventBody::CarrierBooked(c) => on_carrier_booked(s, c),
        EventBody::Delivered(d) => on_delivered(s, d),
        EventBody::OrderCancelled(c) => on_cancelled(s, c),
        other => Decision::reject(
            DeadLetterKind::Rule,
            format!(
                "{} is not handled by the order-to-fulfillment saga; replay it once the saga that owns it is enabled",
                other.name()
            ),
        ),
    }
}

/// Fires due timers: a pick not confirmed by its due time raises `PICK_OVERDUE`.
pub fn on_timer(s: &Fulfillment, now: Timestamp) -> Decision {
    let mut d = Decision::noop();
    if let Some(due) = s.next_deadline()
        && now >= due
    {
        d.record(JournalBody::PickOverdue(Deadline { due_at: due }));
        d.raise(
            &s.saga_id(),
            s.book.exceptions_raised,
            ExceptionCategory::PickOverdue,
            SourceRef::new(System::Wms, s.wms_order_id.clone().unwrap_or_else(|| s.order_ref().to_string())),
            format!(
                "Pick for {} is {} overdue at {}: the warehouse has not confirmed the pick that was due {}; chase the warehouse — the saga continues when the pick arrives",
                s.order_ref(),
                crate::health::duration(now.micros_since(due)),
                warehouses(s.order.as_ref()),
                crate::health::utc(due)
            ),
        );
    }
    d
}

/// Where an order ships from, for messages: `warehouse W1`, `warehouses W1, W2`.
fn warehouses(order: Option<&OrderReleased>) -> String {
    let mut codes: Vec<&str> =
        order.map(|o| o.lines.iter().map(|l| l.warehouse.as_str()).collect()).unwrap_or_default();
    codes.sort_unstable();
    codes.dedup();
    match codes.as_slice() {
        [] => "the warehouse".to_string(),
        [one] => format!("warehouse {one}"),
        many => format!("warehouses {}", many.join(", ")),
    }
}

fn master_data_problems(order: &OrderReleased, catalog: &Catalog, entity: Option<&Entity>) -> Vec<String> {
    let mut problems = Vec::new();
    if order.lines.is_empty() {
        problems.push("the order has no lines".to_string());
    }
    if !catalog.customers.contains(&order.customer_ref) {
        problems.push(format!("customer {:?} is not in the master data", order.customer_ref));
    }
    for l in &order.lines {
        match catalog.product(&l.sku) {
            None => problems.push(format!("line {}: unknown SKU {:?}", l.line_no, l.sku)),
            Some(p) if !p.active => problems.push(format!("line {}: SKU {:?} is archived", l.line_no, l.sku)),
            Some(p) if p.uom != l.uom => problems.push(format!(
                "line {}: unit of measure {:?} does not match {:?} of SKU {:?}",
                l.line_no, l.uom, p.uom, l.sku
            )),
            Some(_) => {}
        }
        match &l.tax_code {
            None => problems.push(format!("line {}: missing tax code", l.line_no)),
            Some(t) if !catalog.tax_codes.contains(t) => {
                problems.push(format!("line {}: unknown tax code {t:?}", l.line_no))
            }
            Some(t) if entity.is_some_and(|e| !e.tax_codes.is_empty() && !e.tax_codes.contains(t)) => {
                let e = entity.map(|e| e.code.as_str()).unwrap_or_default();
                problems.push(format!("line {}: tax code {t:?} is not one of entity {e}'s tax codes", l.line_no))
            }
            Some(_) => {}
        }
        if l.quantity.0 <= 0 {
            problems.push(format!("line {}: quantity {} must be positive", l.line_no, l.quantity));
        }
    }
    problems
}

fn on_order_released(s: &Fulfillment, order: &OrderReleased, ctx: &Context<'_>) -> Decision {
    let mut d = Decision::noop();
    // The order's entity: the company it names, or the default one (one rule,
    // `Entities::resolve`); a company no entity is configured for is a master-data
    // problem like an unknown customer.
    let entity = ctx.entities.resolve(order.company.as_deref());
    // The order as accepted names the resolved entity (none without entities); an
    // unresolved company is kept as named, for the problem that holds the order.
    let accepted = || OrderReleased {
        company: match &entity {
            Ok(e) => e.map(|e| e.code.clone()),
            Err(_) => order.company.clone(),
        },
        ..order.clone()
    };
    match s.status {
        Status::New => {
            d.record(JournalBody::OrderAccepted(accepted()));
        }
        // A replay after the master data was fixed: check again.
        Status::OnHold => {}
        // Anything else is a redelivery.
        _ => return d,
    }
    let saga_id = SagaKind::OrderToFulfillment.saga_id(&order.order_ref);
    let problems = match &entity {
        Ok(e) => master_data_problems(order, ctx.catalog, *e),
        Err(why) => vec![why.clone()],
    };
    if !problems.is_empty() {
        if s.status == Status::OnHold && problems == s.hold_problems {
            return Decision::noop();
        }
        let reason = format!(
            "order {} fails master-data checks: {}; fix the master data in Odoo, then replay this record",
            order.order_ref,
            problems.join("; ")
        );
        d.record(JournalBody::MasterDataFailed(Problems { problems }));
        d.raise(
            &saga_id,
            s.book.exceptions_raised,
            ExceptionCategory::MasterData,
            SourceRef::new(System::Odoo, order.order_ref.clone()),
            reason.clone(),
        );
        d.dead_letter = Some(crate::decision::DeadLetter { kind: DeadLetterKind::Rule, reason });
        return d;
    }
    for id in s.book.open_of(ExceptionCategory::MasterData) {
        d.record(JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: id.clone(),
            resolution: "master data fixed; order replayed".to_string(),
        }));
    }
    // Released again after a hold: accepted as it is now, when that changed its entity
    // (its company was mapped or corrected), so every later decision is that entity's.
    let again = accepted();
    if s.status == Status::OnHold && s.order.as_ref().is_some_and(|o| o.company != again.company) {
        d.record(JournalBody::OrderAccepted(again));
    }
    d.record(JournalBody::ReservationRequested(Empty {}));
    d.send(
        System::Wms,
        keys::reserve(&order.order_ref),
        CommandBody::ReserveStock(StockRequest {
            order_ref: order.order_ref.clone(),
            warehouse: warehouse_of(order),
            lines: order.lines.clone(),
        }),
    );
    d
}

fn warehouse_of(order: &OrderReleased) -> String {
    order.lines.first().map(|l| l.warehouse.clone()).unwrap_or_default()
}

fn on_stock_reserved(s: &Fulfillment, r: &StockReserved, ctx: &Context<'_>) -> Decision {
    if s.status != Status::Reserving {
        return Decision::noop();
    }
    let order = s.order.as_ref().expect("reserving implies an accepted order");
    let mut d = Decision::noop();
    let mut allocation = Vec::new();
    let mut release_lines: Vec<OrderLine> = Vec::new();
    let mut backorder = Vec::new();
    for line in &order.lines {
        // A line the warehouse did not mention is entirely short.
        let (reserved, short) = r
            .lines
            .iter()
            .find(|x| x.line_no == line.line_no)
            .map(|x| (x.reserved.min(line.quantity), line.quantity.saturating_sub(x.reserved.min(line.quantity))))
            .unwrap_or((Qty::ZERO, line.quantity));
        allocation.push(waybill_domain::event::LineReservation { line_no: line.line_no, reserved, short });
        if !reserved.is_zero() {
            release_lines.push(OrderLine { quantity: reserved, ..line.clone() });
        }
        if !short.is_zero() {
            backorder.push(BackorderLine { line_no: line.line_no, sku: line.sku.clone(), quantity: short });
        }
    }
    d.record(JournalBody::StockAllocated(Allocation { lines: allocation }));
    if !backorder.is_empty() {
        // "2 Units of WIDGET-10 (line 1) short at warehouse W1"
        let summary: Vec<String> = backorder
            .iter()
            .map(|b| match order.lines.iter().find(|l| l.line_no == b.line_no) {
                Some(l) => {
                    format!(
                        "{} {} of {} (line {}) short at warehouse {}",
                        b.quantity, l.uom, b.sku, b.line_no, l.warehouse
                    )
                }
                None => format!("{} of {} (line {}) short", b.quantity, b.sku, b.line_no),
            })
            .collect();
        d.raise(
            &s.saga_id(),
            s.book.exceptions_raised,
            ExceptionCategory::StockShortage,
            SourceRef::new(System::Odoo, order.order_ref.clone()),
            format!(
                "order {}: {}; the shortfall is backordered in Odoo — check the replenishment",
                order.order_ref,
                summary.join(", ")
            ),
        );
        d.record(JournalBody::Backordered(Backorder { lines: backorder.clone() }));
        d.send(
            System::Odoo,
            keys::backorder_of_reservation(&order.order_ref),
            CommandBody::CreateBackorder(BackorderRequest { order_ref: order.order_ref.clone(), lines: backorder }),
        );
    }
    if release_lines.is_empty() {
        d.record(JournalBody::Completed(Empty {}));
        return d;
    }
    d.record(JournalBody::ReleaseRequested(ReleaseRequested {
        due_at: ctx.now.plus_secs(ctx.policy.pick_timeout_secs),
    }));
    d.send(
        System::Wms,
        keys::release(&order.order_ref),
        CommandBody::ReleaseToWarehouse(StockRequest {
            order_ref: order.order_ref.clone(),
            warehouse: warehouse_of(order),
            lines: release_lines,
        }),
    );
    d
}

fn on_released(s: &Fulfillment, r: &ReleasedToWarehouse) -> Decision {
    let mut d = Decision::noop();
    if s.wms_order_id.is_none() && s.status >= Status::Released {
        d.record(JournalBody::WarehouseAccepted(WarehouseAccepted { wms_order_id: r.wms_order_id.clone() }));
    }
    d
}

fn pick_problems(s: &Fulfillment, p: &PickConfirmed, catalog: &Catalog) -> Vec<String> {
    let order = s.order.as_ref().expect("picking implies an order");
    let mut problems = Vec::new();
    for pl in &p.lines {
        let Some(line) = order.lines.iter().find(|l| l.line_no == pl.line_no) else {
            problems.push(format!("line {} is not on the order", pl.line_no));
            continue;
        };
        if line.sku != pl.sku {
            problems.push(format!("line {}: picked SKU {:?}, ordered {:?}", pl.line_no, pl.sku, line.sku));
        }
        let progress = s.lines.get(&pl.line_no).cloned().unwrap_or_default();
        if progress.picked + pl.quantity > progress.reserved {
            problems.push(format!(
                "line {}: picking {} on top of {} exceeds the {} released",
                pl.line_no, pl.quantity, progress.picked, progress.reserved
            ));
        }
        match catalog.tracking(&line.sku) {
            Tracking::Lot => {
                let lots: Qty = pl.lots.iter().map(|l| l.quantity).sum();
                if lots != pl.quantity {
                    problems.push(format!(
                        "line {}: lot-tracked {} needs lots for {} but lots cover {}",
                        pl.line_no, line.sku, pl.quantity, lots
                    ));
                }
            }
            Tracking::Serial => {
                let unique: BTreeSet<&String> = pl.serials.iter().collect();
                if Qty::units(pl.serials.len() as i64) != pl.quantity || unique.len() != pl.serials.len() {
                    problems.push(format!(
                        "line {}: serial-tracked {} needs one distinct serial per unit ({} units, {} serials)",
                        pl.line_no,
                        line.sku,
                        pl.quantity,
                        pl.serials.len()
                    ));
                }
                if let Some(dup) = pl.serials.iter().find(|x| progress.serials.contains(*x)) {
                    problems.push(format!("line {}: serial {dup:?} was already picked", pl.line_no));
                }
            }
            Tracking::None => {}
        }
    }
    problems
}

fn on_pick(s: &Fulfillment, p: &PickConfirmed, ctx: &Context<'_>) -> Decision {
    let mut d = Decision::noop();
    if s.picks.contains(&p.pick_id) || s.pick_complete || s.status < Status::Released {
        return d;
    }
    let order_ref = s.order_ref().to_string();
    let problems = pick_problems(s, p, ctx.catalog);
    if !problems.is_empty() {
        d.raise(
            &s.saga_id(),
            s.book.exceptions_raised,
            ExceptionCategory::PickMismatch,
            SourceRef::new(System::Wms, p.pick_id.clone()),
            format!(
                "order {order_ref}, pick {}: {}; correct the pick in the warehouse system and resend it",
                p.pick_id,
                problems.join("; ")
            ),
        );
        return d;
    }
    d.record(JournalBody::PickRecorded(p.clone()));
    for id in s.book.open_of(ExceptionCategory::PickOverdue) {
        d.record(JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: id.clone(),
            resolution: format!("pick {} confirmed late", p.pick_id),
        }));
    }
    if p.complete {
        // Whatever was released but not picked goes to a backorder.
        let mut backorder = Vec::new();
        let order = s.order.as_ref().expect("picking implies an order");
        for line in &order.lines {
            let progress = s.lines.get(&line.line_no).cloned().unwrap_or_default();
            let now_picked =
                progress.picked + p.lines.iter().filter(|x| x.line_no == line.line_no).map(|x| x.quantity).sum::<Qty>();
            let missing = progress.reserved.saturating_sub(now_picked);
            if !missing.is_zero() {
                backorder.push(BackorderLine { line_no: line.line_no, sku: line.sku.clone(), quantity: missing });
            }
        }
        if !backorder.is_empty() {
            d.record(JournalBody::Backordered(Backorder { lines: backorder.clone() }));
            d.send(
                System::Odoo,
                keys::backorder_of_pick(&order_ref),
                CommandBody::CreateBackorder(BackorderRequest { order_ref: order_ref.clone(), lines: backorder }),
            );
        }
        // Picking is finished: if that leaves nothing to ship, the order ends here. Picked
        // empty, it is entirely backordered (Odoo carries the backorder); everything picked
        // already shipped and delivered, it is complete. Otherwise no goods issue or proof
        // of delivery would ever come to end it.
        let picked_now = |line_no: i32| -> Qty {
            let before = s.lines.get(&line_no).map(|l| l.picked).unwrap_or(Qty::ZERO);
            before + p.lines.iter().filter(|x| x.line_no == line_no).map(|x| x.quantity).sum::<Qty>()
        };
        let nothing_picked = order.lines.iter().all(|l| picked_now(l.line_no).is_zero());
        let all_shipped = order
            .lines
            .iter()
            .all(|l| s.lines.get(&l.line_no).map(|x| x.shipped).unwrap_or(Qty::ZERO) >= picked_now(l.line_no));
        let all_delivered = !s.shipments.is_empty() && s.shipments.values().all(|x| x.delivered);
        if nothing_picked || (all_shipped && all_delivered) {
            d.record(JournalBody::Completed(Empty {}));
        }
    }
    d
}

fn on_goods_issued(s: &Fulfillment, g: &GoodsIssued) -> Decision {
    let mut d = Decision::noop();
    if s.shipments.contains_key(&g.shipment_id) {
        return d; // one shipment, recorded once
    }
    let order_ref = s.order_ref().to_string();
    let mut problems = Vec::new();
    for sl in &g.lines {
        let progress = s.lines.get(&sl.line_no).cloned().unwrap_or_default();
        if sl.quantity + progress.shipped > progress.picked {
            problems.push(format!(
                "line {}: shipping {} on top of {} exceeds the {} picked",
                sl.line_no, sl.quantity, progress.shipped, progress.picked
            ));
        }
        if let Some(lot) = sl.lots.iter().find(|l| !progress.lots.contains(&l.lot)) {
            problems.push(format!("line {}: lot {:?} was never picked", sl.line_no, lot.lot));
        }
        if let Some(serial) = sl.serials.iter().find(|x| !progress.serials.contains(*x)) {
            problems.push(format!("line {}: serial {serial:?} was never picked", sl.line_no));
        }
    }
    if g.lines.is_empty() {
        problems.push("the shipment has no lines".to_string());
    }
    if !problems.is_empty() {
        d.raise(
            &s.saga_id(),
            s.book.exceptions_raised,
            ExceptionCategory::PickMismatch,
            SourceRef::new(System::Wms, g.shipment_id.clone()),
            format!(
                "order {order_ref}, shipment {}: {}; correct the goods issue in the warehouse system and resend it",
                g.shipment_id,
                problems.join("; ")
            ),
        );
        return d;
    }
    d.record(JournalBody::ShipmentRecorded(g.clone()));
    let ship_to = s.order.as_ref().map(|o| o.ship_to.clone()).unwrap_or_default();
    d.send(
        System::Carrier,
        keys::carrier(&g.shipment_id),
        CommandBody::BookCarrier(BookCarrier {
            order_ref,
            shipment_id: g.shipment_id.clone(),
            ship_to,
            packages: g.packages.clone(),
        }),
    );
    d
}

fn on_carrier_booked(s: &Fulfillment, c: &CarrierBooked) -> Decision {
    let mut d = Decision::noop();
    match s.shipments.get(&c.shipment_id) {
        Some(sh) if sh.carrier.is_none() => {
            d.record(JournalBody::CarrierAssigned(CarrierAssigned {
                shipment_id: c.shipment_id.clone(),
                carrier: c.carrier.clone(),
                tracking_ref: c.tracking_ref.clone(),
            }));
            d.send(
                System::Odoo,
                keys::confirm_shipment(&c.shipment_id),
                CommandBody::ConfirmShipment(ConfirmShipment {
                    order_ref: s.order_ref().to_string(),
                    shipment_id: c.shipment_id.clone(),
                    tracking_ref: c.tracking_ref.clone(),
                    lines: sh.issued.as_ref().map(|g| g.lines.clone()).unwrap_or_default(),
                }),
            );
        }
        Some(_) => {}
        None => {
            return Decision::reject(
                DeadLetterKind::Rule,
                format!(
                    "carrier booking for shipment {:?} of order {}, which has not been issued; replay it after the goods issue arrives",
                    c.shipment_id,
                    s.order_ref()
                ),
            );
        }
    }
    d
}

fn on_delivered(s: &Fulfillment, dl: &Delivered) -> Decision {
    let mut d = Decision::noop();
    let Some(sh) = s.shipments.get(&dl.shipment_id) else {
        return Decision::reject(
            DeadLetterKind::Rule,
            format!(
                "proof of delivery for shipment {:?} of order {}, which has not been issued; replay it after the goods issue arrives",
                dl.shipment_id,
                s.order_ref()
            ),
        );
    };
    if sh.delivered {
        return d;
    }
    d.record(JournalBody::DeliveryConfirmed(DeliveryConfirmed {
        shipment_id: dl.shipment_id.clone(),
        signed_by: dl.signed_by.clone(),
    }));
    // Complete once picking is finished, everything picked has shipped, and every
    // shipment is delivered.
    let others_delivered = s.shipments.iter().all(|(id, x)| x.delivered || *id == dl.shipment_id);
    let all_shipped = s.lines.values().all(|l| l.shipped >= l.picked);
    if s.pick_complete && all_shipped && others_delivered && s.book.completed_at.is_none() {
        d.record(JournalBody::Completed(Empty {}));
    }
    d
}

/// Goods left the warehouse for an order already cancelled (the warehouse shipped before
/// the cancellation reached it): the order stays cancelled and nothing is invoiced, but
/// the goods are gone, so someone is told — never a silent drop. The stock reconciliation
/// shows the same units missing until they come back or the order is reinstated.
fn on_goods_issued_after_cancellation(s: &Fulfillment, g: &GoodsIssued) -> Decision {
    let mut d = Decision::noop();
    let subject = SourceRef::new(System::Wms, g.shipment_id.clone());
    if s.book.subjects.values().any(|x| *x == subject) {
        return d;
    }
    let lines: Vec<String> = g.lines.iter().map(|l| format!("{} {}", l.quantity, l.sku)).collect();
    d.raise(
        &s.saga_id(),
        s.book.exceptions_raised,
        ExceptionCategory::LateCancellation,
        subject,
        format!(
            "the warehouse issued shipment {} ({}) for order {}, which was cancelled before: the goods left but are not booked as shipped or invoiced; arrange their return with the customer (or reinstate the order in Odoo), then resolve this exception",
            g.shipment_id,
            lines.join(", "),
            g.order_ref
        ),
    );
    d
}

fn on_cancelled(s: &Fulfillment, c: &OrderCancelled) -> Decision {
    let mut d = Decision::noop();
    let order_ref = s.order_ref().to_string();
    if !s.status.before_goods_issue() {
        if s.book.open_of(ExceptionCategory::LateCancellation).next().is_none() {
            d.raise(
                &s.saga_id(),
                s.book.exceptions_raised,
                ExceptionCategory::LateCancellation,
                SourceRef::new(System::Odoo, order_ref.clone()),
                format!(
                    "order {order_ref} was cancelled in Odoo ({}) after goods were issued; arrange a return or reinstate the order",
                    c.reason
                ),
            );
        }
        return d;
    }
    let mut compensations = Vec::new();
    if s.status >= Status::Reserving && s.status != Status::OnHold {
        let key = keys::cancel_reservation(&order_ref);
        d.send(
            System::Wms,
            key.clone(),
            CommandBody::CancelReservation(OrderOnly { order_ref: order_ref.clone(), reason: c.reason.clone() }),
        );
        compensations.push(key);
    }
    if s.status >= Status::Released {
        let key = keys::cancel_release(&order_ref);
        d.send(
            System::Wms,
            key.clone(),
            CommandBody::CancelWarehouseRelease(OrderOnly { order_ref: order_ref.clone(), reason: c.reason.clone() }),
        );
        compensations.push(key);
    }
    d.record(JournalBody::Cancelled(Cancelled { reason: c.reason.clone(), compensations }));
    for id in s.book.open_exceptions.keys() {
        d.record(JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: id.clone(),
            resolution: "order cancelled".to_string(),
        }));
    }
    d.record(JournalBody::Completed(Empty {}));
    d
}

/// The idempotency keys of the commands this saga issues, one function per command.
pub mod keys {
    /// `ReserveStock`.
    pub fn reserve(order_ref: &str) -> String {
        format!("reserve:{order_ref}")
    }
    /// `ReleaseToWarehouse`.
    pub fn release(order_ref: &str) -> String {
        format!("release:{order_ref}")
    }
    /// `CancelReservation` (compensation).
    pub fn cancel_reservation(order_ref: &str) -> String {
        format!("cancel-reservation:{order_ref}")
    }
    /// `CancelWarehouseRelease` (compensation).
    pub fn cancel_release(order_ref: &str) -> String {
        format!("cancel-release:{order_ref}")
    }
    /// `CreateBackorder` of the reservation's shortfall.
    pub fn backorder_of_reservation(order_ref: &str) -> String {
        format!("backorder:{order_ref}:reservation")
    }
    /// `CreateBackorder` of what picking left behind.
    pub fn backorder_of_pick(order_ref: &str) -> String {
        format!("backorder:{order_ref}:pick")
    }
    /// `BookCarrier` of a shipment.
    pub fn carrier(shipment_id: &str) -> String {
        format!("carrier:{shipment_id}")
    }
    /// `ConfirmShipment` of a shipment.
    pub fn confirm_shipment(shipment_id: &str) -> String {
        format!("confirm-shipment:{shipment_id}")
    }
}

/// Rebuilds, from the state, the command this saga issued under `key`, exactly as it was
/// first sent (same target, key and body): what an operator's retry sends again. `None`
/// when the saga never issued `key`; `Err` (with the reason) when it did but the state
/// cannot reproduce the body exactly.
pub fn reissue(s: &Fulfillment, key: &str) -> Option<Result<Outbound, String>> {
    if !s.issued.contains(key) {
        return None;
    }
    let order = s.order.as_ref()?;
    let order_ref = order.order_ref.as_str();
    let out = |target: System, body: CommandBody| Ok(Outbound { target, idempotency_key: key.to_string(), body });
    let stock = |lines: Vec<OrderLine>| StockRequest {
        order_ref: order_ref.to_string(),
        warehouse: warehouse_of(order),
        lines,
    };
    let cancel = || OrderOnly { order_ref: order_ref.to_string(), reason: s.cancel_reason.clone().unwrap_or_default() };
    let shipment = |prefix: &str| key.strip_prefix(prefix).and_then(|id| s.shipments.get(id).map(|x| (id, x)));
    Some(if key == keys::reserve(order_ref) {
        out(System::Wms, CommandBody::ReserveStock(stock(order.lines.clone())))
    } else if key == keys::release(order_ref) {
        // The release carries each line at its reserved quantity; the state keeps one
        // reservation per line number, so an order that repeats a line number cannot be
        // rebuilt line for line.
        let numbers: BTreeSet<i32> = order.lines.iter().map(|l| l.line_no).collect();
        if numbers.len() != order.lines.len() {
            return Some(Err(format!(
                "order {order_ref} repeats a line number, so the release to the warehouse cannot be rebuilt line for line; release the rest in the warehouse system"
            )));
        }
        let lines = order
            .lines
            .iter()
            .filter_map(|l| {
                let reserved = s.lines.get(&l.line_no).map(|p| p.reserved).unwrap_or(Qty::ZERO);
                (!reserved.is_zero()).then(|| OrderLine { quantity: reserved, ..l.clone() })
            })
            .collect();
        out(System::Wms, CommandBody::ReleaseToWarehouse(stock(lines)))
    } else if key == keys::cancel_reservation(order_ref) {
        out(System::Wms, CommandBody::CancelReservation(cancel()))
    } else if key == keys::cancel_release(order_ref) {
        out(System::Wms, CommandBody::CancelWarehouseRelease(cancel()))
    } else if let Some(lines) = s.backorders.get(key) {
        out(
            System::Odoo,
            CommandBody::CreateBackorder(BackorderRequest { order_ref: order_ref.to_string(), lines: lines.clone() }),
        )
    } else if let Some((id, x)) = shipment("carrier:")
        && let Some(g) = &x.issued
    {
        out(
            System::Carrier,
            CommandBody::BookCarrier(BookCarrier {
                order_ref: order_ref.to_string(),
                shipment_id: id.to_string(),
                ship_to: order.ship_to.clone(),
                packages: g.packages.clone(),
            }),
        )
    } else if let Some((id, x)) = shipment("confirm-shipment:")
        && let Some(tracking_ref) = &x.tracking_ref
    {
        out(
            System::Odoo,
            CommandBody::ConfirmShipment(ConfirmShipment {
                order_ref: order_ref.to_string(),
                shipment_id: id.to_string(),
                tracking_ref: tracking_ref.clone(),
                lines: x.issued.as_ref().map(|g| g.lines.clone()).unwrap_or_default(),
            }),
        )
    } else {
        Err(format!("the saga issued {key} but its state does not say how; resolve the exception with a note"))
    })
}

/// The command a journal event of this saga answers (closes its `DELIVERY_FAILED`
/// exception): the reservation answer, the warehouse's acceptance or first pick, the
/// carrier booking.
pub(crate) fn answers(order_ref: &str, body: &JournalBody) -> Option<String> {
    match body {
        JournalBody::StockAllocated(_) => Some(keys::reserve(order_ref)),
        JournalBody::WarehouseAccepted(_) | JournalBody::PickRecorded(_) => Some(keys::release(order_ref)),
        JournalBody::CarrierAssigned(c) => Some(keys::carrier(&c.shipment_id)),
        _ => None,
    }
}

/// Whether the answer to the command `key` has arrived already (or the order moved past
/// needing it): a late report of its failure changes nothing.
fn answered(s: &Fulfillment, key: &str) -> bool {
    let order_ref = s.order_ref();
    if key == keys::reserve(order_ref) {
        s.status != Status::Reserving
    } else if key == keys::release(order_ref) {
        s.status != Status::Released
    } else if let Some(id) = key.strip_prefix("carrier:") {
        s.shipments.get(id).is_some_and(|x| x.carrier.is_some())
    } else {
        false
    }
}

fn on_command_failed(s: &Fulfillment, f: &CommandFailed) -> Decision {
    let order_ref = s.order_ref();
    match reissue(s, &f.idempotency_key) {
        None => outcome::never_issued(f, order_ref),
        Some(rebuilt) => {
            outcome::decide_failure(&s.book, &s.saga_id(), order_ref, f, &rebuilt, answered(s, &f.idempotency_key))
        }
    }
}

/// What an operator's retry of an exception re-issues: the failed step's command, exactly
/// as it was first sent (same idempotency key, same body — [`reissue`]), so the target
/// drops it if it had the first one. A refused command (`DELIVERY_FAILED`) is sent again;
/// a pick that is overdue re-sends the release to the warehouse; every other category is
/// refused with what to do instead.
pub fn retry(s: &Fulfillment, exception_id: &str) -> Result<Outbound, String> {
    let Some(category) = s.book.open_exceptions.get(exception_id) else {
        return Err(book::not_open(&s.book, exception_id));
    };
    let order_ref = s.order_ref();
    match category {
        ExceptionCategory::DeliveryFailed => {
            let key = s.book.subjects.get(exception_id).map(|x| x.id.as_str()).unwrap_or_default();
            reissue(s, key).unwrap_or_else(|| {
                Err(format!("exception {exception_id} names command {key:?}, which this saga never issued; resolve it with a note"))
            })
        }
        ExceptionCategory::PickOverdue => {
            if !matches!(s.status, Status::Released | Status::Picking) || s.pick_complete {
                return Err(format!(
                    "order {order_ref} is {}: the release to the warehouse is no longer the pending step, so there is nothing to re-issue; resolve the exception with a note",
                    s.status.as_str()
                ));
            }
            reissue(s, &keys::release(order_ref)).unwrap_or_else(|| {
                Err(format!("order {order_ref} was never released to the warehouse; resolve the exception with a note"))
            })
        }
        ExceptionCategory::MasterData => Err(format!(
            "exception {exception_id} has no command to re-issue: fix the master data in Odoo, then replay the order (`waybill saga replay o2f:{order_ref}`)"
        )),
        ExceptionCategory::StockShortage => Err(format!(
            "exception {exception_id} has no command to re-issue: the shortfall was backordered in Odoo; resolve it with a note once the replenishment is checked"
        )),
        ExceptionCategory::PickMismatch => Err(format!(
            "exception {exception_id} has no command to re-issue: the warehouse sent a pick or goods issue that does not match; correct it in the warehouse system and resend it, then resolve this exception"
        )),
        ExceptionCategory::LateCancellation => Err(format!(
            "exception {exception_id} has no command to re-issue: the goods left before the cancellation; arrange a return or reinstate the order, then resolve it"
        )),
        other => Err(format!(
            "exception {exception_id} ({other}) has no command to re-issue; fix the cause and resolve it with a note"
        )),
    }
}

impl crate::saga::Saga for Fulfillment {
    fn kind(&self) -> SagaKind {
        Self::KIND
    }
    fn book(&self) -> &SagaBook {
        &self.book
    }
    fn apply(&mut self, event: &JournalEvent) {
        Fulfillment::apply(self, event)
    }
    fn is_started(&self) -> bool {
        self.status != Status::New
    }
    fn status(&self) -> String {
        self.status.as_str().to_string()
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        Fulfillment::next_deadline(self)
    }
    fn on_timer(&self, _env: &crate::flow::Env<'_>, now: Timestamp) -> Decision {
        on_timer(self, now)
    }
    fn watchdog(&self) -> Option<crate::watch::Wait> {
        crate::watch::fulfillment(self)
    }
    fn fire_watchdog(&self, d: &mut Decision, saga_id: &str, now: Timestamp) {
        crate::watch::fire_fulfillment(d, saga_id, self, now)
    }
    fn retry(&self, exception_id: &str) -> Result<Outbound, String> {
        retry(self, exception_id)
    }
    fn reissue(&self, key: &str) -> Option<Result<Outbound, String>> {
        reissue(self, key)
    }
    fn lifecycle(&self, body: &JournalBody) -> Option<crate::saga::Lifecycle> {
        let starts = matches!(body, JournalBody::OrderAccepted(_));
        crate::saga::lifecycle(body, starts, matches!(body, JournalBody::Cancelled(_)))
    }
    fn settle(&self, key: &str, decision: &mut Decision) {
        let order_ref = self.order.as_ref().map_or(key, |o| o.order_ref.as_str());
        outcome::close_answered(decision, &self.book, |j| answers(order_ref, j));
    }
}
