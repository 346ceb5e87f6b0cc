//! What an approver sees beside a held posting: the order's lines and the document's, read
//! from the journal records the order's timeline points at (the projections keep
//! quantities, not prices). A sale order's invoice or credit note shows the order lines
//! with what was shipped; a purchase order's vendor bill shows the order lines with what
//! was received (receipts sent back taken off) and the bill's lines — the three sides of
//! the three-way match.

use std::collections::{BTreeMap, BTreeSet};

use waybill_domain::{JournalBody, Money, Qty};
use waybill_projection::{OrderView, PostingView, TimelineEntry};

use super::Control;
use super::convert::order_lines;
use crate::proto;

/// Order lines, document lines and the document's total, for `p` of `order`.
pub(super) type Evidence = (Vec<proto::OrderLine>, Vec<proto::DocumentLine>, i64);

impl Control {
    /// The evidence of posting `p`.
    pub(super) fn evidence(&self, order: &OrderView, p: &PostingView, timeline: &[TimelineEntry]) -> Evidence {
        match p.document {
            waybill_domain::journal::DocumentKind::VendorBill => self.purchase_evidence(p, timeline),
            _ => self.sale_evidence(order, p, timeline),
        }
    }

    /// The journal records of the `events` among `timeline`'s entries (one log read each).
    fn records<'t>(
        &'t self,
        timeline: impl Iterator<Item = &'t TimelineEntry> + 't,
        events: &'t [&str],
    ) -> impl Iterator<Item = JournalBody> + 't {
        timeline
            .filter(move |t| events.contains(&t.event.as_str()))
            .filter_map(|t| self.journal_at(t.partition, t.offset))
    }

    fn sale_evidence(&self, order: &OrderView, p: &PostingView, timeline: &[TimelineEntry]) -> Evidence {
        let released = self.records(timeline.iter(), &["OrderAccepted"]).find_map(|j| match j {
            JournalBody::OrderAccepted(o) => Some(o),
            _ => None,
        });
        let mut document_lines = Vec::new();
        let mut total = 0;
        let drafts = timeline.iter().filter(|t| t.saga_id == p.saga_id);
        for j in self.records(drafts, &["InvoiceDrafted", "CreditNoteDrafted"]) {
            let (lines, t) = match j {
                JournalBody::InvoiceDrafted(d) if d.business_key == p.business_key => (d.lines, d.total),
                JournalBody::CreditNoteDrafted(d) if d.receipt_id == p.business_key => (d.lines, d.total),
                _ => continue,
            };
            total = t.0;
            document_lines =
                lines.iter().map(|l| document_line(l.line_no, &l.sku, l.quantity, l.unit_price, &l.tax_code)).collect();
        }
        (order_lines(order, released.as_ref()), document_lines, total)
    }

    /// A vendor bill's purchase order lines (`shipped` is what was received into stock and
    /// kept) and the bill's lines.
    fn purchase_evidence(&self, p: &PostingView, timeline: &[TimelineEntry]) -> Evidence {
        let mut ordered = None;
        let mut received: BTreeMap<String, Vec<(i32, Qty)>> = BTreeMap::new();
        let mut reversed: BTreeSet<String> = BTreeSet::new();
        let mut bill = None;
        let events = ["PurchaseOpened", "ReceiptRecorded", "ReceiptReversed", "BillReceived"];
        for j in self.records(timeline.iter(), &events) {
            match j {
                JournalBody::PurchaseOpened(o) => ordered = Some(o),
                JournalBody::ReceiptRecorded(r) => {
                    received.insert(r.receipt_id, r.lines.iter().map(|l| (l.po_line_no, l.quantity)).collect());
                }
                JournalBody::ReceiptReversed(r) => {
                    reversed.insert(r.receipt_id);
                }
                JournalBody::BillReceived(b) if b.bill_number == p.business_key => bill = Some(b),
                _ => {}
            }
        }
        let kept = |line_no: i32| -> Qty {
            received
                .iter()
                .filter(|(id, _)| !reversed.contains(*id))
                .flat_map(|(_, lines)| lines.iter().filter(|(n, _)| *n == line_no).map(|(_, q)| *q))
                .sum()
        };
        let order_lines = ordered
            .map(|o| {
                o.lines
                    .iter()
                    .map(|l| {
                        let got = kept(l.line_no);
                        proto::OrderLine {
                            line_no: l.line_no,
                            sku: l.sku.clone(),
                            ordered_milli: l.quantity.0,
                            ordered: l.quantity.to_string(),
                            shipped_milli: got.0,
                            shipped: got.to_string(),
                            unit_price_minor: l.unit_price.0,
                            ..proto::OrderLine::default()
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (document_lines, total) = bill
            .map(|b| {
                let lines =
                    b.lines.iter().map(|l| document_line(l.po_line_no, &l.sku, l.quantity, l.unit_price, "")).collect();
                (lines, b.amount.0)
            })
            .unwrap_or_default();
        (order_lines, document_lines, total)
    }
}

/// A document line as the approver sees it: quantity and price, and their product.
fn document_line(line_no: i32, sku: &str, quantity: Qty, unit_price: Money, tax_code: &str) -> proto::DocumentLine {
    proto::DocumentLine {
        line_no,
        sku: sku.to_string(),
        quantity_milli: quantity.0,
        quantity: quantity.to_string(),
        unit_price_minor: unit_price.0,
        tax_code: tax_code.to_string(),
        total_minor: unit_price.times(quantity).0,
    }
}
