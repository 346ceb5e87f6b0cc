//! Journal events, commands and dead letters as the coordinator writes them, and the
//! complete order-to-fulfillment history of a numbered order (`SO00001`, …) with its
//! commands: a mix of completed, short-shipped and cancelled orders, for tests of
//! everything that reads the journal (projections, rebuild, restore).

use waybill_domain::command::{BookCarrier, ConfirmShipment, InvoiceLine, OrderOnly, PostInvoice, StockRequest};
use waybill_domain::event::{
    GoodsIssued, LineReservation, OrderLine, OrderReleased, Package, PickConfirmed, PickedLine, ShippedLine,
};
use waybill_domain::journal::{
    Allocation, Backorder, Cancelled, CarrierAssigned, DeliveryConfirmed, Empty, ExceptionRaised, ExceptionResolved,
    InputPosition, JournalMeta, ReleaseRequested, WarehouseAccepted,
};
use waybill_domain::{
    Command, CommandBody, CommandMeta, ExceptionCategory, JournalBody, JournalEvent, Money, Qty, SagaKind, SourceRef,
    System, Timestamp, topic,
};

/// 2024-05-29T16:26:40Z, in microseconds: minute 0 of [`ts`].
pub const T0: i64 = 1_717_000_000_000_000;
/// One minute in microseconds.
pub const MIN: i64 = 60_000_000;

/// `minutes` after [`T0`].
pub fn ts(minutes: i64) -> Timestamp {
    Timestamp(T0 + minutes * MIN)
}

/// Journal event `seq` of the `kind` saga of `order`, at minute `minutes`, caused by
/// inbound event `evt-<order>-<seq>` at offset `seq` of Odoo's inbound topic.
pub fn ev(order: &str, kind: SagaKind, seq: i64, minutes: i64, body: JournalBody) -> JournalEvent {
    JournalEvent {
        meta: JournalMeta {
            saga_id: kind.saga_id(order),
            kind,
            seq,
            correlation_key: order.to_string(),
            caused_by: format!("evt-{order}-{seq}"),
            input: Some(InputPosition { topic: topic::inbound(System::Odoo), partition: 0, offset: seq }),
            at: ts(minutes),
        },
        body,
    }
}

/// (line_no, sku, warehouse, units).
pub type LineSpec = (i32, &'static str, &'static str, i64);

/// The released order as the journal's `OrderAccepted` carries it: customer `customer`,
/// 12.50 a unit, tax code `VAT21`, requested a day after [`T0`].
pub fn order_released(order: &str, customer: &str, lines: &[LineSpec]) -> OrderReleased {
    OrderReleased {
        order_ref: order.to_string(),
        customer_ref: customer.to_string(),
        ship_to: format!("{customer}-ship"),
        currency: "EUR".to_string(),
        client_order_ref: Some(format!("PO-{order}")),
        lines: lines
            .iter()
            .map(|(no, sku, wh, units)| OrderLine {
                line_no: *no,
                sku: sku.to_string(),
                uom: "Units".to_string(),
                quantity: Qty::units(*units),
                unit_price: Money(1250),
                tax_code: Some("VAT21".to_string()),
                requested_date: ts(60 * 24),
                warehouse: wh.to_string(),
            })
            .collect(),
        company: None,
    }
}

/// One to three lines for order `n`, over four SKUs and two warehouses.
pub fn lines_of(n: usize) -> Vec<LineSpec> {
    const SKUS: [&str; 4] = ["SKU-A", "SKU-B", "SKU-C", "SKU-D"];
    const WHS: [&str; 2] = ["WH1", "WH2"];
    (0..(1 + n % 3))
        .map(|i| ((i + 1) as i32 * 10, SKUS[(n + i) % 4], WHS[(n / 2 + i) % 2], (1 + (n + i) % 5) as i64))
        .collect()
}

/// `SO00042` for 42.
pub fn order_ref(n: usize) -> String {
    format!("SO{n:05}")
}

/// The one shipment of `order`: `SHP-<order>`.
pub fn shipment_id(order: &str) -> String {
    format!("SHP-{order}")
}

