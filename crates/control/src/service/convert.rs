//! Read models as proto messages.

use waybill_domain::journal::DocumentKind;
use waybill_projection::OrderView;

use crate::proto;

/// `invoice` / `credit-note` / `vendor-bill`.
pub(crate) fn document_name(d: DocumentKind) -> &'static str {
    match d {
        DocumentKind::Invoice => "invoice",
        DocumentKind::CreditNote => "credit-note",
        DocumentKind::VendorBill => "vendor-bill",
    }
}

/// A posting view of the projections as a proto message .
macro_rules! posting_proto {
    ($order:expr, $p:expr) => {{
        let (o, p): (&waybill_projection::OrderView, _) = ($order, $p);
        proto::Posting {
            posting_id: p.posting_id.clone(),
            order_ref: o.order_ref.clone(),
            saga_id: p.saga_id.clone(),
            document: document_name(p.document).to_string(),
            business_key: p.business_key.clone(),
            reasons: p.reasons.clone(),
            amount_minor: p.amount.0,
            amount: p.amount.to_string(),
            currency: p.currency.clone().or_else(|| o.currency.clone()).unwrap_or_default(),
            customer: o.customer_ref.clone().unwrap_or_default(),
            version: p.version,
            state: p.state.clone(),
            requested_by: p.requested_by.clone(),
            held_at_us: p.held_at.0,
            sla_due_at_us: p.sla_due_at.0,
            escalated: p.escalated,
            decided_by: p.decided_by.clone().unwrap_or_default(),
            decided_role: p.decided_role.clone().unwrap_or_default(),
            decision_reason: p.decision_reason.clone().unwrap_or_default(),
            decided_at_us: p.decided_at.map(|t| t.0).unwrap_or_default(),
            refusals: p.refusals.clone(),
            entity: p.entity.clone().unwrap_or_default(),
        }
    }};
}

pub(crate) use posting_proto;

pub(crate) fn order_lines(
    o: &OrderView,
    released: Option<&waybill_domain::event::OrderReleased>,
) -> Vec<proto::OrderLine> {
    o.lines
        .iter()
        .map(|l| {
            let ol = released.and_then(|r| r.lines.iter().find(|x| x.line_no == l.line_no));
            proto::OrderLine {
                line_no: l.line_no,
                sku: l.sku.clone(),
                uom: l.uom.clone(),
                warehouse: l.warehouse.clone(),
                ordered_milli: l.ordered.0,
                shipped_milli: l.shipped.0,
                ordered: l.ordered.to_string(),
                shipped: l.shipped.to_string(),
                reserved_milli: l.reserved.0,
                short_milli: l.short.0,
                picked_milli: l.picked.0,
                unit_price_minor: ol.map(|x| x.unit_price.0).unwrap_or_default(),
                tax_code: ol.and_then(|x| x.tax_code.clone()).unwrap_or_default(),
            }
        })
        .collect()
}
