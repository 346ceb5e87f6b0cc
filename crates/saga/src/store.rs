//! The saga state store (sled): every correlation key's flow ([`AnyFlow`]) plus, per partition, the
//! journal offset the stored states cover and the input positions named by the last
//! checkpoint folded into them. An index of the unfinished flows (`u/…`) lets a restore
//! load the working set without reading the finished flows, so it costs what is live,
//! not what is history; an index of the finished ones by when they finished (`r/…`)
//! lets the coordinator find those whose retention has passed without reading the rest.
//!
//! | key | value |
//! |---|---|
//! | `f/<partition>/<key>` | when the flow finished (8 bytes, big-endian micros; `i64::MIN` while it works), then its state ([`AnyFlow::encode`]) |
//! | `u/<partition>/<key>` | empty: the flow is working |
//! | `r/<partition>/<finished at, 8 bytes ordered>/<key>` | empty: the flow finished then (a save that changes when, or whether, the flow finished removes the old entry) |
//! | `m/<partition>` | the partition's mark |
//!
//! The store is a cache of the journal, never the truth: the coordinator writes it some
//! time after the journal appends it covers (every few hundred milliseconds under load,
//! and before it idles), without fsync, and a store that is behind — or missing — catches
//! up by folding the journal from the offset it covers (DESIGN.md, invariants 1 and 2).

use std::path::{Path, PathBuf};

use waybill_domain::Timestamp;
use waybill_domain::journal::InputPosition;

use crate::flow::Flow;
use crate::registry::AnyFlow;
use crate::{Error, Result};

/// What the store knows of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionMark {
    /// Next journal offset not yet folded into the stored states.
    pub journal_next: i64,
    /// Input positions of the last checkpoint folded in.
    pub positions: Vec<InputPosition>,
}

/// The sled-backed state store.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
    tree: sled::Tree,
}

fn flow_key(partition: i32, key: &str) -> Vec<u8> {
    format!("f/{partition:05}/{key}").into_bytes()
}

fn unfinished_prefix(partition: i32) -> String {
    format!("u/{partition:05}/")
}

fn unfinished_key(partition: i32, key: &str) -> Vec<u8> {
    format!("u/{partition:05}/{key}").into_bytes()
}

fn finished_prefix(partition: i32) -> String {
    format!("r/{partition:05}/")
}

/// `i64` as 8 bytes whose byte order is numeric order.
fn ordered(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn finished_key(partition: i32, at: Timestamp, key: &str) -> Vec<u8> {
    let mut k = finished_prefix(partition).into_bytes();
    k.extend_from_slice(&ordered(at.0));
    k.extend_from_slice(key.as_bytes());
    k
}

/// What `f/` holds: when the flow finished, then its state.
fn stored_value(f: &Encoded) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + f.bytes.len());
    v.extend_from_slice(&f.finished_at.map_or(i64::MIN, |t| t.0).to_be_bytes());
    v.extend_from_slice(&f.bytes);
    v
}

/// Splits the stored value of `key` into when the flow finished and its state.
fn split_value<'v>(key: &str, v: &'v [u8]) -> Result<(Option<Timestamp>, &'v [u8])> {
    let Some((head, state)) = v.split_first_chunk::<8>() else {
        return Err(Error::State {
            key: key.to_string(),
            reason: format!("stored value of {} bytes is shorter than its 8-byte header", v.len()),
        });
    };
    let at = i64::from_be_bytes(*head);
    Ok(((at != i64::MIN).then_some(Timestamp(at)), state))
}

fn mark_key(partition: i32) -> Vec<u8> {
    format!("m/{partition:05}").into_bytes()
}

/// Version of the stored state's shape. A partition stored with another one is dropped
/// and rebuilt from the journal (it is a cache), so a state never lacks what the journal
/// would have given it (2: each saga's `last_at`, from which the watchdog counts; 3: the
/// commands each saga issued, which a retry of a refused command rebuilds, and the
/// target health saga; 4: the index of unfinished flows; 5: when each flow finished,
/// and the index of finished flows by it, for retirement).
const STATE_LAYOUT: u32 = 5;

/// One flow's state as stored: its key, its encoding ([`AnyFlow::encode`]) and whether it
/// has finished. The coordinator encodes a changed flow once and hands the same bytes to
/// the store and to the snapshot topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Correlation key.
    pub key: String,
    /// The flow's state.
    pub bytes: Vec<u8>,
    /// Every saga of the flow has finished (it is not part of the working set).
    pub finished: bool,
    /// When a finished flow last changed ([`AnyFlow::finished_at`]): its retention counts
    /// from here. `None` while it works.
    pub finished_at: Option<Timestamp>,
    /// The flow was retired: the store forgets the key (and the snapshot writes a
    /// tombstone); `bytes` is empty.
    pub retired: bool,
}

