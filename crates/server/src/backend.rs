//! Which event log a node runs on, and Waybill's topics on it.
//!
//! - No `[kafka]` section: the embedded log in `data_dir/log`; this process owns every
//!   partition.
//! - `[kafka]` (feature `kafka`): Kafka; the replicas share the partitions through the
//!   consumer group `kafka.group`, each restoring the sagas of the partitions it is given
//!   from its local state store and the journal.
//!
//! [`plan`] is the list of topics Waybill needs with their partitions, replication and
//! retention; `waybill topics plan|apply` and start-up use it. The inbound topics, the
//! control topic, the journal and the command topics are all keyed by the order's
//! correlation key and read partition by partition, so they must have the same number of
//! partitions: a topic that differs is an error, never a silent mis-ordering.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use waybill_domain::topic;
use waybill_log::EventLog;
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, TopicRetention};

use crate::config::Config;
use crate::node::DataPaths;

/// The log a node runs on.
#[derive(Clone)]
pub struct Backend {
    /// The log, for everything that only reads and appends.
    pub log: Arc<dyn EventLog>,
    /// The same log as Kafka, when it is Kafka: partitions are then shared out by the
    /// consumer group.
    #[cfg(feature = "kafka")]
    pub kafka: Option<Arc<waybill_log::kafka::KafkaLog>>,
    /// The same log as the embedded log, when it is: its retention runs in the node.
    pub embedded: Option<Arc<EmbeddedLog>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("log", &self.log).field("kafka", &self.is_kafka()).finish()
    }
}

impl Backend {
    /// A backend on `log` that owns every partition.
    pub fn shared(log: Arc<dyn EventLog>) -> Self {
        Backend {
            log,
            #[cfg(feature = "kafka")]
            kafka: None,
            embedded: None,
        }
    }

    /// Whether the log is Kafka (partitions shared by a consumer group).
    pub fn is_kafka(&self) -> bool {
        #[cfg(feature = "kafka")]
        {
            self.kafka.is_some()
        }
        #[cfg(not(feature = "kafka"))]
        {
            false
        }
    }
}

/// Role of a topic; decides its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// Business events from a source system.
    Inbound,
    /// Operator and approver actions (`waybill.control`).
    Control,
    /// The sagas' journal: the changelog every restore replays. Kept forever.
    Journal,
    /// Commands to a target system.
    Command,
    /// Records that could not be processed.
    DeadLetter,
    /// The control plane's audit trail. Kept forever.
    Audit,
    /// The connectors' own state (pollers' cursors): one partition, compacted.
    ConnectorState,
    /// Saga state snapshots, keyed by correlation key: compacted, co-partitioned with
    /// the journal.
    Snapshot,
}

impl TopicRole {
    fn as_str(self) -> &'static str {
        match self {
            TopicRole::Inbound => "inbound",
            TopicRole::ConnectorState => "connector-state",
            TopicRole::Control => "control",
            TopicRole::Journal => "journal",
            TopicRole::Command => "command",
            TopicRole::DeadLetter => "dead-letter",
            TopicRole::Audit => "audit",
            TopicRole::Snapshot => "snapshot",
        }
    }

    /// Whether the topic is keyed by the correlation key and read partition by
    /// partition together with the journal (so its partition count must match).
    pub fn co_partitioned(self) -> bool {
        matches!(
            self,
            TopicRole::Inbound | TopicRole::Control | TopicRole::Journal | TopicRole::Command | TopicRole::Snapshot
        )
    }
}

/// One topic Waybill needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTopic {
    /// Name.
    pub name: String,
    /// Role.
    pub role: TopicRole,
    /// Partitions.
    pub partitions: u32,
    /// Replication factor.
    pub replication_factor: i32,
    /// Topic configuration to create it with.
    pub config: BTreeMap<String, String>,
}

fn retention(hours: i64) -> String {
    if hours < 0 { "-1".to_owned() } else { (hours * 3_600_000).to_string() }
}

