//! Fault injection and the request log, shared by both doubles.
//!
//! A test arms a [`Fault`] for the calls a [`Match`] selects, for a number of [`Times`];
//! the double consults the plan as each request arrives (after it has been parsed far
//! enough to know its model and method, or its path and idempotency key) and applies the
//! first armed fault that matches. Everything here is thread-safe and may be used while
//! the double is serving.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What goes wrong with a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then answer normally (Odoo retrying a serialization failure
    /// internally up to 5 times can take tens of seconds).
    Slow(Duration),
    /// Answer this HTTP status (e.g. 500, 502, 504) with a short JSON body, doing nothing.
    Status(u16),
    /// Answer this status (429 or 503) with a `Retry-After: <secs>` header, doing nothing.
    RetryAfter {
        /// HTTP status, 429 or 503.
        status: u16,
        /// Value of the `Retry-After` header in seconds.
        secs: u64,
    },
    /// Close the connection without answering and without doing the work.
    Drop,
    /// Do the work fully (it is committed), then close the connection without answering:
    /// the caller cannot tell whether it happened ("outcome unknown").
    CommitThenDrop,
    /// Odoo: `psycopg2.errors.SerializationFailure`, "could not serialize access due to
    /// concurrent update"; nothing is done. The HTTP target answers 500.
    SerializationFailure,
    /// Odoo: `psycopg2.errors.LockNotAvailable` (lock timeout); nothing is done. The HTTP
    /// target answers 500.
    LockTimeout,
    /// Odoo: JSON-RPC error code 100 `odoo.http.SessionExpiredException` (JSON-2: 401).
    /// The HTTP target answers 401.
    SessionExpired,
    /// Odoo: `odoo.exceptions.ValidationError` with this message; nothing is done. Usually
    /// armed with [`Times::UntilCleared`] for "business error, fix, retry succeeds" tests.
    /// The HTTP target answers 422 with the message.
    Validation(String),
}

/// Which requests a fault applies to. `None` matches anything.
///
/// For the Odoo double `target` is the model and `action` the method (both exact). For the
/// HTTP target `target` is the request path (exact) and `action` a prefix of the
/// `Idempotency-Key` (e.g. `"release:"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Odoo model, or HTTP target path.
    pub target: Option<String>,
    /// Odoo method, or prefix of the HTTP target's idempotency key.
    pub action: Option<String>,
}

impl Match {
    /// Every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Every call on this model (Odoo) or path (HTTP target).
    pub fn on(target: impl Into<String>) -> Self {
        Self { target: Some(target.into()), action: None }
    }

    /// Calls of this method on this model (Odoo), or commands on this path whose
    /// idempotency key starts with `action` (HTTP target).
    pub fn call(target: impl Into<String>, action: impl Into<String>) -> Self {
        Self { target: Some(target.into()), action: Some(action.into()) }
    }

    /// Calls of this method on any model (Odoo), or keys with this prefix on any path.
    pub fn action(action: impl Into<String>) -> Self {
        Self { target: None, action: Some(action.into()) }
    }

    pub(crate) fn matches(&self, target: Option<&str>, action: Option<&str>, prefix: bool) -> bool {
        let target_ok = match (&self.target, target) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
        };
        let action_ok = match (&self.action, action) {
            (None, _) => true,
            (Some(want), Some(got)) => {
                if prefix {
                    got.starts_with(want.as_str())
                } else {
                    want == got
                }
            }
            (Some(_), None) => false,
        };
        target_ok && action_ok
    }
}

/// How many matching requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// The next `n` matching requests.
    Next(u32),
    /// Every matching request until [`FaultId`] is cleared.
    UntilCleared,
}

/// Names an armed fault so a test can clear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

/// How a double that is "down" behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownMode {
    /// Close the listening socket (connections are refused) and every open connection.
    Refuse,
    /// Accept connections and answer every request `503 Service Unavailable`.
    Unavailable,
}

#[derive(Debug)]
struct Armed {
    id: FaultId,
    matcher: Match,
    fault: Fault,
    times: Times,
}

/// The faults armed on one double.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    armed: Mutex<(u64, Vec<Armed>)>,
}

