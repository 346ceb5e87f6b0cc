//! The sled-backed store: applies inputs atomically with their checkpoints, and answers
//! queries.

use std::path::Path;
use std::sync::Mutex;

use waybill_domain::journal::InputPosition;
use waybill_domain::{ExceptionCategory, Timestamp};

use crate::apply::{Codec, OrderRecord, build_batch};
use crate::error::{Error, Result};
use crate::input::{ApplyStats, Positioned};
use crate::keys;
use crate::view::{
    ExceptionView, LineageEntry, OrderStatus, OrderView, PostingView, SkuMovements, StockCheck, StockPosition,
    TimelineEntry,
};

/// Removals per batch while clearing.
const CLEAR_CHUNK: usize = 10_000;

/// The projections in one sled tree. Cheap to share (`Arc`): queries take `&self`, and
/// writers are serialized internally.
#[derive(Debug)]
pub struct ProjectionStore {
    tree: sled::Tree,
    /// Held while building and writing a batch, so that two writers never interleave
    /// their read-modify-write cycles. The flag says the tree is known to hold no
    /// projection data (just cleared or created, nothing applied since), so the next
    /// batch need not look up any key: every one of them would miss.
    write: Mutex<bool>,
    /// Batches applied so far, and a signal on each: readers waiting for their own write
    /// to show (read-your-writes) wake the moment it does.
    applied: (Mutex<u64>, std::sync::Condvar),
}

impl ProjectionStore {
    /// The number of batches applied so far; pass it to [`Self::wait_for_apply`].
    pub fn applied(&self) -> u64 {
        *self.applied.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a batch after `seen` is applied, or `timeout`; returns the new count.
    pub fn wait_for_apply(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        let guard = self.applied.0.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) =
            self.applied.1.wait_timeout_while(guard, timeout, |n| *n <= seen).unwrap_or_else(|p| p.into_inner());
        *guard
    }

    /// Name of the tree inside the sled database.
    pub const TREE: &'static str = "waybill.projection";

