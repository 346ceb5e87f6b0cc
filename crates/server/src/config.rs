//! Configuration: defaults → TOML file → `WAYBILL_` environment (`__` nests, e.g.
//! `WAYBILL_LOG__FSYNC=never`) → command-line flags, then [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use waybill_saga::{Catalog, Policy};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded log, the saga state store and the projections.
    pub data_dir: PathBuf,
    /// Partitions of every inbound, journal and command topic. Inbound topics and the
    /// journal are co-partitioned, so this cannot change once data exists.
    pub partitions: u32,
    /// Master-data file (TOML: `[products.<sku>]`, `customers`, `tax_codes`); empty
    /// means no master data, so every order fails its checks.
    pub catalog: Option<PathBuf>,
    /// Event log (the embedded backend's settings; ignored when `[kafka]` is given).
    pub log: LogConfig,
    /// Kafka backend: given (with `bootstrap.servers`), the log lives on Kafka and the
    /// partitions are shared among the replicas through a consumer group.
    pub kafka: Option<KafkaConfig>,
    /// How `waybill topics apply` (and start-up) creates Waybill's Kafka topics.
    pub topics: TopicsConfig,
    /// Ingestion endpoint.
    pub ingest: IngestConfig,
    /// gRPC control plane (approvals, queries, audit).
    pub control: waybill_control::ControlConfig,
    /// The web workbench for people (approval inbox, exception queue, orders, dashboard).
    pub web: waybill_web::WebConfig,
    /// Metrics and health over HTTP.
    pub metrics: MetricsConfig,
    /// The Confluent Schema Registry API over the schema catalog (read-only).
    pub registry: RegistryConfig,
    /// Coordinator.
    pub coordinator: CoordinatorConfig,
    /// Saga policy.
    pub policy: Policy,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Connectors to the target systems, by name (`[connectors.odoo]`, `[connectors.wms]`;
    /// every key is documented on [`crate::connectors::ConnectorSettings`]). None: the
    /// commands wait in their topics for a system that reads them itself.
    pub connectors: BTreeMap<String, crate::connectors::ConnectorSettings>,
    /// Reconciliation runs: their schedule, the warehouse connector they read, their
    /// tolerance (see [`crate::reconcile::ReconcileSettings`]).
    pub reconcile: crate::reconcile::ReconcileSettings,
    /// Legal entities (companies): `default`, `template_dir`, and each entity's table
    /// under `[entities.companies.<code>]` (see [`waybill_saga::entity`]). Built onto
    /// `[policy]` by [`Config::build_entities`]; none configured: one company.
    pub entities: waybill_saga::entity::EntitiesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            partitions: 4,
            catalog: None,
            log: LogConfig::default(),
            kafka: None,
            topics: TopicsConfig::default(),
            ingest: IngestConfig::default(),
            control: waybill_control::ControlConfig::default(),
            web: waybill_web::WebConfig::default(),
            metrics: MetricsConfig::default(),
            registry: RegistryConfig::default(),
            coordinator: CoordinatorConfig::default(),
            policy: Policy::default(),
            telemetry: TelemetryConfig::default(),
            connectors: BTreeMap::new(),
            reconcile: crate::reconcile::ReconcileSettings::default(),
            entities: Default::default(),
        }
    }
}

/// Which log backend, and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// When appended batches reach the disk: `batch` (fsync before acknowledging each
    /// batch), `interval` (at most every `fsync_interval_ms`), `never` (the OS decides).
    pub fsync: String,
    /// Interval for `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Segment file size in MiB.
    pub segment_mb: u64,
    /// How often the embedded log applies its retention (the `[topics]` retention of
    /// the inbound, command and dead-letter topics; the snapshots' old generations), in
    /// seconds.
    pub retention_check_secs: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { fsync: "batch".into(), fsync_interval_ms: 100, segment_mb: 64, retention_check_secs: 60 }
    }
}

