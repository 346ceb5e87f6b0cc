//! Readers waiting for records (`EventLog::wait_for`, `wait_any`), and waking only those
//! an append concerns.
//!
//! A node has a dozen threads waiting on the log at any time (each coordinator worker, the
//! projector, the connectors' dispatchers, the control plane's watches and audit). Waking
//! all of them on every append made each one check its partitions and sleep again: about
//! 150 context switches per order end to end. Each waiter now registers the partitions it
//! waits on, and publishing records wakes the waiters of the partitions they went to.
//!
//! No wake-up is lost: a waiter checks the partitions' ends while holding the registry's
//! mutex and stays registered until it returns, and records are published (the index
//! updated) before the registry is locked to wake their waiters.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A (topic id, partition) pair.
pub(super) type Key = (u32, i32);

/// The threads waiting for records, each with the partitions it waits on.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    waiting: Vec<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    on: Vec<Key>,
    wake: Arc<Condvar>,
}

impl Waiters {
    /// Waits until `ready` says something the caller waits for is there, or `timeout`
    /// has passed; `ready` is asked first, then after each wake-up by an append to one of
    /// `on`. Returns what `ready` last returned.
    pub(super) fn wait<T>(
        &self,
        on: &[Key],
        timeout: Duration,
        mut ready: impl FnMut() -> crate::Result<Option<T>>,
    ) -> crate::Result<Option<T>> {
        let deadline = Instant::now().checked_add(timeout);
        let wake = Arc::new(Condvar::new());
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.waiting.push(Waiter { id, on: on.to_vec(), wake: wake.clone() });
        let outcome = loop {
            // Checked while holding the registry: records published after this check
            // wake us only once we wait, so no wake-up is lost.
            match ready() {
                Ok(None) => {}
                done => break done,
            }
            let remaining = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if remaining.is_zero() {
                break Ok(None);
            }
            registry = wake.wait_timeout(registry, remaining).unwrap_or_else(PoisonError::into_inner).0;
        };
        registry.waiting.retain(|w| w.id != id);
        outcome
    }

    /// Wakes the waiters of any of `published`, after their records were published.
    pub(super) fn wake(&self, published: &[Key]) {
        if published.is_empty() {
            return;
        }
        let registry = self.lock();
        for w in &registry.waiting {
            if w.on.iter().any(|k| published.contains(k)) {
                w.wake.notify_one();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adds the partitions of `placed` (topic id, partition, …) that `keys` lacks.
pub(super) fn add_partitions(keys: &mut Vec<Key>, placed: &[(u32, i32, usize, u32)]) {
    for &(topic, partition, _, _) in placed {
        if !keys.contains(&(topic, partition)) {
            keys.push((topic, partition));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn only_the_waiters_of_a_published_partition_wake() {
        let waiters = Arc::new(Waiters::default());
        let checks = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let ready = Arc::new([std::sync::atomic::AtomicBool::new(false), std::sync::atomic::AtomicBool::new(false)]);
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (waiters, checks, ready) = (waiters.clone(), checks.clone(), ready.clone());
                std::thread::spawn(move || {
                    waiters.wait(&[(7, i as i32)], Duration::from_secs(10), || {
                        checks[i].fetch_add(1, Ordering::SeqCst);
                        Ok(ready[i].load(Ordering::SeqCst).then_some(()))
                    })
                })
            })
            .collect();
        while waiters.lock().waiting.len() < 2 {
            std::thread::yield_now();
        }
        // Partition 0 is written ten times; partition 1 never.
        for _ in 0..10 {
            waiters.wake(&[(7, 0)]);
            std::thread::sleep(Duration::from_millis(2));
        }
        ready[0].store(true, Ordering::SeqCst);
        waiters.wake(&[(7, 0)]);
        let mut threads = threads.into_iter();
        assert_eq!(threads.next().unwrap().join().unwrap().unwrap(), Some(()));
        assert_eq!(checks[1].load(Ordering::SeqCst), 1, "the waiter of partition 1 was never woken");
        assert!(checks[0].load(Ordering::SeqCst) >= 2);
        ready[1].store(true, Ordering::SeqCst);
        waiters.wake(&[(7, 1)]);
        assert_eq!(threads.next().unwrap().join().unwrap().unwrap(), Some(()));
    }

    #[test]
    fn a_waiter_returns_at_its_timeout_and_leaves_the_registry() {
        let waiters = Waiters::default();
        let started = Instant::now();
        let got = waiters.wait(&[(1, 0)], Duration::from_millis(30), || Ok(None::<()>)).unwrap();
        assert_eq!(got, None);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(waiters.lock().waiting.is_empty());
    }
}