/// The order-to-fulfillment journal of order `n`. Every 5th order is short-shipped with
/// a stock-shortage exception (resolved for every 10th); every 7th (n % 7 == 3) is
/// cancelled after reservation; the others complete.
pub fn fulfillment(n: usize) -> Vec<JournalEvent> {
    let order = order_ref(n);
    let o = order.as_str();
    let k = SagaKind::OrderToFulfillment;
    let lines = lines_of(n);
    let short = n.is_multiple_of(5);
    let mut seq = 0;
    let mut minute = n as i64;
    let mut out = Vec::new();
    let mut push = |body: JournalBody, out: &mut Vec<JournalEvent>| {
        seq += 1;
        minute += 3;
        out.push(ev(o, k, seq, minute, body));
    };
    push(JournalBody::OrderAccepted(order_released(o, &format!("C{}", n % 13), &lines)), &mut out);
    push(JournalBody::ReservationRequested(Empty {}), &mut out);
    let alloc: Vec<LineReservation> = lines
        .iter()
        .enumerate()
        .map(|(i, (no, _, _, units))| {
            let s = if short && i == 0 { 1 } else { 0 };
            LineReservation { line_no: *no, reserved: Qty::units(units - s), short: Qty::units(s) }
        })
        .collect();
    push(JournalBody::StockAllocated(Allocation { lines: alloc.clone() }), &mut out);
    if short {
        push(
            JournalBody::ExceptionRaised(ExceptionRaised {
                exception_id: format!("{}/stock-shortage/1", k.saga_id(o)),
                category: ExceptionCategory::StockShortage,
                message: format!("1 unit of {} short; backordered", lines[0].1),
                subject: SourceRef::new(System::Odoo, o),
                entity: None,
            }),
            &mut out,
        );
        push(
            JournalBody::Backordered(Backorder {
                lines: vec![waybill_domain::command::BackorderLine {
                    line_no: lines[0].0,
                    sku: lines[0].1.to_string(),
                    quantity: Qty::units(1),
                }],
            }),
            &mut out,
        );
    }
    if n % 7 == 3 {
        push(
            JournalBody::Cancelled(Cancelled {
                reason: "customer changed their mind".to_string(),
                compensations: vec![format!("unreserve:{o}")],
            }),
            &mut out,
        );
        return out;
    }
    push(JournalBody::ReleaseRequested(ReleaseRequested { due_at: ts(n as i64 + 240) }), &mut out);
    push(JournalBody::WarehouseAccepted(WarehouseAccepted { wms_order_id: format!("W-{o}") }), &mut out);
    let picked: Vec<PickedLine> = lines
        .iter()
        .zip(&alloc)
        .map(|((no, sku, _, _), a)| PickedLine {
            line_no: *no,
            sku: sku.to_string(),
            quantity: a.reserved,
            lots: Vec::new(),
            serials: Vec::new(),
            bin: "A-01".to_string(),
        })
        .collect();
    push(
        JournalBody::PickRecorded(PickConfirmed {
            order_ref: o.to_string(),
            pick_id: format!("PK-{o}"),
            lines: picked.clone(),
            complete: true,
        }),
        &mut out,
    );
    let ship = shipment_id(o);
    push(
        JournalBody::ShipmentRecorded(GoodsIssued {
            order_ref: o.to_string(),
            shipment_id: ship.clone(),
            lines: picked
                .iter()
                .map(|p| ShippedLine {
                    line_no: p.line_no,
                    sku: p.sku.clone(),
                    quantity: p.quantity,
                    lots: Vec::new(),
                    serials: Vec::new(),
                })
                .collect(),
            packages: vec![Package { package_id: format!("PKG-{o}"), weight_grams: 1200 }],
        }),
        &mut out,
    );
    push(
        JournalBody::CarrierAssigned(CarrierAssigned {
            shipment_id: ship.clone(),
            carrier: "DHL".to_string(),
            tracking_ref: format!("TRK{n:06}"),
        }),
        &mut out,
    );
    push(
        JournalBody::DeliveryConfirmed(DeliveryConfirmed { shipment_id: ship, signed_by: Some("J. Doe".to_string()) }),
        &mut out,
    );
    if short && n.is_multiple_of(10) {
        push(
            JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: format!("{}/stock-shortage/1", k.saga_id(o)),
                resolution: "backorder shipped separately".to_string(),
            }),
            &mut out,
        );
    }
    push(JournalBody::Completed(Empty {}), &mut out);
    out
}

/// A command of the order-to-fulfillment saga of `order` to `target`, with idempotency
/// key `key`, issued at minute `minutes`.
pub fn command(order: &str, key: &str, target: System, minutes: i64, body: CommandBody) -> Command {
    Command {
        meta: CommandMeta {
            idempotency_key: key.to_string(),
            saga_id: SagaKind::OrderToFulfillment.saga_id(order),
            correlation_key: order.to_string(),
            target,
            caused_by: format!("evt-{order}"),
            issued_at: ts(minutes),
        },
        body,
    }
}

/// Commands of order `n`.
pub fn commands(n: usize) -> Vec<Command> {
    let order = order_ref(n);
    let o = order.as_str();
    let released = order_released(o, "C", &lines_of(n));
    let req = StockRequest { order_ref: o.to_string(), warehouse: "WH1".to_string(), lines: released.lines.clone() };
    let mut out =
        vec![command(o, &format!("reserve:{o}"), System::Wms, n as i64 + 4, CommandBody::ReserveStock(req.clone()))];
    if n % 7 == 3 {
        out.push(command(
            o,
            &format!("unreserve:{o}"),
            System::Wms,
            n as i64 + 12,
            CommandBody::CancelReservation(OrderOnly { order_ref: o.to_string(), reason: "cancelled".to_string() }),
        ));
        return out;
    }
    let ship = shipment_id(o);
    out.push(command(o, &format!("release:{o}"), System::Wms, n as i64 + 10, CommandBody::ReleaseToWarehouse(req)));
    out.push(command(
        o,
        &format!("book:{ship}"),
        System::Carrier,
        n as i64 + 20,
        CommandBody::BookCarrier(BookCarrier {
            order_ref: o.to_string(),
            shipment_id: ship.clone(),
            ship_to: "C-ship".to_string(),
            packages: vec![Package { package_id: format!("PKG-{o}"), weight_grams: 1200 }],
        }),
    ));
    out.push(command(
        o,
        &format!("confirm:{ship}"),
        System::Odoo,
        n as i64 + 22,
        CommandBody::ConfirmShipment(ConfirmShipment {
            order_ref: o.to_string(),
            shipment_id: ship.clone(),
            tracking_ref: format!("TRK{n:06}"),
            lines: Vec::new(),
        }),
    ));
    out.push(command(
        o,
        &format!("invoice:{ship}"),
        System::Finance,
        n as i64 + 24,
        CommandBody::PostInvoice(PostInvoice {
            order_ref: o.to_string(),
            shipment_id: ship,
            customer_ref: "C".to_string(),
            currency: "EUR".to_string(),
            lines: vec![InvoiceLine {
                line_no: 10,
                sku: "SKU-A".to_string(),
                quantity: Qty::units(1),
                unit_price: Money(1250),
                tax_code: "VAT21".to_string(),
            }],
            total: Money(1250),
        }),
    ));
    out
}
