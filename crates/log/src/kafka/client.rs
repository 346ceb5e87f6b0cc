//! librdkafka plumbing for [`KafkaLog`](super::KafkaLog): the client context (logs,
//! errors, delivery reports), client configuration, error mapping, and two small helpers
//! (a bounded client cache and a `block_on` for the admin API's futures).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;

use super::KafkaOptions;
use crate::{Error, Offset};

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not turn into a second panic.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
            // One consumer per partition read: keep its prefetch buffer modest.
            c.set("queued.max.messages.kbytes", "16384")
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

/// The last error librdkafka reported for a client (its code and reason).
#[derive(Debug, Clone)]
pub(super) struct LastError {
    /// The librdkafka error code, e.g. `BrokerTransportFailure`.
    pub code: String,
    /// librdkafka's description, e.g. `127.0.0.1:19092/bootstrap: Connect to ... failed`.
    pub reason: String,
    /// When it was reported.
    pub at: Instant,
}

/// The context of every client: routes librdkafka's logs to `tracing`, remembers the
/// last error for messages, and hands delivery reports to the waiting `append`.
#[derive(Debug)]
pub(super) struct Ctx {
    /// The shared record of the last error of any client of one log.
    pub last_error: Arc<Mutex<Option<LastError>>>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", error = %error, "client error: {reason}");
        let code = error.rdkafka_error_code().map_or_else(|| error.to_string(), |c| format!("{c:?}"));
        let mut last = lock(&self.last_error);
        // "n/n brokers are down" says less than the connection failure before it.
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown))
            && last.as_ref().is_some_and(|l| l.at.elapsed().as_secs() < 60)
        {
            return;
        }
        *last = Some(LastError { code, reason: reason.to_owned(), at: Instant::now() });
    }
}

impl ConsumerContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        ticket.batch.settle(ticket.index, outcome);
    }
}

/// The delivery reports of one `append`, filled in by the producer's polling thread.
#[derive(Debug)]
pub(super) struct Pending {
    state: Mutex<(Vec<Option<Delivery>>, usize)>,
    done: Condvar,
}

/// Where a record landed, or why it did not.
pub(super) type Delivery = Result<(i32, Offset), KafkaError>;

/// Which record of which batch a delivery report is for.
#[derive(Debug)]
pub(super) struct Ticket {
    pub batch: Arc<Pending>,
    pub index: usize,
}

impl Pending {
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Pending { state: Mutex::new(((0..n).map(|_| None).collect(), n)), done: Condvar::new() })
    }

    /// Records the outcome of record `index` (the first outcome wins).
    pub fn settle(&self, index: usize, outcome: Delivery) {
        let mut s = lock(&self.state);
        if s.0[index].is_none() {
            s.0[index] = Some(outcome);
            s.1 -= 1;
            if s.1 == 0 {
                self.done.notify_all();
            }
        }
    }

    /// Waits for every outcome.
    pub fn wait(&self) -> Vec<Delivery> {
        let mut s = lock(&self.state);
        while s.1 > 0 {
            s = self.done.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.0.drain(..).map(|o| o.expect("every slot is settled")).collect()
    }
}

/// Whether an error means the brokers could not be reached (as opposed to a refusal).
pub(super) fn is_unreachable(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::OperationTimedOut
                | C::MessageTimedOut
                | C::Resolve
                | C::RequestTimedOut
                | C::NetworkException
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::WaitingForCoordinator
                | C::TimedOutQueue
        )
    )
}

/// A cache of clients with a size bound; the least recently used one is dropped first.
#[derive(Debug)]
pub(super) struct Bounded<K, V> {
    cap: usize,
    tick: u64,
    map: HashMap<K, (Arc<V>, u64)>,
}

impl<K: Eq + Hash + Clone, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Bounded { cap, tick: 0, map: HashMap::new() }
    }

    /// The value for `key`, creating it with `make` if absent.
    pub fn get_or_try<E>(&mut self, key: &K, make: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        self.tick += 1;
        if let Some((v, used)) = self.map.get_mut(key) {
            *used = self.tick;
            return Ok(v.clone());
        }
        let v = Arc::new(make()?);
        if self.map.len() >= self.cap
            && let Some(oldest) = self.map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(key.clone(), (v.clone(), self.tick));
        Ok(v)
    }
}

/// Wakes the thread blocked in [`block_on`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future on the current thread. The admin API's futures complete from
/// librdkafka's own threads, so no async runtime is needed.
pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    #[test]
    fn bounded_cache_drops_the_least_recently_used() {
        let mut b: Bounded<u32, u32> = Bounded::new(2);
        let ok = |v| Ok::<_, ()>(v);
        b.get_or_try(&1, || ok(10)).unwrap();
        b.get_or_try(&2, || ok(20)).unwrap();
        b.get_or_try(&1, || ok(11)).unwrap();
        b.get_or_try(&3, || ok(30)).unwrap();
        assert_eq!(*b.get_or_try(&1, || ok(12)).unwrap(), 10);
        assert_eq!(*b.get_or_try(&2, || ok(21)).unwrap(), 21);
    }
}
