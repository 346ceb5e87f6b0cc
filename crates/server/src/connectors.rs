//! `[connectors.<name>]`: the connectors a node runs, from configuration to running
//! threads. One connector per target system; its name is the metrics' `target` label.
//!
//! ```toml
//! [connectors.odoo]                 # Odoo 17/18 over JSON-RPC, or 19+ over JSON-2
//! kind = "odoo"
//! url = "https://erp.example.com"
//! version = "17.0"                  # 17.0, 18.0 → /jsonrpc; 19.0 and later → /json/2
//! database = "prod"
//! login = "waybill@example.com"     # JSON-RPC only
//! credentials_file = "/run/secrets/odoo-key"
//! rate = 20                         # calls/s, shared by commands and the poller
//!
//! [connectors.wms]                  # any HTTP system: warehouse, carrier, finance, bank
//! kind = "http"
//! url = "https://wms.example.com/waybill/commands"
//! hmac_secret_file = "/run/secrets/wms-hmac"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waybill_connect::backoff::Backoff;
use waybill_connect::client::Timeouts;
use waybill_connect::http::{Format, HttpAdapter};
use waybill_connect::odoo::poller::{Poller, PollerConfig};
use waybill_connect::odoo::{Odoo, OdooAdapter, Protocol};
use waybill_connect::secret::SecretFile;
use waybill_connect::stock::StockReader;
use waybill_connect::target::Limits;
use waybill_connect::{Adapter, Connector, ConnectorConfig, Running};
use waybill_domain::{System, topic};
use waybill_log::EventLog;

/// One `[connectors.<name>]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorSettings {
    /// `odoo` (Odoo's external API) or `http` (the generic HTTP shape of
    /// `waybill_connect::http`).
    pub kind: String,
    /// The system whose commands it delivers (`odoo`, `wms`, `carrier`, `finance`);
    /// empty means the connector's name. Finance run in Odoo Accounting is
    /// `system = "finance"` with `kind = "odoo"`.
    pub system: String,
    /// Base URL (Odoo: the server, e.g. `https://erp.example.com`; HTTP: the endpoint
    /// commands are posted to).
    pub url: String,
    /// Odoo's version: `17.0` and `18.0` speak JSON-RPC, `19.0` and later JSON-2.
    pub version: String,
    /// Odoo database (JSON-RPC argument; `X-Odoo-Database` on JSON-2).
    pub database: String,
    /// Odoo login of the integration user (JSON-RPC).
    pub login: String,
    /// File holding the Odoo password or API key, or the HTTP bearer token; re-read when it
    /// changes, so a rotated key needs no restart.
    pub credentials_file: Option<PathBuf>,
    /// File holding the HMAC-SHA256 secret signing HTTP bodies (`X-Waybill-Signature`).
    pub hmac_secret_file: Option<PathBuf>,
    /// HTTP body format: `json` or `avro` (Confluent wire format).
    pub format: String,
    /// Calls per second to the target (0: unlimited), commands and polls together.
    pub rate: f64,
    /// Calls allowed at once after a quiet spell.
    pub burst: u32,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Connection set-up timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Whole-call timeout, milliseconds (Odoo retries serialization failures itself, so
    /// its answers can take tens of seconds).
    pub timeout_ms: u64,
    /// Attempts against transient errors before a command is reported failed.
    pub max_attempts: u32,
    /// First retry delay, milliseconds.
    pub backoff_base_ms: u64,
    /// Largest retry delay, milliseconds.
    pub backoff_max_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before a probe, milliseconds.
    pub breaker_cool_down_ms: u64,
    /// An outage longer than this raises `TARGET_UNAVAILABLE` (seconds).
    pub unavailable_after_secs: u64,
    /// Commands (by name) in the bulk lane; all others are critical.
    pub bulk: Vec<String>,
    /// Undelivered commands read ahead per partition.
    pub readahead: usize,
    /// Odoo: time between polls for changed sale orders, milliseconds (0: no poller).
    pub poll_interval_ms: u64,
    /// Odoo: records per poll page.
    pub poll_page: usize,
    /// Odoo: how far before its cursor each poll looks again for late commits, seconds.
    pub poll_overlap_secs: u64,
    /// Odoo: warehouse code for orders whose warehouse Odoo does not say.
    pub warehouse: String,
    /// HTTP (a warehouse system): where reconciliation runs read its stock
    /// (`GET <stock_url>?limit=&after=`, signed like the commands); empty: not read.
    pub stock_url: String,
    /// Products per stock page.
    pub stock_page: usize,
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        ConnectorSettings {
            kind: "http".into(),
            system: String::new(),
            url: String::new(),
            version: "17.0".into(),
            database: String::new(),
            login: String::new(),
            credentials_file: None,
            hmac_secret_file: None,
            format: "json".into(),
            rate: 20.0,
            burst: 20,
            concurrency: 4,
            connect_timeout_ms: 2_000,
            timeout_ms: 30_000,
            max_attempts: 8,
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            breaker_threshold: 5,
            breaker_cool_down_ms: 5_000,
            unavailable_after_secs: 60,
            bulk: Vec::new(),
            readahead: 256,
            poll_interval_ms: 2_000,
            poll_page: 200,
            poll_overlap_secs: 5,
            stock_url: String::new(),
            stock_page: 200,
            warehouse: "WH-MAIN".into(),
        }
    }
}

