//! The Odoo double's shared state, its routes, and how faults turn into answers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};

use super::OdooVersion;
use super::error::{Exc, OdooError};
use super::store::Store;
use super::{json2, jsonrpc};
use crate::faults::{DownMode, Fault, FaultPlan, RequestLog, RequestRecord, Transport};
use crate::serve::{Availability, ConnKill};

/// A user and the API keys that currently work for it.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) uid: i64,
    pub(crate) login: String,
    pub(crate) password: String,
    pub(crate) keys: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Data {
    pub(crate) store: Store,
    pub(crate) users: Vec<User>,
}

impl Data {
    /// The user `uid` if `secret` is its password or one of its keys.
    pub(crate) fn check(&self, uid: i64, secret: &str) -> bool {
        self.users.iter().any(|u| u.uid == uid && (u.password == secret || u.keys.iter().any(|k| k == secret)))
    }

    pub(crate) fn login(&self, login: &str, secret: &str) -> Option<i64> {
        self.users
            .iter()
            .find(|u| u.login == login && (u.password == secret || u.keys.iter().any(|k| k == secret)))
            .map(|u| u.uid)
    }

    pub(crate) fn by_key(&self, key: &str) -> Option<i64> {
        self.users.iter().find(|u| u.keys.iter().any(|k| k == key)).map(|u| u.uid)
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) version: OdooVersion,
    pub(crate) db: String,
    pub(crate) data: Mutex<Data>,
    pub(crate) faults: FaultPlan,
    pub(crate) log: RequestLog,
    pub(crate) availability: Mutex<Availability>,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/jsonrpc", post(jsonrpc::handle))
        .route("/json/2/{model}/{method}", any(json2::handle))
        .fallback(fallback)
        .with_state(shared)
}

async fn fallback(state: State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    if uri.path() == "/json/2" || uri.path().starts_with("/json/2/") {
        return json2::not_found(state, method).await;
    }
    (StatusCode::NOT_FOUND, "404: Not Found").into_response()
}

/// What to do with a request once the faults have been consulted.
pub(crate) enum Step {
    /// Do it; if `drop_after`, then close the connection instead of answering.
    Go { drop_after: bool },
    /// Answer this instead.
    Answer(Response),
    /// An Odoo exception, rendered by the transport.
    Raise(OdooError),
}

impl Shared {
    pub(crate) fn log(
        &self,
        transport: Transport,
        path: &str,
        model: Option<&str>,
        method: Option<&str>,
        key: Option<&str>,
    ) {
        self.log.push(RequestRecord {
            at: Instant::now(),
            transport,
            path: path.to_string(),
            model: model.map(str::to_string),
            method: method.map(str::to_string),
            key: key.map(str::to_string),
            idempotency_key: None,
        });
    }

    /// Consult availability and the fault plan for a call of `method` on `model`.
    pub(crate) async fn step(
        &self,
        kill: &ConnKill,
        model: Option<&str>,
        method: Option<&str>,
    ) -> Result<Step, Response> {
        if *self.availability.lock().unwrap() == Availability::Down(DownMode::Unavailable) {
            return Ok(Step::Answer(plain(503, "503 Service Unavailable")));
        }
        let Some(fault) = self.faults.take(model, method, false) else { return Ok(Step::Go { drop_after: false }) };
        Ok(match fault {
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                Step::Go { drop_after: false }
            }
            Fault::Status(code) => Step::Answer(plain(code, "injected failure")),
            Fault::RetryAfter { status, secs } => {
                let mut r = plain(status, "injected throttling");
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                Step::Answer(r)
            }
            Fault::Drop => return Err(kill.drop_connection().await),
            Fault::CommitThenDrop => Step::Go { drop_after: true },
            Fault::SerializationFailure => Step::Raise(OdooError::new(
                Exc::SerializationFailure,
                "could not serialize access due to concurrent update",
            )),
            Fault::LockTimeout => Step::Raise(OdooError::new(
                Exc::LockNotAvailable,
                "could not obtain lock on row in relation \"sale_order\"",
            )),
            Fault::SessionExpired => Step::Raise(OdooError::new(Exc::SessionExpired, "Session expired")),
            Fault::Validation(message) => Step::Raise(OdooError::validation(message)),
        })
    }
}

/// A short JSON body with a status.
pub(crate) fn plain(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &json!({"message": message, "status": status}))
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}