    /// Opens (or creates) a sled database at `path` and the projection tree in it.
    ///
    /// A lock this process is still releasing (a store just closed after a rebuild) is
    /// waited for, up to [`waybill_log::local::LOCK_WAIT`]; a store another process
    /// holds is refused after that.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let db = waybill_log::local::open_sled(&sled::Config::new().path(path).cache_capacity(256 * 1024 * 1024))
            .map_err(|source| Error::Open { path: path.to_path_buf(), source })?;
        Self::open_tree(&db)
    }

    /// Opens the projection tree [`Self::TREE`] in an open sled database. Finishes an
    /// interrupted [`Self::clear`] first.
    pub fn open_tree(db: &sled::Db) -> Result<Self> {
        let tree = db.open_tree(Self::TREE).map_err(|e| Error::storage("opening the projection tree", e))?;
        let store =
            ProjectionStore { tree, write: Mutex::new(false), applied: (Mutex::new(0), std::sync::Condvar::new()) };
        if store.get_raw(keys::META_CLEARING)?.is_some() {
            tracing::warn!("finishing an interrupted clear of the projection store");
            store.clear()?;
        }
        match store.get_raw(keys::META_LAYOUT)? {
            Some(v) if v.as_ref() == keys::LAYOUT_VERSION => {}
            Some(v) => {
                return Err(Error::Layout {
                    found: String::from_utf8_lossy(&v).into_owned(),
                    expected: String::from_utf8_lossy(keys::LAYOUT_VERSION).into_owned(),
                });
            }
            None if store.tree.is_empty() => {
                store.write_layout()?;
                *store.write.lock().unwrap_or_else(|p| p.into_inner()) = true;
            }
            None => {
                return Err(Error::Layout {
                    found: "none (tree has data but no layout mark)".into(),
                    expected: String::from_utf8_lossy(keys::LAYOUT_VERSION).into_owned(),
                });
            }
        }
        Ok(store)
    }

    fn write_layout(&self) -> Result<()> {
        self.tree
            .insert(keys::META_LAYOUT, keys::LAYOUT_VERSION)
            .map_err(|e| Error::storage("writing the layout mark", e))?;
        Ok(())
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        self.tree.get(key).map_err(|e| Error::storage(format!("reading {}", keys::display(key)), e))
    }

    fn get<T: Codec>(&self, key: &[u8]) -> Result<Option<T>> {
        self.get_raw(key)?.map(|v| T::decode(key, &v)).transpose()
    }

    fn scan<T: Codec>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.tree
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(|e| Error::storage(format!("scanning {}", keys::display(prefix)), e))?;
                T::decode(&k, &v)
            })
            .collect()
    }

    /// Applies `inputs` in order and writes every resulting change, including the new
    /// checkpoints, in one atomic batch: after a crash either all of it is visible or
    /// none. Inputs of one topic partition must come in offset order; inputs below their
    /// partition's checkpoint are ignored, so handing the same records in again is safe.
    pub fn apply(&self, inputs: &[Positioned]) -> Result<ApplyStats> {
        if inputs.is_empty() {
            return Ok(ApplyStats::default());
        }
        let mut empty = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = std::mem::replace(&mut *empty, false);
        let (batch, stats) = build_batch(&self.tree, fresh, inputs)?;
        self.tree
            .apply_batch(batch)
            .map_err(|e| Error::storage(format!("writing a batch of {} inputs", inputs.len()), e))?;
        *self.applied.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.applied.1.notify_all();
        Ok(stats)
    }

    /// The next offset to apply in `topic`/`partition`, or `None` when nothing of it was
    /// applied yet.
    pub fn checkpoint(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        self.get(&keys::checkpoint(topic, partition))
    }

    /// Every checkpoint, by topic and partition; `offset` is the next offset to apply.
    pub fn checkpoints(&self) -> Result<Vec<InputPosition>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(keys::CHECKPOINT) {
            let (k, v) = kv.map_err(|e| Error::storage("scanning checkpoints", e))?;
            let (topic, partition) = keys::parse_checkpoint(&k)
                .ok_or_else(|| Error::Corrupt { key: keys::display(&k), reason: "malformed checkpoint key".into() })?;
            out.push(InputPosition { topic, partition, offset: i64::decode(&k, &v)? });
        }
        Ok(out)
    }

    /// Removes everything (views and checkpoints), so that the next catch-up rebuilds
    /// from offset 0. Not atomic, but safe to interrupt: a mark written first (together
    /// with the removal of the checkpoints) makes [`Self::open_tree`] finish the job.
    pub fn clear(&self) -> Result<()> {
        let mut empty = self.write.lock().unwrap_or_else(|p| p.into_inner());
        *empty = false;
        let mut first = sled::Batch::default();
        first.insert(keys::META_CLEARING, b"1".as_slice());
        for kv in self.tree.scan_prefix(keys::CHECKPOINT) {
            let (k, _) = kv.map_err(|e| Error::storage("scanning checkpoints to clear", e))?;
            first.remove(k);
        }
        self.tree.apply_batch(first).map_err(|e| Error::storage("marking the store as clearing", e))?;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in self.tree.iter().keys() {
                let k = k.map_err(|e| Error::storage("listing keys to clear", e))?;
                if k.as_ref() == keys::META_CLEARING {
                    continue;
                }
                batch.remove(k);
                n += 1;
                if n == CLEAR_CHUNK {
                    break;
                }
            }
            if n == 0 {
                break;
            }
            self.tree.apply_batch(batch).map_err(|e| Error::storage("clearing the projection store", e))?;
        }
        let mut last = sled::Batch::default();
        last.remove(keys::META_CLEARING);
        last.insert(keys::META_LAYOUT, keys::LAYOUT_VERSION);
        self.tree.apply_batch(last).map_err(|e| Error::storage("finishing the clear", e))?;
        *empty = true;
        Ok(())
    }

    /// Makes everything applied so far durable (sled also flushes in the background).
    pub fn flush(&self) -> Result<()> {
        self.tree.flush().map_err(|e| Error::storage("flushing", e))?;
        Ok(())
    }

    /// One order.
    pub fn order(&self, order_ref: &str) -> Result<Option<OrderView>> {
        Ok(self.get::<OrderRecord>(&keys::order(order_ref))?.map(|r| r.view))
    }

    /// Orders by reference, optionally only those in `status`, at most `limit` (a target's
    /// health record, keyed `target:<system>`, and a purchase order's, keyed `po:<name>`,
    /// are not listed).
    pub fn orders(&self, status: Option<OrderStatus>, limit: usize) -> Result<Vec<OrderView>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(keys::ORDER) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(|e| Error::storage("scanning orders", e))?;
            let o = OrderRecord::decode(&k, &v)?.view;
            // A target's health record (`target:odoo`) or a purchase order's is no order.
            let order = waybill_domain::event::is_order_key(&o.order_ref);
            if order && status.is_none_or(|s| s == o.status) {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Every purchase order's record (keyed `po:<name>`) with its timeline, by name: the
    /// postings, documents, exceptions and journal of procure-to-receive.
    pub fn purchase_orders(&self) -> Result<Vec<(OrderView, Vec<TimelineEntry>)>> {
        self.records_keyed(waybill_domain::purchase::KEY_PREFIX)
    }

    /// Every bank statement's record (keyed `stmt:<statement>`) with its timeline.
    pub fn statements(&self) -> Result<Vec<(OrderView, Vec<TimelineEntry>)>> {
        self.records_keyed(waybill_domain::cash::KEY_PREFIX)
    }

    fn records_keyed(&self, prefix: &str) -> Result<Vec<(OrderView, Vec<TimelineEntry>)>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(keys::order(prefix)) {
            let (k, v) = kv.map_err(|e| Error::storage("scanning records by key", e))?;
            let r = OrderRecord::decode(&k, &v)?;
            out.push((r.view, r.timeline));
        }
        Ok(out)
    }

    /// Orders in `status` (every status when `None`) whose latest change is at or before
    /// `changed_by`, the longest unchanged first (ties by order ref), starting after the
    /// order `after` = (latest change, order ref) of a previous page; at most `limit`.
    /// Served from the `oa/` index: it reads only the orders it returns.
    pub fn orders_by_age(
        &self,
        status: Option<OrderStatus>,
        changed_by: Option<Timestamp>,
        after: Option<(Timestamp, &str)>,
        limit: usize,
    ) -> Result<Vec<OrderView>> {
        use std::ops::Bound;
        let statuses: Vec<OrderStatus> = match status {
            Some(s) => vec![s],
            None => OrderStatus::ALL.to_vec(),
        };
        let mut hits: Vec<(i64, String)> = Vec::new();
        for s in statuses {
            let name = s.as_str();
            let from = match after {
                Some((at, order_ref)) => Bound::Excluded(keys::order_age(name, at.0, order_ref)),
                None => Bound::Included(keys::order_age_from(name, i64::MIN)),
            };
            let to = match changed_by {
                Some(t) if t.0 < i64::MAX => Bound::Excluded(keys::order_age_from(name, t.0 + 1)),
                _ => Bound::Excluded(keys::order_age_from(name, i64::MAX)),
            };
            for kv in self.tree.range::<Vec<u8>, _>((from, to)).take(limit) {
                let (k, _) = kv.map_err(|e| Error::storage("scanning the order-age index", e))?;
                if let Some(hit) = keys::parse_order_age(name, &k) {
                    hits.push(hit);
                }
            }
        }
        hits.sort();
        hits.truncate(limit);
        let mut out = Vec::with_capacity(hits.len());
        for (_, order_ref) in hits {
            if let Some(o) = self.order(&order_ref)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Postings (held, approved, rejected) with the order they belong to, optionally only
    /// those in `state` (`held`, `approved`, `rejected`): then from the `ps/` index, oldest
    /// held first, reading only the orders that hold one.
    pub fn postings(&self, state: Option<&str>) -> Result<Vec<(String, PostingView)>> {
        let mut out = Vec::new();
        if let Some(state) = state {
            for hit in self.postings_by_age(state, None) {
                let (_, posting_id, order_ref) = hit?;
                let p =
                    self.order(&order_ref)?.and_then(|o| o.postings.into_iter().find(|p| p.posting_id == posting_id));
                out.extend(p.map(|p| (order_ref, p)));
            }
            return Ok(out);
        }
        for kv in self.tree.scan_prefix(keys::ORDER) {
            let (k, v) = kv.map_err(|e| Error::storage("scanning orders", e))?;
            let o = OrderRecord::decode(&k, &v)?.view;
            for p in o.postings {
                if state.is_none_or(|s| s == p.state) {
                    out.push((o.order_ref.clone(), p));
                }
            }
        }
        Ok(out)
    }

    /// Postings in `state`, oldest held first (ties by posting id), starting after the
    /// posting `after` = (held at, posting id) of a previous page, as (held at, posting id,
    /// order ref). Served lazily from the `ps/` index: a caller that stops early (a page is
    /// full) reads no further, and reads an order only for the postings it wants.
    pub fn postings_by_age<'a>(
        &'a self,
        state: &str,
        after: Option<(i64, &str)>,
    ) -> impl Iterator<Item = Result<(i64, String, String)>> + 'a {
        use std::ops::Bound;
        let prefix = keys::posting_age_prefix(state);
        let from = match after {
            Some((at, posting_id)) => Bound::Excluded(keys::posting_age(state, at, posting_id)),
            None => Bound::Included(prefix.clone()),
        };
        // The prefix ends in the separator (0): the next byte value ends the range.
        let mut to = prefix;
        to.pop();
        to.push(1);
        let state = state.to_string();
        self.tree.range::<Vec<u8>, _>((from, Bound::Excluded(to))).map(move |kv| {
            let (k, v) = kv.map_err(|e| Error::storage("scanning the posting-age index", e))?;
            let (at, posting_id) = keys::parse_posting_age(&state, &k)
                .ok_or_else(|| Error::Corrupt { key: keys::display(&k), reason: "malformed posting-age key".into() })?;
            Ok((at, posting_id, String::from_utf8_lossy(&v).into_owned()))
        })
    }

    /// The number of postings in `state`, from the `ps/` index (no order is read).
    pub fn posting_count(&self, state: &str) -> Result<usize> {
        let mut n = 0;
        for k in self.tree.scan_prefix(keys::posting_age_prefix(state)).keys() {
            k.map_err(|e| Error::storage("counting postings", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// One posting and its order: through the posting index, so it costs one order's
    /// read however many orders there are (approvals look postings up in a loop).
    pub fn posting(&self, posting_id: &str) -> Result<Option<(String, PostingView)>> {
        Ok(self.posting_with_timeline(posting_id)?.map(|(order_ref, p, _)| (order_ref, p)))
    }

    /// A posting with its order's timeline, from one read of the order's record.
    pub fn posting_with_timeline(&self, posting_id: &str) -> Result<Option<(String, PostingView, Vec<TimelineEntry>)>> {
        let Some(order_ref) = self.get_raw(&keys::posting(posting_id))? else {
            return Ok(None);
        };
        let order_ref = String::from_utf8_lossy(&order_ref).into_owned();
        let Some(record) = self.get::<OrderRecord>(&keys::order(&order_ref))? else { return Ok(None) };
        let posting = record.view.postings.into_iter().find(|p| p.posting_id == posting_id);
        Ok(posting.map(|p| (order_ref, p, record.timeline)))
    }

    /// The order's journal events, by saga id and then sequence number.
    pub fn timeline(&self, order_ref: &str) -> Result<Vec<TimelineEntry>> {
        Ok(self.get::<OrderRecord>(&keys::order(order_ref))?.map(|r| r.timeline).unwrap_or_default())
    }

    /// One exception.
    pub fn exception(&self, exception_id: &str) -> Result<Option<ExceptionView>> {
        self.get(&keys::exception(exception_id))
    }

    /// Exceptions, optionally only open ones and only of one category. Open exceptions
    /// come from the index, by category and id; all exceptions by id.
    pub fn exceptions(&self, open_only: bool, category: Option<ExceptionCategory>) -> Result<Vec<ExceptionView>> {
        if !open_only {
            let all: Vec<ExceptionView> = self.scan(keys::EXCEPTION)?;
            return Ok(all.into_iter().filter(|x| category.is_none_or(|c| c == x.category)).collect());
        }
        let prefix = match category {
            Some(c) => keys::open_exception_prefix(c.as_str()),
            None => keys::OPEN_EXCEPTION.to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&prefix) {
            let (k, _) = kv.map_err(|e| Error::storage("scanning open exceptions", e))?;
            let id = k[keys::OPEN_EXCEPTION.len()..]
                .splitn(2, |b| *b == 0)
                .nth(1)
                .ok_or_else(|| Error::Corrupt { key: keys::display(&k), reason: "malformed index key".into() })?;
            let key = [keys::EXCEPTION, id].concat();
            let x = self.get::<ExceptionView>(&key)?.ok_or_else(|| Error::Corrupt {
                key: keys::display(&k),
                reason: "index names an exception that is not stored".into(),
            })?;
            out.push(x);
        }
        Ok(out)
    }

    /// Open exceptions per category, every category listed (in
    /// [`ExceptionCategory::ALL`] order).
    pub fn exception_counts_by_category(&self) -> Result<Vec<(ExceptionCategory, u64)>> {
        ExceptionCategory::ALL
            .iter()
            .map(|c| Ok((*c, self.get::<i64>(&keys::count_open(c.as_str()))?.unwrap_or(0).max(0) as u64)))
            .collect()
    }

    /// Orders per status, every status listed (in [`OrderStatus::ALL`] order).
    pub fn order_counts_by_status(&self) -> Result<Vec<(OrderStatus, u64)>> {
        OrderStatus::ALL
            .iter()
            .map(|s| Ok((*s, self.get::<i64>(&keys::count_status(s.as_str()))?.unwrap_or(0).max(0) as u64)))
            .collect()
    }

    /// Every journal event, command and dead letter related to `source_ref` (as text,
    /// e.g. `odoo:SO0042`, `wms:SHP-1`, `waybill:release:SO0042`), by topic, partition
    /// and offset.
    pub fn lineage(&self, source_ref: &str) -> Result<Vec<LineageEntry>> {
        let mut v: Vec<LineageEntry> = self.get(&keys::lineage(source_ref))?.unwrap_or_default();
        // An order's own journal events are kept in its timeline only.
        if let Some(order) = source_ref.strip_prefix("odoo:") {
            v.extend(self.timeline(order)?.iter().map(TimelineEntry::lineage));
            v.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
            v.dedup_by(|a, b| (&a.topic, a.partition, a.offset) == (&b.topic, b.partition, b.offset));
        }
        Ok(v)
    }

    /// The stock position of one SKU in one warehouse.
    pub fn stock(&self, warehouse: &str, sku: &str) -> Result<Option<StockPosition>> {
        self.get(&keys::stock(warehouse, sku))
    }

    /// Every stock position, by warehouse and SKU.
    pub fn stock_all(&self) -> Result<Vec<StockPosition>> {
        self.scan(keys::STOCK)
    }

    /// What Waybill journaled as moving one product's stock, in all warehouses.
    pub fn movements(&self, sku: &str) -> Result<Option<SkuMovements>> {
        self.get(&keys::movements(sku))
    }

    /// The movements of every product that has moved, by SKU.
    pub fn movements_all(&self) -> Result<Vec<SkuMovements>> {
        self.scan(keys::MOVEMENTS)
    }

    /// Where each product's stock reconciliation stands, by SKU.
    pub fn stock_checks(&self) -> Result<Vec<StockCheck>> {
        self.scan(keys::STOCK_CHECK)
    }

    /// Every key and value, in key order: for byte-for-byte comparisons of two stores.
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| Error::storage("dumping the projection store", e))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }
}
