//! Sessions of people signed in to the workbench, their CSRF tokens, and the throttle on
//! failed sign-ins. Pure bookkeeping over an injected `now`, so every rule is tested
//! without waiting; the handlers pass `Instant::now()`.
//!
//! - A session id is 32 random bytes (hex), sent only in an `HttpOnly`, `SameSite=Strict`
//!   cookie (`Secure` behind TLS). The server keeps the session; the cookie holds nothing
//!   else.
//! - Each session has its own CSRF token (32 random bytes), which every form carries and
//!   every POST must echo; it is compared in constant time.
//! - A session ends after `idle` without a request, `max_age` after sign-in, or at
//!   sign-out. The role is not kept in the session: every request reads it from the
//!   identities file, so a role taken away takes effect at the next click.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

/// 32 random bytes as 64 hex digits.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    SystemRandom::new().fill(&mut b).expect("the operating system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A flash message shown once on the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Good news (`ok`) or a refusal (`error`).
    pub ok: bool,
    /// In words.
    pub text: String,
}

/// One signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub identity: String,
    /// The token every form carries.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
    flash: Option<Flash>,
}

/// All sessions of this process.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max_age: Duration,
}

impl Sessions {
    /// Sessions that end after `idle` without a request or `max_age` after sign-in.
    pub fn new(idle: Duration, max_age: Duration) -> Self {
        Sessions { map: Mutex::new(HashMap::new()), idle, max_age }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `identity`; returns its id (the cookie's value).
    pub fn create(&self, identity: &str, now: Instant) -> String {
        let id = random_token();
        let s =
            Session { identity: identity.to_string(), csrf: random_token(), created: now, last_seen: now, flash: None };
        let mut map = self.lock();
        // Drop the expired ones now and then, so the map does not grow without bound.
        map.retain(|_, s| !self.expired(s, now));
        map.insert(id.clone(), s);
        id
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) > self.idle
            || now.saturating_duration_since(s.created) > self.max_age
    }

    /// The live session `id`, touched; `None` when unknown or expired (then removed).
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        let s = map.get_mut(id)?;
        if self.expired(s, now) {
            map.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// Takes the flash message of session `id`, if any.
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    /// Leaves `flash` for the next page of session `id`.
    pub fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(flash);
        }
    }

    /// Ends session `id` (sign-out).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Live sessions.
    pub fn len(&self, now: Instant) -> usize {
        self.lock().values().filter(|s| !self.expired(s, now)).count()
    }

    /// Whether no session is live.
    pub fn is_empty(&self, now: Instant) -> bool {
        self.len(now) == 0
    }
}

/// Failed sign-ins, per key (an identity, an address): after `allowed` failures in a
/// row, the next attempt must wait 30 s, doubling with each further failure, at most
/// 15 minutes. A success clears the key.
#[derive(Debug)]
pub struct Throttle {
    allowed: u32,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The first wait after the allowed failures.
const FIRST_WAIT: Duration = Duration::from_secs(30);
/// The longest wait.
const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);

impl Throttle {
    /// A throttle that lets `allowed` failures pass before it makes anyone wait.
    pub fn new(allowed: u32) -> Self {
        Throttle { allowed, failures: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_for(&self, failures: u32) -> Duration {
        if failures < self.allowed {
            return Duration::ZERO;
        }
        let doublings = (failures - self.allowed).min(10);
        (FIRST_WAIT * 2u32.pow(doublings)).min(LONGEST_WAIT)
    }

    /// How long `key` must still wait before it may try again (zero: it may now).
    pub fn wait(&self, key: &str, now: Instant) -> Duration {
        match self.lock().get(key) {
            Some((n, last)) => self.wait_for(*n).saturating_sub(now.saturating_duration_since(*last)),
            None => Duration::ZERO,
        }
    }

    /// Counts a failure of `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut map = self.lock();
        // Forget keys whose last failure is long past, so the map stays small.
        map.retain(|_, (_, last)| now.saturating_duration_since(*last) < LONGEST_WAIT * 2);
        let e = map.entry(key.to_string()).or_insert((0, now));
        e.0 += 1;
        e.1 = now;
    }

    /// Clears `key` after a successful sign-in.
    pub fn succeed(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_at_their_maximum_age() {
        let t0 = Instant::now();
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let id = s.create("ada", t0);
        assert_eq!(id.len(), 64);
        let got = s.get(&id, t0 + Duration::from_secs(50)).expect("live");
        assert_eq!(got.identity, "ada");
        assert_eq!(got.csrf.len(), 64);
        assert_ne!(got.csrf, id, "the CSRF token is not the session id");
        // Touched at 50 s, so alive at 100 s; then idle too long.
        assert!(s.get(&id, t0 + Duration::from_secs(100)).is_some());
        assert!(s.get(&id, t0 + Duration::from_secs(161)).is_none(), "idle for 61 s");
        assert!(s.get(&id, t0 + Duration::from_secs(100)).is_none(), "gone once expired");

        // Busy, but past the maximum age.
        let id = s.create("ada", t0);
        for m in 1..5 {
            assert!(s.get(&id, t0 + Duration::from_secs(m * 59)).is_some());
        }
        assert!(s.get(&id, t0 + Duration::from_secs(301)).is_none());
    }

    #[test]
    fn sign_out_ends_the_session_and_flashes_are_shown_once() {
        let t0 = Instant::now();
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let id = s.create("ada", t0);
        s.set_flash(&id, Flash { ok: true, text: "approved".into() });
        assert_eq!(s.take_flash(&id).map(|f| f.text), Some("approved".into()));
        assert_eq!(s.take_flash(&id), None);
        s.remove(&id);
        assert!(s.get(&id, t0).is_none());
        assert!(s.is_empty(t0));
    }

    #[test]
    fn failed_sign_ins_wait_longer_each_time_and_a_success_clears_them() {
        let t0 = Instant::now();
        let th = Throttle::new(3);
        for _ in 0..3 {
            assert_eq!(th.wait("ada", t0), Duration::ZERO);
            th.fail("ada", t0);
        }
        assert_eq!(th.wait("ada", t0), Duration::from_secs(30));
        assert_eq!(th.wait("ada", t0 + Duration::from_secs(10)), Duration::from_secs(20));
        assert_eq!(th.wait("bob", t0), Duration::ZERO, "per key");
        th.fail("ada", t0 + Duration::from_secs(30));
        assert_eq!(th.wait("ada", t0 + Duration::from_secs(30)), Duration::from_secs(60));
        for _ in 0..20 {
            th.fail("ada", t0 + Duration::from_secs(30));
        }
        assert_eq!(th.wait("ada", t0 + Duration::from_secs(30)), LONGEST_WAIT);
        th.succeed("ada");
        assert_eq!(th.wait("ada", t0 + Duration::from_secs(30)), Duration::ZERO);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
        assert_ne!(random_token(), random_token());
    }
}
