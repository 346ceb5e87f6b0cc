//! Odoo's external API behind one interface, over two transports:
//! - **JSON-RPC** (`POST /jsonrpc`, `execute_kw`) for Odoo 17 and 18: log in once with
//!   `common.authenticate` (a refused login answers `false`, not an error), then call
//!   with the uid and the password or API key. Errors come with HTTP 200 and an `error`
//!   object whose `data.name` is the Python exception (`code` 200 up to 18.0, 0 after).
//! - **JSON-2** (`POST /json/2/<model>/<method>`, `Authorization: bearer <key>`,
//!   `X-Odoo-Database`) for Odoo 19 on: named arguments, one transaction per call, real
//!   HTTP statuses.
//!
//! Errors are classified once, here ([`classify_error`]): UserError, ValidationError,
//! AccessError, MissingError (and JSON-2 `4xx`) are business refusals, never retried;
//! serialization failures and lock timeouts are transient; AccessDenied, an expired
//! session or a `401` re-authenticate with the secret read again from its file.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use waybill_telemetry::TraceHeaders;

use crate::Failure;
use crate::client::{Client, Timeouts};
use crate::secret::SecretFile;

/// Which API the Odoo server speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// Odoo 17/18: `/jsonrpc`, log in with `login` and the password or API key.
    JsonRpc {
        /// Login of the integration user.
        login: String,
    },
    /// Odoo 19+: `/json/2`, bearer API key.
    Json2,
}

/// One ORM call in a transport-neutral form: record ids, named parameters, context.
#[derive(Debug, Clone, Default)]
pub struct OrmCall {
    /// Model, e.g. `sale.order`.
    pub model: String,
    /// Method, e.g. `action_confirm`.
    pub method: String,
    /// Records the method runs on (`self` in Odoo), when it is a record method.
    pub ids: Option<Vec<i64>>,
    /// Named parameters (`domain`, `fields`, `vals_list`, `vals`, `limit`, `order` …).
    pub params: Map<String, Value>,
    /// Context.
    pub context: Map<String, Value>,
}

impl OrmCall {
    /// A call of `method` on `model`.
    pub fn new(model: &str, method: &str) -> Self {
        OrmCall { model: model.into(), method: method.into(), ..OrmCall::default() }
    }

    /// On these records.
    pub fn ids(mut self, ids: &[i64]) -> Self {
        self.ids = Some(ids.to_vec());
        self
    }

    /// With a named parameter.
    pub fn param(mut self, name: &str, value: Value) -> Self {
        self.params.insert(name.into(), value);
        self
    }

    /// With a context key.
    pub fn context(mut self, key: &str, value: Value) -> Self {
        self.context.insert(key.into(), value);
        self
    }

    /// JSON-RPC's `execute_kw` arguments: ids first, then the parameters Odoo's ORM
    /// methods take positionally, the rest as keywords.
    fn positional(&self) -> (Vec<Value>, Map<String, Value>) {
        let mut args = Vec::new();
        if let Some(ids) = &self.ids {
            args.push(json!(ids));
        }
        let mut kwargs = self.params.clone();
        let first = match self.method.as_str() {
            "create" => Some("vals_list"),
            "write" => Some("vals"),
            "search_read" | "search" | "search_count" => Some("domain"),
            _ => None,
        };
        if let Some(name) = first
            && let Some(v) = kwargs.remove(name)
        {
            args.push(v);
        }
        if !self.context.is_empty() {
            kwargs.insert("context".into(), Value::Object(self.context.clone()));
        }
        (args, kwargs)
    }

    /// JSON-2's body: every argument by name.
    fn named(&self) -> Map<String, Value> {
        let mut body = self.params.clone();
        if let Some(ids) = &self.ids {
            body.insert("ids".into(), json!(ids));
        }
        if !self.context.is_empty() {
            body.insert("context".into(), Value::Object(self.context.clone()));
        }
        body
    }
}

