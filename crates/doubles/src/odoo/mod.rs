//! A faithful Odoo 17/18/19 double: JSON-RPC for every version, JSON-2 for 19, the
//! models and business rules of `ODOO.md`, fault injection and inspection.
//!
//! ```no_run
//! use waybill_doubles::odoo::{OdooConfig, OdooDouble};
//! let odoo = OdooDouble::start(OdooConfig::default());
//! let product = odoo.create("product.product", serde_json::json!({"default_code": "SKU1", "name": "Widget"}));
//! // … point a connector at odoo.url(), db odoo.db(), login "admin", key odoo.api_key("admin") …
//! assert_eq!(odoo.count("sale.order", &[("client_order_ref", "SO0042")]), 0);
//! # let _ = product;
//! ```

mod account;
mod business;
mod clock;
mod dispatch;
mod domain;
mod error;
mod json2;
mod jsonrpc;
mod orm;
mod purchase;
mod sale;
mod schema;
mod server;
mod stock;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::faults::{DownMode, Fault, FaultId, FaultPlan, Match, RequestLog, RequestRecord, Times};
use crate::serve::{Availability, Server};
use server::{Data, Shared, User};
use store::Store;

/// Which Odoo the double imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OdooVersion {
    /// 17.0: JSON-RPC, error code 200.
    V17,
    /// 18.0: JSON-RPC, error code 200.
    V18,
    /// saas-18.1 and later 18.x SaaS: JSON-RPC, error code 0.
    Saas18_1,
    /// 19.0: JSON-RPC (deprecated) with error code 0, and JSON-2.
    V19,
}

impl OdooVersion {
    /// `server_version` as `common.version` reports it.
    pub fn server_version(self) -> &'static str {
        match self {
            OdooVersion::V17 => "17.0",
            OdooVersion::V18 => "18.0",
            OdooVersion::Saas18_1 => "saas~18.1",
            OdooVersion::V19 => "19.0",
        }
    }

    /// JSON-RPC errors carry `code: 200` up to 18.0 (0 from saas-18.1 on, odoo/odoo#183902).
    pub fn legacy_error_code(self) -> bool {
        matches!(self, OdooVersion::V17 | OdooVersion::V18)
    }

    /// Whether `/json/2/<model>/<method>` exists.
    pub fn json2(self) -> bool {
        self == OdooVersion::V19
    }

    fn version_info(self) -> Value {
        let (major, minor) = match self {
            OdooVersion::V17 => (17, 0),
            OdooVersion::V18 => (18, 0),
            OdooVersion::Saas18_1 => (18, 1),
            OdooVersion::V19 => (19, 0),
        };
        let serie = self.server_version();
        json!({
            "server_version": serie,
            "server_version_info": [major, minor, 0, "final", 0, ""],
            "server_serie": serie,
            "protocol_version": 1,
        })
    }
}

/// A user of the double.
#[derive(Debug, Clone)]
pub struct OdooUser {
    /// Odoo user id (`authenticate` answers it).
    pub uid: i64,
    /// Login.
    pub login: String,
    /// Password (JSON-RPC only; JSON-2 needs a key).
    pub password: String,
    /// The API key valid at start.
    pub api_key: String,
}

/// How to start an [`OdooDouble`].
#[derive(Debug, Clone)]
pub struct OdooConfig {
    /// Version imitated (error codes, JSON-2 availability).
    pub version: OdooVersion,
    /// Database name callers must name.
    pub db: String,
    /// Users; default one `admin` (uid 2, password `admin`, key `waybill-odoo-key`).
    pub users: Vec<OdooUser>,
}

impl Default for OdooConfig {
    fn default() -> Self {
        Self {
            version: OdooVersion::V17,
            db: "waybill".into(),
            users: vec![OdooUser {
                uid: 2,
                login: "admin".into(),
                password: "admin".into(),
                api_key: "waybill-odoo-key".into(),
            }],
        }
    }
}

impl OdooConfig {
    /// The default configuration imitating `version`.
    pub fn version(version: OdooVersion) -> Self {
        Self { version, ..Self::default() }
    }
}

/// A running Odoo double on `127.0.0.1`; stops when dropped.
#[derive(Debug)]
pub struct OdooDouble {
    shared: Arc<Shared>,
    server: Server,
}

impl OdooDouble {
    /// Start serving; panics if no loopback port can be bound (a test double).
    pub fn start(config: OdooConfig) -> Self {
        Self::try_start(config).expect("the Odoo double could not start")
    }

