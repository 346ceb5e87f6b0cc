//! A small blocking HTTP client for the doubles' tests.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};

pub fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Status, headers we look at, body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply, ureq::Error> {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body)?;
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.body_mut().read_to_string()?;
    Ok(Reply { status, retry_after, body })
}

pub fn get(url: &str) -> Reply {
    let mut resp = agent().get(url).call().unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    Reply { status, retry_after: None, body }
}

/// A JSON-RPC session against the Odoo double.
#[derive(Debug)]
pub struct Rpc {
    pub url: String,
    pub db: String,
    pub uid: i64,
    pub key: String,
}

impl Rpc {
    pub fn raw(&self, service: &str, method: &str, args: Value) -> Result<Reply, ureq::Error> {
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": 7, "params": {"service": service, "method": method, "args": args}});
        post(&format!("{}/jsonrpc", self.url), &[("content-type", "application/json")], body.to_string().as_bytes())
    }

    /// The whole JSON-RPC answer of `execute_kw`.
    pub fn execute(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        let reply = self
            .raw("object", "execute_kw", json!([self.db, self.uid, self.key, model, method, args, kwargs]))
            .expect("transport");
        assert_eq!(reply.status, 200, "JSON-RPC always answers 200: {}", reply.body);
        reply.json()
    }

    /// `result`, panicking on an error.
    pub fn ok(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        let v = self.execute(model, method, args, kwargs);
        match v.get("result") {
            Some(r) => r.clone(),
            None => panic!("{model}.{method} failed: {v}"),
        }
    }

    /// `error`, panicking on success.
    pub fn err(&self, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
        let v = self.execute(model, method, args, kwargs);
        match v.get("error") {
            Some(e) => e.clone(),
            None => panic!("{model}.{method} should have failed: {v}"),
        }
    }
}

/// `POST /json/2/<model>/<method>` with a bearer key.
pub fn json2(url: &str, key: &str, model: &str, method: &str, body: Value) -> Reply {
    let auth = format!("bearer {key}");
    post(
        &format!("{url}/json/2/{model}/{method}"),
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .expect("transport")
}