/// The `[kafka]` section: librdkafka properties as a tree whose dotted paths are the
/// property names (`bootstrap.servers = "…"` is `kafka.bootstrap.servers`, and so is the
/// environment variable `WAYBILL_KAFKA__BOOTSTRAP__SERVERS`), plus Waybill's own keys
/// [`KafkaConfig::WAYBILL_KEYS`]. A key prefixed `producer.`, `consumer.` or `admin.`
/// applies to that kind of client only.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KafkaConfig(pub BTreeMap<String, KafkaValue>);

/// A value in `[kafka]`: a property value or a further level of the dotted name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KafkaValue {
    /// `true`/`false`.
    Bool(bool),
    /// A number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A string.
    Str(String),
    /// The next part of a dotted name.
    Table(BTreeMap<String, KafkaValue>),
}

/// The Kafka settings Waybill uses, from [`KafkaConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `client.id` (default `waybill`).
    pub client_id: String,
    /// Consumer group the replicas share the partitions through (`kafka.group`,
    /// default `waybill-coordinator`).
    pub group: String,
    /// `kafka.request_timeout_ms` (default 30 000).
    pub request_timeout_ms: u64,
    /// `kafka.transactions` (default false).
    pub transactions: bool,
    /// Every other key: passed to librdkafka.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Keys of `[kafka]` that are Waybill's, not librdkafka's.
    pub const WAYBILL_KEYS: [&'static str; 3] = ["group", "request_timeout_ms", "transactions"];

    /// Flattens the tree into dotted keys.
    pub fn flatten(&self) -> BTreeMap<String, String> {
        fn walk(prefix: &str, map: &BTreeMap<String, KafkaValue>, out: &mut BTreeMap<String, String>) {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match v {
                    KafkaValue::Bool(b) => {
                        out.insert(key, b.to_string());
                    }
                    KafkaValue::Int(i) => {
                        out.insert(key, i.to_string());
                    }
                    KafkaValue::Float(f) => {
                        out.insert(key, f.to_string());
                    }
                    KafkaValue::Str(s) => {
                        out.insert(key, s.clone());
                    }
                    KafkaValue::Table(t) => walk(&key, t, out),
                }
            }
        }
        let mut out = BTreeMap::new();
        walk("", &self.0, &mut out);
        out
    }

    /// The settings; the error names the key and what to do.
    pub fn settings(&self) -> Result<KafkaSettings, ConfigError> {
        let mut props = self.flatten();
        let bootstrap_servers = props.remove("bootstrap.servers").unwrap_or_default();
        if bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "kafka.bootstrap.servers",
                problem: "is missing; set it to the brokers' host:port list (e.g. \"kafka-0:9092,kafka-1:9092\"), \
                          or drop the [kafka] section to use the embedded log"
                    .into(),
            });
        }
        let client_id = props.remove("client.id").unwrap_or_else(|| "waybill".into());
        let group = props.remove("group").unwrap_or_else(|| "waybill-coordinator".into());
        let request_timeout_ms = match props.remove("request_timeout_ms") {
            None => 30_000,
            Some(v) => v.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| ConfigError::Invalid {
                key: "kafka.request_timeout_ms",
                problem: format!("{v:?} is not a positive number of milliseconds"),
            })?,
        };
        let transactions = match props.remove("transactions").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "kafka.transactions",
                    problem: format!("{other:?} is not true or false"),
                });
            }
        };
        Ok(KafkaSettings { bootstrap_servers, client_id, group, request_timeout_ms, transactions, properties: props })
    }
}

/// The `[topics]` section: how Waybill's topics are created on Kafka, and how long the
/// embedded log keeps their records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Replication factor of every topic (3 on a production cluster).
    pub replication_factor: i32,
    /// `min.insync.replicas` of every topic (0: the broker's default).
    pub min_insync_replicas: i32,
    /// Retention of the inbound topics, in hours (-1: forever).
    pub inbound_retention_hours: i64,
    /// Retention of the command topics, in hours (-1: forever).
    pub command_retention_hours: i64,
    /// Retention of the dead-letter topic, in hours (-1: forever).
    pub dead_letter_retention_hours: i64,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            replication_factor: 1,
            min_insync_replicas: 0,
            inbound_retention_hours: 7 * 24,
            command_retention_hours: 7 * 24,
            dead_letter_retention_hours: 30 * 24,
        }
    }
}

