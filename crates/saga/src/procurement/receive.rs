//! The goods side of procure-to-receive: the confirmed order, its notices, receipts
//! checked against both, validation in Odoo, cancellations (returned and credited, never
//! deleted) and the closing of the order.

use std::collections::BTreeSet;

use waybill_domain::journal::ExceptionResolved;
use waybill_domain::purchase::{
    BillLine, GoodsReceipt, PurchaseOrderClosed, PurchaseOrderConfirmed, ReceiptCancelled, ReceiptReversal,
    ReceiptValidated, ShipNotice, VendorCredit, VendorCreditIssued,
};
use waybill_domain::{CommandBody, ExceptionCategory, JournalBody, Money, Qty, SourceRef, System};

use super::{Procurement, ReceiptStatus, keys, return_to_vendor, validate_receipt};
use crate::decision::Decision;
use crate::flow::{Env, reject};

/// Odoo confirmed the order: the saga begins. A second confirmation with the same
/// content is a redelivery; with other content it is refused (Waybill does not follow
/// changes to a confirmed order: cancel it and confirm a new one).
pub(super) fn on_confirmed(s: &Procurement, o: &PurchaseOrderConfirmed, env: &Env<'_>) -> Decision {
    // The buying entity: the company the order names, or the default one.
    let entity = match env.entities.resolve(o.company.as_deref()) {
        Ok(e) => e,
        Err(why) => return reject(format!("purchase order {}: {why} (`waybill dlq replay`)", o.po_ref)),
    };
    let o = &PurchaseOrderConfirmed { company: entity.map(|e| e.code.clone()), ..o.clone() };
    if let Some(known) = &s.order {
        // The same order again is a redelivery, whichever entity it resolves to today.
        if (PurchaseOrderConfirmed { company: known.company.clone(), ..o.clone() }) == *known {
            return Decision::noop();
        }
        return reject(format!(
            "purchase order {} was confirmed before with other lines or prices; Waybill does not follow changes to a confirmed order — cancel it in Odoo and confirm a new one",
            o.po_ref
        ));
    }
    let mut seen = BTreeSet::new();
    for l in &o.lines {
        if !seen.insert(l.line_no) {
            return reject(format!("purchase order {} has line {} twice; fix the order in Odoo", o.po_ref, l.line_no));
        }
        if l.quantity.0 <= 0 {
            return reject(format!(
                "purchase order {} line {} orders {} of {}; a line must order a positive quantity",
                o.po_ref, l.line_no, l.quantity, l.sku
            ));
        }
    }
    if o.lines.is_empty() {
        return reject(format!("purchase order {} has no lines; nothing can be received against it", o.po_ref));
    }
    let mut d = Decision::noop();
    d.record(JournalBody::PurchaseOpened(o.clone()));
    d
}

/// Odoo closed the order: no more goods are expected.
pub(super) fn on_closed(s: &Procurement, c: &PurchaseOrderClosed) -> Decision {
    let mut d = Decision::noop();
    if !s.closed {
        d.record(JournalBody::PurchaseClosed(c.clone()));
    }
    d
}