/// Every topic Waybill needs, as configured.
pub fn plan(cfg: &Config) -> Vec<PlannedTopic> {
    let t = &cfg.topics;
    let mut out = Vec::new();
    let mut add = |name: String, role: TopicRole, hours: i64| {
        let mut config = BTreeMap::new();
        config.insert("cleanup.policy".to_owned(), "delete".to_owned());
        config.insert("retention.ms".to_owned(), retention(hours));
        if t.min_insync_replicas > 0 {
            config.insert("min.insync.replicas".to_owned(), t.min_insync_replicas.to_string());
        }
        out.push(PlannedTopic {
            name,
            role,
            partitions: cfg.partitions,
            replication_factor: t.replication_factor,
            config,
        });
    };
    for name in topic::coordinator_inputs() {
        let role = if name == topic::CONTROL { TopicRole::Control } else { TopicRole::Inbound };
        let hours = if role == TopicRole::Control { -1 } else { t.inbound_retention_hours };
        add(name, role, hours);
    }
    add(topic::JOURNAL.to_owned(), TopicRole::Journal, -1);
    for name in topic::command_topics() {
        add(name, TopicRole::Command, t.command_retention_hours);
    }
    add(topic::DLQ.to_owned(), TopicRole::DeadLetter, t.dead_letter_retention_hours);
    add(topic::AUDIT.to_owned(), TopicRole::Audit, -1);
    let mut snapshots = BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]);
    if t.min_insync_replicas > 0 {
        snapshots.insert("min.insync.replicas".to_owned(), t.min_insync_replicas.to_string());
    }
    out.push(PlannedTopic {
        name: topic::SNAPSHOTS.to_owned(),
        role: TopicRole::Snapshot,
        partitions: cfg.partitions,
        replication_factor: t.replication_factor,
        config: snapshots,
    });
    out.push(PlannedTopic {
        name: topic::CONNECT_STATE.to_owned(),
        role: TopicRole::ConnectorState,
        partitions: 1,
        replication_factor: t.replication_factor,
        config: BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]),
    });
    out
}

/// What `topics plan` found for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    /// Missing: `apply` creates it.
    Missing,
    /// Exists with the planned partition count.
    Ok,
    /// Exists with another partition count.
    Mismatch {
        /// Partitions it has.
        actual: u32,
    },
}

/// Compares the plan with what exists; `existing` gives a topic's partition count.
pub fn check(
    planned: &[PlannedTopic],
    mut existing: impl FnMut(&str) -> anyhow::Result<Option<u32>>,
) -> anyhow::Result<Vec<(PlannedTopic, TopicState)>> {
    let mut out = Vec::with_capacity(planned.len());
    for t in planned {
        let state = match existing(&t.name)? {
            None => TopicState::Missing,
            Some(n) if n == t.partitions => TopicState::Ok,
            Some(actual) => TopicState::Mismatch { actual },
        };
        out.push((t.clone(), state));
    }
    Ok(out)
}

/// The start-up error for topics whose partition counts differ from the plan.
pub fn mismatch_error(checked: &[(PlannedTopic, TopicState)], partitions: u32) -> Option<anyhow::Error> {
    let bad: Vec<String> = checked
        .iter()
        .filter_map(|(t, s)| match s {
            // Only co-partitioned topics must match; the connectors' state topic is read whole.
            TopicState::Mismatch { actual } if t.role.co_partitioned() => Some(format!("{} has {actual}", t.name)),
            _ => None,
        })
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(anyhow::anyhow!(
        "topics are not co-partitioned: `partitions` is {partitions} but {}. The inbound, control, journal and command \
         topics are keyed by the same correlation key and must have equal partition counts, or one order's events \
         would be processed by different partitions. Set `partitions` to the existing count, or move the data to \
         topics with {partitions} partitions (docs/operations.md, \"Scaling partitions\")",
        bad.join(", ")
    ))
}

/// Renders the plan as a table.
pub fn render(checked: &[(PlannedTopic, TopicState)]) -> String {
    let mut out = format!(
        "{:<26} {:<12} {:>10} {:>11} {:>14}  {}\n",
        "TOPIC", "ROLE", "PARTITIONS", "REPLICATION", "RETENTION", "STATE"
    );
    for (t, s) in checked {
        let retention = match t.config.get("retention.ms").map(String::as_str) {
            _ if t.config.get("cleanup.policy").map(String::as_str) == Some("compact") => "compacted".to_owned(),
            Some("-1") | None => "forever".to_owned(),
            Some(ms) => format!("{} h", ms.parse::<i64>().unwrap_or(0) / 3_600_000),
        };
        let state = match s {
            TopicState::Missing => "missing: apply creates it".to_owned(),
            TopicState::Ok => "ok".to_owned(),
            TopicState::Mismatch { actual } => format!("MISMATCH: has {actual} partitions"),
        };
        out.push_str(&format!(
            "{:<26} {:<12} {:>10} {:>11} {:>14}  {}\n",
            t.name,
            t.role.as_str(),
            t.partitions,
            t.replication_factor,
            retention,
            state
        ));
    }
    out
}