/// A connector setting that stops start-up.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `connectors.{name}.{key}`: {problem}")]
pub struct Invalid {
    /// Connector.
    pub name: String,
    /// Key within its table.
    pub key: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

impl ConnectorSettings {
    /// The system it delivers for.
    pub fn system(&self, name: &str) -> Result<System, Invalid> {
        let s = if self.system.is_empty() { name } else { &self.system };
        s.parse::<System>().ok().filter(|s| topic::COMMAND_TARGETS.contains(s)).ok_or_else(|| Invalid {
            name: name.into(),
            key: "system",
            problem: format!(
                "{s:?} is not a system Waybill sends commands to; use odoo, wms, carrier or finance (or name the connector after one)"
            ),
        })
    }

    fn odoo_protocol(&self, name: &str) -> Result<Protocol, Invalid> {
        let major: Option<u32> =
            self.version.trim_start_matches("saas-").split('.').next().and_then(|m| m.parse().ok());
        match major {
            Some(17 | 18) => {
                if self.login.is_empty() {
                    return Err(Invalid {
                        name: name.into(),
                        key: "login",
                        problem: format!(
                            "Odoo {} speaks JSON-RPC, which logs in: set the integration user's login",
                            self.version
                        ),
                    });
                }
                Ok(Protocol::JsonRpc { login: self.login.clone() })
            }
            Some(v) if v >= 19 => Ok(Protocol::Json2),
            _ => Err(Invalid {
                name: name.into(),
                key: "version",
                problem: format!(
                    "{:?} is not an Odoo version Waybill speaks; use 17.0, 18.0 (JSON-RPC) or 19.0 and later (JSON-2)",
                    self.version
                ),
            }),
        }
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self, name: &str) -> Result<(), Invalid> {
        let bad = |key: &'static str, problem: String| Err(Invalid { name: name.into(), key, problem });
        self.system(name)?;
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return bad("url", format!("{:?} is not an http:// or https:// URL", self.url));
        }
        if !self.stock_url.is_empty() {
            if self.kind != "http" {
                return bad(
                    "stock_url",
                    "is read over the HTTP shape; it belongs on a kind = \"http\" warehouse connector".into(),
                );
            }
            if !(self.stock_url.starts_with("http://") || self.stock_url.starts_with("https://")) {
                return bad("stock_url", format!("{:?} is not an http:// or https:// URL", self.stock_url));
            }
            if !(1..=1000).contains(&self.stock_page) {
                return bad("stock_page", format!("{} is outside 1..=1000", self.stock_page));
            }
        }
        match self.kind.as_str() {
            "odoo" => {
                self.odoo_protocol(name)?;
                if self.database.is_empty() {
                    return bad("database", "is empty; name the Odoo database".into());
                }
                if self.credentials_file.is_none() {
                    return bad(
                        "credentials_file",
                        "is missing; point it at a file holding the API key (mode 0600)".into(),
                    );
                }
            }
            "http" => {
                if !matches!(self.format.as_str(), "json" | "avro") {
                    return bad("format", format!("{:?} is not json or avro", self.format));
                }
            }
            other => return bad("kind", format!("{other:?} is not odoo or http")),
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return bad(
                "rate",
                format!("{} must be 0 (unlimited) or a positive number of calls per second", self.rate),
            );
        }
        for (key, v) in [
            ("burst", self.burst as u64),
            ("concurrency", self.concurrency as u64),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("timeout_ms", self.timeout_ms),
            ("max_attempts", self.max_attempts as u64),
            ("backoff_base_ms", self.backoff_base_ms),
            ("breaker_threshold", self.breaker_threshold as u64),
            ("breaker_cool_down_ms", self.breaker_cool_down_ms),
            ("unavailable_after_secs", self.unavailable_after_secs),
            ("readahead", self.readahead as u64),
            ("poll_page", self.poll_page as u64),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return bad(
                "backoff_max_ms",
                format!("{} is below backoff_base_ms ({})", self.backoff_max_ms, self.backoff_base_ms),
            );
        }
        let known = waybill_schema::COMMAND_NAMES;
        if let Some(b) = self.bulk.iter().find(|b| !known.contains(&b.as_str())) {
            return bad("bulk", format!("{b:?} is not a command; commands are {}", known.join(", ")));
        }
        Ok(())
    }

