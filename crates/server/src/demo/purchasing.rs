//! The simulated distributor's purchasing: one purchase order per ten sale orders (the
//! mix's `purchase_every`), with
//! what its supplier, warehouse and finance send over its life — the order confirmed in
//! Odoo, the supplier's shipping notice, the receipts, the supplier's bill — and what
//! goes wrong (short deliveries closed in Odoo, over-deliveries, damaged goods, a bill
//! above the order's price, a bill before the goods, a receipt sent back). Like the sale
//! orders, everything derives from the seed and the purchase order's number.
//!
//! Waybill's commands (validate the receipt in Odoo, post the bill, credit a returned
//! receipt) are answered by [`super::answers`].

use waybill_domain::event::LotQty;
use waybill_domain::purchase::*;
use waybill_domain::{EventBody, Money, Qty, System, Timestamp};
use waybill_saga::catalog::Tracking;

use super::world::{self, PRODUCTS};

/// One purchase order per this many sale orders, by default.
pub const ORDERS_PER_PURCHASE: usize = 10;

/// The suppliers.
pub const SUPPLIERS: [(&str, &str); 4] = [
    ("V-ACME", "Acme Fasteners GmbH"),
    ("V-NORD", "Nordic Tools AB"),
    ("V-IBER", "Iberia Packaging SL"),
    ("V-BALT", "Baltic Cable SIA"),
];

/// What happens to one purchase order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twist {
    /// Delivered and billed as ordered.
    AsOrdered,
    /// One line arrives short; the buyer closes the order in Odoo.
    ShortClosed,
    /// One line arrives 20 % over (and is billed as delivered): `RECEIPT_MISMATCH`.
    Over,
    /// Some units arrive damaged: `RECEIPT_MISMATCH`.
    Damaged,
    /// The bill's price is 6 % above the order's: held for an approver (three-way match).
    PriceAbove,
    /// The bill comes before the goods: it waits for them.
    BillFirst,
    /// The second receipt goes back to the supplier after it was billed: returned and
    /// credited.
    Returned,
}

/// The purchase order name of number `j` (0-based).
pub fn po_ref(j: usize) -> String {
    format!("P{:05}", j + 1)
}

/// The twist of purchase order `j`.
pub fn twist(seed: u64, j: usize) -> Twist {
    let mut r = world::rng(seed, j, 101);
    match r.u8(0..20) {
        0..=8 => Twist::AsOrdered,
        9..=10 => Twist::ShortClosed,
        11..=12 => Twist::Over,
        13..=14 => Twist::Damaged,
        15..=16 => Twist::PriceAbove,
        17..=18 => Twist::BillFirst,
        _ => Twist::Returned,
    }
}

/// One event of a purchase order's life, due `after_ms` after the order's confirmation.
#[derive(Debug, Clone)]
pub struct Step {
    /// Delay after the confirmation.
    pub after_ms: u64,
    /// The event's id (its business key).
    pub id: String,
    /// The system that sends it.
    pub system: System,
    /// The event.
    pub body: EventBody,
}

