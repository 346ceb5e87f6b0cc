//! What the simulated warehouse, carrier and finance answer each of Waybill's commands,
//! and when: a pure function of the command, the seed and the order's fate, shared by
//! the in-process simulator and the HTTP systems of the connector demo — so both tell
//! the same story with the same event ids.

use std::time::Duration;

use waybill_domain::command::StockRequest;
use waybill_domain::event::*;
use waybill_domain::{Command, CommandBody, EventMeta, InboundEvent, Qty, SourceRef, System, Timestamp};
use waybill_saga::Catalog;
use waybill_saga::catalog::Tracking;

use super::world::{self, Fate, Mix};

/// The world the answers come from.
#[derive(Debug, Clone)]
pub struct World {
    /// Seed of every random choice.
    pub seed: u64,
    /// What goes wrong how often.
    pub mix: Mix,
    /// The master data (tracking and units of the products).
    pub catalog: Catalog,
    /// The orchestrator's pick timeout (late picks come 1.5 × later).
    pub pick_timeout: Duration,
}

/// One answer event, due `after_ms` after the command arrived.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Delay after the command.
    pub after_ms: u64,
    /// The event, from the system that sends it.
    pub event: InboundEvent,
}

impl World {
    /// The world of `seed` with the default mix and the demo's catalog.
    pub fn new(seed: u64, mix: Mix, pick_timeout: Duration) -> Self {
        World { seed, mix, catalog: world::catalog(), pick_timeout }
    }