/// A connection to one Odoo database.
#[derive(Debug)]
pub struct Odoo {
    base: String,
    database: String,
    protocol: Protocol,
    key: Arc<SecretFile>,
    client: Client,
    uid: Mutex<Option<i64>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Odoo {
    /// Odoo at `base` (e.g. `https://erp.example.com`), database `database`, credentials
    /// (password or API key) in `key`.
    pub fn new(base: &str, database: &str, protocol: Protocol, key: Arc<SecretFile>, timeouts: Timeouts) -> Self {
        Odoo {
            base: base.trim_end_matches('/').to_string(),
            database: database.to_string(),
            protocol,
            key,
            client: Client::new("odoo", timeouts),
            uid: Mutex::new(None),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Calls the ORM.
    pub fn call(&self, call: &OrmCall, trace: Option<&TraceHeaders>) -> Result<Value, Failure> {
        match &self.protocol {
            Protocol::JsonRpc { login } => self.call_jsonrpc(login, call, trace),
            Protocol::Json2 => self.call_json2(call, trace),
        }
    }

    fn secret(&self) -> Result<String, Failure> {
        self.key.get().map_err(|e| Failure::Unauthorized { reason: e.to_string() })
    }

    fn rpc(
        &self,
        service: &str,
        method: &str,
        args: Vec<Value>,
        route: &str,
        trace: Option<&TraceHeaders>,
    ) -> Result<Value, Failure> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": id,
            "params": {"service": service, "method": method, "args": args}});
        let url = format!("{}/jsonrpc", self.base);
        let answer = self.client.post(&url, route, &[], "application/json", body.to_string().as_bytes(), trace)?;
        if let Some(f) = answer.failure() {
            return Err(f);
        }
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| Failure::Transient {
            reason: format!("Odoo answered JSON-RPC with something that is not JSON: {e}"),
        })?;
        if let Some(err) = v.get("error") {
            return Err(classify_error(err.get("data").unwrap_or(err), err.get("code").and_then(Value::as_i64)));
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }

    fn login(&self, login: &str, trace: Option<&TraceHeaders>) -> Result<i64, Failure> {
        if let Some(uid) = *self.uid.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(uid);
        }
        let key = self.secret()?;
        let result = self.rpc(
            "common",
            "authenticate",
            vec![json!(self.database), json!(login), json!(key), json!({})],
            "/jsonrpc common.authenticate",
            trace,
        )?;
        match result.as_i64() {
            Some(uid) => {
                *self.uid.lock().unwrap_or_else(|p| p.into_inner()) = Some(uid);
                Ok(uid)
            }
            None => {
                self.key.invalidate();
                Err(Failure::Unauthorized {
                    reason: format!(
                        "Odoo refused the login {login:?} on database {:?}: check the user and the key in {}",
                        self.database,
                        self.key.path().display()
                    ),
                })
            }
        }
    }

    fn call_jsonrpc(&self, login: &str, call: &OrmCall, trace: Option<&TraceHeaders>) -> Result<Value, Failure> {
        let uid = self.login(login, trace)?;
        let key = self.secret()?;
        let (args, kwargs) = call.positional();
        let route = format!("/jsonrpc {}.{}", call.model, call.method);
        let result = self.rpc(
            "object",
            "execute_kw",
            vec![
                json!(self.database),
                json!(uid),
                json!(key),
                json!(call.model),
                json!(call.method),
                json!(args),
                Value::Object(kwargs),
            ],
            &route,
            trace,
        );
        if let Err(Failure::Unauthorized { .. }) = &result {
            // Log in again next time, with the key read again.
            *self.uid.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.key.invalidate();
        }
        result
    }

    fn call_json2(&self, call: &OrmCall, trace: Option<&TraceHeaders>) -> Result<Value, Failure> {
        let key = self.secret()?;
        let url = format!("{}/json/2/{}/{}", self.base, call.model, call.method);
        let route = format!("/json/2/{}/{}", call.model, call.method);
        let mut headers = vec![("Authorization", format!("bearer {key}"))];
        if !self.database.is_empty() {
            headers.push(("X-Odoo-Database", self.database.clone()));
        }
        let body = Value::Object(call.named()).to_string();
        let answer = self.client.post(&url, &route, &headers, "application/json", body.as_bytes(), trace)?;
        if (200..300).contains(&answer.status) {
            return serde_json::from_slice(&answer.body).map_err(|e| Failure::Transient {
                reason: format!("Odoo answered {route} with something that is not JSON: {e}"),
            });
        }
        let err: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let f = match answer.status {
            401 => {
                self.key.invalidate();
                Failure::Unauthorized {
                    reason: format!("Odoo refused the API key in {} (expired or rotated?)", self.key.path().display()),
                }
            }
            429 | 502..=504 => answer.failure().expect("an error status"),
            s if err.get("name").is_some() => match classify_error(&err, None) {
                // A business error with a 5xx status is still a business error.
                f @ Failure::Refused { .. } => f,
                f if s >= 500 => f,
                _ => Failure::Refused { reason: message_of(&err) },
            },
            _ => answer.failure().expect("an error status"),
        };
        Err(f)
    }
}

