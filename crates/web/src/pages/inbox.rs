//! The approval inbox: held postings oldest first with their age against the SLA, a
//! posting's evidence, and approve / reject with a reason.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use waybill_control::Role;
use waybill_control::proto;
use waybill_control::proto::approvals_server::Approvals;
use waybill_control::proto::audit_server::Audit;

use super::{field, now_us};
use crate::html::{self, Section, age, esc, money, time, url};
use crate::{Me, Peer, Web, http_status};

/// Parses an amount typed by a person (`12500`, `12,500.00`) into minor units.
fn amount_minor(s: &str) -> Option<i64> {
    let t: String = s.chars().filter(|c| !matches!(c, ',' | ' ' | '_')).collect();
    if t.is_empty() {
        return Some(0);
    }
    let (major, minor) = t.split_once('.').unwrap_or((&t, "0"));
    let minor = format!("{minor:0<2}");
    if minor.len() > 2 {
        return None;
    }
    Some(major.parse::<i64>().ok()?.checked_mul(100)? + minor.parse::<i64>().ok()?)
}

fn sla(p: &proto::Posting, now: i64) -> String {
    if p.sla_due_at_us <= 0 {
        return String::new();
    }
    let left = (p.sla_due_at_us - now) / 1_000_000;
    if left >= 0 {
        format!(r#"<span class="sla ok">due in {}</span>"#, age(left))
    } else {
        format!(r#"<span class="sla late">overdue by {}</span>"#, age(-left))
    }
}

/// `GET /inbox`.
pub(crate) async fn list(State(web): State<Arc<Web>>, me: Me, Query(q): Query<HashMap<String, String>>) -> Response {
    let (document, customer, entity) = (field(&q, "document"), field(&q, "customer"), field(&q, "entity"));
    let (min, max) = (field(&q, "min_amount"), field(&q, "max_amount"));
    let filters = format!(
        r#"<form class="filters" method="get" action="/inbox" aria-label="Filter held postings">{}{}{}{}{}<button type="submit">Filter</button> <a href="/inbox">Clear</a></form>"#,
        html::select(
            "document",
            "Document",
            &[("", "All"), ("invoice", "Invoices"), ("credit-note", "Credit notes"), ("vendor-bill", "Vendor bills")],
            document
        ),
        html::input("customer", "Customer", customer, "text"),
        html::entity_filter(&web.cfg.entities, entity),
        html::input("min_amount", "Amount from", min, "text"),
        html::input("max_amount", "to", max, "text"),
    );
    let (Some(min_minor), Some(max_minor)) = (amount_minor(min), amount_minor(max)) else {
        let body = format!("<h1>Approvals</h1>{filters}");
        return me.refused(
            StatusCode::BAD_REQUEST,
            "Approvals",
            Section::Inbox,
            "An amount is not a number like 12500 or 12,500.00; correct it and filter again.",
            &body,
        );
    };
    let req = proto::ListHeldPostingsRequest {
        state: "held".into(),
        customer: customer.into(),
        entity: entity.into(),
        document: document.into(),
        min_amount_minor: min_minor,
        max_amount_minor: max_minor,
        page_size: 50,
        page_token: field(&q, "page_token").into(),
        ..Default::default()
    };
    let page = match web.services.approvals.list_held_postings(me.call(req)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            let body = format!("<h1>Approvals</h1>{filters}");
            return me.refused(http_status(s.code()), "Approvals", Section::Inbox, s.message(), &body);
        }
    };
    let now = now_us();
    let mut body = format!(
        r#"<h1>Approvals <small id="count" data-live="held">{} on this page</small></h1>{filters}"#,
        page.postings.len()
    );
    if page.postings.is_empty() {
        body.push_str(r#"<p id="empty">No held postings match. Nothing is waiting for approval.</p>"#);
    } else {
        // The entity column only where entities are configured.
        let entities = page.postings.iter().any(|p| !p.entity.is_empty());
        let _ = write!(
            body,
            r#"<table id="inbox"><caption>Held postings, oldest first</caption><thead><tr><th scope="col">Posting</th><th scope="col">Order</th>{}<th scope="col">Customer</th><th scope="col" class="num">Amount</th><th scope="col">Why held</th><th scope="col">Waiting</th><th scope="col">SLA</th></tr></thead><tbody>"#,
            if entities { r#"<th scope="col">Entity</th>"# } else { "" }
        );
        for p in &page.postings {
            let kind = document_label(&p.document);
            let entity =
                if entities { format!(r#"<td class="entity">{}</td>"#, esc(&p.entity)) } else { String::new() };
            let _ = write!(
                body,
                r#"<tr data-posting-id="{id}"><td><a class="posting" href="/postings/{uid}">{kind} {key}</a></td><td><a href="/orders/{uorder}">{order}</a></td>{entity}<td>{customer}</td><td class="num">{amount} {cur}</td><td>{reasons}</td><td>{waiting}</td><td>{sla}</td></tr>"#,
                id = esc(&p.posting_id),
                uid = url(&p.posting_id),
                key = esc(&p.business_key),
                uorder = url(&p.order_ref),
                order = esc(&p.order_ref),
                customer = esc(&p.customer),
                amount = money(p.amount_minor),
                cur = esc(&p.currency),
                reasons = esc(&p.reasons.join("; ")),
                waiting = age((now - p.held_at_us) / 1_000_000),
                sla = sla(p, now),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&html::pager(
        "/inbox",
        &[
            ("document", document.to_string()),
            ("customer", customer.to_string()),
            ("entity", entity.to_string()),
            ("min_amount", min.to_string()),
            ("max_amount", max.to_string()),
        ],
        &page.next_page_token,
    ));
    me.page("Approvals", Section::Inbox, &body).into_response()
}

async fn posting_body(web: &Web, me: &Me, id: &str) -> Result<(String, proto::Posting), (StatusCode, String)> {
    let got = web
        .services
        .approvals
        .get_posting(me.call(proto::GetPostingRequest { posting_id: id.to_string() }))
        .await
        .map_err(|s| (http_status(s.code()), s.message().to_string()))?
        .into_inner();
    let p = got.posting.ok_or((StatusCode::NOT_FOUND, format!("Posting {id} does not exist.")))?;
    let kind = document_label(&p.document);
    let now = now_us();
    let mut b = format!(
        r#"<h1>{kind} {key} <span class="state {state}">{state}</span></h1>
<p class="meta">Order <a href="/orders/{uorder}">{order}</a>{entity} · customer {customer} · <strong>{amount} {cur}</strong> · held {held} ({waiting} ago) {sla} · version {version}</p>
<section id="evidence" aria-labelledby="why"><h2 id="why">Why it is held</h2><ul class="reasons">"#,
        key = esc(&p.business_key),
        state = esc(&p.state),
        uorder = url(&p.order_ref),
        order = esc(&p.order_ref),
        customer = esc(&p.customer),
        entity = if p.entity.is_empty() {
            String::new()
        } else {
            format!(r#" · entity <span class="entity">{}</span> (its approval limits apply)"#, esc(&p.entity))
        },
        amount = money(p.amount_minor),
        cur = esc(&p.currency),
        held = time(p.held_at_us),
        waiting = age((now - p.held_at_us) / 1_000_000),
        sla = sla(&p, now),
        version = p.version,
    );
    for r in &p.reasons {
        let _ = write!(b, "<li>{}</li>", esc(r));
    }
    b.push_str("</ul>");
    if !p.requested_by.is_empty() {
        let _ = write!(b, r#"<p>Requested by <span class="who">{}</span>.</p>"#, esc(&p.requested_by));
    }
    b.push_str(r#"<h2>Order lines</h2><table class="lines"><thead><tr><th scope="col">Line</th><th scope="col">SKU</th><th scope="col" class="num">Ordered</th><th scope="col" class="num">Shipped</th><th scope="col">Unit</th><th scope="col" class="num">Price</th><th scope="col">Tax</th></tr></thead><tbody>"#);
    for l in &got.order_lines {
        let _ = write!(
            b,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            l.line_no,
            esc(&l.sku),
            esc(&l.ordered),
            esc(&l.shipped),
            esc(&l.uom),
            money(l.unit_price_minor),
            esc(&l.tax_code)
        );
    }
    let _ = write!(
        b,
        r#"</tbody></table><h2>{kind} lines</h2><table class="lines"><thead><tr><th scope="col">Line</th><th scope="col">SKU</th><th scope="col" class="num">Quantity</th><th scope="col" class="num">Price</th><th scope="col">Tax</th><th scope="col" class="num">Total</th></tr></thead><tbody>"#
    );
    for l in &got.document_lines {
        let _ = write!(
            b,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td></tr>"#,
            l.line_no,
            esc(&l.sku),
            esc(&l.quantity),
            money(l.unit_price_minor),
            esc(&l.tax_code),
            money(l.total_minor)
        );
    }
    let _ = write!(
        b,
        r#"</tbody><tfoot><tr><th scope="row" colspan="5">Net total</th><td class="num">{}</td></tr></tfoot></table>"#,
        money(got.document_total_minor)
    );
    // History: the audit of this posting (decisions and refused attempts).
    let audit = web
        .services
        .audit
        .list_audit(me.call(proto::ListAuditRequest { posting_id: id.to_string(), actor: String::new(), limit: 50 }))
        .await
        .map(|r| r.into_inner().entries)
        .unwrap_or_default();
    b.push_str(r#"<h2>History</h2><ol class="history">"#);
    let _ = write!(b, "<li>{} — held: {}</li>", time(p.held_at_us), esc(&p.reasons.join("; ")));
    for e in audit.iter().rev() {
        let _ = write!(
            b,
            "<li>{} — {} by {} ({}): {}{}</li>",
            time(e.at_us),
            esc(&e.action),
            esc(&e.actor),
            esc(&e.role),
            esc(&e.outcome),
            if e.reason.is_empty() { String::new() } else { format!(" — “{}”", esc(&e.reason)) }
        );
    }
    b.push_str("</ol></section>");
    if p.state == "held" && me.may(Role::Approver) {
        let _ = write!(
            b,
            r#"<section class="decide" aria-label="Decision">
<form id="approve" method="post" action="/postings/{uid}/approve">{csrf}<input type="hidden" name="expected_version" value="{v}">
<label for="approve-reason">Reason (optional)</label><textarea id="approve-reason" name="reason" rows="2"></textarea>
<button id="approve-submit" type="submit" class="primary" accesskey="a">Approve</button></form>
<form id="reject" method="post" action="/postings/{uid}/reject">{csrf}<input type="hidden" name="expected_version" value="{v}">
<label for="reject-reason">Reason (required)</label><textarea id="reject-reason" name="reason" rows="2" required></textarea>
<button id="reject-submit" type="submit" class="danger">Reject</button></form>
</section>"#,
            uid = url(&p.posting_id),
            csrf = html::csrf_field(&me.csrf),
            v = p.version,
        );
    } else if p.state != "held" {
        let _ = write!(
            b,
            r#"<p class="decided">{} by {} ({}){}.</p>"#,
            esc(&p.state),
            esc(&p.decided_by),
            esc(&p.decided_role),
            if p.decision_reason.is_empty() { String::new() } else { format!(": “{}”", esc(&p.decision_reason)) }
        );
    }
    Ok((b, p))
}

/// `GET /postings/{id}`.
pub(crate) async fn show(State(web): State<Arc<Web>>, me: Me, Path(id): Path<String>) -> Response {
    match posting_body(&web, &me, &id).await {
        Ok((b, p)) => me.page(&format!("Posting {}", p.business_key), Section::Inbox, &b).into_response(),
        Err((status, text)) => me.refused(status, "Posting", Section::Inbox, &text, ""),
    }
}

async fn decide(
    web: Arc<Web>,
    headers: HeaderMap,
    peer: Peer,
    id: String,
    form: HashMap<String, String>,
    approve: bool,
) -> Response {
    let me = match web.me_posting(&headers, &peer, &form) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let Ok(expected_version) = field(&form, "expected_version").parse::<i64>() else {
        return me.refused(
            StatusCode::BAD_REQUEST,
            "Posting",
            Section::Inbox,
            "The form lost the posting's version; reload the page and decide again.",
            "",
        );
    };
    let req =
        proto::DecisionRequest { posting_id: id.clone(), expected_version, reason: field(&form, "reason").to_string() };
    let answer = if approve {
        web.services.approvals.approve(me.call(req)).await
    } else {
        web.services.approvals.reject(me.call(req)).await
    };
    match answer {
        Ok(r) => {
            let r = r.into_inner();
            let text = if r.already_decided {
                format!("Posting {id} was already {}; nothing changed.", r.state)
            } else {
                format!("Posting {id} {} by {}.", r.state, me.principal.identity)
            };
            web.flash(&me, true, text);
            Redirect::to("/inbox").into_response()
        }
        Err(s) => {
            let status = http_status(s.code());
            let body = posting_body(&web, &me, &id).await.map(|(b, _)| b).unwrap_or_default();
            let what = if approve { "could not be approved" } else { "could not be rejected" };
            me.refused(status, "Posting", Section::Inbox, &format!("Posting {id} {what}: {}", s.message()), &body)
        }
    }
}

/// `POST /postings/{id}/approve`.
pub(crate) async fn approve(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    decide(web, headers, peer, id, form, true).await
}

/// `POST /postings/{id}/reject`.
pub(crate) async fn reject(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    decide(web, headers, peer, id, form, false).await
}

/// A held posting's document in words.
fn document_label(document: &str) -> &'static str {
    match document {
        "credit-note" => "Credit note",
        "vendor-bill" => "Vendor bill",
        _ => "Invoice",
    }
}

#[cfg(test)]
mod tests {
    use super::amount_minor;

    #[test]
    fn amounts_read_as_people_type_them() {
        assert_eq!(amount_minor(""), Some(0));
        assert_eq!(amount_minor("12500"), Some(1_250_000));
        assert_eq!(amount_minor("12,500.5"), Some(1_250_050));
        assert_eq!(amount_minor("0.05"), Some(5));
        assert_eq!(amount_minor("1.234"), None);
        assert_eq!(amount_minor("ten"), None);
    }
}
