//! Inbound events as the source systems send them. Every builder derives the event id
//! from the business key (`odoo:release:<order>`, `wms:pick:<pick id>`, …), so the same
//! call twice is a redelivery; every event occurred at [`OCCURRED_AT`] unless re-stamped
//! with [`at`] or [`at_now`]. Lines default to 12.50 a unit, tax code `VAT20`,
//! warehouse `WH1`; customer `C1` ships to `C1-SHIP` in EUR.

use waybill_domain::event::*;
use waybill_domain::{EventMeta, InboundEvent, Money, Qty, SourceRef, System, Timestamp};

/// When every built event occurred: 2023-11-14T22:13:20Z.
pub const OCCURRED_AT: Timestamp = Timestamp(1_700_000_000_000_000);

/// The unit price of [`line`]: 12.50.
pub const UNIT_PRICE: Money = Money(1250);

/// `e`, occurred at `t`.
pub fn at(mut e: InboundEvent, t: Timestamp) -> InboundEvent {
    e.meta.occurred_at = t;
    e
}

/// `e`, occurred now: for events appended to a running node, whose timers and
/// sync-delay figures run on the wall clock.
pub fn at_now(e: InboundEvent) -> InboundEvent {
    at(e, Timestamp::now())
}

/// An event `id` of `order` from `system`.
pub fn ev(id: &str, system: System, order: &str, body: EventBody) -> InboundEvent {
    InboundEvent {
        meta: EventMeta {
            event_id: id.to_string(),
            source: SourceRef::new(system, order),
            correlation_key: order.to_string(),
            occurred_at: OCCURRED_AT,
            actor: None,
        },
        body,
    }
}

/// An order line of `units` × `sku` at [`UNIT_PRICE`].
pub fn line(line_no: i32, sku: &str, uom: &str, units: i64) -> OrderLine {
    priced_line(line_no, sku, uom, units, UNIT_PRICE)
}

/// An order line of `units` × `sku` at `unit_price`.
pub fn priced_line(line_no: i32, sku: &str, uom: &str, units: i64, unit_price: Money) -> OrderLine {
    OrderLine {
        line_no,
        sku: sku.into(),
        uom: uom.into(),
        quantity: Qty::units(units),
        unit_price,
        tax_code: Some("VAT20".into()),
        requested_date: Timestamp(0),
        warehouse: "WH1".into(),
    }
}

/// Odoo releases `order` for customer `C1`.
pub fn released(order: &str, lines: Vec<OrderLine>) -> InboundEvent {
    ev(
        &format!("odoo:release:{order}"),
        System::Odoo,
        order,
        EventBody::OrderReleased(OrderReleased {
            order_ref: order.into(),
            customer_ref: "C1".into(),
            ship_to: "C1-SHIP".into(),
            currency: "EUR".into(),
            client_order_ref: None,
            lines,
            company: None,
        }),
    )
}

/// The warehouse reserves stock: (line, reserved units, short units) per line.
pub fn reserved(order: &str, lines: &[(i32, i64, i64)]) -> InboundEvent {
    ev(
        &format!("wms:reserved:{order}"),
        System::Wms,
        order,
        EventBody::StockReserved(StockReserved {
            order_ref: order.into(),
            lines: lines
                .iter()
                .map(|(n, r, s)| LineReservation { line_no: *n, reserved: Qty::units(*r), short: Qty::units(*s) })
                .collect(),
        }),
    )
}

/// The warehouse accepts the release of `order` as its order `W-<order>`.
pub fn accepted(order: &str) -> InboundEvent {
    ev(
        &format!("wms:accepted:{order}"),
        System::Wms,
        order,
        EventBody::ReleasedToWarehouse(ReleasedToWarehouse {
            order_ref: order.into(),
            wms_order_id: format!("W-{order}"),
        }),
    )
}

/// The warehouse confirms pick `pick_id`; `complete` when picking is done.
pub fn pick(order: &str, pick_id: &str, lines: Vec<PickedLine>, complete: bool) -> InboundEvent {
    ev(
        &format!("wms:pick:{pick_id}"),
        System::Wms,
        order,
        EventBody::PickConfirmed(PickConfirmed { order_ref: order.into(), pick_id: pick_id.into(), lines, complete }),
    )
}

/// A picked line from bin `A-01`, without lots or serials.
pub fn picked(line_no: i32, sku: &str, units: i64) -> PickedLine {
    PickedLine {
        line_no,
        sku: sku.into(),
        quantity: Qty::units(units),
        lots: vec![],
        serials: vec![],
        bin: "A-01".into(),
    }
}