/// The HTTP ingestion endpoint for systems that cannot publish to Kafka.
///
/// Every caller authenticates like a control-plane caller — a bearer token from the
/// tokens file (`control.tokens_file`, re-read when it changes) or a client certificate
/// under mutual TLS — and its identity's `system` is the one system it may post as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Listen address; empty disables the endpoint.
    pub listen: String,
    /// Server certificate chain (PEM). With `tls_key`, ingestion speaks TLS (HTTPS).
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that signs client certificates; set it to accept mutual TLS (the
    /// certificate's CN or DNS name is looked up in `[[clients]]` of the tokens file).
    pub client_ca: Option<PathBuf>,
    /// Accept posts without credentials, each as the system its body claims (only on a
    /// loopback `listen` address: for the local demo). Control events, ownership and
    /// limits are enforced all the same.
    pub allow_anonymous: bool,
    /// Largest body accepted from a system, in bytes (`413` above it).
    pub max_body_bytes: usize,
    /// Sustained posts per second accepted from one system (`429` with `Retry-After`
    /// beyond it); 0 means unlimited.
    pub rate_per_sec: f64,
    /// Posts a system may send at once above its sustained rate.
    pub burst: u32,
    /// Per-system overrides of `max_body_bytes`, `rate_per_sec` and `burst`
    /// (`[ingest.systems.wms] rate_per_sec = 50`).
    pub systems: BTreeMap<String, IngestLimits>,
}

/// Limits for one system's posts; unset values come from `[ingest]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestLimits {
    /// Largest body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Sustained posts per second; 0 means unlimited.
    pub rate_per_sec: Option<f64>,
    /// Burst above the sustained rate.
    pub burst: Option<u32>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: "127.0.0.1:8420".into(),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            allow_anonymous: false,
            max_body_bytes: 1 << 20,
            rate_per_sec: 1000.0,
            burst: 2000,
            systems: BTreeMap::new(),
        }
    }
}

impl IngestConfig {
    /// The limits of `system`: its overrides over the defaults.
    pub fn limits(&self, system: &str) -> crate::ingest::Limits {
        let o = self.systems.get(system).cloned().unwrap_or_default();
        crate::ingest::Limits {
            max_body_bytes: o.max_body_bytes.unwrap_or(self.max_body_bytes),
            rate_per_sec: o.rate_per_sec.unwrap_or(self.rate_per_sec),
            burst: o.burst.unwrap_or(self.burst),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Ok(());
        }
        let addr = self.listen.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
            key: "ingest.listen",
            problem: format!(
                "{:?} is not an address like 127.0.0.1:8420 (leave it empty to disable ingestion)",
                self.listen
            ),
        })?;
        if self.allow_anonymous && !addr.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "ingest.allow_anonymous",
                problem: format!(
                    "anonymous posts are only allowed on a loopback address, but ingest.listen is {addr}; listen on 127.0.0.1 or turn allow_anonymous off and give each system a token (system = \"wms\") in the tokens file"
                ),
            });
        }
        waybill_control::config::validate_tls(
            ["ingest.tls_cert", "ingest.tls_key", "ingest.client_ca"],
            &self.tls_cert,
            &self.tls_key,
            &self.client_ca,
        )
        .map_err(|i| ConfigError::Invalid { key: i.key, problem: i.problem })?;
        for system in self.systems.keys() {
            let known = system
                .parse::<waybill_domain::System>()
                .ok()
                .filter(|s| waybill_domain::topic::INBOUND_SYSTEMS.contains(s));
            if known.is_none() {
                return Err(ConfigError::Invalid {
                    key: "ingest.systems",
                    problem: format!(
                        "{system:?} is not a system that sends events; use odoo, wms, carrier, finance or bank"
                    ),
                });
            }
        }
        for (system, l) in std::iter::once(("(default)", self.limits("")))
            .chain(self.systems.keys().map(|s| (s.as_str(), self.limits(s))))
        {
            if l.max_body_bytes == 0 {
                return Err(ConfigError::Invalid {
                    key: "ingest.max_body_bytes",
                    problem: format!("{system}: must be at least 1"),
                });
            }
            if l.rate_per_sec.is_nan() || l.rate_per_sec < 0.0 {
                return Err(ConfigError::Invalid {
                    key: "ingest.rate_per_sec",
                    problem: format!("{system}: {} must be 0 (unlimited) or more", l.rate_per_sec),
                });
            }
            if l.rate_per_sec > 0.0 && l.burst == 0 {
                return Err(ConfigError::Invalid {
                    key: "ingest.burst",
                    problem: format!("{system}: must be at least 1 when rate_per_sec is set"),
                });
            }
        }
        Ok(())
    }
}

