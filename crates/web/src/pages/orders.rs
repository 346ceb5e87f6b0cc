//! Orders: search by any source reference, an order's timeline across its sagas with
//! links to its postings and exceptions, a replay with its dry-run diff, and the "stuck"
//! list.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use waybill_control::Role;
use waybill_control::proto;
use waybill_control::proto::queries_server::Queries;
use waybill_control::proto::workbench_server::Workbench;

use super::{field, now_us};
use crate::html::{self, Section, age, esc, money, time, url};
use crate::{Me, Peer, Web, http_status};

/// Systems whose references lineage knows (`wms:SHP-1`).
const SYSTEMS: [&str; 6] = ["odoo", "wms", "carrier", "finance", "bank", "waybill"];

/// The order a journal lineage id (`o2f:SO0042#3`) belongs to, for the order's own saga.
fn order_of_saga_entry(id: &str) -> Option<&str> {
    let saga = id.split('#').next()?;
    saga.strip_prefix("o2f:")
}

/// The orders `q` may name: the order itself, then lineage of `q` at each system, then
/// the orders whose shipments, tracking numbers, documents or customer reference match.
async fn find_orders(web: &Web, me: &Me, q: &str) -> Vec<String> {
    if let Ok(r) = web.services.queries.get_order(me.call(proto::GetOrderRequest { order_ref: q.to_string() })).await
        && r.into_inner().order.is_some()
    {
        return vec![q.to_string()];
    }
    let mut refs: Vec<String> = if q.contains(':') { vec![q.to_string()] } else { Vec::new() };
    refs.extend(SYSTEMS.iter().map(|s| format!("{s}:{q}")));
    let mut found = Vec::new();
    for r in refs {
        let req = proto::GetLineageRequest { source_ref: r };
        if let Ok(l) = web.services.queries.get_lineage(me.call(req)).await {
            for e in l.into_inner().entries {
                if let Some(o) = order_of_saga_entry(&e.id)
                    && !found.iter().any(|f: &String| f == o)
                {
                    found.push(o.to_string());
                }
            }
        }
    }
    if !found.is_empty() {
        return found;
    }
    // References lineage does not index (tracking numbers, invoice numbers): the orders.
    let p = web.services.projections().clone();
    let q = q.to_string();
    tokio::task::spawn_blocking(move || {
        let orders = p.orders(None, usize::MAX).unwrap_or_default();
        orders
            .into_iter()
            .filter(|o| {
                o.client_order_ref.as_deref() == Some(q.as_str())
                    || o.shipments.iter().any(|s| s.shipment_id == q || s.tracking_ref.as_deref() == Some(q.as_str()))
                    || o.documents.iter().any(|d| d.number == q || d.business_key == q)
                    || o.postings.iter().any(|x| x.posting_id == q)
            })
            .map(|o| o.order_ref)
            .take(50)
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// `GET /orders?q=`: one match opens it; several are listed; none says so. Without `q`,
/// the orders changed most recently.
pub(crate) async fn search(State(web): State<Arc<Web>>, me: Me, Query(q): Query<HashMap<String, String>>) -> Response {
    let needle = field(&q, "q");
    let form = format!(
        r#"<form class="filters" method="get" action="/orders" role="search"><label for="order-q">Any reference: Odoo order, WMS shipment, invoice number, carrier tracking</label><input id="order-q" name="q" value="{}"><button type="submit">Find</button></form>"#,
        esc(needle)
    );
    if needle.is_empty() {
        let req = proto::ListOrdersRequest {
            page_size: 100,
            page_token: field(&q, "page_token").into(),
            ..Default::default()
        };
        return match web.services.queries.list_orders(me.call(req)).await {
            Ok(r) => {
                let r = r.into_inner();
                let mut b = format!("<h1>Orders</h1>{form}");
                b.push_str(&orders_table("orders", &r.orders));
                b.push_str(&html::pager("/orders", &[], &r.next_page_token));
                me.page("Orders", Section::Orders, &b).into_response()
            }
            Err(s) => me.refused(http_status(s.code()), "Orders", Section::Orders, s.message(), &form),
        };
    }
    let found = find_orders(&web, &me, needle).await;
    match found.as_slice() {
        [one] => Redirect::to(&format!("/orders/{}", url(one))).into_response(),
        [] => me.refused(
            StatusCode::NOT_FOUND,
            "Orders",
            Section::Orders,
            &format!("Nothing found for {needle:?}. Check the reference; searches are exact (an order like SO000042, a shipment, an invoice number or a tracking number)."),
            &format!("<h1>Orders</h1>{form}"),
        ),
        many => {
            let mut b = format!("<h1>Orders matching {}</h1>{form}<ul id=\"matches\">", esc(needle));
            for o in many {
                let _ = write!(b, r#"<li><a href="/orders/{}">{}</a></li>"#, url(o), esc(o));
            }
            b.push_str("</ul>");
            me.page("Orders", Section::Orders, &b).into_response()
        }
    }
}

fn orders_table(id: &str, orders: &[proto::OrderSummary]) -> String {
    if orders.is_empty() {
        return r#"<p id="empty">No orders.</p>"#.into();
    }
    let now = now_us();
    let mut b = format!(
        r#"<table id="{id}"><thead><tr><th scope="col">Order</th><th scope="col">Status</th><th scope="col">Customer</th><th scope="col">Unchanged for</th><th scope="col" class="num">Open exceptions</th></tr></thead><tbody>"#
    );
    for o in orders {
        let _ = write!(
            b,
            r#"<tr data-order="{o}"><td><a href="/orders/{uo}">{o}</a></td><td><span class="state">{st}</span></td><td>{c}</td><td>{age}</td><td class="num">{x}</td></tr>"#,
            o = esc(&o.order_ref),
            uo = url(&o.order_ref),
            st = esc(&o.status),
            c = esc(&o.customer),
            age = age((now - o.last_event_at_us) / 1_000_000),
            x = o.open_exceptions,
        );
    }
    b.push_str("</tbody></table>");
    b
}

async fn order_body(web: &Web, me: &Me, order: &str) -> Result<String, (StatusCode, String)> {
    let o = web
        .services
        .queries
        .get_order(me.call(proto::GetOrderRequest { order_ref: order.to_string() }))
        .await
        .map_err(|s| (http_status(s.code()), s.message().to_string()))?
        .into_inner()
        .order
        .ok_or((StatusCode::NOT_FOUND, format!("Order {order} is not known to Waybill. An order that finished longer ago than Waybill keeps finished orders was retired and is no longer shown here; its records stay in Waybill's journal.")))?;
    // A purchase order, a statement, a reconciliation subject or a system's health record
    // has no customer, address or order status: its family says what it is.
    let mut b = if !o.family.is_empty() && o.family != "order" {
        format!(
            r#"<h1>{o} <span class="state family">{family}</span></h1><p class="meta">first seen {first} · last change {last}</p>"#,
            o = esc(&o.order_ref),
            family = esc(&o.family),
            first = time(o.first_event_at_us),
            last = time(o.last_event_at_us),
        )
    } else {
        format!(
            r#"<h1>{o} <span class="state">{st}</span></h1><p class="meta">Customer {c} · ship to {to}{cr} · first seen {first} · last change {last}{cancel}</p>"#,
            o = esc(&o.order_ref),
            st = esc(&o.status),
            c = esc(&o.customer),
            to = esc(&o.ship_to),
            cr = if o.client_order_ref.is_empty() {
                String::new()
            } else {
                format!(" · customer reference {}", esc(&o.client_order_ref))
            },
            first = time(o.first_event_at_us),
            last = time(o.last_event_at_us),
            cancel = if o.cancel_reason.is_empty() {
                String::new()
            } else {
                format!(" · cancelled: {}", esc(&o.cancel_reason))
            },
        )
    };
    for p in &o.problems {
        let _ = write!(b, r#"<p class="problem">{}</p>"#, esc(p));
    }
    if !o.shipments.is_empty() {
        b.push_str(r#"<h2>Shipments</h2><table id="shipments"><thead><tr><th scope="col">Shipment</th><th scope="col">Shipped</th><th scope="col">Carrier</th><th scope="col">Tracking</th><th scope="col">Delivered</th></tr></thead><tbody>"#);
        for s in &o.shipments {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.shipment_id),
                time(s.shipped_at_us),
                esc(&s.carrier),
                esc(&s.tracking_ref),
                if s.delivered { "yes" } else { "no" }
            );
        }
        b.push_str("</tbody></table>");
    }
    if !o.postings.is_empty() || !o.documents.is_empty() {
        b.push_str(r#"<h2>Postings and documents</h2><ul id="postings">"#);
        for p in &o.postings {
            let _ = write!(
                b,
                r#"<li><a href="/postings/{}">{} {}</a> — {} {} — {}</li>"#,
                url(&p.posting_id),
                esc(&p.document),
                esc(&p.business_key),
                money(p.amount_minor),
                esc(&p.currency),
                esc(&p.state)
            );
        }
        for d in &o.documents {
            let _ = write!(
                b,
                "<li>{} {} for {} — {} ({})</li>",
                esc(&d.kind),
                esc(&d.number),
                esc(&d.business_key),
                money(d.amount_minor),
                time(d.at_us)
            );
        }
        b.push_str("</ul>");
    }
    // The order's exceptions.
    let req = proto::ListExceptionsRequest { open_only: false, limit: 1000, ..Default::default() };
    let exceptions: Vec<proto::Exception> = match web.services.queries.list_exceptions(me.call(req)).await {
        Ok(r) => r.into_inner().exceptions.into_iter().filter(|x| x.order_ref == o.order_ref).collect(),
        Err(_) => Vec::new(),
    };
    if !exceptions.is_empty() {
        b.push_str(r#"<h2>Exceptions</h2><ul id="order-exceptions">"#);
        for x in &exceptions {
            let _ = write!(
                b,
                r#"<li><a href="/exceptions/{}">{}</a> — {}</li>"#,
                url(&x.exception_id),
                esc(&x.message),
                if x.resolved_at_us > 0 { "resolved" } else { "open" }
            );
        }
        b.push_str("</ul>");
    }
    b.push_str(r#"<h2>Timeline</h2><ol id="timeline">"#);
    for t in &o.timeline {
        let _ = write!(
            b,
            r#"<li><time>{}</time> <span class="saga">{}</span> <strong>{}</strong> {}</li>"#,
            time(t.at_us),
            esc(&t.saga_id),
            esc(&t.event),
            esc(&t.summary)
        );
    }
    b.push_str("</ol>");
    if me.may(Role::Operator) {
        let _ = write!(
            b,
            r#"<section aria-label="Replay"><h2>Replay</h2><p>Replays the order's inbound events through its sagas. Try it first: the dry run writes nothing and shows what would change.</p>
<form id="replay" method="post" action="/orders/{}/replay">{}<input type="hidden" name="dry_run" value="1"><label for="replay-note">Why</label><input id="replay-note" name="note"><button id="replay-submit" type="submit">Dry run</button></form></section>"#,
            url(&o.order_ref),
            html::csrf_field(&me.csrf)
        );
    }
    Ok(b)
}

/// `GET /orders/{order}`.
pub(crate) async fn show(State(web): State<Arc<Web>>, me: Me, Path(order): Path<String>) -> Response {
    match order_body(&web, &me, &order).await {
        Ok(b) => me.page(&order, Section::Orders, &b).into_response(),
        Err((status, text)) => me.refused(status, "Order", Section::Orders, &text, ""),
    }
}

fn replay_diff(order: &str, r: &proto::ReplayResponse, me: &Me, note: &str) -> String {
    let mut b = format!(
        r#"<section id="replay-diff" aria-labelledby="diff-title"><h2 id="diff-title">{}</h2><p>{}</p><h3>Inputs replayed ({})</h3><ul id="replay-inputs">"#,
        if r.dry_run { "Dry run: what a replay would do" } else { "Replay done" },
        esc(&r.message),
        r.inputs.len()
    );
    for i in &r.inputs {
        let _ = write!(
            b,
            "<li>{} {}/{}@{}{}</li>",
            esc(&i.event),
            esc(&i.topic),
            i.partition,
            i.offset,
            if i.dead_letter.is_empty() { String::new() } else { format!(" (closes {})", esc(&i.dead_letter)) }
        );
    }
    let _ = write!(
        b,
        r#"</ul><h3>Journal events {} ({})</h3><ul id="replay-journal">"#,
        if r.dry_run { "it would write" } else { "written" },
        r.journal.len()
    );
    for j in &r.journal {
        let _ = write!(b, "<li><strong>{}</strong> {} — {}</li>", esc(&j.event), esc(&j.saga_id), esc(&j.summary));
    }
    let _ = write!(
        b,
        r#"</ul><h3>Commands {} ({})</h3><ul id="replay-commands">"#,
        if r.dry_run { "it would send" } else { "sent" },
        r.commands.len()
    );
    for c in &r.commands {
        let _ = write!(
            b,
            "<li><strong>{}</strong> to {} — key {}</li>",
            esc(&c.command),
            esc(&c.target),
            esc(&c.idempotency_key)
        );
    }
    b.push_str("</ul>");
    if !r.refused.is_empty() {
        b.push_str(r#"<h3>Still refused</h3><ul id="replay-refused">"#);
        for x in &r.refused {
            let _ = write!(b, "<li>{}</li>", esc(x));
        }
        b.push_str("</ul>");
    }
    if r.dry_run {
        let _ = write!(
            b,
            r#"<form id="replay-confirm" method="post" action="/orders/{}/replay">{}<input type="hidden" name="dry_run" value="0"><input type="hidden" name="note" value="{}"><button id="replay-confirm-submit" type="submit" class="danger">Replay for real</button></form>"#,
            url(order),
            html::csrf_field(&me.csrf),
            esc(note)
        );
    }
    b.push_str("</section>");
    b
}

/// `POST /orders/{order}/replay`: a dry run (`dry_run=1`) or the real replay.
pub(crate) async fn replay(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Path(order): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let me = match web.me_posting(&headers, &peer, &form) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let dry_run = field(&form, "dry_run") != "0";
    let note = field(&form, "note").to_string();
    let req = proto::ReplayRequest { saga_id: order.clone(), note: note.clone() };
    let answer = if dry_run {
        web.services.workbench.dry_run_replay(me.call(req)).await
    } else {
        web.services.workbench.replay(me.call(req)).await
    };
    let body = order_body(&web, &me, &order).await.unwrap_or_default();
    match answer {
        Ok(r) => {
            let r = r.into_inner();
            let title = if r.dry_run { "Replay dry run" } else { "Replay" };
            let b = format!(
                r#"<h1>{title} of <a href="/orders/{}">{}</a></h1>{}<hr>{}"#,
                url(&order),
                esc(&order),
                replay_diff(&order, &r, &me, &note),
                body
            );
            me.page(&format!("Replay {order}"), Section::Orders, &b).into_response()
        }
        Err(s) => me.refused(
            http_status(s.code()),
            "Replay",
            Section::Orders,
            &format!("Replay refused: {}", s.message()),
            &body,
        ),
    }
}

/// `GET /stuck?older_than_minutes=N`: orders in a state (not finished) unchanged for N
/// minutes or more, oldest first.
pub(crate) async fn stuck(State(web): State<Arc<Web>>, me: Me, Query(q): Query<HashMap<String, String>>) -> Response {
    let minutes = field(&q, "older_than_minutes").parse::<u64>().unwrap_or(web.cfg.stuck_after_minutes);
    let form = format!(
        r#"<form class="filters" method="get" action="/stuck"><label>Unchanged for at least <input name="older_than_minutes" type="number" min="0" value="{minutes}"> minutes</label><button type="submit">Show</button></form>"#
    );
    let req = proto::ListOrdersRequest {
        older_than_seconds: (minutes * 60) as i64,
        page_size: 200,
        page_token: field(&q, "page_token").into(),
        ..Default::default()
    };
    match web.services.queries.list_orders(me.call(req)).await {
        Ok(r) => {
            let r = r.into_inner();
            let open: Vec<proto::OrderSummary> = r
                .orders
                .into_iter()
                .filter(|o| waybill_projection::OrderStatus::parse(&o.status).is_none_or(|s| !s.is_final()))
                .collect();
            let mut b = format!("<h1>Stuck orders</h1>{form}");
            if open.is_empty() {
                b.push_str(r#"<table id="stuck"><tbody></tbody></table><p id="empty">No unfinished order has been unchanged that long.</p>"#);
            } else {
                b.push_str(&orders_table("stuck", &open));
            }
            b.push_str(&html::pager("/stuck", &[("older_than_minutes", minutes.to_string())], &r.next_page_token));
            me.page("Stuck orders", Section::Stuck, &b).into_response()
        }
        Err(s) => me.refused(http_status(s.code()), "Stuck orders", Section::Stuck, s.message(), &form),
    }
}

#[cfg(test)]
mod tests {
    use super::order_of_saga_entry;

    #[test]
    fn lineage_ids_name_their_order() {
        assert_eq!(order_of_saga_entry("o2f:SO0042#3"), Some("SO0042"));
        assert_eq!(order_of_saga_entry("s2i:SHP-1#2"), None);
    }
}
