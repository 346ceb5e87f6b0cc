//! The connector runtime: reads `waybill.commands.<system>`, delivers through the
//! adapter, writes outcomes back, and moves the command position only with them.
//!
//! Threads: one *dispatcher* per connector reads the owned partitions ahead (at most
//! `readahead` undelivered commands per partition), queues the commands ([`Queue`]),
//! collects finished deliveries and appends their outcome events together with the
//! command positions — one [`AppendBatch`], atomic on the embedded log. `concurrency`
//! *workers* take the best ready command once the target admits a call (breaker, then
//! token bucket), so a critical command that arrives while bulk ones wait for tokens goes
//! first.
//!
//! A command's position is the lowest offset whose outcome is not durable yet: after a
//! crash everything from there is delivered again, and the adapters' idempotency at the
//! target makes the repeat harmless (the answer events repeat with the same ids, which the
//! sagas drop).
//!
//! Failures: a refusal (the target understood and said no) or a transient error that used
//! up `max_attempts` becomes an outcome event — the adapter's business event for it
//! ([`Adapter::refusal`]) or `CommandFailed` — and the saga raises the exception. A target
//! that is unavailable is retried without limit: the commands wait in their topic while
//! the breaker is open, and an outage longer than `unavailable_after` is reported once as
//! `TargetUnavailable` (and `TargetRecovered` when it ends).

mod dispatch;
mod worker;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use waybill_domain::{Command, InboundEvent, System};
use waybill_log::EventLog;
use waybill_telemetry::TraceHeaders;

use crate::Adapter;
use crate::backoff::Backoff;
use crate::queue::Queue;
use crate::target::{Limits, Target};
use dispatch::Dispatcher;
use worker::Worker;

/// Settings of one connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Its name (`[connectors.<name>]`), the metrics' `target` label.
    pub name: String,
    /// The system it delivers for: it reads `waybill.commands.<system>` and answers on
    /// `waybill.inbound.<system>`.
    pub system: System,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Throttle and breaker.
    pub limits: Limits,
    /// Attempts a command gets against transient errors before it is reported failed.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Commands (by name) that go in the bulk lane; every other command is critical.
    pub bulk: Vec<String>,
    /// Undelivered commands read ahead per partition.
    pub readahead: usize,
}

impl ConnectorConfig {
    /// The consumer group holding this connector's command positions.
    pub fn group(&self) -> String {
        format!("connector-{}", self.name)
    }
}

/// A connector, ready to start.
#[derive(Debug)]
pub struct Connector {
    cfg: ConnectorConfig,
    log: Arc<dyn EventLog>,
    adapter: Arc<dyn Adapter>,
    target: Arc<Target>,
}

/// A queued command.
#[derive(Debug)]
pub(crate) struct Item {
    command: Command,
    encoded: Vec<u8>,
    trace: Option<TraceHeaders>,
}

/// A finished delivery, for the dispatcher.
#[derive(Debug)]
pub(crate) struct Done {
    partition: i32,
    offset: i64,
    events: Vec<InboundEvent>,
    trace: Option<TraceHeaders>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    queue: Mutex<Queue<Item>>,
    ready: Condvar,
    stop: AtomicBool,
    /// Partitions this node owns, as the group says.
    owned: Mutex<BTreeSet<i32>>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<Item>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running connector.
#[derive(Debug)]
pub struct Running {
    name: String,
    shared: Arc<Shared>,
    target: Arc<Target>,
    threads: Vec<JoinHandle<()>>,
}

impl Connector {
    /// A connector delivering `cfg.system`'s commands from `log` through `adapter`.
    pub fn new(cfg: ConnectorConfig, log: Arc<dyn EventLog>, adapter: Arc<dyn Adapter>) -> Self {
        let target = Arc::new(Target::new(&cfg.name, cfg.limits.clone()));
        Connector { cfg, log, adapter, target }
    }

    /// The target gate, shared with a poller of the same system.
    pub fn target(&self) -> Arc<Target> {
        self.target.clone()
    }

    /// Starts the dispatcher and the workers; no partition is owned until [`Running::assign`].
    pub fn start(self) -> std::io::Result<Running> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
            owned: Mutex::new(BTreeSet::new()),
        });
        let (tx, rx) = mpsc::channel::<Done>();
        let mut threads = Vec::new();
        for w in 0..self.cfg.concurrency.max(1) {
            let worker = Worker::new(
                self.cfg.clone(),
                self.adapter.clone(),
                self.target.clone(),
                shared.clone(),
                tx.clone(),
                fastrand::Rng::with_seed(w as u64 + 1),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("connector-{}-{w}", self.cfg.name))
                    .spawn(move || worker.run())?,
            );
        }
        drop(tx);
        let dispatcher = Dispatcher::new(self.cfg.clone(), self.log.clone(), self.target.clone(), shared.clone(), rx);
        threads.push(
            std::thread::Builder::new().name(format!("connector-{}", self.cfg.name)).spawn(move || dispatcher.run())?,
        );
        Ok(Running { name: self.cfg.name, shared, target: self.target, threads })
    }
}

impl Running {
    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its target gate and figures.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// This node now owns `partitions` (added to what it owns).
    pub fn assign(&self, partitions: &[i32]) {
        self.shared.owned.lock().unwrap_or_else(|p| p.into_inner()).extend(partitions.iter().copied());
    }

    /// Whether this node owns `partition` of the command topic.
    pub fn owns(&self, partition: i32) -> bool {
        self.shared.owned.lock().unwrap_or_else(|p| p.into_inner()).contains(&partition)
    }

    /// This node no longer owns `partitions`: their queued commands are dropped (the new
    /// owner delivers them from the stored position).
    pub fn revoke(&self, partitions: &[i32]) {
        let mut owned = self.shared.owned.lock().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            owned.remove(p);
        }
    }

    /// Stops and waits for in-flight calls to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}