/// Checks that every line names a line of the order with its product.
fn check_lines<'a>(s: &Procurement, what: &str, lines: impl Iterator<Item = (i32, &'a str)>) -> Result<(), String> {
    let order = s.order.as_ref().expect("decide checks the order is known");
    for (po_line_no, sku) in lines {
        match order.lines.iter().find(|l| l.line_no == po_line_no) {
            None => {
                return Err(format!(
                    "{what} names line {po_line_no} of purchase order {}, which has lines {}; correct it at the sender and resend",
                    order.po_ref,
                    order.lines.iter().map(|l| l.line_no.to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
            Some(l) if l.sku != sku => {
                return Err(format!(
                    "{what} has {sku} on line {po_line_no} of purchase order {}, which orders {} there; correct it at the sender and resend",
                    order.po_ref, l.sku
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The supplier's advance shipping notice. Recorded once per notice id; compared with
/// the receipts already made against it (a notice may arrive after its goods).
pub(super) fn on_notice(s: &Procurement, n: &ShipNotice) -> Decision {
    if let Some(known) = s.notices.get(&n.asn_id) {
        if known == n {
            return Decision::noop();
        }
        return reject(format!(
            "notice {} of purchase order {} was received before with other lines; a changed notice needs a new id",
            n.asn_id, n.po_ref
        ));
    }
    if n.supplier_ref != s.supplier_ref() {
        return reject(format!(
            "notice {} comes from supplier {}, but purchase order {} was placed with {}; check the notice",
            n.asn_id,
            n.supplier_ref,
            n.po_ref,
            s.supplier_ref()
        ));
    }
    if let Err(why) =
        check_lines(s, &format!("notice {}", n.asn_id), n.lines.iter().map(|l| (l.po_line_no, l.sku.as_str())))
    {
        return reject(why);
    }
    let mut d = Decision::noop();
    d.record(JournalBody::ShipNoticeRecorded(n.clone()));
    let mut variances = Vec::new();
    for r in s.receipts.values().filter(|r| r.receipt.asn_id.as_deref() == Some(n.asn_id.as_str())) {
        variances.extend(against_notice(&r.receipt, n));
    }
    if !variances.is_empty() {
        raise_mismatch(&mut d, s, &n.asn_id, SourceRef::new(System::Wms, n.asn_id.clone()), &variances);
    }
    d
}

/// How a receipt differs from the notice it was received against.
fn against_notice(r: &GoodsReceipt, n: &ShipNotice) -> Vec<String> {
    let mut v = Vec::new();
    for l in &r.lines {
        let Some(asn_line) = l.asn_line_no else { continue };
        let Some(a) = n.lines.iter().find(|a| a.asn_line_no == asn_line) else {
            v.push(format!("{} line {asn_line}, named by receipt {}, does not exist", n.asn_id, r.receipt_id));
            continue;
        };
        if a.po_line_no != l.po_line_no {
            v.push(format!(
                "{} line {asn_line} ships order line {}, but receipt {} booked it to line {}",
                n.asn_id, a.po_line_no, r.receipt_id, l.po_line_no
            ));
        }
        let arrived = l.quantity + l.damaged;
        if arrived != a.quantity {
            v.push(format!("{} line {asn_line} announced {} {}, {} arrived", n.asn_id, a.quantity, a.sku, arrived));
        }
        let announced: BTreeSet<&str> = a.lots.iter().map(|x| x.lot.as_str()).collect();
        let received: BTreeSet<&str> = l.lots.iter().map(|x| x.lot.as_str()).collect();
        if !announced.is_empty() && announced != received {
            v.push(format!(
                "{} line {asn_line}: lot(s) {} announced, {} received",
                n.asn_id,
                announced.into_iter().collect::<Vec<_>>().join(", "),
                if received.is_empty() {
                    "none".to_string()
                } else {
                    received.into_iter().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    v
}

/// Raises one `RECEIPT_MISMATCH` naming every difference.
fn raise_mismatch(d: &mut Decision, s: &Procurement, what: &str, subject: SourceRef, variances: &[String]) {
    let supplier = s.order.as_ref().map_or(String::new(), |o| o.supplier_name.clone());
    d.raise(
        &s.id(),
        s.book.exceptions_raised,
        ExceptionCategory::ReceiptMismatch,
        subject,
        format!(
            "{what} of purchase order {} from {supplier} does not match: {}; settle it with the supplier (a credit, a replacement delivery) and resolve this exception",
            s.po_ref(),
            variances.join("; ")
        ),
    );
}

/// A receipt at the warehouse: checked, recorded once, and sent to Odoo for validation
/// once. A receipt line may receive a notice line only once (a second receipt of the same
/// notice line is refused); what differs from the order or the notice beyond the
/// supplier's tolerance raises `RECEIPT_MISMATCH`, and the goods are still booked: they
/// are in the warehouse.
pub(super) fn on_receipt(s: &Procurement, r: &GoodsReceipt, env: &Env<'_>) -> Decision {
    if let Some(known) = s.receipts.get(&r.receipt_id) {
        if &known.receipt == r {
            return Decision::noop();
        }
        return reject(format!(
            "receipt {} of purchase order {} was recorded before with other lines; a corrected receipt needs a new id (cancel the first)",
            r.receipt_id, r.po_ref
        ));
    }
    if r.lines.is_empty() || r.lines.iter().all(|l| l.quantity.0 == 0 && l.damaged.0 == 0) {
        return reject(format!("receipt {} of purchase order {} receives nothing", r.receipt_id, r.po_ref));
    }
    if let Some(l) = r.lines.iter().find(|l| l.quantity.0 < 0 || l.damaged.0 < 0) {
        return reject(format!(
            "receipt {} line {} {} has a negative quantity; a receipt only adds goods (cancel it to take them back)",
            r.receipt_id, l.po_line_no, l.sku
        ));
    }
    if let Err(why) =
        check_lines(s, &format!("receipt {}", r.receipt_id), r.lines.iter().map(|l| (l.po_line_no, l.sku.as_str())))
    {
        return reject(why);
    }
    let mut claimed = BTreeSet::new();
    for l in &r.lines {
        let Some(asn_line) = l.asn_line_no else { continue };
        let Some(asn) = &r.asn_id else {
            return reject(format!(
                "receipt {} names notice line {asn_line} but no notice; send the notice id with the receipt",
                r.receipt_id
            ));
        };
        if !claimed.insert(asn_line) {
            return reject(format!("receipt {} receives {asn} line {asn_line} twice", r.receipt_id));
        }
        let other = s.receipts.values().find(|x| {
            x.status != ReceiptStatus::Reversed
                && x.receipt.asn_id.as_deref() == Some(asn.as_str())
                && x.receipt.lines.iter().any(|y| y.asn_line_no == Some(asn_line))
        });
        if let Some(other) = other {
            return reject(format!(
                "receipt {} receives {asn} line {asn_line}, which receipt {} already received; a notice line is received once — correct the receipt in the warehouse system (or cancel the first) and resend",
                r.receipt_id, other.receipt.receipt_id
            ));
        }
    }
    let mut d = Decision::noop();
    d.record(JournalBody::ReceiptRecorded(r.clone()));
    let o = validate_receipt(s.po_ref(), r);
    d.send(o.target, o.idempotency_key, o.body);

    let order = s.order.as_ref().expect("decide checks the order is known");
    let tol = env.policy.procurement.tolerance_for(&order.supplier_ref);
    let mut variances = Vec::new();
    let mut lines_seen = BTreeSet::new();
    for l in &r.lines {
        if lines_seen.insert(l.po_line_no) {
            let ordered = order.lines.iter().find(|x| x.line_no == l.po_line_no).map_or(Qty(0), |x| x.quantity);
            let this: Qty = r.lines.iter().filter(|x| x.po_line_no == l.po_line_no).map(|x| x.quantity).sum();
            let after = s.received(l.po_line_no) + this;
            if after.0 as f64 > ordered.0 as f64 * (1.0 + tol.over_receipt_pct / 100.0) {
                variances.push(format!(
                    "line {} {}: {after} received against {ordered} ordered (tolerance {} %)",
                    l.po_line_no, l.sku, tol.over_receipt_pct
                ));
            }
        }
        if l.damaged.0 > 0 {
            variances
                .push(format!("line {} {}: {} damaged — claim them with the supplier", l.po_line_no, l.sku, l.damaged));
        }
    }
    if let Some(n) = r.asn_id.as_ref().and_then(|a| s.notices.get(a)) {
        variances.extend(against_notice(r, n));
    }
    if !variances.is_empty() {
        let what = format!("receipt {}", r.receipt_id);
        raise_mismatch(&mut d, s, &what, SourceRef::new(System::Wms, r.receipt_id.clone()), &variances);
    }
    d
}

/// Odoo validated a receipt.
pub(super) fn on_validated(s: &Procurement, v: &ReceiptValidated) -> Decision {
    let mut d = Decision::noop();
    match s.receipts.get(&v.receipt_id) {
        None => {
            return reject(format!(
                "Odoo validated receipt {} of purchase order {}, which Waybill never asked for; check the receipt id",
                v.receipt_id, v.po_ref
            ));
        }
        Some(r) if r.status == ReceiptStatus::Requested => {
            d.record(JournalBody::ReceiptConfirmed(v.clone()));
        }
        Some(_) => {} // validated before (a redelivery), or reversed since
    }
    d
}

/// A receipt was cancelled: its goods go back to the supplier (a return in Odoo, never a
/// delete), and what of it was billed is credited.
pub(super) fn on_cancelled(s: &Procurement, c: &ReceiptCancelled) -> Decision {
    let Some(r) = s.receipts.get(&c.receipt_id) else {
        return reject(format!(
            "receipt {} of purchase order {} was cancelled, but Waybill never recorded it; check the receipt id",
            c.receipt_id, c.po_ref
        ));
    };
    let mut d = Decision::noop();
    if r.status == ReceiptStatus::Reversed {
        return d;
    }
    let credit = credit_for(s, &r.receipt);
    d.record(JournalBody::ReceiptReversed(ReceiptReversal {
        receipt_id: c.receipt_id.clone(),
        reason: c.reason.clone(),
        credit: credit.clone(),
    }));
    let o = return_to_vendor(s.po_ref(), &r.receipt);
    d.send(o.target, o.idempotency_key, o.body);
    if let Some(credit) = credit {
        d.send(System::Finance, keys::vendor_credit(&c.receipt_id), CommandBody::IssueVendorCreditNote(credit));
    }
    // A receipt that no longer stands no longer differs from anything.
    let subject = SourceRef::new(System::Wms, c.receipt_id.clone());
    for id in s.book.open_of(ExceptionCategory::ReceiptMismatch) {
        if s.book.subjects.get(id) == Some(&subject) {
            d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: id.clone(),
                resolution: format!("receipt {} was cancelled: {}", c.receipt_id, c.reason),
            }));
        }
    }
    d
}

/// What of a receipt's goods is billed and covered by no other receipt, at the price
/// of the latest bill of each line: the vendor credit note its cancellation needs.
pub(super) fn credit_for(s: &Procurement, r: &GoodsReceipt) -> Option<VendorCredit> {
    let order = s.order.as_ref()?;
    let mut lines = Vec::new();
    let mut seen = BTreeSet::new();
    for l in &r.lines {
        if !seen.insert(l.po_line_no) {
            continue;
        }
        let this: Qty = r.lines.iter().filter(|x| x.po_line_no == l.po_line_no).map(|x| x.quantity).sum();
        let billed = s.net_billed(l.po_line_no);
        let rest = s.received(l.po_line_no).saturating_sub(this);
        let qty = billed.saturating_sub(rest).min(this);
        if qty.0 <= 0 {
            continue;
        }
        let price = s
            .bill_order
            .iter()
            .rev()
            .filter_map(|n| s.bills.get(n).filter(|b| b.is_committed()))
            .find_map(|b| b.bill.lines.iter().find(|x| x.po_line_no == l.po_line_no).map(|x| x.unit_price))
            .unwrap_or_else(|| {
                order.lines.iter().find(|x| x.line_no == l.po_line_no).map_or(Money(0), |x| x.unit_price)
            });
        lines.push(BillLine { po_line_no: l.po_line_no, sku: l.sku.clone(), quantity: qty, unit_price: price });
    }
    if lines.is_empty() {
        return None;
    }
    let bill_number = s
        .bill_order
        .iter()
        .rev()
        .find(|n| s.bills.get(*n).is_some_and(|b| b.is_committed()))
        .cloned()
        .unwrap_or_default();
    let amount = lines.iter().map(|l| l.unit_price.times(l.quantity)).sum();
    Some(VendorCredit {
        po_ref: order.po_ref.clone(),
        receipt_id: r.receipt_id.clone(),
        bill_number,
        supplier_ref: order.supplier_ref.clone(),
        currency: order.currency.clone(),
        lines,
        amount,
    })
}

/// Finance issued the vendor credit note of a cancelled receipt.
pub(super) fn on_credited(s: &Procurement, c: &VendorCreditIssued) -> Decision {
    let mut d = Decision::noop();
    match s.receipts.get(&c.receipt_id) {
        Some(r) if r.reversal.as_ref().is_some_and(|x| x.credit.is_some()) => {
            if r.credit_number.is_none() {
                d.record(JournalBody::VendorCreditRecorded(c.clone()));
            }
            d
        }
        _ => reject(format!(
            "finance issued vendor credit note {} for receipt {} of purchase order {}, which Waybill never asked to credit; check the receipt id",
            c.credit_number, c.receipt_id, c.po_ref
        )),
    }
}
