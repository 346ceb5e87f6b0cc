//! Sign-in and sign-out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use waybill_telemetry::metrics as names;

use super::field;
use crate::html::{self, esc};
use crate::{Peer, Web};

fn render(status: StatusCode, identity: &str, error: Option<&str>) -> Response {
    let error = error.map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))).unwrap_or_default();
    let body = format!(
        r#"<section class="signin">
<h1>Sign in to the Waybill workbench</h1>
{error}
<form id="signin" method="post" action="/signin">
<label for="identity">Identity</label>
<input id="identity" name="identity" autocomplete="username" required autofocus value="{}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="signin-submit" type="submit">Sign in</button>
</form>
<p class="hint">Your identity and password are set by your Waybill administrator.</p>
</section>"#,
        esc(identity)
    );
    (status, Html(html::page("Sign in", html::Section::None, None, None, &body))).into_response()
}

/// `GET /signin`.
pub(crate) async fn form(State(web): State<Arc<Web>>, headers: HeaderMap, peer: Peer) -> Response {
    if web.me(&headers, &peer).is_ok() {
        return Redirect::to("/inbox").into_response();
    }
    render(StatusCode::OK, "", None)
}

/// `POST /signin`: checks the password, throttles failures per identity and address.
pub(crate) async fn submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let identity = field(&form, "identity").to_string();
    let password = form.get("password").cloned().unwrap_or_default();
    let client = web.client(&headers, &peer);
    // The address without its port (`[::1]:5000` → `[::1]`, `10.0.0.7:5000` → `10.0.0.7`).
    let ip = match client.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.is_empty() => host.to_string(),
        _ => client.clone(),
    };
    let (by_identity, by_address) = (identity.clone(), ip);
    let now = Instant::now();
    let wait = web.throttle.wait(&by_identity, now).max(web.throttle_address.wait(&by_address, now));
    if !wait.is_zero() {
        tracing::warn!(%identity, peer = %client, wait_s = wait.as_secs(), "workbench sign-in throttled");
        metrics::counter!(names::WEB_SIGNINS, "outcome" => "throttled").increment(1);
        let text = format!(
            "Too many failed sign-ins. Wait {} seconds, then try again; if you forgot your password, ask your Waybill administrator.",
            wait.as_secs().max(1)
        );
        return render(StatusCode::TOO_MANY_REQUESTS, &identity, Some(&text));
    }
    let w = web.clone();
    let (id2, pw) = (identity.clone(), password);
    let checked =
        tokio::task::spawn_blocking(move || w.services.identities().verify_password(&id2, &pw)).await.ok().flatten();
    let Some(principal) = checked else {
        web.throttle.fail(&by_identity, now);
        web.throttle_address.fail(&by_address, now);
        tracing::warn!(%identity, peer = %client, "workbench sign-in failed");
        metrics::counter!(names::WEB_SIGNINS, "outcome" => "refused").increment(1);
        return render(
            StatusCode::UNAUTHORIZED,
            &identity,
            Some("The identity or the password is wrong. Check both and try again."),
        );
    };
    metrics::counter!(names::WEB_SIGNINS, "outcome" => "ok").increment(1);
    web.throttle.succeed(&by_identity);
    web.throttle_address.succeed(&by_address);
    let session = web.sessions.create(&principal.identity, now);
    tracing::info!(identity = %principal.identity, role = %principal.role, peer = %client, "signed in to the workbench");
    let mut r = Redirect::to("/inbox").into_response();
    if let Ok(v) = HeaderValue::from_str(&web.session_cookie(&session)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /signout`: ends the session.
pub(crate) async fn signout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    peer: Peer,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let me = match web.me_posting(&headers, &peer, &form) {
        Ok(me) => me,
        Err(r) => return r,
    };
    web.sessions.remove(&me.session);
    tracing::info!(identity = %me.principal.identity, "signed out of the workbench");
    let mut r = Redirect::to("/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&web.cleared_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
