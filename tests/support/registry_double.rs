//! A schema registry double that follows the Confluent REST API closely enough for
//! `waybill schemas push` and `[registry] url`: subjects, versions, ids, lookups and
//! subject levels, in memory, on a free loopback port, stopped on drop. Ids start at
//! 1001 (so they never equal the catalog's), and — like Karapace or Apicurio may, unlike
//! Confluent — the same schema under another subject gets another id, which is what a
//! producer that registered Waybill's schema on its own ends up with. It does not judge
//! compatibility (Waybill does, before it registers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

#[derive(Debug, Default)]
pub struct State {
    next_id: u32,
    /// id → (subject, version, schema text).
    pub schemas: BTreeMap<u32, (String, u32, String)>,
    /// subject → level.
    pub levels: BTreeMap<String, String>,
}

impl State {
    fn canonical(text: &str) -> Option<String> {
        apache_avro::Schema::parse_str(text).ok().map(|s| s.canonical_form())
    }

    /// Registers `text` under `subject` (the existing id when the subject has it).
    pub fn register(&mut self, subject: &str, text: &str) -> u32 {
        let form = State::canonical(text);
        if let Some((id, _)) = self.schemas.iter().find(|(_, (s, _, t))| s == subject && State::canonical(t) == form) {
            return *id;
        }
        self.next_id = self.next_id.max(1000) + 1;
        let version = self.schemas.values().filter(|(s, _, _)| s == subject).count() as u32 + 1;
        self.schemas.insert(self.next_id, (subject.to_string(), version, text.to_string()));
        self.next_id
    }

    fn answer(&mut self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let schema_of = |body: &[u8]| -> Option<String> {
            serde_json::from_slice::<Value>(body).ok()?["schema"].as_str().map(str::to_string)
        };
        let not_found = |code: u32| (StatusCode::NOT_FOUND, json!({"error_code": code, "message": "not found"}));
        match (method.as_str(), seg.as_slice()) {
            ("GET", ["subjects"]) => {
                let mut subjects: Vec<&String> = self.schemas.values().map(|(s, _, _)| s).collect();
                subjects.sort();
                subjects.dedup();
                (StatusCode::OK, json!(subjects))
            }
            ("GET", ["subjects", s, "versions"]) => {
                let v: Vec<u32> = self.schemas.values().filter(|(x, _, _)| x == s).map(|(_, v, _)| *v).collect();
                if v.is_empty() { not_found(40401) } else { (StatusCode::OK, json!(v)) }
            }
            ("GET", ["subjects", s, "versions", v]) => {
                match self.schemas.iter().find(|(_, (x, n, _))| x == s && n.to_string() == *v) {
                    Some((id, (x, n, t))) => {
                        (StatusCode::OK, json!({"subject": x, "version": n, "id": id, "schema": t}))
                    }
                    None => not_found(40402),
                }
            }
            ("POST", ["subjects", s, "versions"]) => match schema_of(body) {
                Some(t) => (StatusCode::OK, json!({"id": self.register(s, &t)})),
                None => (StatusCode::UNPROCESSABLE_ENTITY, json!({"error_code": 42201, "message": "invalid schema"})),
            },
            ("POST", ["subjects", s]) => {
                let form = schema_of(body).and_then(|t| State::canonical(&t));
                if !self.schemas.values().any(|(x, _, _)| x == s) {
                    return not_found(40401);
                }
                match self.schemas.iter().find(|(_, (x, _, t))| x == s && State::canonical(t) == form) {
                    Some((id, (x, n, t))) => {
                        (StatusCode::OK, json!({"subject": x, "version": n, "id": id, "schema": t}))
                    }
                    None => not_found(40403),
                }
            }
            ("GET", ["schemas", "ids", id]) => match id.parse().ok().and_then(|id: u32| self.schemas.get(&id)) {
                Some((_, _, t)) => (StatusCode::OK, json!({"schema": t})),
                None => not_found(40403),
            },
            ("PUT", ["config", s]) => {
                let level = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v["compatibility"].as_str().map(str::to_string));
                match level {
                    Some(l) => {
                        self.levels.insert(s.to_string(), l.clone());
                        (StatusCode::OK, json!({"compatibility": l}))
                    }
                    None => {
                        (StatusCode::UNPROCESSABLE_ENTITY, json!({"error_code": 42203, "message": "invalid level"}))
                    }
                }
            }
            _ => not_found(404),
        }
    }
}

pub struct Double {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _thread: std::thread::JoinHandle<()>,
}

impl Double {
    pub fn start() -> Double {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let router = Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
            let shared = shared.clone();
            async move {
                let (status, body) = shared.lock().unwrap().answer(&method, uri.path(), &body);
                (status, [("content-type", "application/vnd.schemaregistry.v1+json")], body.to_string()).into_response()
            }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Double { url, state, _stop: tx, _thread: thread }
    }
}
