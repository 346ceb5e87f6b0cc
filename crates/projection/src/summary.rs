//! One-line, human summaries of journal events for the order timeline. They depend only
//! on the event, so a rebuild writes the same text.

use waybill_domain::reconcile::ReconcileOutcome;
use waybill_domain::{JournalBody, JournalEvent, Qty, Timestamp};

/// `2024-05-01T10:00:00Z` (UTC, seconds).
pub(crate) fn format_ts(t: Timestamp) -> String {
    t.civil().to_string()
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") }
}

/// The timeline summary of `e`.
pub fn summarize(e: &JournalEvent) -> String {
    match &e.body {
        JournalBody::OrderAccepted(o) => {
            let units: Qty = o.lines.iter().map(|l| l.quantity).sum();
            format!(
                "order {} accepted for customer {}: {}, {units} units",
                o.order_ref,
                o.customer_ref,
                plural(o.lines.len(), "line")
            )
        }
        JournalBody::MasterDataFailed(p) => match p.problems.as_slice() {
            [] => "on hold: master-data check failed".to_string(),
            [one] => format!("on hold: {one}"),
            [first, rest @ ..] => format!("on hold: {first} (+{} more)", rest.len()),
        },
        JournalBody::ReservationRequested(_) => "stock reservation requested".to_string(),
        JournalBody::StockAllocated(a) => {
            let reserved: Qty = a.lines.iter().map(|l| l.reserved).sum();
            let short: Qty = a.lines.iter().map(|l| l.short).sum();
            if short.is_zero() {
                format!("stock reserved in full: {reserved} units")
            } else {
                format!("stock allocated: {reserved} units reserved, {short} short")
            }
        }
        JournalBody::Backordered(b) => {
            let units: Qty = b.lines.iter().map(|l| l.quantity).sum();
            format!("backordered {units} units on {}", plural(b.lines.len(), "line"))
        }
        JournalBody::ReleaseRequested(r) => {
            format!("released to the warehouse; pick due by {}", format_ts(r.due_at))
        }
        JournalBody::WarehouseAccepted(w) => format!("warehouse accepted the release as {}", w.wms_order_id),
        JournalBody::PickRecorded(p) => {
            let units: Qty = p.lines.iter().map(|l| l.quantity).sum();
            format!(
                "pick {} confirmed: {units} units on {}{}",
                p.pick_id,
                plural(p.lines.len(), "line"),
                if p.complete { ", picking complete" } else { ", more to follow" }
            )
        }
        JournalBody::PickOverdue(d) => format!("pick overdue: was due by {}", format_ts(d.due_at)),
        JournalBody::ShipmentRecorded(g) => {
            let units: Qty = g.lines.iter().map(|l| l.quantity).sum();
            format!(
                "shipment {} left the warehouse: {units} units in {}",
                g.shipment_id,
                plural(g.packages.len(), "package")
            )
        }
        JournalBody::CarrierAssigned(c) => {
            format!("carrier {} took shipment {}, tracking {}", c.carrier, c.shipment_id, c.tracking_ref)
        }
        JournalBody::DeliveryConfirmed(d) => match &d.signed_by {
            Some(who) => format!("shipment {} delivered, signed by {who}", d.shipment_id),
            None => format!("shipment {} delivered", d.shipment_id),
        },
        JournalBody::Cancelled(c) => {
            format!("cancelled: {} ({} issued)", c.reason, plural(c.compensations.len(), "compensation"))
        }
        JournalBody::ExceptionRaised(x) => format!("exception raised ({}): {}", x.category, x.message),
        JournalBody::ExceptionResolved(r) => format!("exception {} resolved: {}", r.exception_id, r.resolution),
        JournalBody::Completed(_) => format!("{} saga completed", e.meta.kind),
        JournalBody::InvoiceDrafted(d) => {
            format!(
                "invoice for shipment {} drafted: {} {} on {}",
                d.business_key,
                d.total,
                d.currency,
                plural(d.lines.len(), "line")
            )
        }
        JournalBody::PostingHeld(h) => {
            format!("posting {} ({}) held for approval: {}", h.posting_id, h.amount, h.reasons.join("; "))
        }
        JournalBody::PostingApproved(o) => {
            format!("posting {} approved by {} ({}): {}", o.posting_id, o.actor, o.role, o.reason)
        }
        JournalBody::PostingRejected(o) => {
            format!("posting {} rejected by {} ({}): {}", o.posting_id, o.actor, o.role, o.reason)
        }
        JournalBody::PostingEscalated(d) => {
            format!("held posting escalated: approval was due by {}", format_ts(d.due_at))
        }
        JournalBody::ControlRefused(r) => {
            format!("{} of {} by {} refused: {}", r.action, r.posting_id, r.actor, r.reason)
        }
        JournalBody::InvoiceRequested(_) => "invoice sent to finance".to_string(),
        JournalBody::InvoiceRecorded(r) => format!("invoice {} posted: {}", r.document_number, r.amount),
        JournalBody::FinanceRefused(r) => format!("finance refused the document: {}", r.reason),
        JournalBody::ReturnOpened(r) => {
            format!("return {} authorised: {}, {}", r.rma_id, r.reason, plural(r.lines.len(), "line"))
        }
        JournalBody::ReturnReceiptRecorded(r) => {
            let units: Qty = r.lines.iter().map(|l| l.quantity).sum();
            format!("return receipt {} recorded: {units} units", r.receipt_id)
        }
        JournalBody::CreditNoteDrafted(c) => format!(
            "credit note for receipt {} drafted against {}: {} (restocking fee {})",
            c.receipt_id, c.invoice_number, c.total, c.restocking_fee
        ),
        JournalBody::CreditNoteRequested(k) => format!("credit note for receipt {} sent to finance", k.key),
        JournalBody::CreditNoteRecorded(c) => format!("credit note {} issued: {}", c.document_number, c.amount),
        JournalBody::StockAdjustmentRequested(k) => format!("stock adjustment requested for receipt {}", k.key),
        JournalBody::ExceptionRetried(r) => {
            let note = if r.note.is_empty() { String::new() } else { format!(": {}", r.note) };
            format!(
                "exception {} retried by {} ({}): command {} re-issued{note}",
                r.exception_id, r.actor, r.role, r.idempotency_key
            )
        }
        JournalBody::ExceptionAssigned(a) => {
            let note = if a.note.is_empty() { String::new() } else { format!(": {}", a.note) };
            let from = a.previous_owner.as_ref().map(|p| format!(" (was {p})")).unwrap_or_default();
            format!("exception {} assigned to {}{from} by {} ({}){note}", a.exception_id, a.owner, a.actor, a.role)
        }
        JournalBody::PurchaseOpened(o) => {
            let units: Qty = o.lines.iter().map(|l| l.quantity).sum();
            format!(
                "purchase order {} confirmed with {} ({}): {}, {units} units, expected {}",
                o.po_ref,
                o.supplier_name,
                o.supplier_ref,
                plural(o.lines.len(), "line"),
                format_ts(o.expected_at)
            )
        }
        JournalBody::PurchaseClosed(c) => format!("purchase order {} closed: {}", c.po_ref, c.reason),
        JournalBody::ShipNoticeRecorded(n) => {
            let units: Qty = n.lines.iter().map(|l| l.quantity).sum();
            format!("shipping notice {} recorded: {units} units on {}", n.asn_id, plural(n.lines.len(), "line"))
        }
        JournalBody::ReceiptRecorded(r) => {
            let units: Qty = r.lines.iter().map(|l| l.quantity).sum();
            let damaged: Qty = r.lines.iter().map(|l| l.damaged).sum();
            let against = r.asn_id.as_ref().map(|a| format!(" against {a}")).unwrap_or_default();
            let damaged = if damaged.is_zero() { String::new() } else { format!(", {damaged} damaged") };
            format!("receipt {}{against}: {units} units accepted{damaged}; sent to Odoo", r.receipt_id)
        }
        JournalBody::ReceiptConfirmed(v) => format!("receipt {} validated in Odoo as {}", v.receipt_id, v.picking_ref),
        JournalBody::ReceiptReversed(x) => match &x.credit {
            Some(c) => {
                format!("receipt {} cancelled ({}): goods returned, {} to credit", x.receipt_id, x.reason, c.amount)
            }
            None => format!("receipt {} cancelled ({}): goods returned", x.receipt_id, x.reason),
        },
        JournalBody::BillReceived(b) => format!("bill {} received: {} {}", b.bill_number, b.amount, b.currency),
        JournalBody::BillMatched(m) if m.variances.is_empty() => {
            format!("bill {} matched order and receipts; sent to finance", m.bill_number)
        }
        JournalBody::BillMatched(m) => format!("bill {} approved with differences; sent to finance", m.bill_number),
        JournalBody::BillRecorded(b) => format!("bill {} posted as {}: {}", b.bill_number, b.document_number, b.amount),
        JournalBody::VendorCreditRecorded(c) => {
            format!("vendor credit note {} for receipt {}: {}", c.credit_number, c.receipt_id, c.amount)
        }
        JournalBody::StatementOpened(s) => format!(
            "statement {} of account {} imported ({}): {} against {} open invoice(s)",
            s.statement_id,
            s.account,
            s.format,
            plural(s.lines.len(), "line"),
            s.open_items.len()
        ),
        JournalBody::LineApplied(e) if e.rule == "charge" => {
            format!("line {}: bank charge {} {}; sent to finance", e.line_id, e.amount, e.currency)
        }
        JournalBody::LineApplied(e) => {
            let invoices: Vec<String> = e.allocations.iter().map(|a| format!("{} {}", a.invoice, a.amount)).collect();
            let whose = e.on_account.as_deref().map(|c| format!(" of {c}")).unwrap_or_default();
            let rest =
                if e.remainder.0 != 0 { format!(", {} left on account{whose}", e.remainder) } else { String::new() };
            let how = if e.rule == "manual" { "by hand".to_string() } else { format!("by {}", e.rule) };
            if invoices.is_empty() {
                return format!(
                    "line {}: {} {} left on account{whose} {how}; sent to finance",
                    e.line_id, e.amount, e.currency
                );
            }
            format!(
                "line {}: {} {} applied {how} to {}{rest}; sent to finance",
                e.line_id,
                e.amount,
                e.currency,
                invoices.join(", ")
            )
        }
        JournalBody::LineRecorded(p) => format!("line {} posted as {}", p.line_id, p.entry_number),
        JournalBody::ApplicationScheduled(d) => format!("lines applied in the window at {}", format_ts(d.due_at)),
        JournalBody::FlowRetired(r) => {
            format!("retired: finished at {}, kept {} days", format_ts(r.finished_at), r.retention_secs / 86_400)
        }
        JournalBody::StockReconciled(r) => {
            let what = match r.outcome {
                ReconcileOutcome::Baseline => "baseline set",
                ReconcileOutcome::Mismatch => "mismatch found",
                ReconcileOutcome::Agreed => "back in agreement",
                ReconcileOutcome::Accepted => "warehouse figure accepted as the baseline",
            };
            format!("run {}: {what}: warehouse {} on hand, Waybill expects {}", r.run_id, r.on_hand, r.expected)
        }
        JournalBody::SagaReplayed(r) => format!(
            "replay by {} ({}): {} replayed, {} applied, {} issued, {} still refused",
            r.actor,
            r.role,
            plural(r.inputs as usize, "record"),
            r.applied,
            plural(r.commands.len(), "command"),
            r.refused.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_ts(Timestamp(0)), "1970-01-01T00:00:00Z");
        // 2024-02-29T12:34:56Z = 1709210096 s.
        assert_eq!(format_ts(Timestamp(1_709_210_096 * 1_000_000 + 999)), "2024-02-29T12:34:56Z");
        assert_eq!(format_ts(Timestamp(-1_000_000)), "1969-12-31T23:59:59Z");
    }
}