/// The embedded log's retention, from the same plan as the Kafka topics: the inbound,
/// command and dead-letter topics keep their `[topics]` retention; the snapshots keep
/// what their current generation needs (Kafka compacts them instead); the journal, the
/// control and audit topics and the connectors' state are kept for good.
pub fn embedded_retention(cfg: &Config) -> Vec<TopicRetention> {
    plan(cfg)
        .into_iter()
        .filter_map(|t| match t.role {
            TopicRole::Snapshot => Some(TopicRetention {
                topics: t.name,
                keep: Duration::ZERO,
                after_group: Some(waybill_saga::snapshot::READER_GROUP.to_owned()),
            }),
            TopicRole::ConnectorState => None,
            _ => {
                // `-1` is Kafka's "forever": no rule.
                let ms = t.config.get("retention.ms")?.parse::<i64>().ok().filter(|ms| *ms >= 0)?;
                Some(TopicRetention { topics: t.name, keep: Duration::from_millis(ms as u64), after_group: None })
            }
        })
        .collect()
}

/// Opens the log of `cfg`: Kafka when `[kafka]` is given, else the embedded log. The
/// topics must exist with the configured partition counts (they are created if missing).
pub fn open(cfg: &Config) -> anyhow::Result<Backend> {
    match &cfg.kafka {
        None => {
            let paths = DataPaths::new(&cfg.data_dir);
            let options = EmbeddedOptions {
                fsync: cfg.fsync_policy()?,
                segment_bytes: cfg.log.segment_mb * 1024 * 1024,
                retention: embedded_retention(cfg),
            };
            let embedded = Arc::new(
                EmbeddedLog::open(&paths.log, options)
                    .with_context(|| format!("opening the embedded log in {}", paths.log.display()))?,
            );
            let log: Arc<dyn EventLog> = embedded.clone();
            ensure_topics(log.as_ref(), cfg.partitions)?;
            Ok(Backend { embedded: Some(embedded), ..Backend::shared(log) })
        }
        #[cfg(feature = "kafka")]
        Some(_) => kafka::open(cfg, kafka::Retry::StartUp),
        #[cfg(not(feature = "kafka"))]
        Some(_) => anyhow::bail!(
            "the config has a [kafka] section but this waybill was built without Kafka support; build it with the \
             default features (cargo feature `kafka`) or remove [kafka] to use the embedded log"
        ),
    }
}

/// Creates every Waybill topic with `partitions` partitions (the embedded log, or Kafka
/// with the backend's defaults); an existing topic with another count is an error.
pub fn ensure_topics(log: &dyn EventLog, partitions: u32) -> anyhow::Result<()> {
    let mut topics = topic::coordinator_inputs();
    topics.push(topic::JOURNAL.to_string());
    topics.push(topic::DLQ.to_string());
    topics.push(topic::SNAPSHOTS.to_string());
    topics.extend(topic::command_topics());
    for t in topics {
        log.ensure_topic(&t, partitions).with_context(|| format!("topic {t}"))?;
    }
    log.ensure_topic(topic::CONNECT_STATE, 1).with_context(|| format!("topic {}", topic::CONNECT_STATE))?;
    Ok(())
}

/// The Kafka side.
#[cfg(feature = "kafka")]
pub mod kafka {
    use std::time::{Duration, Instant};

    use waybill_log::kafka::{KafkaLog, KafkaOptions, TopicSpec};

    use super::*;