/// `/metrics` (Prometheus), `/healthz` and `/readyz` on their own port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Listen address; empty disables the endpoint.
    pub listen: String,
    /// A partition whose worker has not completed a turn for this many seconds makes
    /// `/readyz` fail and `waybill_partition_healthy` drop to 0.
    pub stuck_after_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: "127.0.0.1:9464".into(), stuck_after_secs: 60 }
    }
}

/// `[registry]`: the Confluent Schema Registry REST API (`GET /schemas/ids/<id>`,
/// `/subjects`, `/config`, …), served read-only from the schema catalog compiled into the
/// binary on its own listener, so standard Kafka tooling decodes every Waybill topic
/// (`schema.registry.url = http://<listen>`). Its callers are readers (tools, consumers),
/// not producing systems, so it is not on the ingestion port, whose every call is
/// authenticated as a system; it needs no credentials because it only publishes the
/// topics' schemas and changes nothing. Subjects are record full names (RecordNameStrategy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Listen address, e.g. `0.0.0.0:8422`; empty (the default) disables the API. The
    /// shipped configurations (`deploy/`) and `waybill run` serve it on 8422, beside
    /// ingestion (8420) and the control plane (8421); Confluent's own registry uses 8081.
    pub listen: String,
    /// The company's schema registry (Confluent, Karapace, Apicurio's Confluent API),
    /// e.g. `https://registry.example.com`: Waybill then writes and reads records with
    /// the ids that registry assigned to the catalog (`waybill schemas push` registers
    /// it). At start-up it looks every catalog schema up there, caches the ids in
    /// `<data_dir>/registry-ids.json` (used when the registry is unreachable at a later
    /// start), and refuses to start, naming the subject, when a schema is missing or the
    /// registry holds a version this build cannot read. Unset: the catalog's own ids.
    pub url: Option<String>,
    /// File whose first line is `user:password` (basic auth) or `Bearer <token>`, for
    /// `url`.
    pub credentials_file: Option<PathBuf>,
}

/// Coordinator settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// Most records read per input topic per turn.
    pub max_batch: usize,
    /// How long an idle partition waits for input before checking timers, in ms.
    pub idle_wait_ms: u64,
    /// Keep saga state snapshots on `waybill.snapshots`, from which a replica that has
    /// never owned a partition restores instead of replaying its whole journal. Unset: on
    /// with Kafka, where partitions move between pods; off on the embedded log, whose one
    /// process keeps its state store on the same volume as the log (the snapshots would
    /// cost CPU on every save and about double the log's growth, and only speed up a
    /// restore after the state directory is lost).
    pub snapshots: Option<bool>,
    /// Retire a finished flow (an order whose sagas all ended, a closed purchase order, an
    /// applied statement) once this many days of logged time have passed since it last
    /// changed: its state leaves the state store, the snapshot (a tombstone) and the
    /// workbench, so what a partition keeps follows the live flows. An input that later
    /// comes for the key is decided as new, unless it occurred more than this long
    /// before it was logged: then it is refused to the dead-letter topic (it may belong
    /// to a retired flow). Choose it past every return window and late document (the
    /// shipped configurations keep 400 days). Unset: flows are kept forever.
    pub retire_finished_after_days: Option<u32>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig { max_batch: 512, idle_wait_ms: 20, snapshots: None, retire_finished_after_days: None }
    }
}