impl FaultPlan {
    pub(crate) fn arm(&self, matcher: Match, fault: Fault, times: Times) -> FaultId {
        let mut guard = self.armed.lock().unwrap();
        guard.0 += 1;
        let id = FaultId(guard.0);
        guard.1.push(Armed { id, matcher, fault, times });
        id
    }

    pub(crate) fn clear(&self, id: FaultId) {
        self.armed.lock().unwrap().1.retain(|a| a.id != id);
    }

    pub(crate) fn clear_all(&self) {
        self.armed.lock().unwrap().1.clear();
    }

    /// The fault for this request, if any is armed; counts it against its [`Times`].
    pub(crate) fn take(&self, target: Option<&str>, action: Option<&str>, prefix: bool) -> Option<Fault> {
        let mut guard = self.armed.lock().unwrap();
        let list = &mut guard.1;
        let pos = list.iter().position(|a| a.matcher.matches(target, action, prefix))?;
        let fault = list[pos].fault.clone();
        match &mut list[pos].times {
            Times::UntilCleared => {}
            Times::Next(n) => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    list.remove(pos);
                }
            }
        }
        Some(fault)
    }
}

/// Which door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Odoo `POST /jsonrpc`.
    JsonRpc,
    /// Odoo 19 `POST /json/2/<model>/<method>`.
    Json2,
    /// The HTTP target's command endpoint.
    Http,
    /// Any other path.
    Other,
}

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// When the request was read (after its body arrived).
    pub at: Instant,
    /// Which door it came through.
    pub transport: Transport,
    /// The request path.
    pub path: String,
    /// Odoo: the model (JSON-RPC `execute_kw`, JSON-2); `None` for `common` calls.
    pub model: Option<String>,
    /// Odoo: the method (`execute_kw`'s method, `authenticate`, …).
    pub method: Option<String>,
    /// Odoo: the API key or password presented. HTTP target: `None`.
    pub key: Option<String>,
    /// HTTP target: the `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
}

/// Every request a double received, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<RequestRecord>>,
}

impl RequestLog {
    pub(crate) fn push(&self, record: RequestRecord) {
        self.entries.lock().unwrap().push(record);
    }

    pub(crate) fn all(&self) -> Vec<RequestRecord> {
        self.entries.lock().unwrap().clone()
    }

    pub(crate) fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }
}

/// The largest number of `records` whose arrival falls in any window of length `window`
/// (a sliding window anchored at each arrival), for "never more than N per second" tests.
pub fn max_in_window(records: &[RequestRecord], window: Duration) -> usize {
    let mut times: Vec<Instant> = records.iter().map(|r| r.at).collect();
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_n_runs_out_and_until_cleared_stays() {
        let plan = FaultPlan::default();
        plan.arm(Match::call("sale.order", "create"), Fault::Status(502), Times::Next(2));
        let id = plan.arm(Match::on("res.partner"), Fault::Drop, Times::UntilCleared);
        assert_eq!(plan.take(Some("sale.order"), Some("write"), false), None);
        assert_eq!(plan.take(Some("sale.order"), Some("create"), false), Some(Fault::Status(502)));
        assert_eq!(plan.take(Some("sale.order"), Some("create"), false), Some(Fault::Status(502)));
        assert_eq!(plan.take(Some("sale.order"), Some("create"), false), None);
        for _ in 0..3 {
            assert_eq!(plan.take(Some("res.partner"), Some("read"), false), Some(Fault::Drop));
        }
        plan.clear(id);
        assert_eq!(plan.take(Some("res.partner"), Some("read"), false), None);
    }

    #[test]
    fn prefix_matching_for_keys() {
        let m = Match::action("release:");
        assert!(m.matches(Some("/v1/commands"), Some("release:SO1"), true));
        assert!(!m.matches(Some("/v1/commands"), Some("carrier:SHP-1"), true));
    }

    #[test]
    fn window_counts_the_busiest_stretch() {
        let t0 = Instant::now();
        let rec = |ms: u64| RequestRecord {
            at: t0 + Duration::from_millis(ms),
            transport: Transport::Other,
            path: "/".into(),
            model: None,
            method: None,
            key: None,
            idempotency_key: None,
        };
        let log = [rec(0), rec(100), rec(900), rec(1000), rec(1050), rec(1950)];
        assert_eq!(max_in_window(&log, Duration::from_secs(1)), 4);
        assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
    }
}