fn message_of(data: &Value) -> String {
    let msg = data.get("message").and_then(Value::as_str).unwrap_or("Odoo Server Error");
    let name = data.get("name").and_then(Value::as_str).unwrap_or("");
    let short = name.rsplit('.').next().unwrap_or(name);
    if short.is_empty() { msg.to_string() } else { format!("{short}: {msg}") }
}

/// Classifies an Odoo error by its exception name (`data.name`) and JSON-RPC `code`.
pub fn classify_error(data: &Value, code: Option<i64>) -> Failure {
    let name = data.get("name").and_then(Value::as_str).unwrap_or("");
    let reason = message_of(data);
    if code == Some(100) || name.ends_with("SessionExpiredException") || name.ends_with("AccessDenied") {
        return Failure::Unauthorized { reason };
    }
    match name {
        "odoo.exceptions.UserError"
        | "odoo.exceptions.ValidationError"
        | "odoo.exceptions.AccessError"
        | "odoo.exceptions.MissingError"
        | "odoo.exceptions.RedirectWarning"
        | "odoo.exceptions.CacheMiss"
        | "builtins.ValueError"
        | "builtins.TypeError"
        | "builtins.KeyError" => Failure::Refused { reason },
        n if n.contains("SerializationFailure")
            || n.contains("LockNotAvailable")
            || n.contains("TransactionRollbackError")
            || n.contains("OperationalError")
            || n.contains("ConcurrencyError") =>
        {
            Failure::Transient { reason }
        }
        _ => Failure::Transient { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odoo_errors_are_classified_by_exception_name() {
        let e = |name: &str| json!({"name": name, "message": "m"});
        assert!(matches!(classify_error(&e("odoo.exceptions.ValidationError"), Some(200)), Failure::Refused { .. }));
        assert!(matches!(classify_error(&e("odoo.exceptions.UserError"), Some(0)), Failure::Refused { .. }));
        assert!(matches!(classify_error(&e("odoo.exceptions.AccessDenied"), Some(200)), Failure::Unauthorized { .. }));
        assert!(matches!(
            classify_error(&e("odoo.http.SessionExpiredException"), Some(100)),
            Failure::Unauthorized { .. }
        ));
        assert!(matches!(
            classify_error(&e("psycopg2.errors.SerializationFailure"), Some(200)),
            Failure::Transient { .. }
        ));
        assert!(matches!(classify_error(&e("psycopg2.errors.LockNotAvailable"), Some(0)), Failure::Transient { .. }));
        assert_eq!(classify_error(&e("odoo.exceptions.UserError"), None).reason(), "UserError: m");
    }

    #[test]
    fn calls_map_to_positional_and_named_arguments() {
        let c = OrmCall::new("sale.order", "search_read")
            .param("domain", json!([["name", "=", "S1"]]))
            .param("fields", json!(["id"]))
            .context("lang", json!("en_US"));
        let (args, kwargs) = c.positional();
        assert_eq!(args, vec![json!([["name", "=", "S1"]])]);
        assert_eq!(kwargs["fields"], json!(["id"]));
        assert_eq!(kwargs["context"], json!({"lang": "en_US"}));
        let named = c.named();
        assert_eq!(named["domain"], json!([["name", "=", "S1"]]));
        let w = OrmCall::new("stock.picking", "write").ids(&[7]).param("vals", json!({"x": 1}));
        assert_eq!(w.positional().0, vec![json!([7]), json!({"x": 1})]);
        assert_eq!(w.named()["ids"], json!([7]));
    }
}