impl CoordinatorConfig {
    /// The retention of finished flows, checked: a whole number of days above 0.
    pub fn retire_after(&self) -> Result<Option<std::time::Duration>, String> {
        match self.retire_finished_after_days {
            None => Ok(None),
            Some(d) if (1..=36_500).contains(&d) => Ok(Some(std::time::Duration::from_secs(u64::from(d) * 86_400))),
            Some(d) => Err(format!(
                "{d} days: it must be a whole number of days from 1 to 36500; leave it out to keep finished flows forever"
            )),
        }
    }

    /// Whether the coordinator keeps snapshots on a log that is (or is not) Kafka.
    pub fn snapshots_on(&self, kafka: bool) -> bool {
        self.snapshots.unwrap_or(kafka)
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: String,
    /// Filter in `RUST_LOG` syntax (the `RUST_LOG` variable wins).
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { log_format: "text".into(), log_filter: "info".into() }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers could not be merged or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(String),
    /// A connector's value is out of range or inconsistent.
    #[error(transparent)]
    Connector(#[from] crate::connectors::Invalid),
    /// A value is out of range or inconsistent.
    #[error("configuration key `{key}`: {problem}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
}

impl Config {
    /// Loads defaults, then `file` (if given), then `WAYBILL_*` environment variables,
    /// then `overrides` (flags), and validates.
    pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist; pass an existing file with --config or drop the flag",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        // WAYBILL_CONFIG names the file (the --config flag), it is not a key.
        fig = fig.merge(Env::prefixed("WAYBILL_").ignore(&["config", "server", "token"]).split("__")).merge(overrides);
        let mut cfg: Config = fig.extract().map_err(|e| {
            let mut msg = String::new();
            for err in e {
                if !msg.is_empty() {
                    msg.push_str("; ");
                }
                msg.push_str(&err.to_string());
            }
            ConfigError::Load(msg)
        })?;
        cfg.build_entities(file.and_then(Path::parent).unwrap_or(Path::new(".")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Builds the legal entities of `[entities]` onto `[policy]` (into
    /// `policy.entities`), reading the templates they name from `template_dir`, relative
    /// to `base` (the configuration file's directory).
    pub fn build_entities(&mut self, base: &Path) -> Result<(), ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid { key: "entities", problem };
        let wanted: BTreeMap<String, ()> = self
            .entities
            .companies
            .values()
            .filter_map(|c| c.get("template").and_then(|t| t.as_str()).map(|t| (t.to_string(), ())))
            .collect();
        let mut templates = BTreeMap::new();
        if !wanted.is_empty() {
            let Some(dir) = &self.entities.template_dir else {
                return Err(invalid(format!(
                    "entities name templates ({}) but [entities] template_dir is not set; point it at the directory of <template>.toml files",
                    wanted.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            let dir = base.join(dir);
            for name in wanted.keys() {
                let path = dir.join(format!("{name}.toml"));
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| invalid(format!("template {name:?}: cannot read {}: {e}", path.display())))?;
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| invalid(format!("template {}: {e}", path.display())))?;
                let value =
                    serde_json::to_value(table).map_err(|e| invalid(format!("template {}: {e}", path.display())))?;
                templates.insert(name.clone(), value);
            }
        }
        let entities = waybill_saga::Entities::build(&self.entities, &self.policy, &templates).map_err(invalid)?;
        self.policy.entities = std::sync::Arc::new(entities);
        Ok(())
    }

    /// Checks every value; the error names the key and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1024).contains(&self.partitions) {
            return Err(ConfigError::Invalid {
                key: "partitions",
                problem: format!("{} is outside 1..=1024", self.partitions),
            });
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid { key: "data_dir", problem: "must not be empty".into() });
        }
        self.fsync_policy()?;
        if self.log.segment_mb == 0 || self.log.segment_mb > 4096 {
            return Err(ConfigError::Invalid {
                key: "log.segment_mb",
                problem: format!("{} is outside 1..=4096", self.log.segment_mb),
            });
        }
        if self.log.retention_check_secs == 0 || self.log.retention_check_secs > 86_400 {
            return Err(ConfigError::Invalid {
                key: "log.retention_check_secs",
                problem: format!(
                    "{} is outside 1..=86400 (seconds between two passes of the embedded log's retention)",
                    self.log.retention_check_secs
                ),
            });
        }
        self.ingest.validate()?;
        self.policy.check().map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        self.coordinator
            .retire_after()
            .map_err(|problem| ConfigError::Invalid { key: "coordinator.retire_finished_after_days", problem })?;
        // Orders read from Odoo name their company only through the mapping: with several
        // entities, every one needs it, or another company's orders would silently be the
        // default entity's.
        let polls_odoo = self.connectors.values().any(|c| c.kind == "odoo" && c.poll_interval_ms > 0);
        let entities: Vec<&waybill_saga::Entity> = self.policy.entities.iter().collect();
        if polls_odoo && entities.len() > 1 {
            let unmapped: Vec<&str> =
                entities.iter().filter(|e| e.odoo_company_id.is_none()).map(|e| e.code.as_str()).collect();
            if !unmapped.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "entities",
                    problem: format!(
                        "the Odoo connector reads orders of several entities, but {} has no odoo_company_id; set each entity's to its res.company id in Odoo",
                        unmapped.join(", ")
                    ),
                });
            }
        }
        self.reconcile.schedule().map_err(|problem| ConfigError::Invalid { key: "reconcile.schedule", problem })?;
        if !self.reconcile.schedule.trim().is_empty() {
            let stock = self.connectors.get(&self.reconcile.connector).map(|c| c.stock_url.as_str()).unwrap_or("");
            if stock.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "reconcile.connector",
                    problem: format!(
                        "scheduled stock runs read the warehouse through [connectors.{}], which is not configured or has no stock_url; set stock_url (e.g. https://wms.example.com/v1/stock) or name the warehouse's connector",
                        self.reconcile.connector
                    ),
                });
            }
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "metrics.listen",
                problem: format!(
                    "{:?} is not an address like 127.0.0.1:9464 (leave it empty to disable metrics)",
                    self.metrics.listen
                ),
            });
        }
        if !self.registry.listen.is_empty() && self.registry.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "registry.listen",
                problem: format!(
                    "{:?} is not an address like 127.0.0.1:8422 (leave it empty to turn the schema registry API off)",
                    self.registry.listen
                ),
            });
        }
        if let Some(url) = &self.registry.url {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(ConfigError::Invalid {
                    key: "registry.url",
                    problem: format!("{url:?} is not an http:// or https:// URL of a schema registry"),
                });
            }
            if !self.registry.listen.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "registry.listen",
                    problem: format!(
                        "records carry the ids of the registry at {url} (registry.url), so serving the catalog's own ids would mislead tools; point them at {url} and leave registry.listen empty"
                    ),
                });
            }
        }
        if self.metrics.stuck_after_secs == 0 {
            return Err(ConfigError::Invalid { key: "metrics.stuck_after_secs", problem: "must be at least 1".into() });
        }
        if self.coordinator.max_batch == 0 {
            return Err(ConfigError::Invalid { key: "coordinator.max_batch", problem: "must be at least 1".into() });
        }
        self.telemetry
            .log_format
            .parse::<waybill_telemetry::LogFormat>()
            .map_err(|problem| ConfigError::Invalid { key: "telemetry.log_format", problem })?;
        if let Some(path) = &self.catalog {
            self.load_catalog_from(path)?;
        }
        if let Some(k) = &self.kafka {
            k.settings()?;
        }
        if self.topics.replication_factor < 1 {
            return Err(ConfigError::Invalid {
                key: "topics.replication_factor",
                problem: format!("{} must be at least 1 (3 on a production cluster)", self.topics.replication_factor),
            });
        }
        for (key, hours) in [
            ("topics.inbound_retention_hours", self.topics.inbound_retention_hours),
            ("topics.command_retention_hours", self.topics.command_retention_hours),
            ("topics.dead_letter_retention_hours", self.topics.dead_letter_retention_hours),
        ] {
            if hours == 0 || hours < -1 {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("{hours} must be a positive number of hours, or -1 to keep records forever"),
                });
            }
        }
        self.control.validate().map_err(|i| ConfigError::Invalid { key: i.key, problem: i.problem })?;
        self.web
            .validate(!self.control.listen.is_empty())
            .map_err(|i| ConfigError::Invalid { key: i.key, problem: i.problem })?;
        crate::connectors::validate(&self.connectors)?;
        self.policy
            .ownership
            .validate()
            .map_err(|problem| ConfigError::Invalid { key: "policy.ownership", problem })?;
        // Port 0 asks the OS for a free port each time, so two of them never collide.
        let listeners = [
            ("ingest.listen", &self.ingest.listen),
            ("control.listen", &self.control.listen),
            ("registry.listen", &self.registry.listen),
            ("metrics.listen", &self.metrics.listen),
            ("web.listen", &self.web.listen),
        ];
        for (i, (key, addr)) in listeners.iter().enumerate() {
            if addr.is_empty() || addr.ends_with(":0") {
                continue;
            }
            if let Some((other, _)) = listeners[..i].iter().find(|(_, a)| a == addr) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("{addr} is also {other}; give each listener its own port"),
                });
            }
        }
        Ok(())
    }

    /// The embedded log's fsync policy.
    pub fn fsync_policy(&self) -> Result<waybill_log::embedded::FsyncPolicy, ConfigError> {
        use waybill_log::embedded::FsyncPolicy;
        match self.log.fsync.as_str() {
            "batch" => Ok(FsyncPolicy::EveryBatch),
            "interval" => {
                Ok(FsyncPolicy::Interval(std::time::Duration::from_millis(self.log.fsync_interval_ms.max(1))))
            }
            "never" => Ok(FsyncPolicy::Never),
            other => Err(ConfigError::Invalid {
                key: "log.fsync",
                problem: format!("{other:?} is not one of \"batch\", \"interval\", \"never\""),
            }),
        }
    }

    /// The master data (empty without a catalog file).
    pub fn load_catalog(&self) -> Result<Catalog, ConfigError> {
        match &self.catalog {
            None => Ok(Catalog::default()),
            Some(p) => self.load_catalog_from(p),
        }
    }

    fn load_catalog_from(&self, path: &Path) -> Result<Catalog, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            key: "catalog",
            problem: format!("cannot read {}: {e}", path.display()),
        })?;
        Figment::from(Toml::string(&text)).extract::<Catalog>().map_err(|e| ConfigError::Invalid {
            key: "catalog",
            problem: format!("{} is not a valid master-data file: {e}", path.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_country_template_builds_an_entity_and_mistakes_name_the_file() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/entities");
        let mut names: Vec<String> = std::fs::read_dir(&shipped)
            .unwrap()
            .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
            .collect();
        names.sort();
        assert!(names.len() >= 2, "{names:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("waybill.toml");
        let mut toml =
            format!("[entities]\ndefault = \"{}\"\ntemplate_dir = {:?}\n", names[0], shipped.display().to_string());
        for n in &names {
            toml.push_str(&format!("[entities.companies.{n}]\ntemplate = \"{n}\"\n"));
        }
        std::fs::write(&file, &toml).unwrap();
        let cfg = Config::load(Some(&file), Figment::new()).unwrap();
        for n in &names {
            let e = cfg.policy.entities.get(n).unwrap();
            assert_eq!(e.currency.len(), 3, "{n}");
            assert!(!e.tax_codes.is_empty(), "{n}: a country template lists its tax codes");
            assert!(e.policy.posting.approval_limits.contains_key("approver"), "{n}");
        }
        // A template that is not there is named with where it was looked for.
        std::fs::write(&file, toml.replace(&format!("template = \"{}\"", names[0]), "template = \"xx\"")).unwrap();
        let err = Config::load(Some(&file), Figment::new()).unwrap_err().to_string();
        assert!(err.contains("xx.toml") && err.contains("entities"), "{err}");
    }

    #[test]
    fn layers_apply_in_order_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("waybill.toml");
        std::fs::write(&file, "partitions = 8\n[log]\nfsync = \"never\"\n").unwrap();
        let cfg = Config::load(Some(&file), Figment::new()).unwrap();
        assert_eq!(cfg.partitions, 8);
        assert_eq!(cfg.log.fsync, "never");
        let flags = Figment::from(Serialized::default("partitions", 2));
        assert_eq!(Config::load(Some(&file), flags).unwrap().partitions, 2);

        std::fs::write(&file, "[log]\nfsync = \"sometimes\"\n").unwrap();
        let err = Config::load(Some(&file), Figment::new()).unwrap_err().to_string();
        assert!(err.contains("log.fsync") && err.contains("sometimes"), "{err}");

        std::fs::write(&file, "partitons = 3\n").unwrap();
        let err = Config::load(Some(&file), Figment::new()).unwrap_err().to_string();
        assert!(err.contains("partitons"), "{err}");

        let err = Config::load(Some(&dir.path().join("missing.toml")), Figment::new()).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn the_retention_of_finished_flows_is_whole_days_and_a_mistake_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("waybill.toml");
        assert_eq!(Config::load(None, Figment::new()).unwrap().coordinator.retire_after().unwrap(), None);
        std::fs::write(&file, "[coordinator]\nretire_finished_after_days = 400\n").unwrap();
        let cfg = Config::load(Some(&file), Figment::new()).unwrap();
        assert_eq!(cfg.coordinator.retire_after().unwrap(), Some(std::time::Duration::from_secs(400 * 86_400)));
        std::fs::write(&file, "[coordinator]\nretire_finished_after_days = 0\n").unwrap();
        let err = Config::load(Some(&file), Figment::new()).unwrap_err().to_string();
        assert!(err.contains("coordinator.retire_finished_after_days") && err.contains("leave it out"), "{err}");
    }

    #[test]
    fn kafka_section_is_a_tree_of_librdkafka_properties() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("waybill.toml");
        std::fs::write(
            &file,
            "[kafka]\nbootstrap.servers = \"k0:9092,k1:9092\"\nsecurity.protocol = \"SASL_SSL\"\n\
             message.timeout.ms = 30000\ngroup = \"wb\"\nconsumer.session.timeout.ms = \"6000\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&file), Figment::new()).unwrap();
        let k = cfg.kafka.as_ref().unwrap().settings().unwrap();
        assert_eq!(k.bootstrap_servers, "k0:9092,k1:9092");
        assert_eq!(k.group, "wb");
        assert!(!k.transactions);
        assert_eq!(k.properties.get("security.protocol").map(String::as_str), Some("SASL_SSL"));
        assert_eq!(k.properties.get("message.timeout.ms").map(String::as_str), Some("30000"));
        assert_eq!(k.properties.get("consumer.session.timeout.ms").map(String::as_str), Some("6000"));
        assert!(!k.properties.contains_key("group"));

        std::fs::write(&file, "[kafka]\nsecurity.protocol = \"SSL\"\n").unwrap();
        let err = Config::load(Some(&file), Figment::new()).unwrap_err().to_string();
        assert!(err.contains("kafka.bootstrap.servers"), "{err}");
    }
}