    /// Every event that follows `cmd`, in the order they are due. Commands carried out
    /// without an answer (cancellations, backorders, shipment confirmations, stock
    /// adjustments) yield none.
    pub fn answer(&self, cmd: &Command) -> Vec<Planned> {
        let mut out = Vec::new();
        let key = cmd.meta.correlation_key.clone();
        let i = world::order_index(&key).unwrap_or(0);
        let fate = world::fate(self.seed, i, &self.mix);
        let mut r = world::rng(self.seed, i, 3);
        let mut plan = |after_ms: u64, id: String, system: System, body: EventBody| {
            out.push(Planned { after_ms, event: event(id, system, &key, body) });
        };
        match &cmd.body {
            CommandBody::ReserveStock(req) => {
                let short_line = fate.shortage.then(|| r.usize(0..req.lines.len().max(1)));
                let lines = req
                    .lines
                    .iter()
                    .enumerate()
                    .map(|(k, l)| {
                        let short = if short_line == Some(k) {
                            let unit = unit_of(&self.catalog, &l.sku);
                            Qty((l.quantity.0 / 2 / unit * unit).max(unit.min(l.quantity.0)))
                        } else {
                            Qty::ZERO
                        };
                        LineReservation { line_no: l.line_no, reserved: l.quantity.saturating_sub(short), short }
                    })
                    .collect();
                let body = EventBody::StockReserved(StockReserved { order_ref: key.clone(), lines });
                plan(r.u64(2..15), format!("wms:reserved:{key}"), System::Wms, body);
            }
            CommandBody::ReleaseToWarehouse(req) => self.warehouse_work(req, &fate, &mut r, &mut out),
            CommandBody::BookCarrier(b) => {
                // One tracking number per parcel: the shipment's number is its last digits.
                let n: u64 = b.shipment_id.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(1);
                let tracking = format!("1Z{:08}{:02}", r.u64(..100_000_000), n % 100);
                let body = EventBody::CarrierBooked(CarrierBooked {
                    order_ref: key.clone(),
                    shipment_id: b.shipment_id.clone(),
                    carrier: ["DHL", "UPS", "DPD"][r.usize(0..3)].into(),
                    tracking_ref: tracking,
                });
                let booked_at = r.u64(5..40);
                plan(booked_at, format!("carrier:booked:{}", b.shipment_id), System::Carrier, body);
                let body = EventBody::Delivered(Delivered {
                    order_ref: key.clone(),
                    shipment_id: b.shipment_id.clone(),
                    signed_by: Some("reception".into()),
                });
                plan(booked_at + r.u64(40..250), format!("carrier:pod:{}", b.shipment_id), System::Carrier, body);
            }
            CommandBody::PostInvoice(p) => {
                let at = r.u64(5..60);
                if fate.finance_refusal {
                    let body = EventBody::InvoiceRejected(DocumentRejected {
                        order_ref: key.clone(),
                        business_key: p.shipment_id.clone(),
                        reason: REFUSAL.into(),
                    });
                    plan(at, format!("finance:refused:{}", p.shipment_id), System::Finance, body);
                    return out;
                }
                let body = EventBody::InvoicePosted(InvoicePosted {
                    order_ref: key.clone(),
                    shipment_id: p.shipment_id.clone(),
                    invoice_number: format!("INV/2026/{}", &p.shipment_id[4..]),
                    amount: p.total,
                });
                plan(at, format!("finance:posted:{}", p.shipment_id), System::Finance, body);
                // Some customers send a unit back once they have the invoice.
                let returnable = p.lines.iter().find(|l| self.catalog.tracking(&l.sku) == Tracking::None);
                if let (true, true, Some(l)) = (fate.returned, p.shipment_id.ends_with("-1"), returnable) {
                    let rma_id = format!("RMA-{}", &key[2..]);
                    let body = EventBody::ReturnAuthorized(ReturnAuthorized {
                        order_ref: key.clone(),
                        rma_id: rma_id.clone(),
                        reason: "wrong size ordered".into(),
                        lines: vec![RmaLine { line_no: l.line_no, sku: l.sku.clone(), quantity: Qty::units(1) }],
                    });
                    let rma_at = at + r.u64(20..80);
                    plan(rma_at, format!("odoo:rma:{rma_id}"), System::Odoo, body);
                    let receipt_id = format!("RCV-{}", &key[2..]);
                    let condition = if r.bool() { ItemCondition::Restock } else { ItemCondition::Scrap };
                    let body = EventBody::ReturnReceived(ReturnReceived {
                        order_ref: key.clone(),
                        rma_id,
                        receipt_id: receipt_id.clone(),
                        lines: vec![ReturnedLine {
                            line_no: l.line_no,
                            sku: l.sku.clone(),
                            quantity: Qty::units(1),
                            condition,
                            lots: vec![],
                            serials: vec![],
                        }],
                    });
                    plan(rma_at + r.u64(50..250), format!("wms:receipt:{receipt_id}"), System::Wms, body);
                }
            }
            CommandBody::IssueCreditNote(c) => {
                let body = EventBody::CreditNoteIssued(CreditNoteIssued {
                    order_ref: key.clone(),
                    receipt_id: c.receipt_id.clone(),
                    credit_note_number: format!("RINV/2026/{}", &c.receipt_id[4..]),
                    amount: c.total,
                });
                plan(r.u64(5..60), format!("finance:credit:{}", c.receipt_id), System::Finance, body);
            }
            CommandBody::ValidateReceipt(v) => {
                let body = EventBody::ReceiptValidated(waybill_domain::purchase::ReceiptValidated {
                    po_ref: v.po_ref.clone(),
                    receipt_id: v.receipt_id.clone(),
                    picking_ref: format!("WH/IN/{}", v.receipt_id.rsplit('-').next().unwrap_or(&v.receipt_id)),
                });
                plan(r.u64(5..40), format!("odoo:receipt:{}", v.receipt_id), System::Odoo, body);
            }
            CommandBody::PostVendorBill(b) => {
                let body = EventBody::VendorBillPosted(waybill_domain::purchase::VendorBillPosted {
                    po_ref: b.po_ref.clone(),
                    bill_number: b.bill_number.clone(),
                    document_number: format!(
                        "BILL/2026/{}",
                        b.bill_number.rsplit('-').next().unwrap_or(&b.bill_number)
                    ),
                    amount: b.amount,
                });
                plan(r.u64(5..60), format!("finance:bill-posted:{}", b.bill_number), System::Finance, body);
            }
            CommandBody::IssueVendorCreditNote(c) => {
                let body = EventBody::VendorCreditNoteIssued(waybill_domain::purchase::VendorCreditIssued {
                    po_ref: c.po_ref.clone(),
                    receipt_id: c.receipt_id.clone(),
                    credit_number: format!("RBILL/2026/{}", c.receipt_id.rsplit('-').next().unwrap_or(&c.receipt_id)),
                    amount: c.amount,
                });
                plan(r.u64(5..60), format!("finance:vendor-credit:{}", c.receipt_id), System::Finance, body);
            }
            CommandBody::PostStatementLine(e) => {
                let body = EventBody::StatementLinePosted(waybill_domain::cash::StatementLinePosted {
                    statement_key: e.statement_key.clone(),
                    line_id: e.line_id.clone(),
                    entry_number: format!("BNK1/{}", e.line_id),
                });
                plan(
                    r.u64(5..60),
                    format!("finance:statement-line:{}#{}", e.statement_key, e.line_id),
                    System::Finance,
                    body,
                );
            }
            // Carried out without an answer event.
            CommandBody::CancelReservation(_)
            | CommandBody::CancelWarehouseRelease(_)
            | CommandBody::CreateBackorder(_)
            | CommandBody::ConfirmShipment(_)
            | CommandBody::AdjustStock(_)
            | CommandBody::ReturnToVendor(_) => {}
        }
        out
    }

