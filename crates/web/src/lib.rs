//! The web workbench: the pages finance clerks and warehouse supervisors use all day —
//! the approval inbox, the exception queue, order search and lineage, the "stuck" list,
//! a business dashboard and the audit.
//!
//! - Pages are rendered on the server ([`html`], `pages/`); every action is a plain form
//!   POST and works without JavaScript. `assets/app.js` only adds live refresh (server-sent
//!   events from `/live`) and keyboard shortcuts. The CSS and script are compiled into the
//!   binary; nothing is fetched from elsewhere.
//! - People sign in with a password from the control plane's identities file
//!   (`[[people]]`, argon2id), get a server-side [`session`] in an `HttpOnly`,
//!   `SameSite=Strict` cookie (`Secure` behind TLS) and a CSRF token that every form
//!   carries. Failed sign-ins are throttled per identity and per address.
//! - Every read and every action goes through the control plane's own services
//!   ([`waybill_control::Services`]) with the person as the caller
//!   ([`waybill_control::auth::SignedIn`]): the same rules, roles, four-eyes, limits and
//!   audit as gRPC and the CLI. A button a role may not use is not shown, and the service
//!   refuses the action anyway.

// A handler's early exit is an HTTP answer (a redirect to sign-in, a 403 page); boxing it
// would only add an allocation to the path that ends the request anyway.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod html;
mod live;
mod pages;
pub mod samples;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use waybill_control::auth::SignedIn;
use waybill_control::{Principal, Role, Services};
use waybill_telemetry::metrics as names;

pub use config::WebConfig;
use samples::{Samples, Scrape};
use session::{Flash, Sessions, Throttle};

/// The workbench of one node.
pub struct Web {
    cfg: WebConfig,
    services: Services,
    sessions: Sessions,
    /// Failed sign-ins per identity.
    throttle: Throttle,
    /// Failed sign-ins per address: more allowed, as an office behind one NAT shares it.
    throttle_address: Throttle,
    samples: Arc<Samples>,
    stop: Arc<AtomicBool>,
    sampler: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").field("listen", &self.cfg.listen).finish_non_exhaustive()
    }
}

impl Web {
    /// A workbench over `services`; `scrape` renders the node's live metrics (Prometheus
    /// text) for the dashboard, sampled every `cfg.sample_every_secs` on its own thread.
    pub fn start(cfg: WebConfig, services: Services, scrape: Option<Scrape>) -> std::io::Result<Arc<Web>> {
        let samples = Arc::new(Samples::new(120));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = match scrape {
            Some(scrape) => {
                Some(samples::spawn(samples.clone(), scrape, Duration::from_secs(cfg.sample_every_secs), stop.clone())?)
            }
            None => None,
        };
        Ok(Arc::new(Web {
            sessions: Sessions::new(cfg.idle(), cfg.max_age()),
            throttle: Throttle::new(cfg.failed_signins_allowed),
            throttle_address: Throttle::new(cfg.failed_signins_allowed.saturating_mul(4)),
            cfg,
            services,
            samples,
            stop,
            sampler: std::sync::Mutex::new(sampler),
        }))
    }

    /// Ends live streams and the sampler (before the listener shuts down, so open
    /// server-sent-event streams do not hold it up).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sampler.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }

    /// The browser's address: behind the TLS proxy (`web.behind_tls_proxy`), the last
    /// `X-Forwarded-For` entry, which that proxy appended (entries before it are the
    /// client's word and not trusted); otherwise the connection's.
    fn client(&self, headers: &HeaderMap, peer: &Peer) -> String {
        if self.cfg.behind_tls_proxy
            && let Some(last) = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .rfind(|s| !s.is_empty())
        {
            return last.to_string();
        }
        peer.0.clone()
    }

    fn cookie_name(&self) -> &'static str {
        // `__Host-` binds the cookie to this host and path `/`; browsers require `Secure`.
        if self.cfg.secure_cookies() { "__Host-waybill_session" } else { "waybill_session" }
    }

    fn session_cookie(&self, id: &str) -> String {
        let secure = if self.cfg.secure_cookies() { "; Secure" } else { "" };
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie_name(),
            self.cfg.max_age().as_secs()
        )
    }

    fn cleared_cookie(&self) -> String {
        let secure = if self.cfg.secure_cookies() { "; Secure" } else { "" };
        format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}", self.cookie_name())
    }

    fn session_id(&self, headers: &HeaderMap) -> Option<String> {
        let name = self.cookie_name();
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
            |c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then(|| v.to_string())
            },
        )
    }

    /// The person behind a page request (their flash message taken to show), or a
    /// redirect to the sign-in page.
    fn me(&self, headers: &HeaderMap, peer: &Peer) -> Result<Me, Response> {
        self.signed_in(headers, peer, true)
    }

    /// The person behind a request that shows no page (a form POST, the live stream):
    /// the flash message stays for the next page.
    fn me_quiet(&self, headers: &HeaderMap, peer: &Peer) -> Result<Me, Response> {
        self.signed_in(headers, peer, false)
    }

    fn signed_in(&self, headers: &HeaderMap, peer: &Peer, take_flash: bool) -> Result<Me, Response> {
        let to_signin = || Redirect::to("/signin").into_response();
        let id = self.session_id(headers).ok_or_else(to_signin)?;
        let s = self.sessions.get(&id, Instant::now()).ok_or_else(to_signin)?;
        // The role as the identities file has it now; a person removed is signed out.
        let Some(principal) = self.services.identities().person(&s.identity) else {
            self.sessions.remove(&id);
            return Err(to_signin());
        };
        let flash = if take_flash { self.sessions.take_flash(&id) } else { None };
        Ok(Me { principal, session: id, csrf: s.csrf, peer: self.client(headers, peer), flash })
    }

    /// The person behind a form POST: signed in, and the form's CSRF token is theirs.
    fn me_posting(&self, headers: &HeaderMap, peer: &Peer, form: &HashMap<String, String>) -> Result<Me, Response> {
        let me = self.me_quiet(headers, peer)?;
        let sent = form.get("csrf").map(String::as_str).unwrap_or("");
        if !session::same_token(sent, &me.csrf) {
            tracing::warn!(identity = %me.principal.identity, peer = %peer.0, "workbench form without a valid CSRF token refused");
            let body = "<h1>Refused</h1><p class=\"error\">This form did not come from your workbench session \
                        (its security token is missing or out of date). Go back, reload the page and try again.</p>";
            return Err((StatusCode::FORBIDDEN, Html(html::page("Refused", html::Section::None, None, None, body)))
                .into_response());
        }
        Ok(me)
    }

    fn flash(&self, me: &Me, ok: bool, text: impl Into<String>) {
        self.sessions.set_flash(&me.session, Flash { ok, text: text.into() });
    }
}

