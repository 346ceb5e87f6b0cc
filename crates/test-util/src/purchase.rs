//! Procure-to-receive events as Odoo, the warehouse and finance send them, keyed by the
//! purchase order (`po:<name>`). Ids derive from business keys (`odoo:po:<name>`,
//! `wms:receipt:<id>`, `finance:bill:<number>`), so the same call twice is a redelivery.
//! Supplier `SUP-1` (Acme Supplies), EUR.

use waybill_domain::event::LotQty;
use waybill_domain::purchase::*;
use waybill_domain::{EventBody, InboundEvent, Money, Qty, System, Timestamp};

use crate::inbound::{OCCURRED_AT, ev};

/// The supplier of every built purchase order.
pub const SUPPLIER: &str = "SUP-1";

/// The correlation key of `po`.
pub fn key(po: &str) -> String {
    correlation_key(po)
}

fn event(id: &str, system: System, po: &str, body: EventBody) -> InboundEvent {
    ev(id, system, &key(po), body)
}

/// Odoo confirms `po`: (line, sku, units, unit price) per line.
pub fn confirmed(po: &str, lines: &[(i32, &str, i64, i64)]) -> InboundEvent {
    let lines = lines
        .iter()
        .map(|(n, sku, units, price)| PurchaseLine {
            line_no: *n,
            sku: sku.to_string(),
            quantity: Qty::units(*units),
            unit_price: Money(*price),
        })
        .collect();
    let body = EventBody::PurchaseOrderConfirmed(PurchaseOrderConfirmed {
        po_ref: po.into(),
        supplier_ref: SUPPLIER.into(),
        supplier_name: "Acme Supplies".into(),
        currency: "EUR".into(),
        lines,
        expected_at: OCCURRED_AT.plus_secs(7.0 * 86_400.0),
        company: None,
    });
    event(&format!("odoo:po:{po}"), System::Odoo, po, body)
}

/// Odoo closes `po`.
pub fn closed(po: &str) -> InboundEvent {
    let body =
        EventBody::PurchaseOrderClosed(PurchaseOrderClosed { po_ref: po.into(), reason: "rest cancelled".into() });
    event(&format!("odoo:po-closed:{po}"), System::Odoo, po, body)
}

/// The supplier's notice `asn`: (notice line, order line, sku, units, lots) per line.
pub fn notice(po: &str, asn: &str, lines: &[(i32, i32, &str, i64, &[&str])]) -> InboundEvent {
    let lines = lines
        .iter()
        .map(|(a, l, sku, units, lots)| ShipNoticeLine {
            asn_line_no: *a,
            po_line_no: *l,
            sku: sku.to_string(),
            quantity: Qty::units(*units),
            lots: lots.iter().map(|x| LotQty { lot: x.to_string(), quantity: Qty::units(*units) }).collect(),
            serials: vec![],
        })
        .collect();
    let body = EventBody::ShipNoticeReceived(ShipNotice {
        po_ref: po.into(),
        asn_id: asn.into(),
        supplier_ref: SUPPLIER.into(),
        shipped_at: OCCURRED_AT,
        lines,
    });
    event(&format!("wms:asn:{asn}"), System::Wms, po, body)
}

/// A received line: `units` accepted and `damaged` damaged on order line `line`, against
/// notice line `asn_line` if any.
pub fn got(line: i32, asn_line: Option<i32>, sku: &str, units: i64, damaged: i64) -> ReceivedLine {
    ReceivedLine {
        po_line_no: line,
        asn_line_no: asn_line,
        sku: sku.into(),
        quantity: Qty::units(units),
        damaged: Qty::units(damaged),
        lots: vec![],
        serials: vec![],
        bin: "IN-01".into(),
    }
}

/// The warehouse receives `receipt` of `po`, against notice `asn` if any.
pub fn receipt(po: &str, receipt: &str, asn: Option<&str>, lines: Vec<ReceivedLine>) -> InboundEvent {
    let body = EventBody::GoodsReceived(GoodsReceipt {
        po_ref: po.into(),
        receipt_id: receipt.into(),
        asn_id: asn.map(str::to_string),
        lines,
    });
    event(&format!("wms:receipt:{receipt}"), System::Wms, po, body)
}

/// Odoo validated `receipt`.
pub fn validated(po: &str, receipt: &str) -> InboundEvent {
    let body = EventBody::ReceiptValidated(ReceiptValidated {
        po_ref: po.into(),
        receipt_id: receipt.into(),
        picking_ref: format!("WH/IN/{receipt}"),
    });
    event(&format!("odoo:receipt-done:{receipt}"), System::Odoo, po, body)
}

/// The warehouse cancels `receipt`.
pub fn receipt_cancelled(po: &str, receipt: &str) -> InboundEvent {
    let body = EventBody::ReceiptCancelled(ReceiptCancelled {
        po_ref: po.into(),
        receipt_id: receipt.into(),
        reason: "wrong goods".into(),
    });
    event(&format!("wms:receipt-cancelled:{receipt}"), System::Wms, po, body)
}

/// The supplier's bill `number`: (order line, sku, units, unit price) per line; the
/// amount is the sum of the lines.
pub fn bill(po: &str, number: &str, lines: &[(i32, &str, i64, i64)]) -> InboundEvent {
    let lines: Vec<BillLine> = lines
        .iter()
        .map(|(l, sku, units, price)| BillLine {
            po_line_no: *l,
            sku: sku.to_string(),
            quantity: Qty::units(*units),
            unit_price: Money(*price),
        })
        .collect();
    let amount = lines.iter().map(|l| l.unit_price.times(l.quantity)).sum();
    let body = EventBody::VendorBillReceived(VendorBill {
        po_ref: po.into(),
        bill_number: number.into(),
        supplier_ref: SUPPLIER.into(),
        currency: "EUR".into(),
        lines,
        amount,
    });
    event(&format!("finance:bill:{number}"), System::Finance, po, body)
}

/// Finance posts bill `number` for `amount`.
pub fn bill_posted(po: &str, number: &str, amount: Money) -> InboundEvent {
    let body = EventBody::VendorBillPosted(VendorBillPosted {
        po_ref: po.into(),
        bill_number: number.into(),
        document_number: format!("BILL/{number}"),
        amount,
    });
    event(&format!("finance:bill-posted:{number}"), System::Finance, po, body)
}

/// Finance refuses bill `number`.
pub fn bill_refused(po: &str, number: &str, reason: &str) -> InboundEvent {
    let body = EventBody::VendorBillRejected(VendorBillRejected {
        po_ref: po.into(),
        bill_number: number.into(),
        reason: reason.into(),
    });
    event(&format!("finance:bill-refused:{number}"), System::Finance, po, body)
}

/// Finance credits cancelled `receipt` for `amount`.
pub fn vendor_credited(po: &str, receipt: &str, amount: Money) -> InboundEvent {
    let body = EventBody::VendorCreditNoteIssued(VendorCreditIssued {
        po_ref: po.into(),
        receipt_id: receipt.into(),
        credit_number: format!("RBILL/{receipt}"),
        amount,
    });
    event(&format!("finance:vendor-credit:{receipt}"), System::Finance, po, body)
}

/// `e`, occurred `days` after [`OCCURRED_AT`].
pub fn days_later(mut e: InboundEvent, days: f64) -> InboundEvent {
    e.meta.occurred_at = Timestamp(OCCURRED_AT.0).plus_secs(days * 86_400.0);
    e
}