/// The warehouse issues shipment `shipment`: (line, sku, units) per line, one package.
pub fn issued(order: &str, shipment: &str, lines: &[(i32, &str, i64)]) -> InboundEvent {
    ev(
        &format!("wms:issued:{shipment}"),
        System::Wms,
        order,
        EventBody::GoodsIssued(GoodsIssued {
            order_ref: order.into(),
            shipment_id: shipment.into(),
            lines: lines
                .iter()
                .map(|(n, sku, u)| ShippedLine {
                    line_no: *n,
                    sku: sku.to_string(),
                    quantity: Qty::units(*u),
                    lots: vec![],
                    serials: vec![],
                })
                .collect(),
            packages: vec![Package { package_id: format!("PKG-{shipment}"), weight_grams: 1200 }],
        }),
    )
}

/// The carrier books `shipment` (DHL, tracking `TRK-<shipment>`).
pub fn booked(order: &str, shipment: &str) -> InboundEvent {
    ev(
        &format!("carrier:booked:{shipment}"),
        System::Carrier,
        order,
        EventBody::CarrierBooked(CarrierBooked {
            order_ref: order.into(),
            shipment_id: shipment.into(),
            carrier: "DHL".into(),
            tracking_ref: format!("TRK-{shipment}"),
        }),
    )
}

/// The carrier delivers `shipment`, signed by J. Doe.
pub fn delivered(order: &str, shipment: &str) -> InboundEvent {
    ev(
        &format!("carrier:pod:{shipment}"),
        System::Carrier,
        order,
        EventBody::Delivered(Delivered {
            order_ref: order.into(),
            shipment_id: shipment.into(),
            signed_by: Some("J. Doe".into()),
        }),
    )
}

/// Odoo cancels `order` at the customer's request.
pub fn cancelled(order: &str) -> InboundEvent {
    ev(
        &format!("odoo:cancel:{order}"),
        System::Odoo,
        order,
        EventBody::OrderCancelled(OrderCancelled { order_ref: order.into(), reason: "customer request".into() }),
    )
}

/// Finance posts the invoice of `shipment` as `number`.
pub fn invoice_posted(order: &str, shipment: &str, number: &str) -> InboundEvent {
    ev(
        &format!("finance:posted:{shipment}"),
        System::Finance,
        order,
        EventBody::InvoicePosted(InvoicePosted {
            order_ref: order.into(),
            shipment_id: shipment.into(),
            invoice_number: number.into(),
            amount: Money(3750),
        }),
    )
}

/// An approval (`approve`) or rejection of `posting` at `version` by `actor` as `role`.
pub fn decision(
    order: &str,
    id: &str,
    posting: &str,
    version: i64,
    actor: &str,
    role: &str,
    approve: bool,
) -> InboundEvent {
    let d = PostingDecision {
        order_ref: order.into(),
        posting_id: posting.into(),
        expected_version: version,
        actor: actor.into(),
        reason: "checked".into(),
        role: role.into(),
    };
    ev(id, System::Operator, order, if approve { EventBody::PostingApproved(d) } else { EventBody::PostingRejected(d) })
}

/// Odoo authorises return `rma_id`: (line, sku, units) per line.
pub fn rma(order: &str, rma_id: &str, lines: &[(i32, &str, i64)]) -> InboundEvent {
    ev(
        &format!("odoo:rma:{rma_id}"),
        System::Odoo,
        order,
        EventBody::ReturnAuthorized(ReturnAuthorized {
            order_ref: order.into(),
            rma_id: rma_id.into(),
            reason: "damaged in transit".into(),
            lines: lines
                .iter()
                .map(|(n, sku, u)| RmaLine { line_no: *n, sku: sku.to_string(), quantity: Qty::units(*u) })
                .collect(),
        }),
    )
}

/// The warehouse receives return `rma_id` as receipt `receipt`.
pub fn received(order: &str, rma_id: &str, receipt: &str, lines: Vec<ReturnedLine>) -> InboundEvent {
    ev(
        &format!("wms:receipt:{receipt}"),
        System::Wms,
        order,
        EventBody::ReturnReceived(ReturnReceived {
            order_ref: order.into(),
            rma_id: rma_id.into(),
            receipt_id: receipt.into(),
            lines,
        }),
    )
}