    fn warehouse_work(&self, req: &StockRequest, fate: &Fate, r: &mut fastrand::Rng, out: &mut Vec<Planned>) {
        let key = req.order_ref.clone();
        let mut plan = |after_ms: u64, id: String, body: EventBody| {
            out.push(Planned { after_ms, event: event(id, System::Wms, &key, body) });
        };
        let body = EventBody::ReleasedToWarehouse(ReleasedToWarehouse {
            order_ref: key.clone(),
            wms_order_id: format!("W{}", &key[2..]),
        });
        plan(r.u64(2..10), format!("wms:accepted:{key}"), body);

        let mut pick_at = if fate.late_pick {
            (self.pick_timeout.as_millis() as u64) * 3 / 2 + r.u64(0..200)
        } else {
            r.u64(20..150)
        };
        // Quantities per line: optionally one unit short on the final pick.
        let mut quantities: Vec<Qty> = req.lines.iter().map(|l| l.quantity).collect();
        if fate.short_pick {
            let k = r.usize(0..quantities.len());
            quantities[k] = Qty((quantities[k].0 - unit_of(&self.catalog, &req.lines[k].sku)).max(0));
        }
        let picks: Vec<Vec<(usize, Qty)>> = if fate.partial_pick {
            let first: Vec<(usize, Qty)> =
                quantities.iter().enumerate().map(|(k, q)| (k, half(*q, &self.catalog, &req.lines[k].sku))).collect();
            let second = first.iter().map(|(k, q)| (*k, quantities[*k] - *q)).collect();
            vec![first, second]
        } else {
            vec![quantities.iter().copied().enumerate().collect()]
        };
        let mut shipped: Vec<ShippedLine> = req
            .lines
            .iter()
            .map(|l| ShippedLine {
                line_no: l.line_no,
                sku: l.sku.clone(),
                quantity: Qty::ZERO,
                lots: vec![],
                serials: vec![],
            })
            .collect();
        let n_picks = picks.len();
        for (n, pick) in picks.into_iter().enumerate() {
            let pick_id = format!("PK-{}-{}", &key[2..], n + 1);
            let mut lines = Vec::new();
            for (k, q) in pick {
                if q.is_zero() {
                    continue;
                }
                let l = &req.lines[k];
                let (lots, serials) = match self.catalog.tracking(&l.sku) {
                    Tracking::Lot => {
                        (vec![LotQty { lot: format!("LOT-{}-{}", l.sku, (n + k) % 3), quantity: q }], vec![])
                    }
                    Tracking::Serial => {
                        let base = shipped[k].serials.len();
                        (
                            vec![],
                            (0..q.0 / 1000).map(|s| format!("SN-{key}-{}-{}", l.line_no, base as i64 + s)).collect(),
                        )
                    }
                    Tracking::None => (vec![], vec![]),
                };
                let sl = &mut shipped[k];
                sl.quantity += q;
                for lot in &lots {
                    match sl.lots.iter_mut().find(|x| x.lot == lot.lot) {
                        Some(x) => x.quantity += lot.quantity,
                        None => sl.lots.push(lot.clone()),
                    }
                }
                sl.serials.extend(serials.iter().cloned());
                lines.push(PickedLine {
                    line_no: l.line_no,
                    sku: l.sku.clone(),
                    quantity: q,
                    lots,
                    serials,
                    bin: format!("B{:02}-{:02}", k + 1, n + 1),
                });
            }
            let body = EventBody::PickConfirmed(PickConfirmed {
                order_ref: key.clone(),
                pick_id: pick_id.clone(),
                lines,
                complete: n + 1 == n_picks,
            });
            plan(pick_at, format!("wms:pick:{pick_id}"), body);
            pick_at += r.u64(10..80);
        }
        shipped.retain(|s| !s.quantity.is_zero());
        let shipments: Vec<Vec<ShippedLine>> = if fate.split_shipment && shipped.len() > 1 {
            let second = shipped.split_off(shipped.len() / 2);
            vec![shipped, second]
        } else {
            vec![shipped]
        };
        for (n, lines) in shipments.into_iter().enumerate() {
            if lines.is_empty() {
                continue;
            }
            let shipment_id = format!("SHP-{}-{}", &key[2..], n + 1);
            let weight: i64 = lines.iter().map(|l| l.quantity.0).sum::<i64>() / 2 + 300;
            let body = EventBody::GoodsIssued(GoodsIssued {
                order_ref: key.clone(),
                shipment_id: shipment_id.clone(),
                lines,
                packages: vec![Package { package_id: format!("PKG-{shipment_id}"), weight_grams: weight }],
            });
            pick_at += r.u64(10..60);
            plan(pick_at, format!("wms:issued:{shipment_id}"), body);
        }
    }
}

/// Why finance refuses an invoice in a closed period.
pub const REFUSAL: &str = "fiscal period is closed for posting";

/// The smallest quantity the warehouse handles of `sku`: 0.25 kg for lot-tracked
/// goods sold by weight, one unit otherwise.
fn unit_of(catalog: &Catalog, sku: &str) -> i64 {
    if catalog.tracking(sku) == Tracking::Lot { 250 } else { 1000 }
}

fn half(q: Qty, catalog: &Catalog, sku: &str) -> Qty {
    let unit = unit_of(catalog, sku);
    Qty((q.0 / 2 / unit) * unit)
}

/// An event from `system` with id `id` about order `key`; its source id is the id's last
/// part (`wms:pick:PK-000001-1` → `PK-000001-1`).
pub fn event(id: String, system: System, key: &str, body: EventBody) -> InboundEvent {
    InboundEvent {
        meta: EventMeta {
            event_id: id.clone(),
            source: SourceRef::new(system, id.rsplit(':').next().unwrap_or(key).to_string()),
            correlation_key: key.to_string(),
            occurred_at: Timestamp::now(),
            actor: None,
        },
        body,
    }
}
