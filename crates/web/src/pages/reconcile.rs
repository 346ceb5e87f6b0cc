//! A stock reconciliation run from the workbench: the same `Reconcile` the gRPC control
//! plane and `waybill reconcile stock` call (operator, audited), its report shown as the
//! CLI prints it — each finding with both figures and the last movement on each side,
//! linked to the product's reconciliation record and its open exception.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use waybill_control::proto;
use waybill_control::proto::reconciliation_server::Reconciliation;

use crate::html::{self, Section, esc, time, url};
use crate::{Peer, Web, http_status};

/// The button on the reconciliation findings' list.
pub(crate) fn run_form(csrf: &str) -> String {
    format!(
        r#"<form id="reconcile" class="actions" method="post" action="/reconcile/stock">{}<button type="submit">Run a stock reconciliation now</button> <span class="hint">compares every product's on-hand at the warehouse with what Waybill expects</span></form>"#,
        html::csrf_field(csrf)
    )
}

/// `POST /reconcile/{kind}`.
pub(crate) async fn run(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Path(kind): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let me = match web.me_posting(&headers, &peer, &form) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let req = proto::ReconcileRequest { kind: kind.clone() };
    let r = match web.services.reconciliation.reconcile(me.call(req)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            let text = format!("The {kind} reconciliation did not run: {}", s.message());
            return me.refused(http_status(s.code()), "Reconciliation", Section::Exceptions, &text, "");
        }
    };
    me.page("Reconciliation", Section::Exceptions, &report(&r)).into_response()
}

fn report(r: &proto::ReconcileReport) -> String {
    let mut b = format!(
        r#"<h1>Reconciliation {run}</h1><p id="summary">Run at {at}, tolerance {tol}: {compared} products compared, {agreed} agree, {baselined} seen for the first time (their baseline), <strong>{findings} findings</strong>, {closed} closed, {moving} moving (checked by the next run).</p>"#,
        run = esc(&r.run_id),
        at = time(r.window_us),
        tol = esc(&r.tolerance),
        compared = r.compared,
        agreed = r.agreed,
        baselined = r.baselined.len(),
        findings = r.findings.len(),
        closed = r.closed.len(),
        moving = r.unsettled.len(),
    );
    if r.findings.is_empty() {
        b.push_str(r#"<p id="empty">The warehouse and Waybill agree on every product.</p>"#);
    } else {
        b.push_str(r#"<table id="findings"><caption>Products beyond tolerance: each is an open reconciliation-mismatch exception</caption><thead><tr><th scope="col">Product</th><th scope="col">At the warehouse</th><th scope="col">Waybill expects</th><th scope="col">Difference</th><th scope="col">Last at the warehouse</th><th scope="col">Last journaled</th><th scope="col">Finding</th></tr></thead><tbody>"#);
        for f in &r.findings {
            let subject = format!("recon:stock:{}", f.sku);
            let _ = write!(
                b,
                r#"<tr data-sku="{sku}"><td><a href="/orders/{usubject}">{sku}</a></td><td>{on_hand}</td><td>{expected}</td><td>{difference}</td><td>{wms}</td><td>{journal}</td><td>{state}</td></tr>"#,
                sku = esc(&f.sku),
                usubject = url(&subject),
                on_hand = esc(&f.on_hand),
                expected = esc(&f.expected),
                difference = esc(&f.difference),
                wms = esc(if f.wms_last_movement.is_empty() { "-" } else { &f.wms_last_movement }),
                journal = esc(if f.journal_last_movement.is_empty() { "-" } else { &f.journal_last_movement }),
                state = if f.already_open { "still open" } else { "new" },
            );
        }
        b.push_str(r#"</tbody></table><p><a href="/exceptions?category=reconciliation-mismatch">Work the findings</a>: count the product and correct it at the warehouse (the next run closes the finding), or resolve the exception to accept the warehouse's figure.</p>"#);
    }
    if !r.closed.is_empty() {
        let _ = write!(b, r#"<p id="closed">Back in agreement: {}.</p>"#, esc(&r.closed.join(", ")));
    }
    let _ = write!(b, r#"<p class="hint">Report written to {}.</p>"#, esc(&r.report_path));
    b
}
