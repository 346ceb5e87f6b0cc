//! librdkafka plumbing for [`KafkaLog`](super::KafkaLog): the client context (logs,
//! errors, delivery reports), error mapping, and two small helpers (a bounded client
//! cache and a `block_on` for the admin API's futures). Client configuration is in
//! [`options`](super::options).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;

use crate::Offset;

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not turn into a second panic.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
