//! `WatchOrder`'s waiter: one thread serves every open watch. It wakes once per batch the
//! projections apply ([`ProjectionStore::wait_for_apply`], not polling), reads each
//! watched order and sends the watches whose order changed.
//!
//! One shared waiter rather than a blocking thread per watch: with a thread each, every
//! applied batch woke every watcher, so the cost grew with orders in flight × batches/s
//! and an overloaded node spent most of its CPU waking watchers (`waybill load` at an
//! open-loop rate above capacity: 1,500 orders in flight, the control plane's threads
//! 41% of the node's CPU samples, throughput down to a third). Here a batch costs one
//! wake-up and one read per watched order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use waybill_projection::{OrderStatus, OrderView, ProjectionStore};

use crate::error::{Error, Result};
use crate::proto;

/// Where a watch's updates go.
pub(crate) type Updates = mpsc::Sender<Result<proto::OrderUpdate, tonic::Status>>;

/// An order's status is an end state for watchers: fulfilment ended (completed,
/// backordered, cancelled), or on hold until someone fixes its master data.
pub fn is_end_state(status: OrderStatus) -> bool {
    status.is_final() || status == OrderStatus::OnHold
}

/// The update to send for `o`, given the last one sent: `None` when neither its status nor
/// its open exceptions changed.
fn order_update(last: Option<&proto::OrderUpdate>, o: &OrderView) -> Option<proto::OrderUpdate> {
    let status = o.status.as_str();
    if last.is_some_and(|u| u.status == status && u.open_exceptions == o.open_exceptions) {
        return None;
    }
    Some(proto::OrderUpdate {
        order_ref: o.order_ref.clone(),
        status: status.to_string(),
        end: is_end_state(o.status),
        last_event_at_us: o.last_event_at.0,
        open_exceptions: o.open_exceptions,
    })
}

/// One open watch.
struct Watch {
    order_ref: String,
    tx: Updates,
    last: Option<proto::OrderUpdate>,
    deadline: Instant,
    timeout: Duration,
}

impl Watch {
    /// Reads the order and sends what changed; `false` once the watch is over (end state
    /// sent, caller gone, deadline passed).
    fn step(&mut self, projections: &ProjectionStore, now: Instant) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        match projections.order(&self.order_ref) {
            Ok(Some(o)) => {
                if let Some(update) = order_update(self.last.as_ref(), &o) {
                    match self.tx.try_send(Ok(update.clone())) {
                        Ok(()) if update.end => return false,
                        Ok(()) => self.last = Some(update),
                        // A slow reader: the same update is tried again after the next batch.
                        Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = self.tx.try_send(Err(Error::from(e).into()));
                return false;
            }
        }
        if now >= self.deadline {
            let status = self.last.as_ref().map_or("not known yet", |u| u.status.as_str());
            let e = Error::Pending(format!(
                "order {} is {status} after {} ms and has not reached an end state; watch again with a longer \
                 timeout_ms, or look for its open exceptions (ListExceptions)",
                self.order_ref,
                self.timeout.as_millis()
            ));
            let _ = self.tx.try_send(Err(e.into()));
            return false;
        }
        true
    }
}

/// Every open watch, and the thread that serves them (started with the first watch).
#[derive(Default)]
pub(crate) struct Watchers {
    /// Watches registered since the thread last looked.
    new: Arc<Mutex<Vec<Watch>>>,
    started: AtomicBool,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchers").field("started", &self.started).finish_non_exhaustive()
    }
}

impl Watchers {
    /// Starts following `order_ref` for `timeout`: sends its current status (when known),
    /// then hands the watch to the waiter. Blocking (reads the projections).
    pub(crate) fn watch(
        &self,
        projections: &Arc<ProjectionStore>,
        order_ref: String,
        timeout: Duration,
        tx: Updates,
    ) -> Result<()> {
        self.start(projections)?;
        let mut w = Watch { order_ref, tx, last: None, deadline: Instant::now() + timeout, timeout };
        loop {
            // Read, then hand over only if no batch was applied in between: the waiter
            // reads every watch it has after each batch, so nothing is missed.
            let seen = projections.applied();
            if !w.step(projections, Instant::now()) {
                return Ok(());
            }
            let mut new = self.new.lock().unwrap_or_else(|p| p.into_inner());
            if projections.applied() == seen {
                new.push(w);
                return Ok(());
            }
        }
    }

    fn start(&self, projections: &Arc<ProjectionStore>) -> Result<()> {
        if self.started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (new, projections) = (self.new.clone(), projections.clone());
        std::thread::Builder::new()
            .name("control-watch".into())
            .spawn(move || serve(&new, &projections))
            .map(|_| ())
            .map_err(|e| Error::Internal(format!("cannot start the WatchOrder thread: {e}")))
    }
}

/// The waiter: after each applied batch, reads every watched order. Wakes at least once a
/// second for deadlines and callers that went away. Runs as long as the process.
fn serve(new: &Mutex<Vec<Watch>>, projections: &ProjectionStore) {
    let mut active: Vec<Watch> = Vec::new();
    loop {
        let seen = projections.applied();
        active.append(&mut new.lock().unwrap_or_else(|p| p.into_inner()));
        let now = Instant::now();
        active.retain_mut(|w| w.step(projections, now));
        let next_deadline = active.iter().map(|w| w.deadline).min().unwrap_or(now + Duration::from_secs(1));
        let wait = next_deadline.saturating_duration_since(now).clamp(Duration::from_millis(1), Duration::from_secs(1));
        projections.wait_for_apply(seen, wait);
    }
}
