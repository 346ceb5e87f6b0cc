//! The exception queue: open exceptions by category, age and owner, each in business
//! terms; an exception's page with retry, resolve (with a note) and assign, and for an
//! unmatched bank-statement line, apply it by hand to the invoices it pays.

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
const CATEGORIES: [(&str, &str); 17] = [
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
    ("receipt-mismatch", "Receipt mismatch"),
    ("unmatched-payment", "Unmatched payment"),
    ("reconciliation-mismatch", "Reconciliation mismatch"),
    ("other", "Other"),
];

fn label(category: &str) -> &str {
    CATEGORIES.iter().find(|(c, _)| *c == category).map_or(category, |(_, l)| l)
}

/// `GET /exceptions?category=&owner=&customer=&entity=&min_age_minutes=&open=&page_token=`.
pub(crate) async fn list(State(web): State<Arc<Web>>, me: Me, Query(q): Query<HashMap<String, String>>) -> Response {
    let (category, owner, customer, min_age) =
        (field(&q, "category"), field(&q, "owner"), field(&q, "customer"), field(&q, "min_age_minutes"));
    let entity = field(&q, "entity");
    let open_only = field(&q, "open") != "0";
    let filters = format!(
        r#"<form class="filters" method="get" action="/exceptions" aria-label="Filter exceptions">{}{}{}{}{}{}<button type="submit">Filter</button> <a href="/exceptions">Clear</a></form>"#,
        html::select("category", "Category", &CATEGORIES, category),
        html::input("owner", "Owner (- for nobody)", owner, "text"),
        html::input("customer", "Customer", customer, "text"),
        html::entity_filter(&web.cfg.entities, entity),
        html::input("min_age_minutes", "Older than (minutes)", min_age, "number"),
        html::select(
            "open",
            "Show",
            &[("1", "Open only"), ("0", "Open and resolved")],
            if open_only { "1" } else { "0" }
        ),
    );
    let Ok(min_age_minutes) = (if min_age.is_empty() { Ok(0) } else { min_age.parse::<i64>() }) else {
        let body = format!("<h1>Exceptions</h1>{filters}");
        return me.refused(
            StatusCode::BAD_REQUEST,
            "Exceptions",
            Section::Exceptions,
            "“Older than” is a number of minutes, like 90; correct it and filter again.",
            &body,
        );
    };
    let req = proto::ListExceptionsRequest {
        category: category.into(),
        open_only,
        min_age_seconds: min_age_minutes.saturating_mul(60),
        owner: owner.into(),
        customer: customer.into(),
        entity: entity.into(),
        page_size: 100,
        page_token: field(&q, "page_token").into(),
        ..Default::default()
    };
    let page = match web.services.queries.list_exceptions(me.call(req)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            let body = format!("<h1>Exceptions</h1>{filters}");
            return me.refused(http_status(s.code()), "Exceptions", Section::Exceptions, s.message(), &body);
        }
    };
    let now = now_us();
    let mut body = format!(
        r#"<h1>Exceptions <small data-live="exceptions">{} on this page</small></h1>{filters}"#,
        page.exceptions.len()
    );
    if category == "reconciliation-mismatch" {
        body.push_str(&super::reconcile::run_form(&me.csrf));
    }
    if page.exceptions.is_empty() {
        body.push_str(r#"<p id="empty">No exceptions match. Nothing needs a person right now.</p>"#);
    } else {
        // The entity column only where entities are configured.
        let entities = page.exceptions.iter().any(|x| !x.entity.is_empty());
        let _ = write!(
            body,
            r#"<table id="exceptions"><caption>Exceptions by category</caption><thead><tr><th scope="col">What happened</th><th scope="col">Category</th><th scope="col">Order</th>{}<th scope="col">Customer</th><th scope="col">Owner</th><th scope="col">Age</th><th scope="col">State</th></tr></thead><tbody>"#,
            if entities { r#"<th scope="col">Entity</th>"# } else { "" }
        );
        for x in &page.exceptions {
            let state = if x.resolved_at_us > 0 { "resolved" } else { "open" };
            let entity =
                if entities { format!(r#"<td class="entity">{}</td>"#, esc(&x.entity)) } else { String::new() };
            let _ = write!(
                body,
                r#"<tr data-exception-id="{id}"><td><a class="exception" href="/exceptions/{uid}">{msg}</a></td><td>{cat}</td><td><a href="/orders/{uorder}">{order}</a></td>{entity}<td>{customer}</td><td class="owner">{owner}</td><td>{age}</td><td><span class="state {state}">{state}</span></td></tr>"#,
                id = esc(&x.exception_id),
                uid = url(&x.exception_id),
                msg = esc(&x.message),
                cat = esc(label(&x.category)),
                uorder = url(&x.order_ref),
                order = esc(&x.order_ref),
                customer = esc(&x.customer),
                owner = if x.owner.is_empty() { "—".to_string() } else { esc(&x.owner) },
                age = age((now - x.raised_at_us) / 1_000_000),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&html::pager(
        "/exceptions",
        &[
            ("category", category.to_string()),
            ("owner", owner.to_string()),
            ("customer", customer.to_string()),
            ("entity", entity.to_string()),
            ("min_age_minutes", min_age.to_string()),
            ("open", if open_only { "1" } else { "0" }.to_string()),
        ],
        &page.next_page_token,
    ));
    me.page("Exceptions", Section::Exceptions, &body).into_response()
}

/// The exception `id`, read through `ListExceptions` page by page (the service has no
/// lookup by id; the store's exceptions are few next to its orders).
async fn find(web: &Web, me: &Me, id: &str) -> Result<proto::Exception, (StatusCode, String)> {
    let mut token = String::new();
    loop {
        let req =
            proto::ListExceptionsRequest { open_only: false, page_size: 1000, page_token: token, ..Default::default() };
        let page = web
            .services
            .queries
            .list_exceptions(me.call(req))
            .await
            .map_err(|s| (http_status(s.code()), s.message().to_string()))?
            .into_inner();
        if let Some(x) = page.exceptions.into_iter().find(|x| x.exception_id == id) {
            return Ok(x);
        }
        if page.next_page_token.is_empty() {
            return Err((StatusCode::NOT_FOUND, format!("Exception {id} does not exist.")));
        }
        token = page.next_page_token;
    }
}

fn exception_body(me: &Me, x: &proto::Exception) -> String {
    let now = now_us();
    let open = x.resolved_at_us == 0;
    let mut b = format!(
        r#"<h1>{msg}</h1>
<dl class="facts"><dt>Category</dt><dd>{cat}</dd><dt>Order</dt><dd><a href="/orders/{uorder}">{order}</a></dd><dt>Saga</dt><dd>{saga}</dd><dt>Concerns</dt><dd>{subject}</dd><dt>Customer</dt><dd>{customer}</dd><dt>Owner</dt><dd id="owner">{owner}</dd><dt>Raised</dt><dd>{raised} ({age} ago)</dd><dt>State</dt><dd><span class="state {state}">{state}</span>{resolution}</dd></dl>"#,
        msg = esc(&x.message),
        cat = esc(label(&x.category)),
        uorder = url(&x.order_ref),
        order = esc(&x.order_ref),
        saga = esc(&x.saga_id),
        subject = esc(&x.subject),
        customer = esc(&x.customer),
        owner = if x.owner.is_empty() {
            "nobody yet".to_string()
        } else {
            format!("{} (since {})", esc(&x.owner), time(x.assigned_at_us))
        },
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
        if x.category == "unmatched-payment" {
            let _ = write!(
                b,
                r#"<section class="actions" aria-label="Apply this statement line by hand">
<h2>Apply the line by hand</h2>
<form id="assign-line" method="post" action="/exceptions/{uid}/assign-line">{csrf}<label for="assign-line-invoices">Invoices it pays, one per line: NUMBER=AMOUNT (INV/2026/0001=120.00)</label><textarea id="assign-line-invoices" name="invoices" rows="3"></textarea><label for="assign-line-on-account">Customer whose account keeps the rest (optional)</label><input id="assign-line-on-account" name="on_account"><label for="assign-line-note">How it was established (required)</label><textarea id="assign-line-note" name="note" rows="2" required></textarea><button id="assign-line-submit" type="submit" class="primary">Apply</button></form>
</section>"#
            );
        }
    }
    b
}

/// The `AssignStatementLine` request of the exception page's Apply form: one `NUMBER=AMOUNT`
/// per line of `invoices`, blank lines skipped.
fn line_assignment(id: &str, form: &HashMap<String, String>) -> Result<proto::AssignStatementLineRequest, String> {
    let allocations = field(form, "invoices")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(waybill_control::statement_line::parse_allocation)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(proto::AssignStatementLineRequest {
        exception_id: id.to_string(),
        allocations,
        on_account: field(form, "on_account").trim().to_string(),
        note: field(form, "note").to_string(),
        ..Default::default()
    })
}

/// `GET /exceptions/{id}`.
pub(crate) async fn show(State(web): State<Arc<Web>>, me: Me, Path(id): Path<String>) -> Response {
    match find(&web, &me, &id).await {
        Ok(x) => me.page("Exception", Section::Exceptions, &exception_body(&me, &x)).into_response(),
        Err((status, text)) => me.refused(status, "Exception", Section::Exceptions, &text, ""),
    }
}

/// `POST /exceptions/{id}/{retry|resolve|assign|assign-line}`.
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
    let req = proto::ExceptionActionRequest { exception_id: id.clone(), note: note.clone() };
    let answer = match action.as_str() {
        "retry" => web.services.workbench.retry_exception(me.call(req)).await,
        "resolve" => web.services.workbench.resolve_exception(me.call(req)).await,
        "assign" => {
            let owner = field(&form, "owner").to_string();
            let req = proto::AssignExceptionRequest { exception_id: id.clone(), owner, note };
            web.services.workbench.assign_exception(me.call(req)).await
        }
        "assign-line" => match line_assignment(&id, &form) {
            Ok(req) => web.services.workbench.assign_statement_line(me.call(req)).await,
            Err(text) => {
                let body = find(&web, &me, &id).await.map(|x| exception_body(&me, &x)).unwrap_or_default();
                let text = format!("{text}; correct it and apply again.");
                return me.refused(StatusCode::BAD_REQUEST, "Exception", Section::Exceptions, &text, &body);
            }
        },
        other => {
            let text = format!(
                "{other:?} is not something the workbench can do to an exception; use retry, resolve, assign or assign-line."
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apply_form_reads_one_invoice_per_line_and_says_which_line_is_wrong() {
        let form = |invoices: &str| {
            HashMap::from([
                ("invoices".to_string(), invoices.to_string()),
                ("on_account".to_string(), " C0001 ".to_string()),
                ("note".to_string(), "confirmed by phone".to_string()),
            ])
        };
        let r =
            line_assignment("cash:S/unmatched-payment/1", &form("INV/2026/0001=120.00\r\n\r\nINV/2026/0002 = 30\n"))
                .unwrap();
        let got: Vec<(&str, i64)> = r.allocations.iter().map(|a| (a.invoice.as_str(), a.amount_minor)).collect();
        assert_eq!(got, [("INV/2026/0001", 120_00), ("INV/2026/0002", 30_00)]);
        assert_eq!((r.on_account.as_str(), r.note.as_str()), ("C0001", "confirmed by phone"));
        let e = line_assignment("x", &form("INV/2026/0001=120,00")).unwrap_err();
        assert!(e.contains("\"INV/2026/0001=120,00\"") && e.contains("is not an amount"), "{e}");
    }

    #[test]
    fn every_category_the_sagas_raise_has_a_label_and_a_filter() {
        for c in waybill_domain::ExceptionCategory::ALL {
            assert!(CATEGORIES.iter().any(|(k, _)| *k == c.as_str()), "{c} has no label in the workbench");
        }
    }
}
