//! The exception queue: open exceptions by category, age and owner, each in business
//! terms; an exception's page with retry, resolve (with a note) and assign.

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
use crate::html::{self, Section, age, esc, time, url};
use crate::{Me, Peer, Web, http_status};

/// The categories, as the saga names them, with a label for people.
const CATEGORIES: [(&str, &str); 14] = [
    ("", "All categories"),
    ("master-data", "Master data"),
    ("stock-shortage", "Stock shortage"),
    ("pick-overdue", "Pick overdue"),
    ("pick-mismatch", "Pick mismatch"),
    ("late-cancellation", "Late cancellation"),
    ("bad-input", "Bad input"),
    ("posting-rejected", "Posting rejected"),
    ("return-mismatch", "Return mismatch"),
    ("approval-overdue", "Approval overdue"),
    ("step-overdue", "Step overdue"),
    ("delivery-failed", "Delivery failed"),
    ("target-unavailable", "System unavailable"),
    ("other", "Other"),
];

fn label(category: &str) -> &str {
    CATEGORIES.iter().find(|(c, _)| *c == category).map_or(category, |(_, l)| l)
}

/// `GET /exceptions`.
pub(crate) async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let me = match web.me(&headers, &peer) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let category = field(&q, "category");
    let open_only = field(&q, "open") != "0";
    let (owner, customer) = (field(&q, "owner"), field(&q, "customer"));
    let filters = format!(
        r#"<form class="filters" method="get" action="/exceptions" aria-label="Filter exceptions">{}{}{}{}<button type="submit">Filter</button> <a href="/exceptions">Clear</a></form>"#,
        html::select("category", "Category", &CATEGORIES, category),
        html::input("owner", "Owner (- for nobody)", owner, "text"),
        html::input("customer", "Customer", customer, "text"),
        html::select(
            "open",
            "Show",
            &[("1", "Open only"), ("0", "Open and resolved")],
            if open_only { "1" } else { "0" }
        ),
    );
    let req = proto::ListExceptionsRequest {
        category: category.into(),
        open_only,
        owner: owner.into(),
        customer: customer.into(),
        limit: 200,
        ..Default::default()
    };
    let list = match web.services.queries.list_exceptions(me.call(req)).await {
        Ok(r) => r.into_inner().exceptions,
        Err(s) => {
            let body = format!("<h1>Exceptions</h1>{filters}");
            return me.refused(http_status(s.code()), "Exceptions", Section::Exceptions, s.message(), &body);
        }
    };
    let now = now_us();
    let mut body =
        format!(r#"<h1>Exceptions <small data-live="exceptions">{} shown</small></h1>{filters}"#, list.len());
    if list.is_empty() {
        body.push_str(r#"<p id="empty">No exceptions match. Nothing needs a person right now.</p>"#);
    } else {
        body.push_str(r#"<table id="exceptions"><caption>Exceptions, oldest first</caption><thead><tr><th scope="col">What happened</th><th scope="col">Category</th><th scope="col">Order</th><th scope="col">Age</th><th scope="col">State</th></tr></thead><tbody>"#);
        let mut list = list;
        list.sort_by_key(|x| x.raised_at_us);
        for x in &list {
            let state = if x.resolved_at_us > 0 { "resolved" } else { "open" };
            let _ = write!(
                body,
                r#"<tr data-exception-id="{id}"><td><a class="exception" href="/exceptions/{uid}">{msg}</a></td><td>{cat}</td><td><a href="/orders/{uorder}">{order}</a></td><td>{age}</td><td><span class="state {state}">{state}</span></td></tr>"#,
                id = esc(&x.exception_id),
                uid = url(&x.exception_id),
                msg = esc(&x.message),
                cat = esc(label(&x.category)),
                uorder = url(&x.order_ref),
                order = esc(&x.order_ref),
                age = age((now - x.raised_at_us) / 1_000_000),
            );
        }
        body.push_str("</tbody></table>");
    }
    me.page("Exceptions", Section::Exceptions, &body).into_response()
}

async fn find(web: &Web, me: &Me, id: &str) -> Result<proto::Exception, (StatusCode, String)> {
    let req = proto::ListExceptionsRequest { open_only: false, limit: 1000, ..Default::default() };
    let all = web
        .services
        .queries
        .list_exceptions(me.call(req))
        .await
        .map_err(|s| (http_status(s.code()), s.message().to_string()))?
        .into_inner()
        .exceptions;
    all.into_iter()
        .find(|x| x.exception_id == id)
        .ok_or((StatusCode::NOT_FOUND, format!("Exception {id} does not exist (or is older than the last 1000).")))
}

fn exception_body(me: &Me, x: &proto::Exception) -> String {
    let now = now_us();
    let open = x.resolved_at_us == 0;
    let mut b = format!(
        r#"<h1>{msg}</h1>
<dl class="facts"><dt>Category</dt><dd>{cat}</dd><dt>Order</dt><dd><a href="/orders/{uorder}">{order}</a></dd><dt>Saga</dt><dd>{saga}</dd><dt>Concerns</dt><dd>{subject}</dd><dt>Raised</dt><dd>{raised} ({age} ago)</dd><dt>State</dt><dd><span class="state {state}">{state}</span>{resolution}</dd></dl>"#,
        msg = esc(&x.message),
        cat = esc(label(&x.category)),
        uorder = url(&x.order_ref),
        order = esc(&x.order_ref),
        saga = esc(&x.saga_id),
        subject = esc(&x.subject),
        raised = time(x.raised_at_us),
        age = age((now - x.raised_at_us) / 1_000_000),
        state = if open { "open" } else { "resolved" },
        resolution =
            if open { String::new() } else { format!(" {} — {}", time(x.resolved_at_us), esc(&x.resolution)) },
    );
    if open && me.may(Role::Operator) {
        let uid = url(&x.exception_id);
        let csrf = html::csrf_field(&me.csrf);
        let _ = write!(
            b,
            r#"<section class="actions" aria-label="Work this exception">
<form id="retry" method="post" action="/exceptions/{uid}/retry">{csrf}<label for="retry-note">Note (optional)</label><input id="retry-note" name="note"><button id="retry-submit" type="submit" class="primary">Retry</button></form>
<form id="resolve" method="post" action="/exceptions/{uid}/resolve">{csrf}<label for="resolve-note">What was done (required)</label><textarea id="resolve-note" name="note" rows="2" required></textarea><button id="resolve-submit" type="submit">Resolve</button></form>
<form id="assign" method="post" action="/exceptions/{uid}/assign">{csrf}<label for="assign-owner">Owner</label><input id="assign-owner" name="owner" value="{me}" required><label for="assign-note">Note</label><input id="assign-note" name="note"><button id="assign-submit" type="submit">Assign</button></form>
</section>"#,
            me = esc(&me.principal.identity),
        );
    }
    b
}

/// `GET /exceptions/{id}`.
pub(crate) async fn show(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
) -> Response {
    let me = match web.me(&headers, &peer) {
        Ok(me) => me,
        Err(r) => return r,
    };
    match find(&web, &me, &id).await {
        Ok(x) => me.page("Exception", Section::Exceptions, &exception_body(&me, &x)).into_response(),
        Err((status, text)) => me.refused(status, "Exception", Section::Exceptions, &text, ""),
    }
}

/// `POST /exceptions/{id}/{retry|resolve|assign}`.
pub(crate) async fn act(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let me = match web.me_posting(&headers, &peer, &form) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let note = field(&form, "note").to_string();
    let req = proto::ExceptionActionRequest { exception_id: id.clone(), note };
    let answer = match action.as_str() {
        "retry" => web.services.workbench.retry_exception(me.call(req)).await,
        "resolve" => web.services.workbench.resolve_exception(me.call(req)).await,
        "assign" => {
            let owner = field(&form, "owner").to_string();
            let req = proto::AssignExceptionRequest { exception_id: id.clone(), owner, note: req.note };
            web.services.workbench.assign_exception(me.call(req)).await
        }
        other => {
            let text = format!(
                "{other:?} is not something the workbench can do to an exception; use retry, resolve or assign."
            );
            return me.refused(StatusCode::NOT_FOUND, "Exception", Section::Exceptions, &text, "");
        }
    };
    match answer {
        Ok(r) => {
            let r = r.into_inner();
            let text = if r.message.is_empty() { format!("Exception {id}: {}.", r.outcome) } else { r.message };
            web.flash(&me, true, text);
            Redirect::to(&format!("/exceptions/{}", url(&id))).into_response()
        }
        Err(s) => {
            let body = find(&web, &me, &id).await.map(|x| exception_body(&me, &x)).unwrap_or_default();
            me.refused(
                http_status(s.code()),
                "Exception",
                Section::Exceptions,
                &format!("{action} refused: {}", s.message()),
                &body,
            )
        }
    }
}