/// A signed-in person on one request.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    principal: Principal,
    session: String,
    csrf: String,
    peer: String,
    flash: Option<Flash>,
}

impl Me {
    /// A request to a control-plane service on this person's behalf.
    fn call<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.extensions_mut().insert(SignedIn { principal: self.principal.clone(), peer: self.peer.clone() });
        r
    }

    fn may(&self, role: Role) -> bool {
        self.principal.role >= role
    }

    fn viewer(&self) -> html::Viewer<'_> {
        html::Viewer { identity: &self.principal.identity, role: self.principal.role.as_str(), csrf: &self.csrf }
    }

    /// A whole page for this person.
    fn page(&self, title: &str, section: html::Section, body: &str) -> Html<String> {
        Html(html::page(title, section, Some(&self.viewer()), self.flash.as_ref(), body))
    }

    /// A page with a refusal in words, answered with `status`.
    fn refused(&self, status: StatusCode, title: &str, section: html::Section, text: &str, body: &str) -> Response {
        let flash = Flash { ok: false, text: text.to_string() };
        (status, Html(html::page(title, section, Some(&self.viewer()), Some(&flash), body))).into_response()
    }
}

/// A page request's person: the handlers of pages take `me: Me`; without a live session
/// the request is answered with a redirect to the sign-in page.
impl FromRequestParts<Arc<Web>> for Me {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let peer = Peer::from_request_parts(parts, web).await.unwrap_or_else(|never| match never {});
        web.me(&parts.headers, &peer)
    }
}

/// The address the browser connected from.
#[derive(Debug, Clone)]
pub(crate) struct Peer(String);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string());
        Ok(Peer(addr.unwrap_or_else(|| "unknown".into())))
    }
}

/// The HTTP status of a control-plane refusal.
pub(crate) fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unavailable | Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

static APP_CSS: &str = include_str!("../assets/app.css");
static APP_JS: &str = include_str!("../assets/app.js");

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    r
}

/// Security headers on every answer: no framing, no sniffing, scripts and styles only
/// from this origin, no referrer leaks, and nothing cached from a signed-in page.
async fn secure_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Counts every answer by route template and status class (`waybill_web_requests_total`).
async fn count_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let r = next.run(req).await;
    let status = match r.status().as_u16() {
        100..300 => "2xx",
        300..400 => "3xx",
        400..500 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(names::WEB_REQUESTS, "route" => route, "status" => status).increment(1);
    r
}

/// The workbench's routes. Serve them with `into_make_service_with_connect_info::<SocketAddr>()`
/// so the audit names the browser's address.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/inbox") }))
        .route("/signin", get(pages::signin::form).post(pages::signin::submit))
        .route("/signout", post(pages::signin::signout))
        .route("/inbox", get(pages::inbox::list))
        .route("/postings/{id}", get(pages::inbox::show))
        .route("/postings/{id}/approve", post(pages::inbox::approve))
        .route("/postings/{id}/reject", post(pages::inbox::reject))
        .route("/exceptions", get(pages::exceptions::list))
        .route("/exceptions/{id}", get(pages::exceptions::show))
        .route("/exceptions/{id}/{action}", post(pages::exceptions::act))
        .route("/orders", get(pages::orders::search))
        .route("/orders/{order}", get(pages::orders::show))
        .route("/orders/{order}/replay", post(pages::orders::replay))
        .route("/stuck", get(pages::orders::stuck))
        .route("/reconcile/{kind}", post(pages::reconcile::run))
        .route("/dashboard", get(pages::dashboard::show))
        .route("/audit", get(pages::audit::list))
        .route("/live", get(live::stream))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/static/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
        .route("/static/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .layer(axum::middleware::from_fn(secure_headers))
        .route_layer(axum::middleware::from_fn(count_requests))
        .with_state(web)
}