/// A returned line in `condition`.
pub fn returned(line_no: i32, sku: &str, units: i64, condition: ItemCondition, serials: &[&str]) -> ReturnedLine {
    ReturnedLine {
        line_no,
        sku: sku.into(),
        quantity: Qty::units(units),
        condition,
        lots: vec![],
        serials: serials.iter().map(|s| s.to_string()).collect(),
    }
}

/// Finance issues the credit note of return receipt `receipt`.
pub fn credit_issued(order: &str, receipt: &str) -> InboundEvent {
    ev(
        &format!("finance:credit:{receipt}"),
        System::Finance,
        order,
        EventBody::CreditNoteIssued(CreditNoteIssued {
            order_ref: order.into(),
            receipt_id: receipt.into(),
            credit_note_number: format!("RINV/{receipt}"),
            amount: Money(100),
        }),
    )
}

/// Finance refuses the invoice of `shipment` for `reason`.
pub fn invoice_refused(order: &str, shipment: &str, reason: &str) -> InboundEvent {
    ev(
        &format!("finance:reject:{shipment}:{reason}"),
        System::Finance,
        order,
        EventBody::InvoiceRejected(DocumentRejected {
            order_ref: order.into(),
            business_key: shipment.into(),
            reason: reason.into(),
        }),
    )
}

fn exception_action(order: &str, exception_id: &str, actor: &str, note: &str) -> ExceptionAction {
    ExceptionAction {
        order_ref: order.into(),
        exception_id: exception_id.into(),
        actor: actor.into(),
        role: "operator".into(),
        peer: "127.0.0.1:50000".into(),
        request_id: "req".into(),
        note: note.into(),
    }
}

/// Operator olga asks to retry exception `exception_id`.
pub fn retry(order: &str, id: &str, exception_id: &str) -> InboundEvent {
    ev(
        id,
        System::Operator,
        order,
        EventBody::ExceptionRetryRequested(exception_action(order, exception_id, "olga", "")),
    )
}

/// Operator olga resolves exception `exception_id` with `note`.
pub fn resolve(order: &str, id: &str, exception_id: &str, note: &str) -> InboundEvent {
    ev(
        id,
        System::Operator,
        order,
        EventBody::ExceptionResolveRequested(exception_action(order, exception_id, "olga", note)),
    )
}

/// Operator olga assigns exception `exception_id` to `owner`.
pub fn assign(order: &str, id: &str, exception_id: &str, owner: &str) -> InboundEvent {
    ev(
        id,
        System::Operator,
        order,
        EventBody::ExceptionAssignRequested(ExceptionAssignment {
            order_ref: order.into(),
            exception_id: exception_id.into(),
            owner: owner.into(),
            actor: "olga".into(),
            role: "operator".into(),
            peer: "127.0.0.1:50000".into(),
            request_id: "req".into(),
            note: String::new(),
        }),
    )
}

/// Operator olga asks to replay the order-to-fulfillment saga of `order`.
pub fn replay_request(order: &str, id: &str) -> ReplayRequest {
    ReplayRequest {
        order_ref: order.into(),
        saga_id: format!("o2f:{order}"),
        actor: "olga".into(),
        role: "operator".into(),
        peer: "127.0.0.1:50000".into(),
        request_id: id.into(),
        note: String::new(),
        inputs: Vec::new(),
    }
}

/// The connector of `target` reports that it refused the command `key` (`command`, e.g.
/// `ConfirmShipment`) of saga `saga_id` for `reason`; `n` tells reports apart (a
/// connector may report one refusal twice under two event ids).
pub fn command_failed(
    order: &str,
    saga_id: &str,
    key: &str,
    command: &str,
    target: System,
    reason: &str,
    n: u32,
) -> InboundEvent {
    ev(
        &format!("{target}:failed:{key}:{n}"),
        target,
        order,
        EventBody::CommandFailed(CommandFailed {
            saga_id: saga_id.into(),
            idempotency_key: key.into(),
            command: command.into(),
            target,
            reason: reason.into(),
            attempts: 1,
        }),
    )
}

/// The connector of `target` reports it down since `since` (`down = true`) or back
/// (`down = false`, occurred at [`OCCURRED_AT`]); `n` tells reports apart.
pub fn outage(target: System, down: bool, since: Timestamp, reason: &str, n: u32) -> InboundEvent {
    let o = TargetOutage { target, since, reason: reason.into() };
    let key = TargetOutage::correlation_key(target);
    if down {
        ev(&format!("{target}:down:{n}"), target, &key, EventBody::TargetUnavailable(o))
    } else {
        ev(&format!("{target}:up:{n}"), target, &key, EventBody::TargetRecovered(o))
    }
}
