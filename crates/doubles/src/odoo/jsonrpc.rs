//! `POST /jsonrpc`: the `common` and `object` services. Errors are HTTP 200 with an
//! `error` object whose `code` is 200 up to 18.0 and 0 from saas-18.1 on.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::dispatch;
use super::error::{Exc, OResult, OdooError};
use super::server::{Shared, Step, json_response};
use crate::faults::Transport;
use crate::serve::ConnKill;

fn answer(id: &Value, result: Value) -> Response {
    json_response(StatusCode::OK, &json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn error(shared: &Shared, id: &Value, err: &OdooError) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "error": err.jsonrpc_error(shared.version.legacy_error_code())}),
    )
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<ConnKill>,
    body: Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            shared.log(Transport::JsonRpc, "/jsonrpc", None, None, None);
            let err = OdooError::new(Exc::ValueError, format!("Invalid JSON data: {e}"));
            return error(&shared, &Value::Null, &err);
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let service = params.get("service").and_then(Value::as_str).unwrap_or("").to_string();
    let method = params.get("method").and_then(Value::as_str).unwrap_or("").to_string();
    let args: Vec<Value> = params.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
    let (model, call_method, key) = match (service.as_str(), method.as_str()) {
        ("object", _) => (
            args.get(3).and_then(Value::as_str).map(str::to_string),
            args.get(4).and_then(Value::as_str).map(str::to_string).or_else(|| Some(method.clone())),
            args.get(2).and_then(Value::as_str).map(str::to_string),
        ),
        _ => (None, Some(method.clone()), args.get(2).and_then(Value::as_str).map(str::to_string)),
    };
    shared.log(Transport::JsonRpc, "/jsonrpc", model.as_deref(), call_method.as_deref(), key.as_deref());
    let drop_after = match shared.step(&kill, model.as_deref(), call_method.as_deref()).await {
        Err(dropped) => return dropped,
        Ok(Step::Answer(r)) => return r,
        Ok(Step::Raise(e)) => return error(&shared, &id, &e),
        Ok(Step::Go { drop_after }) => drop_after,
    };
    let result = match service.as_str() {
        "common" => common(&shared, &method, &args),
        "object" => object(&shared, &method, &args),
        "db" if method == "list" => Ok(json!([shared.db])),
        other => Err(OdooError::new(Exc::AttributeError, format!("No such service: {other:?}"))),
    };
    if drop_after {
        return kill.drop_connection().await;
    }
    match result {
        Ok(v) => answer(&id, v),
        Err(e) => error(&shared, &id, &e),
    }
}

fn common(shared: &Shared, method: &str, args: &[Value]) -> OResult<Value> {
    let s = |i: usize| args.get(i).and_then(Value::as_str).unwrap_or("");
    match method {
        "version" => Ok(shared.version.version_info()),
        "authenticate" | "login" => {
            if s(0) != shared.db {
                return Ok(json!(false));
            }
            let data = shared.data.lock().unwrap();
            Ok(data.login(s(1), s(2)).map_or(json!(false), |uid| json!(uid)))
        }
        "about" => Ok(json!("See http://openerp.com")),
        other => Err(OdooError::new(Exc::AttributeError, format!("The method 'common.{other}' does not exist"))),
    }
}

fn object(shared: &Shared, method: &str, args: &[Value]) -> OResult<Value> {
    if method != "execute_kw" && method != "execute" {
        return Err(OdooError::new(Exc::AttributeError, format!("The method 'object.{method}' does not exist")));
    }
    let db = args.first().and_then(Value::as_str).unwrap_or("");
    let uid = args.get(1).and_then(Value::as_i64).unwrap_or(0);
    let secret = args.get(2).and_then(Value::as_str).unwrap_or("");
    let mut data = shared.data.lock().unwrap();
    if db != shared.db || !data.check(uid, secret) {
        return Err(OdooError::new(Exc::AccessDenied, "Access Denied"));
    }
    let model = args.get(3).and_then(Value::as_str).unwrap_or("");
    let name = args.get(4).and_then(Value::as_str).unwrap_or("");
    if !dispatch::model_exists(model) {
        return Err(OdooError::user(format!("Object {model} doesn't exist")));
    }
    dispatch::check_method(model, name)?;
    let (call_args, kwargs) = if method == "execute" {
        (Value::Array(args.get(5..).map(<[Value]>::to_vec).unwrap_or_default()), Value::Null)
    } else {
        (args.get(5).cloned().unwrap_or(json!([])), args.get(6).cloned().unwrap_or(Value::Null))
    };
    let call = dispatch::bind_positional(model, name, &call_args, &kwargs)?;
    dispatch::execute(&mut data.store, &call)
}