    /// How hard [`open`] tries to reach the brokers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Retry {
        /// Once (admin commands).
        Once,
        /// With backoff for up to five minutes (a starting server: the brokers may be
        /// starting too).
        StartUp,
    }

    /// How long a starting server keeps trying to reach the brokers.
    const START_UP_PATIENCE: Duration = Duration::from_secs(300);

    /// The Kafka client options of `cfg`.
    pub fn options(cfg: &Config) -> anyhow::Result<KafkaOptions> {
        let settings = cfg.kafka.as_ref().context("no [kafka] section in the config")?.settings()?;
        Ok(KafkaOptions {
            bootstrap_servers: settings.bootstrap_servers,
            client_id: settings.client_id,
            properties: settings.properties,
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            replication_factor: cfg.topics.replication_factor,
            transactions: settings.transactions,
        })
    }

    /// Connects (retrying as `retry` says), checks the topics against the plan and
    /// creates the missing ones.
    pub fn open(cfg: &Config, retry: Retry) -> anyhow::Result<Backend> {
        let log = Arc::new(connect(cfg, retry)?);
        let checked = check(&plan(cfg), |t| Ok(log.topic_partitions(t)?))?;
        if let Some(e) = mismatch_error(&checked, cfg.partitions) {
            return Err(e);
        }
        create_missing(&log, &checked)?;
        if log.options().transactions {
            log.verify_transactions(topic::JOURNAL)?;
            tracing::info!("Kafka transactions are on: journal, commands and positions commit together");
        }
        Ok(Backend { log: log.clone(), kafka: Some(log), embedded: None })
    }

    /// Connects to the brokers of `cfg`.
    pub fn connect(cfg: &Config, retry: Retry) -> anyhow::Result<KafkaLog> {
        let options = options(cfg)?;
        let started = Instant::now();
        let mut backoff = Duration::from_secs(1);
        loop {
            match KafkaLog::connect(options.clone()) {
                Ok(log) => return Ok(log),
                Err(e @ waybill_log::Error::InvalidRequest { .. }) => return Err(e.into()),
                Err(e) if retry == Retry::StartUp && started.elapsed() < START_UP_PATIENCE => {
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "Kafka is not reachable yet; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Creates the topics `checked` found missing, with their planned settings.
    pub fn create_missing(log: &KafkaLog, checked: &[(PlannedTopic, TopicState)]) -> anyhow::Result<usize> {
        let mut created = 0;
        for (t, state) in checked {
            if *state != TopicState::Missing {
                continue;
            }
            let spec = TopicSpec {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                config: t.config.clone(),
            };
            log.create_topic(&spec).with_context(|| format!("creating topic {}", t.name))?;
            tracing::info!(topic = %t.name, partitions = t.partitions, "created topic");
            created += 1;
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_every_topic_and_keeps_the_changelog_forever() {
        let cfg = Config { partitions: 6, ..Config::default() };
        let planned = plan(&cfg);
        let names: Vec<&str> = planned.iter().map(|t| t.name.as_str()).collect();
        for t in [
            topic::JOURNAL,
            topic::CONTROL,
            topic::DLQ,
            topic::AUDIT,
            "waybill.inbound.odoo",
            "waybill.commands.finance",
        ] {
            assert!(names.contains(&t), "{t} is not planned: {names:?}");
        }
        let journal = planned.iter().find(|t| t.name == topic::JOURNAL).unwrap();
        assert_eq!(journal.config.get("retention.ms").map(String::as_str), Some("-1"));
        let inbound = planned.iter().find(|t| t.name == "waybill.inbound.odoo").unwrap();
        assert_eq!(inbound.config.get("retention.ms").map(String::as_str), Some("604800000"));
        assert!(planned.iter().filter(|t| t.role.co_partitioned()).all(|t| t.partitions == 6));
    }

    #[test]
    fn a_partition_count_mismatch_is_a_start_up_error_naming_the_topic() {
        let cfg = Config { partitions: 4, ..Config::default() };
        let checked = check(&plan(&cfg), |t| Ok(Some(if t == "waybill.inbound.wms" { 8 } else { 4 }))).unwrap();
        let e = mismatch_error(&checked, 4).unwrap().to_string();
        assert!(e.contains("waybill.inbound.wms has 8") && e.contains("co-partitioned"), "{e}");
        let fine = check(&plan(&cfg), |_| Ok(Some(4))).unwrap();
        assert!(mismatch_error(&fine, 4).is_none());
        let table = render(&checked);
        assert!(table.contains("MISMATCH: has 8 partitions"), "{table}");
    }
}