    fn runtime(&self, name: &str, system: System) -> ConnectorConfig {
        ConnectorConfig {
            name: name.to_string(),
            system,
            concurrency: self.concurrency,
            limits: Limits {
                rate: self.rate,
                burst: self.burst,
                breaker_threshold: self.breaker_threshold,
                breaker_cool_down: Duration::from_millis(self.breaker_cool_down_ms),
                unavailable_after: Duration::from_secs(self.unavailable_after_secs),
            },
            max_attempts: self.max_attempts,
            backoff: Backoff {
                base: Duration::from_millis(self.backoff_base_ms),
                max: Duration::from_millis(self.backoff_max_ms),
            },
            bulk: self.bulk.clone(),
            readahead: self.readahead,
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(self.connect_timeout_ms),
            call: Duration::from_millis(self.timeout_ms),
        }
    }
}

/// Validates every connector and that no two deliver the same system.
pub fn validate(all: &BTreeMap<String, ConnectorSettings>) -> Result<(), Invalid> {
    let mut seen: BTreeMap<System, &str> = BTreeMap::new();
    for (name, c) in all {
        c.validate(name)?;
        let system = c.system(name)?;
        if let Some(other) = seen.insert(system, name) {
            return Err(Invalid {
                name: name.clone(),
                key: "system",
                problem: format!("connector {other:?} already delivers {system}'s commands; one connector per system"),
            });
        }
    }
    Ok(())
}

/// The connectors of a node, running.
#[derive(Debug, Default)]
pub struct Connectors {
    running: Vec<Arc<Running>>,
    stock_readers: BTreeMap<String, StockReader>,
    stop: Arc<AtomicBool>,
    pollers: Vec<JoinHandle<()>>,
}

impl Connectors {
    /// Starts every configured connector on `log` (no partitions until assigned) and the
    /// Odoo pollers.
    pub fn start(
        all: &BTreeMap<String, ConnectorSettings>,
        entities: &waybill_saga::Entities,
        log: &Arc<dyn EventLog>,
    ) -> anyhow::Result<Connectors> {
        validate(all)?;
        let mut out = Connectors::default();
        for (name, c) in all {
            let system = c.system(name)?;
            let secret = |path: &Option<PathBuf>| -> anyhow::Result<Option<Arc<SecretFile>>> {
                Ok(match path {
                    Some(p) => {
                        Some(Arc::new(SecretFile::open(p).map_err(|e| anyhow::anyhow!("connectors.{name}: {e}"))?))
                    }
                    None => None,
                })
            };
            let mut odoo = None;
            let adapter: Arc<dyn Adapter> = match c.kind.as_str() {
                "odoo" => {
                    let key = secret(&c.credentials_file)?.expect("validated: odoo needs credentials_file");
                    let o = Arc::new(Odoo::new(&c.url, &c.database, c.odoo_protocol(name)?, key, c.timeouts()));
                    odoo = Some(o.clone());
                    Arc::new(OdooAdapter::new(o, system))
                }
                _ => {
                    let format = if c.format == "avro" { Format::Avro } else { Format::Json };
                    Arc::new(HttpAdapter::new(
                        system,
                        &c.url,
                        format,
                        c.timeouts(),
                        secret(&c.hmac_secret_file)?,
                        secret(&c.credentials_file)?,
                    ))
                }
            };
            let connector = Connector::new(c.runtime(name, system), log.clone(), adapter);
            let target = connector.target();
            if !c.stock_url.is_empty() {
                let reader = StockReader::new(
                    &c.stock_url,
                    c.stock_page,
                    c.timeouts(),
                    target.clone(),
                    secret(&c.hmac_secret_file)?,
                    secret(&c.credentials_file)?,
                );
                out.stock_readers.insert(name.clone(), reader);
            }
            let running = Arc::new(connector.start()?);
            tracing::info!(waybill.connector = %name, %system, kind = %c.kind, url = %c.url, "connector started");
            if let (Some(odoo), true) = (odoo, c.poll_interval_ms > 0 && system == System::Odoo) {
                let cfg = PollerConfig {
                    connector: name.clone(),
                    interval: Duration::from_millis(c.poll_interval_ms),
                    page: c.poll_page,
                    overlap: Duration::from_secs(c.poll_overlap_secs),
                    warehouse: c.warehouse.clone(),
                    companies: entities.iter().filter_map(|e| Some((e.odoo_company_id?, e.code.clone()))).collect(),
                };
                let (log, stop, owner) = (log.clone(), out.stop.clone(), running.clone());
                out.pollers.push(
                    std::thread::Builder::new()
                        .name(format!("poller-{name}"))
                        .spawn(move || poll_while_leader(cfg, odoo, target, log, &owner, &stop))?,
                );
            }
            out.running.push(running);
        }
        Ok(out)
    }

