//! [`KafkaOptions`] and how they become librdkafka client configurations: the defaults
//! of each kind of client, the user's pass-through properties (optionally scoped to one
//! kind), and the settings the [`EventLog`](crate::EventLog) contract relies on, which no
//! property may override.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

use crate::Error;

/// Options of [`KafkaLog::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// The brokers to bootstrap from, `host:port` separated by commas
    /// (librdkafka's `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// The client id the brokers see in their logs and quotas. Default: `waybill`.
    pub client_id: String,
    /// Any librdkafka configuration property (`security.protocol`, `sasl.mechanism`,
    /// `ssl.ca.location`, `socket.timeout.ms`, `message.timeout.ms`, ...). A key prefixed
    /// with `producer.` or `consumer.` (or `admin.`) applies only to that kind of client.
    /// Keys Waybill manages (`bootstrap.servers`, `client.id`, `group.id`, ...) and values
    /// that would break the contract (`enable.idempotence=false`, `acks=1`,
    /// `isolation.level=read_uncommitted`, ...) are refused by [`KafkaLog::connect`].
    pub properties: BTreeMap<String, String>,
    /// How long a single request (metadata, offsets, topic creation, commit) may take,
    /// and how long `connect` waits for the brokers. Default: 30 s. Deliveries of
    /// appended records are bounded by librdkafka's `message.timeout.ms` instead.
    pub request_timeout: Duration,
    /// Replication factor of the topics `ensure_topic` creates. Default: 1; use 3 on a
    /// production cluster.
    pub replication_factor: i32,
    /// Append batches that carry consumer positions as Kafka transactions: the records
    /// and the positions (`send_offsets_to_transaction`) commit together or not at all,
    /// one transactional producer per (group, partition) so a new owner of a partition
    /// fences the old one. Needs a broker with transactions
    /// ([`KafkaLog::verify_transactions`] checks). Default: off.
    pub transactions: bool,
}

impl KafkaOptions {
    /// Options with the defaults for the given brokers.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaOptions {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: "waybill".to_owned(),
            properties: BTreeMap::new(),
            request_timeout: Duration::from_secs(30),
            replication_factor: 1,
            transactions: false,
        }
    }
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions::new("localhost:9092")
    }
}

/// Which kind of client a configuration is for; picks the defaults and the scoped
/// properties (`producer.<key>`, `consumer.<key>`) that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The idempotent producer (also used for metadata and watermarks).
    Producer,
    /// A reader of one partition, or the committer of one consumer group.
    Consumer,
    /// The admin client (topic creation).
    Admin,
}

/// Keys Waybill sets itself; a property may not change them.
const MANAGED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `bootstrap_servers` instead"),
    ("metadata.broker.list", "set `bootstrap_servers` instead"),
    ("client.id", "set `client_id` instead"),
    ("group.id", "consumer groups are named by the positions Waybill stores"),
    ("enable.partition.eof", "the Kafka backend needs end-of-partition events to stop reads"),
    ("partitioner", "Waybill partitions by Kafka's murmur2 itself and passes explicit partitions"),
    ("transactional.id", "set kafka.transactions = true; Waybill names one transactional id per partition"),
];

/// Keys that may be set only to the value Waybill relies on.
const REQUIRED: &[(&str, &[&str], &str)] = &[
    ("enable.idempotence", &["true"], "retries must not duplicate or reorder records"),
    ("acks", &["all", "-1"], "an acknowledged append must survive the loss of a broker"),
    ("request.required.acks", &["all", "-1"], "an acknowledged append must survive the loss of a broker"),
    ("enable.auto.commit", &["false"], "positions are committed only with the batch that covers them"),
    ("isolation.level", &["read_committed"], "readers must not see aborted records"),
];

/// Splits a property into the role it is scoped to (if any) and the librdkafka key.
fn scoped(key: &str) -> (Option<Role>, &str) {
    if let Some(k) = key.strip_prefix("producer.") {
        (Some(Role::Producer), k)
    } else if let Some(k) = key.strip_prefix("consumer.") {
        (Some(Role::Consumer), k)
    } else if let Some(k) = key.strip_prefix("admin.") {
        (Some(Role::Admin), k)
    } else {
        (None, key)
    }
}

