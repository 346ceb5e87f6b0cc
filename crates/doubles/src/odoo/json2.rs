//! Odoo 19's JSON-2: `POST /json/2/<model>/<method>` with `Authorization: bearer <key>`.
//!
//! Statuses follow `addons/rpc/controllers/json2.py` and `Json2Dispatcher.handle_error`:
//! 401 bad key, 404 unknown model or method (and any other method than POST on a JSON-2
//! path, which Odoo's catch-all `/json/2/<path:subpath>` route answers with "Did you mean
//! POST /json/2/<model>/<method>?"; methods outside GET/POST/PUT/DELETE/PATCH get 405),
//! 422 for arguments that do not bind, `@api.model` methods called with ids, and
//! `UserError`/`ValidationError` (`UserError.http_status`), 403 `AccessError`, 404
//! `MissingError`, 500 for anything else (`ValueError`, serialization failures, lock
//! timeouts — Odoo's own retries having given up). Before 19 the paths do not exist (404).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::dispatch;
use super::error::OdooError;
use super::server::{Shared, Step, json_response, plain};
use crate::faults::Transport;
use crate::serve::ConnKill;

/// A werkzeug `HTTPException` as `serialize_exception` renders it.
fn http_error(status: u16, name: &str, description: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        code,
        &json!({
            "name": format!("werkzeug.exceptions.{name}"),
            "message": description,
            "arguments": [description, status],
            "context": {},
            "debug": "",
        }),
    )
}

fn raise(err: &OdooError) -> Response {
    let code = StatusCode::from_u16(err.exc.json2_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.serialize())
}

fn method_refused(method: &Method) -> Response {
    if matches!(*method, Method::GET | Method::PUT | Method::DELETE | Method::PATCH | Method::HEAD) {
        http_error(404, "NotFound", "Did you mean POST /json/2/<model>/<method>?")
    } else {
        let mut r = http_error(405, "MethodNotAllowed", "The method is not allowed for the requested URL.");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        r
    }
}

pub(crate) async fn not_found(State(shared): State<Arc<Shared>>, method: Method) -> Response {
    if !shared.version.json2() {
        return plain(404, "404: Not Found");
    }
    if method == Method::POST
        || matches!(method, Method::GET | Method::PUT | Method::DELETE | Method::PATCH | Method::HEAD)
    {
        http_error(404, "NotFound", "Did you mean POST /json/2/<model>/<method>?")
    } else {
        method_refused(&method)
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<ConnKill>,
    Path((model, method_name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/json/2/{model}/{method_name}");
    let key = bearer(&headers);
    shared.log(Transport::Json2, &path, Some(&model), Some(&method_name), key.as_deref());
    if !shared.version.json2() {
        return plain(404, "404: Not Found");
    }
    if method != Method::POST {
        return method_refused(&method);
    }
    let drop_after = match shared.step(&kill, Some(&model), Some(&method_name)).await {
        Err(dropped) => return dropped,
        Ok(Step::Answer(r)) => return r,
        Ok(Step::Raise(e)) => return raise(&e),
        Ok(Step::Go { drop_after }) => drop_after,
    };
    let response = call(&shared, &headers, key.as_deref(), &model, &method_name, &body);
    if drop_after {
        return kill.drop_connection().await;
    }
    response
}

fn call(shared: &Shared, headers: &HeaderMap, key: Option<&str>, model: &str, method: &str, body: &[u8]) -> Response {
    if let Some(db) = headers.get("x-odoo-database").and_then(|v| v.to_str().ok())
        && db != shared.db
    {
        return http_error(404, "NotFound", &format!("database {db:?} not found"));
    }
    let mut data = shared.data.lock().unwrap();
    if key.and_then(|k| data.by_key(k)).is_none() {
        return http_error(401, "Unauthorized", "Invalid apikey");
    }
    let body: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => Map::new(),
            Err(e) => return http_error(400, "BadRequest", &format!("could not parse the body as json: {e}")),
        }
    };
    if !dispatch::model_exists(model) {
        return http_error(404, "NotFound", &format!("the model '{model}' does not exist"));
    }
    if let Err(e) = dispatch::check_method(model, method) {
        return match e.exc {
            super::error::Exc::AttributeError => http_error(404, "NotFound", &e.message),
            _ => raise(&e),
        };
    }
    if dispatch::is_api_model(model, method)
        && body.get("ids").is_some_and(|ids| ids.as_array().is_some_and(|a| !a.is_empty()))
    {
        return http_error(422, "UnprocessableEntity", &format!("cannot call {model}.{method} with ids"));
    }
    let call = match dispatch::bind_named(model, method, body) {
        Ok(c) => c,
        Err(e) => return http_error(422, "UnprocessableEntity", &e.message),
    };
    match dispatch::execute(&mut data.store, &call) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => raise(&e),
    }
}
