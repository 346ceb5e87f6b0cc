//! The audit: every control action, who did it, in which role, from where, and how it
//! ended — approvals and rejections, refused attempts, retries, resolutions, replays —
//! from the same audit projection the gRPC `ListAudit` reads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use waybill_control::proto;
use waybill_control::proto::audit_server::Audit;

use super::field;
use crate::html::{self, Section, esc, time, url};
use crate::{Me, Web, http_status};

/// `GET /audit?actor=&subject=`.
pub(crate) async fn list(State(web): State<Arc<Web>>, me: Me, Query(q): Query<HashMap<String, String>>) -> Response {
    let (actor, subject) = (field(&q, "actor"), field(&q, "subject"));
    let filters = format!(
        r#"<form class="filters" method="get" action="/audit" aria-label="Filter the audit">{}{}<button type="submit">Filter</button> <a href="/audit">Clear</a></form>"#,
        html::input("actor", "Who", actor, "text"),
        html::input("subject", "Posting, exception or saga", subject, "text"),
    );
    let req = proto::ListAuditRequest { posting_id: subject.into(), actor: actor.into(), limit: 200 };
    let entries = match web.services.audit.list_audit(me.call(req)).await {
        Ok(r) => r.into_inner().entries,
        Err(s) => {
            let body = format!("<h1>Audit</h1>{filters}");
            return me.refused(http_status(s.code()), "Audit", Section::Audit, s.message(), &body);
        }
    };
    let mut b = format!("<h1>Audit</h1>{filters}");
    if entries.is_empty() {
        b.push_str(r#"<table id="audit"><tbody></tbody></table><p id="empty">No control actions match.</p>"#);
    } else {
        b.push_str(r#"<table id="audit"><caption>Control actions, newest first</caption><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Role</th><th scope="col">From</th><th scope="col">Action</th><th scope="col">On</th><th scope="col">Outcome</th><th scope="col">Reason and detail</th></tr></thead><tbody>"#);
        for e in &entries {
            let on = if waybill_domain::journal::DocumentKind::of_posting(&e.posting_id).is_some() {
                format!(r#"<a href="/postings/{}">{}</a>"#, url(&e.posting_id), esc(&e.posting_id))
            } else if !e.order_ref.is_empty() {
                format!(r#"{} (<a href="/orders/{}">{}</a>)"#, esc(&e.posting_id), url(&e.order_ref), esc(&e.order_ref))
            } else {
                esc(&e.posting_id)
            };
            let detail = [e.reason.as_str(), e.detail.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| esc(s))
                .collect::<Vec<_>>()
                .join(" — ");
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td class="actor">{}</td><td>{}</td><td>{}</td><td class="action">{}</td><td>{on}</td><td class="outcome"><span class="state {o}">{o}</span></td><td>{detail}</td></tr>"#,
                time(e.at_us),
                esc(&e.actor),
                esc(&e.role),
                esc(&e.peer),
                esc(&e.action),
                o = esc(&e.outcome),
            );
        }
        b.push_str("</tbody></table>");
    }
    me.page("Audit", Section::Audit, &b).into_response()
}