    /// The stock reader of connector `name`, when it has a `stock_url`.
    pub fn stock_reader(&self, name: &str) -> Option<StockReader> {
        self.stock_readers.get(name).cloned()
    }

    /// The running connectors.
    pub fn running(&self) -> &[Arc<Running>] {
        &self.running
    }

    /// This node now owns `partitions`.
    pub fn assign(&self, partitions: &[i32]) {
        for r in &self.running {
            r.assign(partitions);
        }
    }

    /// This node no longer owns `partitions`.
    pub fn revoke(&self, partitions: &[i32]) {
        for r in &self.running {
            r.revoke(partitions);
        }
    }

    /// Stops the pollers and the connectors.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in self.pollers.drain(..) {
            let _ = p.join();
        }
        self.running.clear();
    }
}

/// Runs the poller while this node owns partition 0 — one poller in the group, its cursor
/// taken over from the log when the partition moves.
fn poll_while_leader(
    cfg: PollerConfig,
    odoo: Arc<Odoo>,
    target: Arc<waybill_connect::target::Target>,
    log: Arc<dyn EventLog>,
    owner: &Running,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        if !owner.owns(0) {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut poller = match Poller::new(cfg.clone(), odoo.clone(), target.clone(), log.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(waybill.connector = %cfg.connector, error = %e, "cannot read the poller's cursor; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let halt = AtomicBool::new(false);
        let watch = || stop.load(Ordering::Relaxed) || !owner.owns(0);
        // The poller checks its stop flag between polls; mirror "stopped or no longer
        // owning partition 0" into it.
        std::thread::scope(|s| {
            s.spawn(|| {
                while !watch() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                halt.store(true, Ordering::Relaxed);
            });
            poller.run(&halt);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn odoo() -> ConnectorSettings {
        ConnectorSettings {
            kind: "odoo".into(),
            url: "http://127.0.0.1:8069".into(),
            database: "db".into(),
            login: "bot".into(),
            credentials_file: Some("/tmp/k".into()),
            ..ConnectorSettings::default()
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(odoo().validate("odoo").is_ok());
        let e = ConnectorSettings { version: "16.0".into(), ..odoo() }.validate("odoo").unwrap_err();
        assert_eq!(e.key, "version");
        assert!(e.to_string().starts_with("configuration key `connectors.odoo.version`"), "{e}");
        assert_eq!(ConnectorSettings { login: String::new(), ..odoo() }.validate("odoo").unwrap_err().key, "login");
        assert!(ConnectorSettings { login: String::new(), version: "19.0".into(), ..odoo() }.validate("odoo").is_ok());
        assert_eq!(ConnectorSettings { rate: -1.0, ..odoo() }.validate("odoo").unwrap_err().key, "rate");
        assert_eq!(ConnectorSettings { concurrency: 0, ..odoo() }.validate("odoo").unwrap_err().key, "concurrency");
        assert_eq!(ConnectorSettings { bulk: vec!["Nope".into()], ..odoo() }.validate("odoo").unwrap_err().key, "bulk");
        assert_eq!(odoo().validate("crm").unwrap_err().key, "system");
        let http = ConnectorSettings { url: "ftp://x".into(), ..ConnectorSettings::default() };
        assert_eq!(http.validate("wms").unwrap_err().key, "url");
        let mut two = BTreeMap::new();
        two.insert("a".to_string(), ConnectorSettings { system: "odoo".into(), ..odoo() });
        two.insert("b".to_string(), ConnectorSettings { system: "odoo".into(), ..odoo() });
        assert!(validate(&two).unwrap_err().problem.contains("one connector per system"));
    }
}
