//! Consumer-group membership: which partitions of a topic this process owns.
//!
//! [`KafkaLog::join_group`](super::KafkaLog::join_group) makes the process a member of a
//! Kafka consumer group subscribed to one topic (for Waybill: the journal, co-partitioned
//! with every input), with the `cooperative-sticky` assignor. The group decides which
//! member owns which partition; a [`PartitionOwner`] hears about it:
//! - `assigned` after partitions were added to this member (start working on them);
//! - `revoked` before partitions are taken away; it returns only when no more output for
//!   them will be written (in-flight batches finished), so the next owner starts from a
//!   journal that no longer moves under it. `lost` says the session had already expired:
//!   another member may own them by now.
//!
//! The member never fetches records: its partitions are paused as soon as they are
//! assigned. Its only jobs are the group protocol (join, heartbeats, rebalances) and
//! committing the group's positions, which the broker accepts only from a member with
//! the current generation: [`KafkaLog`](super::KafkaLog) routes commits for the group
//! through it while it is joined, so a member that was fenced out of the group cannot
//! move the group's positions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::client::{Ctx, lock};

/// Hears which partitions this member gains and loses. Called on the member's thread,
/// one call at a time.
pub trait PartitionOwner: Send + Sync + 'static {
    /// `partitions` now belong to this member: start working on them.
    fn assigned(&self, partitions: &[i32]);
    /// `partitions` are being taken away: stop working on them and return only when
    /// nothing more will be written for them. `lost` means the session expired first.
    fn revoked(&self, partitions: &[i32], lost: bool);
}

/// The member's client context: the log's usual one plus the rebalance callbacks.
pub(super) struct MemberCtx {
    inner: Ctx,
    topic: String,
    owner: Arc<dyn PartitionOwner>,
    /// Partitions currently assigned to this member.
    owned: Arc<Mutex<Vec<i32>>>,
    /// Rebalances seen, for logs and tests.
    rebalances: Arc<Mutex<u64>>,
}

impl MemberCtx {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        let mut ps: Vec<i32> =
            tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect();
        ps.sort_unstable();
        ps
    }
}

impl ClientContext for MemberCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ConsumerContext for MemberCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let ps = self.partitions(tpl);
                if ps.is_empty() {
                    return;
                }
                let lost = consumer.assignment_lost();
                tracing::info!(topic = %self.topic, partitions = ?ps, lost, "consumer group revokes partitions");
                self.owner.revoked(&ps, lost);
                lock(&self.owned).retain(|p| !ps.contains(p));
                *lock(&self.rebalances) += 1;
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "consumer group rebalance failed; librdkafka retries");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let ps = self.partitions(tpl);
            if ps.is_empty() {
                return;
            }
            // The member only holds the partitions; the workers read them themselves.
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(topic = %self.topic, error = %e, "cannot pause the group member's partitions");
            }
            tracing::info!(topic = %self.topic, partitions = ?ps, "consumer group assigns partitions");
            lock(&self.owned).extend(ps.iter().copied());
            *lock(&self.rebalances) += 1;
            self.owner.assigned(&ps);
        }
    }
}

/// The group member's consumer, shared with the log for committing the group's positions.
pub(super) type MemberConsumer = BaseConsumer<MemberCtx>;

/// Membership of one consumer group; leave it with [`GroupMember::leave`] (dropping it
/// leaves too).
pub struct GroupMember {
    group: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    owned: Arc<Mutex<Vec<i32>>>,
    rebalances: Arc<Mutex<u64>>,
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMember").field("group", &self.group).field("owned", &self.owned()).finish()
    }
}

impl GroupMember {
    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The partitions this member owns now, ascending.
    pub fn owned(&self) -> Vec<i32> {
        let mut v = lock(&self.owned).clone();
        v.sort_unstable();
        v
    }

    /// How many assignments and revocations this member has been through.
    pub fn rebalances(&self) -> u64 {
        *lock(&self.rebalances)
    }

    /// Leaves the group: every owned partition is revoked (the owner hears it) and the
    /// rest of the group takes them over.
    pub fn leave(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Everything [`spawn`] needs.
pub(super) struct Join {
    pub group: String,
    pub topic: String,
    pub consumer: Arc<MemberConsumer>,
    pub shared: Shared,
    /// Called when the member has left, to stop routing commits through it.
    pub on_leave: Box<dyn FnOnce() + Send>,
}

/// What the member's context and its handle both see.
#[derive(Clone, Default)]
pub(super) struct Shared {
    pub owned: Arc<Mutex<Vec<i32>>>,
    pub rebalances: Arc<Mutex<u64>>,
}

/// The member context for `topic`.
pub(super) fn context(inner: Ctx, topic: &str, owner: Arc<dyn PartitionOwner>) -> (MemberCtx, Shared) {
    let shared = Shared::default();
    let ctx = MemberCtx {
        inner,
        topic: topic.to_owned(),
        owner,
        owned: shared.owned.clone(),
        rebalances: shared.rebalances.clone(),
    };
    (ctx, shared)
}

/// How long leaving waits for the final revocation to be served.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the member's poll loop on its own thread: the group protocol and the rebalance
/// callbacks run inside `poll`.
pub(super) fn spawn(join: Join) -> std::io::Result<GroupMember> {
    let stop = Arc::new(AtomicBool::new(false));
    let Join { group, topic, consumer, shared, on_leave } = join;
    let thread = {
        let (stop, group, topic) = (stop.clone(), group.clone(), topic.clone());
        thread::Builder::new().name(format!("group-{group}")).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    None | Some(Ok(_)) | Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        tracing::warn!(group = %group, topic = %topic, error = %e, "consumer group member error");
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            // Leave cleanly: the revocation runs in a later poll.
            consumer.unsubscribe();
            let deadline = Instant::now() + LEAVE_TIMEOUT;
            while consumer.assignment().map(|a| a.count() > 0).unwrap_or(false) && Instant::now() < deadline {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            on_leave();
            tracing::info!(group = %group, topic = %topic, "left the consumer group");
        })?
    };
    Ok(GroupMember { group, stop, thread: Some(thread), owned: shared.owned, rebalances: shared.rebalances })
}