/// Purchase order `j` and everything its supplier, warehouse and finance send, in the
/// order they are due.
pub fn plan(seed: u64, j: usize, now: Timestamp) -> Vec<Step> {
    let mut r = world::rng(seed, j, 102);
    let po = po_ref(j);
    let (supplier_ref, supplier_name) = SUPPLIERS[r.usize(0..SUPPLIERS.len())];
    let n = r.usize(1..=3);
    let products: Vec<(PurchaseLine, Tracking)> = (0..n)
        .map(|k| {
            let (sku, uom, tracking) = world::product(r.usize(0..PRODUCTS));
            let quantity = match uom {
                "kg" => Qty(r.i64(20..=200) * 1000),
                _ if tracking == Tracking::Serial => Qty::units(r.i64(5..=20)),
                _ => Qty::units(r.i64(2..=40) * 10),
            };
            let line =
                PurchaseLine { line_no: (k as i32 + 1) * 10, sku, quantity, unit_price: Money(r.i64(150..=9_000)) };
            (line, tracking)
        })
        .collect();
    let lines: Vec<PurchaseLine> = products.iter().map(|(l, _)| l.clone()).collect();
    let twist = twist(seed, j);
    let mut steps = Vec::new();
    let mut push = |after_ms: u64, id: String, system: System, body: EventBody| {
        steps.push(Step { after_ms, id, system, body });
    };
    push(
        0,
        format!("odoo:po:{po}"),
        System::Odoo,
        EventBody::PurchaseOrderConfirmed(PurchaseOrderConfirmed {
            po_ref: po.clone(),
            supplier_ref: supplier_ref.into(),
            supplier_name: supplier_name.into(),
            currency: "EUR".into(),
            lines: lines.clone(),
            expected_at: now.plus_secs(5.0 * 86_400.0),
            company: None,
        }),
    );
    // What arrives of each line (accepted, damaged): as ordered unless the twist says.
    let last = lines.len() - 1;
    let arrived: Vec<(Qty, Qty)> = lines
        .iter()
        .enumerate()
        .map(|(k, l)| match twist {
            Twist::ShortClosed if k == last => (Qty(l.quantity.0 / 2), Qty::ZERO),
            Twist::Over if k == 0 => (Qty(l.quantity.0 * 6 / 5), Qty::ZERO),
            Twist::Damaged if k == 0 => (Qty(l.quantity.0 - 2000), Qty::units(2)),
            _ => (l.quantity, Qty::ZERO),
        })
        .collect();
    let asn = format!("ASN-{po}");
    // Serial-tracked products arrive with a serial per unit (Odoo refuses them without).
    let serials = |k: usize, units: Qty| -> Vec<String> {
        match products[k].1 {
            Tracking::Serial => {
                (0..units.0 / 1000).map(|n| format!("SN-{}-{}-{n}", &po[1..], lines[k].line_no)).collect()
            }
            _ => vec![],
        }
    };
    let lot = |k: usize| -> Vec<LotQty> {
        let (l, tracking) = &products[k];
        match tracking {
            Tracking::Lot => vec![LotQty { lot: format!("L{}-{}", &po[1..], l.line_no), quantity: l.quantity }],
            _ => vec![],
        }
    };
    push(
        r.u64(20..80),
        format!("wms:asn:{asn}"),
        System::Wms,
        EventBody::ShipNoticeReceived(ShipNotice {
            po_ref: po.clone(),
            asn_id: asn.clone(),
            supplier_ref: supplier_ref.into(),
            shipped_at: now,
            lines: lines
                .iter()
                .enumerate()
                .map(|(k, l)| ShipNoticeLine {
                    asn_line_no: k as i32 + 1,
                    po_line_no: l.line_no,
                    sku: l.sku.clone(),
                    quantity: arrived[k].0 + arrived[k].1,
                    lots: lot(k),
                    serials: serials(k, arrived[k].0),
                })
                .collect(),
        }),
    );
    // Receipts: one, or (a return) the last line in a receipt of its own.
    let received = |k: usize, l: &PurchaseLine| ReceivedLine {
        po_line_no: l.line_no,
        asn_line_no: Some(k as i32 + 1),
        sku: l.sku.clone(),
        quantity: arrived[k].0,
        damaged: arrived[k].1,
        lots: lot(k).into_iter().map(|x| LotQty { quantity: arrived[k].0, ..x }).collect(),
        serials: serials(k, arrived[k].0),
        bin: format!("IN-{:02}", k + 1),
    };
    let split = twist == Twist::Returned && lines.len() > 1;
    let receipt_at = r.u64(150..400);
    let mut receipts: Vec<(String, Vec<ReceivedLine>)> = Vec::new();
    let all: Vec<ReceivedLine> = lines.iter().enumerate().map(|(k, l)| received(k, l)).collect();
    if split {
        receipts.push((format!("RCV-{po}-1"), all[..last].to_vec()));
        receipts.push((format!("RCV-{po}-2"), all[last..].to_vec()));
    } else {
        receipts.push((format!("RCV-{po}-1"), all));
    }
    let bill_at = if twist == Twist::BillFirst { r.u64(60..120) } else { receipt_at + r.u64(300..700) };
    for (k, (id, lines)) in receipts.iter().enumerate() {
        push(
            receipt_at + 40 * k as u64,
            format!("wms:receipt:{id}"),
            System::Wms,
            EventBody::GoodsReceived(GoodsReceipt {
                po_ref: po.clone(),
                receipt_id: id.clone(),
                asn_id: Some(asn.clone()),
                lines: lines.clone(),
            }),
        );
    }
    if twist == Twist::ShortClosed {
        push(
            receipt_at + r.u64(100..300),
            format!("odoo:po-closed:{po}"),
            System::Odoo,
            EventBody::PurchaseOrderClosed(PurchaseOrderClosed {
                po_ref: po.clone(),
                reason: "supplier cannot deliver the rest; remaining quantity cancelled".into(),
            }),
        );
    }
    // The bill: what was accepted, at the order's price (6 % above on the first line for
    // a price twist).
    let bill_lines: Vec<BillLine> = lines
        .iter()
        .enumerate()
        .map(|(k, l)| BillLine {
            po_line_no: l.line_no,
            sku: l.sku.clone(),
            quantity: arrived[k].0,
            unit_price: if twist == Twist::PriceAbove && k == 0 {
                Money(l.unit_price.0 * 106 / 100)
            } else {
                l.unit_price
            },
        })
        .collect();
    let number = format!("{}-{}", &supplier_ref[2..], 7000 + j);
    push(
        bill_at,
        format!("finance:bill:{number}"),
        System::Finance,
        EventBody::VendorBillReceived(VendorBill {
            po_ref: po.clone(),
            bill_number: number,
            supplier_ref: supplier_ref.into(),
            currency: "EUR".into(),
            amount: bill_lines.iter().map(|l| l.unit_price.times(l.quantity)).sum(),
            lines: bill_lines,
        }),
    );
    if split {
        let (id, _) = &receipts[1];
        push(
            bill_at + r.u64(200..500),
            format!("wms:receipt-cancelled:{id}"),
            System::Wms,
            EventBody::ReceiptCancelled(ReceiptCancelled {
                po_ref: po.clone(),
                receipt_id: id.clone(),
                reason: "wrong grade delivered; sent back to the supplier".into(),
            }),
        );
        push(
            bill_at + r.u64(600..900),
            format!("odoo:po-closed:{po}"),
            System::Odoo,
            EventBody::PurchaseOrderClosed(PurchaseOrderClosed {
                po_ref: po.clone(),
                reason: "returned goods not replaced; remaining quantity cancelled".into(),
            }),
        );
    }
    steps.sort_by_key(|s| s.after_ms);
    steps
}