/// Checks the options; the error says which property is wrong and why.
pub(super) fn validate(options: &KafkaOptions) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::InvalidRequest { reason });
    if options.bootstrap_servers.trim().is_empty() {
        return invalid(
            "kafka.bootstrap_servers is empty; set it to the brokers' host:port list, e.g. \"kafka-0:9092,kafka-1:9092\"".into(),
        );
    }
    if options.replication_factor < 1 {
        return invalid(format!(
            "kafka.replication_factor is {}; it must be at least 1 (3 for production clusters)",
            options.replication_factor
        ));
    }
    if options.request_timeout.is_zero() {
        return invalid("kafka.request_timeout must be greater than zero".into());
    }
    for (key, value) in &options.properties {
        let (_, k) = scoped(key);
        if let Some((_, why)) = MANAGED.iter().find(|(m, _)| *m == k) {
            return invalid(format!("kafka property {key:?} is managed by Waybill and cannot be set ({why})"));
        }
        if let Some((_, allowed, why)) = REQUIRED.iter().find(|(r, _, _)| *r == k)
            && !allowed.contains(&value.trim())
        {
            return invalid(format!(
                "kafka property {key:?} = {value:?} is not allowed: Waybill needs {:?} because {why}",
                allowed[0]
            ));
        }
    }
    Ok(())
}

/// The configuration of one client: defaults, then the user's properties, then the
/// settings Waybill relies on.
pub(super) fn config(options: &KafkaOptions, role: Role, group: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &options.bootstrap_servers)
        .set("client.id", &options.client_id)
        // Never create a topic by asking about it: unknown topics are errors.
        .set("allow.auto.create.topics", "false")
        .set_log_level(RDKafkaLogLevel::Warning);
    match role {
        Role::Producer => {
            // `append` waits for its deliveries; a long linger only adds latency.
            c.set("linger.ms", "1");
        }
        Role::Consumer => {
            // The readers share one consumer, each partition with a queue of its own:
            // this bounds the records prefetched per partition (Tansu answers a fetch
            // with up to 5 MB of one partition).
            c.set("queued.max.messages.kbytes", "8192")
                .set("fetch.wait.max.ms", "100")
                .set("auto.offset.reset", "earliest");
        }
        Role::Admin => {}
    }
    for (key, value) in &options.properties {
        match scoped(key) {
            (None, k) => {
                c.set(k, value);
            }
            (Some(r), k) if r == role => {
                c.set(k, value);
            }
            _ => {}
        }
    }
    match role {
        Role::Producer => {
            c.set("enable.idempotence", "true").set("acks", "all").set("partitioner", "murmur2_random");
        }
        Role::Consumer => {
            c.set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "true")
                .set("isolation.level", "read_committed");
            if let Some(g) = group {
                c.set("group.id", g);
            }
        }
        Role::Admin => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(props: &[(&str, &str)]) -> KafkaOptions {
        KafkaOptions {
            properties: props.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
            ..KafkaOptions::new("127.0.0.1:9092")
        }
    }

    #[test]
    fn validate_refuses_settings_that_break_the_contract() {
        assert!(validate(&options(&[("security.protocol", "SASL_SSL")])).is_ok());
        assert!(validate(&options(&[("acks", "all")])).is_ok());
        for (k, v) in [
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("producer.acks", "1"),
            ("group.id", "x"),
            ("bootstrap.servers", "x:1"),
            ("isolation.level", "read_uncommitted"),
        ] {
            let e = validate(&options(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(k.trim_start_matches("producer.")), "{e}");
        }
    }

    #[test]
    fn properties_are_scoped_by_role_and_cannot_override_guarantees() {
        let o = options(&[
            ("socket.timeout.ms", "5000"),
            ("producer.linger.ms", "20"),
            ("consumer.fetch.wait.max.ms", "50"),
        ]);
        let p = config(&o, Role::Producer, None);
        assert_eq!(p.get("socket.timeout.ms"), Some("5000"));
        assert_eq!(p.get("linger.ms"), Some("20"));
        assert_eq!(p.get("fetch.wait.max.ms"), None);
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let c = config(&o, Role::Consumer, Some("g"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(c.get("linger.ms"), None);
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }
}