    /// Start serving.
    pub fn try_start(config: OdooConfig) -> crate::Result<Self> {
        let mut store = Store::new();
        for (id, name, usage) in [
            (stock::VENDORS, "Partners/Vendors", "supplier"),
            (stock::CUSTOMERS, "Partners/Customers", "customer"),
            (stock::WH_STOCK, "WH/Stock", "internal"),
        ] {
            let mut rec = Map::new();
            rec.insert("name".into(), json!(name));
            rec.insert("usage".into(), json!(usage));
            store.insert_with_id("stock.location", id, rec);
        }
        let users = config
            .users
            .iter()
            .map(|u| User {
                uid: u.uid,
                login: u.login.clone(),
                password: u.password.clone(),
                keys: vec![u.api_key.clone()],
            })
            .collect();
        let shared = Arc::new(Shared {
            version: config.version,
            db: config.db,
            data: Mutex::new(Data { store, users }),
            faults: FaultPlan::default(),
            log: RequestLog::default(),
            availability: Mutex::new(Availability::Up),
        });
        let server = Server::start("odoo", server::router(shared.clone()))?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The database name.
    pub fn db(&self) -> &str {
        &self.shared.db
    }

    /// The version imitated.
    pub fn version(&self) -> OdooVersion {
        self.shared.version
    }

    /// The uid of `login`.
    pub fn uid(&self, login: &str) -> Option<i64> {
        self.shared.data.lock().unwrap().users.iter().find(|u| u.login == login).map(|u| u.uid)
    }

    /// The API key `login` currently has.
    pub fn api_key(&self, login: &str) -> Option<String> {
        let data = self.shared.data.lock().unwrap();
        data.users.iter().find(|u| u.login == login).and_then(|u| u.keys.last().cloned())
    }

    /// Replace `login`'s API key by `new_key`; the old one stops working at once.
    pub fn rotate_key(&self, login: &str, new_key: &str) {
        let mut data = self.shared.data.lock().unwrap();
        if let Some(u) = data.users.iter_mut().find(|u| u.login == login) {
            u.keys = vec![new_key.to_string()];
        }
    }

    // ---- data ----

    /// Create a record directly (seeding), with the same rules as a remote `create`.
    /// Panics with Odoo's message if the record is refused.
    pub fn create(&self, model: &str, vals: Value) -> i64 {
        let mut data = self.shared.data.lock().unwrap();
        assert!(dispatch::model_exists(model), "the Odoo double has no model {model}");
        data.store.begin();
        match orm::create(&mut data.store, model, &vals, &Map::new()) {
            Ok(id) => id,
            Err(e) => {
                data.store.rollback();
                panic!("seeding {model} failed: {}: {}", e.exc.name(), e.message)
            }
        }
    }

    /// Every record of `model` as `read` would answer it (all fields), by id.
    pub fn records(&self, model: &str) -> Vec<Value> {
        self.shared.data.lock().unwrap().store.snapshot(model)
    }

    /// One record of `model` as `read` would answer it.
    pub fn record(&self, model: &str, id: i64) -> Option<Value> {
        self.records(model).into_iter().find(|r| r["id"] == json!(id))
    }

    /// Records of `model` whose fields equal the given natural keys (a many2one matches
    /// its id or display name; a number its decimal text).
    pub fn count(&self, model: &str, keys: &[(&str, &str)]) -> usize {
        self.records(model).iter().filter(|r| keys.iter().all(|(f, want)| value_matches(&r[*f], want))).count()
    }

    /// Records of `model` matching an Odoo domain, e.g. `json!([["state", "=", "done"]])`.
    pub fn count_where(&self, model: &str, domain: Value) -> usize {
        let data = self.shared.data.lock().unwrap();
        orm::search(&data.store, model, &domain, &Value::Null, &Value::Null, &Value::Null)
            .map(|ids| ids.len())
            .unwrap_or_else(|e| panic!("bad domain for {model}: {}", e.message))
    }

    // ---- clock ----

    /// Freeze the clock at `"YYYY-MM-DD HH:MM:SS"` (UTC); it still never goes back.
    pub fn freeze_clock(&self, at: &str) {
        let secs = clock::parse_datetime(at).unwrap_or_else(|| panic!("not an Odoo datetime: {at:?}"));
        self.shared.data.lock().unwrap().store.clock.freeze(secs);
    }

    /// Move the clock forward (frozen or not).
    pub fn advance(&self, by: Duration) {
        self.shared.data.lock().unwrap().store.clock.advance(by);
    }

    /// Move the clock forward one second.
    pub fn tick(&self) {
        self.advance(Duration::from_secs(1));
    }

    /// The clock's current reading as Odoo writes it.
    pub fn now(&self) -> String {
        self.shared.data.lock().unwrap().store.now_string()
    }

    // ---- faults ----

    /// Arm `fault` for calls `matcher` selects (model and method), `times` times.
    pub fn inject(&self, matcher: Match, fault: Fault, times: Times) -> FaultId {
        self.shared.faults.arm(matcher, fault, times)
    }

    /// Arm `fault` for the next matching call only.
    pub fn fail_next(&self, matcher: Match, fault: Fault) -> FaultId {
        self.inject(matcher, fault, Times::Next(1))
    }

    /// A `ValidationError` with `message` on every `model.method` call until cleared.
    pub fn fail_validation(&self, model: &str, method: &str, message: &str) -> FaultId {
        self.inject(Match::call(model, method), Fault::Validation(message.into()), Times::UntilCleared)
    }

    /// Disarm one fault.
    pub fn clear_fault(&self, id: FaultId) {
        self.shared.faults.clear(id);
    }

    /// Disarm every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear_all();
    }

    /// Go down: refuse connections, or answer 503 to everything, until [`Self::up`].
    pub fn down(&self, mode: DownMode) {
        *self.shared.availability.lock().unwrap() = Availability::Down(mode);
        self.server.set_availability(Availability::Down(mode));
    }

    /// Come back up (same address).
    pub fn up(&self) {
        *self.shared.availability.lock().unwrap() = Availability::Up;
        self.server.set_availability(Availability::Up);
    }

    /// Whether the double is up.
    pub fn is_up(&self) -> bool {
        self.server.availability() == Availability::Up
    }

    // ---- request log ----

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.all()
    }

    /// Forget the requests received so far.
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }
}

fn value_matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want || n.as_f64().map(|f| f.to_string()) == Some(want.to_string()),
        Value::Array(a) if a.len() == 2 => {
            a[0].as_i64().map(|i| i.to_string()).as_deref() == Some(want) || a[1].as_str() == Some(want)
        }
        Value::Bool(b) => b.to_string() == want,
        _ => false,
    }
}