impl Encoded {
    /// Encodes `flow`.
    pub fn of(flow: &AnyFlow) -> Result<Self> {
        let bytes = flow
            .encode()
            .map_err(|e| Error::Encode { what: format!("state of {}", flow.key()), reason: e.to_string() })?;
        let finished_at = flow.finished_at();
        Ok(Encoded { key: flow.key().to_string(), bytes, finished: flow.is_finished(), finished_at, retired: false })
    }

    /// A retired key: the store forgets it (its entry in the finished index is found from
    /// the state it held).
    pub fn retired(key: &str) -> Self {
        Encoded { key: key.to_string(), bytes: Vec::new(), finished: true, finished_at: None, retired: true }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MarkRecord {
    journal_next: i64,
    positions: Vec<InputPosition>,
    /// [`STATE_LAYOUT`] when written; absent (0) before it was kept.
    #[serde(default)]
    layout: u32,
}

impl StateStore {
    /// Opens (or creates) the store in `dir`, waiting (up to
    /// [`waybill_log::local::LOCK_WAIT`]) for a lock a store this process just closed
    /// still holds.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = waybill_log::local::open_sled(&sled::Config::new().path(dir).mode(sled::Mode::HighThroughput))
            .map_err(|source| Error::Store { path: dir.to_path_buf(), source })?;
        Self::with_db(&db, dir)
    }

    /// Uses the tree `saga-state` of an open sled database.
    pub fn with_db(db: &sled::Db, path: &Path) -> Result<Self> {
        let tree = db.open_tree("saga-state").map_err(|source| Error::Store { path: path.to_path_buf(), source })?;
        Ok(StateStore { path: path.to_path_buf(), tree })
    }

    fn err(&self, source: sled::Error) -> Error {
        Error::Store { path: self.path.clone(), source }
    }

    /// The partition's mark (zero when the store has never seen it). A partition stored
    /// with another state layout is dropped first, so the caller rebuilds it from the
    /// journal.
    pub fn mark(&self, partition: i32) -> Result<PartitionMark> {
        match self.tree.get(mark_key(partition)).map_err(|e| self.err(e))? {
            None => Ok(PartitionMark::default()),
            Some(v) => {
                let m: MarkRecord = serde_json::from_slice(&v)
                    .map_err(|e| Error::State { key: format!("partition {partition} mark"), reason: e.to_string() })?;
                if m.layout != STATE_LAYOUT {
                    tracing::info!(
                        partition,
                        stored = m.layout,
                        current = STATE_LAYOUT,
                        "saga state stored with another layout; rebuilding it from the journal"
                    );
                    self.drop_partition(partition)?;
                    return Ok(PartitionMark::default());
                }
                Ok(PartitionMark { journal_next: m.journal_next, positions: m.positions })
            }
        }
    }

    fn state_of<'v>(key: &str, v: &'v [u8]) -> Result<&'v [u8]> {
        split_value(key, v).map(|(_, state)| state)
    }

    /// Loads one key's flow, as the flow `F` (which must be the flow that owns the key).
    pub fn load<F: Flow>(&self, partition: i32, key: &str) -> Result<Option<F>> {
        match self.tree.get(flow_key(partition, key)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(Self::state_of(key, &v)?)
                .map(Some)
                .map_err(|e| Error::State { key: key.to_string(), reason: e.to_string() }),
        }
    }

    /// Loads one key's flow, of whichever registered flow owns the key.
    pub fn load_any(&self, partition: i32, key: &str) -> Result<Option<AnyFlow>> {
        match self.tree.get(flow_key(partition, key)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => AnyFlow::decode(key, Self::state_of(key, &v)?)
                .map(Some)
                .map_err(|e| Error::State { key: key.to_string(), reason: e.to_string() }),
        }
    }

    /// The index of finished flows of the partition up to `until`, by (when, key): the
    /// candidates for retirement. It describes the stored states exactly: a save that
    /// changes when, or whether, a flow finished moves or removes its entry.
    pub fn finished_by(
        &self,
        partition: i32,
        until: Timestamp,
    ) -> impl Iterator<Item = Result<(Timestamp, String)>> + '_ {
        let from = finished_prefix(partition).into_bytes();
        let skip = from.len();
        let mut to = from.clone();
        to.extend_from_slice(&ordered(until.0.saturating_add(1)));
        self.tree.range(from..to).map(move |kv| {
            let (k, _) = kv.map_err(|e| self.err(e))?;
            let (at, key) = k[skip..].split_at(8);
            let at = (u64::from_be_bytes(at.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
            Ok((Timestamp(at), String::from_utf8_lossy(key).into_owned()))
        })
    }

    /// Every stored flow of a partition that has not finished (the working set), read
    /// through the index of unfinished flows: finished ones are not read.
    pub fn unfinished(&self, partition: i32) -> Result<Vec<AnyFlow>> {
        let prefix = unfinished_prefix(partition);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, _) = kv.map_err(|e| self.err(e))?;
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(flow) = self.load_any(partition, &key)? {
                out.push(flow);
            }
        }
        Ok(out)
    }

    /// Every stored flow of a partition as stored (unfinished and finished), for a full
    /// snapshot generation. The unfinished keys are read first (the working set); the
    /// flows are then streamed.
    pub fn scan_encoded(&self, partition: i32) -> Result<impl Iterator<Item = Result<Encoded>> + '_> {
        // `f/<partition>/<key>` and `u/<partition>/<key>` differ in their first two bytes
        // only: a flow is unfinished when its key past them is in the index.
        let live: std::collections::HashSet<Vec<u8>> = self
            .tree
            .scan_prefix(unfinished_prefix(partition).as_bytes())
            .keys()
            .map(|k| k.map(|k| k[2..].to_vec()).map_err(|e| self.err(e)))
            .collect::<Result<_>>()?;
        let prefix_len = format!("f/{partition:05}/").len();
        Ok(self.tree.scan_prefix(format!("f/{partition:05}/").as_bytes()).map(move |kv| {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let key = String::from_utf8_lossy(&k[prefix_len..]).into_owned();
            let (finished_at, state) = split_value(&key, &v)?;
            Ok(Encoded { key, bytes: state.to_vec(), finished: !live.contains(&k[2..]), finished_at, retired: false })
        }))
    }

    /// Stores encoded flows and (when given) the partition's new mark in one atomic
    /// batch. Without a mark the partition keeps the one it had: a snapshot being loaded
    /// in chunks writes its mark last.
    pub fn save_encoded(&self, partition: i32, flows: &[Encoded], mark: Option<&PartitionMark>) -> Result<()> {
        let mut batch = sled::Batch::default();
        // When each flow written earlier in this batch finished (a snapshot chunk may hold
        // several states of a key, and its tombstone).
        let mut batched: std::collections::HashMap<&str, Option<Timestamp>> = std::collections::HashMap::new();
        for f in flows {
            // The key's entry in the finished index, if its state so far (stored, or
            // earlier in this batch) has one: it goes unless the new state keeps it, so
            // the index holds no stale entry (a flow reopened by a return, a tombstone
            // that does not say when its flow finished).
            let previous = match batched.get(f.key.as_str()) {
                Some(at) => *at,
                None => match self.tree.get(flow_key(partition, &f.key)).map_err(|e| self.err(e))? {
                    Some(v) => split_value(&f.key, &v)?.0,
                    None => None,
                },
            };
            if let Some(at) = previous
                && (f.retired || f.finished_at != Some(at))
            {
                batch.remove(finished_key(partition, at, &f.key));
            }
            batched.insert(&f.key, if f.retired { None } else { f.finished_at });
            if f.retired {
                batch.remove(flow_key(partition, &f.key));
                batch.remove(unfinished_key(partition, &f.key));
                continue;
            }
            batch.insert(flow_key(partition, &f.key), stored_value(f));
            if f.finished {
                batch.remove(unfinished_key(partition, &f.key));
            } else {
                batch.insert(unfinished_key(partition, &f.key), &[]);
            }
            if let Some(at) = f.finished_at {
                batch.insert(finished_key(partition, at, &f.key), &[]);
            }
        }
        if let Some(mark) = mark {
            let m =
                MarkRecord { journal_next: mark.journal_next, positions: mark.positions.clone(), layout: STATE_LAYOUT };
            let v = serde_json::to_vec(&m)
                .map_err(|e| Error::Encode { what: "partition mark".into(), reason: e.to_string() })?;
            batch.insert(mark_key(partition), v);
        }
        self.tree.apply_batch(batch).map_err(|e| self.err(e))
    }

    /// Drops everything stored for a partition (on revoke, or before a rebuild).
    pub fn drop_partition(&self, partition: i32) -> Result<()> {
        let mut batch = sled::Batch::default();
        for prefix in [format!("f/{partition:05}/"), unfinished_prefix(partition), finished_prefix(partition)] {
            for k in self.tree.scan_prefix(prefix.as_bytes()).keys() {
                batch.remove(k.map_err(|e| self.err(e))?);
            }
        }
        batch.remove(mark_key(partition));
        self.tree.apply_batch(batch).map_err(|e| self.err(e))
    }

    /// Flushes to disk (at shutdown; not needed for correctness).
    pub fn flush(&self) -> Result<()> {
        self.tree.flush().map(|_| ()).map_err(|e| self.err(e))
    }
}
