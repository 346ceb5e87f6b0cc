//! The projection logic: one input at a time against an in-memory overlay of the keys it
//! touches, then everything (views, indexes, counters, dedup marks and checkpoints) is
//! written in one `sled::Batch`.
//!
//! Why the result is a pure function of the set of records:
//! - a journal event touches its order record (view + timeline, with the per-saga seq
//!   used for dedup) and the exceptions it raises or resolves. All events of an order are
//!   in one journal partition (topics are co-partitioned by correlation key) and are
//!   applied in offset order;
//! - keys written from several partitions only receive commutative updates: sums (stock
//!   positions, counters, removed when they reach zero), sorted sets keyed by record
//!   position (lineage), inserts of distinct keys (open-exception index), and exception
//!   records whose "raised" and "resolved" halves are set independently, with counters
//!   and indexes moved by the difference between the state before and after;
//! - duplicates are recognised by business identity ((saga id, seq); command
//!   idempotency key; dead-letter origin), never by offset, so a copy at a later offset
//!   changes nothing but the checkpoint;
//! - values are structs encoded field by field ([`crate::bin`]) holding `Vec`s in a
//!   defined order (never a hash map), and no time is read from the clock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use waybill_domain::event::ItemCondition;
use waybill_domain::journal::{DocumentKind, InputPosition};
use waybill_domain::reconcile::{Movements, ReconcileOutcome, StockReconciliation};
use waybill_domain::{
    Command, CommandBody, ExceptionCategory, JournalBody, JournalEvent, Qty, SagaKind, SourceRef, System, Timestamp,
};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::input::{ApplyStats, DeadLetter, Input, Positioned};
use crate::keys;
use crate::summary::summarize;
use crate::view::{
    DocumentView, ExceptionView, LineageEntry, LinkKind, OrderLineView, OrderStatus, OrderView, PostingView,
    SagaProgress, ShipmentView, SkuMovements, StockCheck, StockPosition, TimelineEntry,
};

/// How a value is stored.
pub(crate) trait Codec: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(key: &[u8], bytes: &[u8]) -> Result<Self>;
}

impl Codec for i64 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn decode(key: &[u8], bytes: &[u8]) -> Result<Self> {
        let b: [u8; 8] = bytes.try_into().map_err(|_| Error::Corrupt {
            key: keys::display(key),
            reason: format!("expected an 8-byte number, found {} bytes", bytes.len()),
        })?;
        Ok(i64::from_be_bytes(b))
    }
}

macro_rules! bin_codec {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            fn encode(&self) -> Vec<u8> {
                // Only sequences of unknown length fail, and views have none.
                crate::bin::to_vec(self).expect("projection views encode")
            }
            fn decode(key: &[u8], bytes: &[u8]) -> Result<Self> {
                crate::bin::from_slice(bytes)
                    .map_err(|e| Error::Corrupt { key: keys::display(key), reason: e.to_string() })
            }
        }
    )*};
}
/// What is stored under an order's key: its view and its timeline, in one value so that
/// a batch writes one key per order it touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderRecord {
    pub view: OrderView,
    /// Sorted by (saga id, seq).
    pub timeline: Vec<TimelineEntry>,
}

bin_codec!(OrderRecord, ExceptionView, StockPosition, SkuMovements, StockCheck, Vec<LineageEntry>);

/// A cached key: its value as loaded or changed, and whether it must be written.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    value: Option<T>,
    dirty: bool,
}

impl<T> Slot<T> {
    fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// The value for changing; the slot will be written.
    fn modify(&mut self) -> &mut Option<T> {
        self.dirty = true;
        &mut self.value
    }
}

/// FxHash (as in rustc): the keys are our own, so no flooding protection is needed, and
/// SipHash showed up in profiles of a rebuild.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// Typed values of one key family, loaded from the tree at most once per batch.
#[derive(Debug)]
pub(crate) struct Cache<T> {
    map: HashMap<Vec<u8>, Slot<T>, FxBuild>,
}

impl<T: Codec> Cache<T> {
    fn new() -> Self {
        Cache { map: HashMap::default() }
    }

    /// The slot of `key`. When `fresh` (the tree is known to be empty and every write
    /// since went through this overlay), a key not in the overlay is absent: no read.
    fn slot(&mut self, tree: &sled::Tree, fresh: bool, key: &[u8]) -> Result<&mut Slot<T>> {
        // Two lookups on a miss rather than one allocation of the key on every hit.
        if !self.map.contains_key(key) {
            let value = if fresh {
                None
            } else {
                let raw = tree.get(key).map_err(|e| Error::storage(format!("reading {}", keys::display(key)), e))?;
                match raw {
                    Some(b) => Some(T::decode(key, &b)?),
                    None => None,
                }
            };
            self.map.insert(key.to_vec(), Slot { value, dirty: false });
        }
        Ok(self.map.get_mut(key).expect("inserted above"))
    }

    /// The keys this overlay holds that begin with `prefix` (what it may hold that the
    /// tree does not have yet).
    fn keys_with_prefix(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.map.iter().filter(|(k, s)| k.starts_with(prefix) && s.value.is_some()).map(|(k, _)| k.clone()).collect()
    }

    /// Writes the changed keys into `batch` (the order of insertion does not matter:
    /// every key appears once).
    fn commit(self, batch: &mut sled::Batch) {
        for (k, s) in self.map {
            if s.dirty {
                match s.value {
                    Some(v) => batch.insert(k, v.encode()),
                    None => batch.remove(k),
                }
            }
        }
    }
}

/// Everything one `apply` call reads and writes.
#[derive(Debug)]
pub(crate) struct Overlay<'a> {
    tree: &'a sled::Tree,
    /// The tree was empty when this overlay started: keys it has not seen do not exist.
    fresh: bool,
    /// Scratch buffer for keys.
    key: Vec<u8>,
    /// Blind writes: the open-exception and order-age indexes, posting ids. Never read
    /// back by apply.
    batch: sled::Batch,
    orders: Cache<OrderRecord>,
    lineage: Cache<Vec<LineageEntry>>,
    exceptions: Cache<ExceptionView>,
    stock: Cache<StockPosition>,
    movements: Cache<SkuMovements>,
    checks: Cache<StockCheck>,
    counters: Cache<i64>,
    checkpoints: Cache<i64>,
    pub(crate) stats: ApplyStats,
}

enum Outcome {
    Applied,
    Duplicate,
    Skipped,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(tree: &'a sled::Tree, fresh: bool) -> Self {
        Overlay {
            tree,
            fresh,
            key: Vec::with_capacity(128),
            batch: sled::Batch::default(),
            orders: Cache::new(),
            lineage: Cache::new(),
            exceptions: Cache::new(),
            stock: Cache::new(),
            movements: Cache::new(),
            checks: Cache::new(),
            counters: Cache::new(),
            checkpoints: Cache::new(),
            stats: ApplyStats::default(),
        }
    }

    /// The batch to write: every change of every input applied so far.
    pub(crate) fn into_batch(self) -> sled::Batch {
        let mut batch = self.batch;
        self.orders.commit(&mut batch);
        self.lineage.commit(&mut batch);
        self.exceptions.commit(&mut batch);
        self.stock.commit(&mut batch);
        self.movements.commit(&mut batch);
        self.checks.commit(&mut batch);
        self.counters.commit(&mut batch);
        self.checkpoints.commit(&mut batch);
        batch
    }

    /// Applies one input unless its partition's checkpoint is already past it, and moves
    /// the checkpoint past it.
    pub(crate) fn apply(&mut self, p: &Positioned) -> Result<()> {
        let pos = &p.position;
        keys::checkpoint_into(&mut self.key, &pos.topic, pos.partition);
        let cp = self.checkpoints.slot(self.tree, self.fresh, &self.key)?;
        if cp.get().is_some_and(|next| pos.offset < *next) {
            self.stats.already_applied += 1;
            return Ok(());
        }
        *cp.modify() = Some(pos.offset.saturating_add(1));
        let outcome = match &p.input {
            Input::Journal(e) => self.journal(pos, e)?,
            Input::Command(c) => self.command(pos, c)?,
            Input::DeadLetter(d) => self.dead_letter(pos, d)?,
            Input::Skip => Outcome::Skipped,
        };
        match outcome {
            Outcome::Applied => self.stats.applied += 1,
            Outcome::Duplicate => self.stats.duplicates += 1,
            Outcome::Skipped => self.stats.skipped += 1,
        }
        Ok(())
    }

    fn journal(&mut self, pos: &InputPosition, e: &JournalEvent) -> Result<Outcome> {
        let m = &e.meta;
        let order_ref = m.correlation_key.as_str();
        keys::order_into(&mut self.key, order_ref);
        let slot = self.orders.slot(self.tree, self.fresh, &self.key)?;
        // Journal dedup: the order view keeps the last applied seq of each of its sagas
        // (a saga's events all carry its order's correlation key).
        let applied = slot.get().and_then(|o| o.view.saga(&m.saga_id)).is_some_and(|s| m.seq <= s.last_seq);
        if applied {
            tracing::debug!(
                waybill.saga.id = %m.saga_id, seq = m.seq, topic = %pos.topic, partition = pos.partition,
                offset = pos.offset, "dropping a copy of an applied journal event"
            );
            return Ok(Outcome::Duplicate);
        }
        if let JournalBody::FlowRetired(_) = &e.body {
            self.retire(order_ref)?;
            return Ok(Outcome::Applied);
        }
        let mut stock = Vec::new();
        let before = slot.get().map(|o| o.view.status);
        let aged_before =
            slot.get().map(|o| keys::order_age(o.view.status.as_str(), o.view.last_event_at.0, order_ref));
        let postings_before = slot.get().map(|o| posting_ages(&o.view)).unwrap_or_default();
        let record = slot
            .modify()
            .get_or_insert_with(|| OrderRecord { view: OrderView::new(order_ref, m.at), timeline: Vec::new() });
        fold_order(&mut record.view, e, &mut stock);
        if let JournalBody::PostingHeld(h) = &e.body {
            self.batch.insert(keys::posting(&h.posting_id), order_ref.as_bytes());
        }
        // The posting state-and-age index: blind writes of what changed, like `oa/`.
        let postings_after = posting_ages(&record.view);
        for k in postings_before.iter().filter(|k| !postings_after.contains(k)) {
            self.batch.remove(k.as_slice());
        }
        for k in postings_after.into_iter().filter(|k| !postings_before.contains(k)) {
            self.batch.insert(k, order_ref.as_bytes());
        }
        let after = record.view.status;
        // The order's customer, for an exception raised now (the order view has folded
        // this event already).
        let customer =
            if matches!(e.body, JournalBody::ExceptionRaised(_)) { record.view.customer_ref.clone() } else { None };
        // A target's health saga (`target:odoo`) and a purchase order (`po:P00042`) keep a
        // record of their own — a timeline, which `order show` finds, postings, documents —
        // but are no sale order: they stay out of the order lists and the counts by status.
        // Their exceptions and held postings are listed like every other.
        let listed = waybill_domain::event::is_order_key(order_ref);
        // The status-and-age index: blind writes (a later event of the same batch removes
        // what an earlier one inserted; the batch keeps the last operation per key).
        let aged_after = keys::order_age(after.as_str(), record.view.last_event_at.0, order_ref);
        if listed && aged_before.as_ref() != Some(&aged_after) {
            if let Some(k) = aged_before {
                self.batch.remove(k);
            }
            self.batch.insert(aged_after, &[][..]);
        }
        let entry = TimelineEntry {
            at: m.at,
            saga_id: m.saga_id.clone(),
            kind: m.kind,
            seq: m.seq,
            event: e.body.name().to_string(),
            summary: summarize(e),
            partition: pos.partition,
            offset: pos.offset,
        };
        let timeline = &mut record.timeline;
        match timeline.binary_search_by(|t| (t.saga_id.as_str(), t.seq).cmp(&(m.saga_id.as_str(), m.seq))) {
            Ok(i) => timeline[i] = entry,
            Err(i) => timeline.insert(i, entry),
        }
        if listed && before != Some(after) {
            if let Some(b) = before {
                self.count(keys::count_status(b.as_str()), -1)?;
            }
            self.count(keys::count_status(after.as_str()), 1)?;
        }
        for (warehouse, sku, delta) in stock {
            self.stock_add(&warehouse, &sku, delta)?;
        }
        for (sku, moved) in journal_movements(&e.body) {
            self.move_stock(sku, moved, &format!("{} {}", e.body.name(), movement_ref(&e.body)), m.at)?;
        }
        if let JournalBody::StockReconciled(r) = &e.body {
            let sku = order_ref.strip_prefix(waybill_domain::reconcile::STOCK_PREFIX).unwrap_or(order_ref);
            self.stock_check(sku, r, m.at)?;
        }

        match &e.body {
            JournalBody::ExceptionRaised(x) => {
                let saga_id = m.saga_id.clone();
                self.exception(&x.exception_id, |v| {
                    v.category = x.category;
                    v.message.clone_from(&x.message);
                    v.subject = Some(x.subject.clone());
                    v.saga_id = Some(saga_id);
                    v.order_ref = Some(order_ref.to_string());
                    v.raised_at = Some(m.at);
                    v.customer = customer;
                    v.entity.clone_from(&x.entity);
                })?;
            }
            JournalBody::ExceptionAssigned(a) => {
                self.exception(&a.exception_id, |v| {
                    v.owner = Some(a.owner.clone());
                    v.assigned_at = Some(m.at);
                })?;
            }
            JournalBody::ExceptionResolved(r) => {
                self.exception(&r.exception_id, |v| {
                    v.resolved_at = Some(m.at);
                    v.resolution = Some(r.resolution.clone());
                })?;
            }
            _ => {}
        }

        let link = LineageEntry {
            kind: LinkKind::Journal,
            id: m.event_id(),
            name: e.body.name().to_string(),
            topic: pos.topic.clone(),
            partition: pos.partition,
            offset: pos.offset,
            at: m.at,
        };
        // The order's own lineage (`odoo:<order>`) is read from its timeline, which holds
        // the same positions; storing it twice would double the bytes written per event.
        let own = format!("odoo:{order_ref}");
        for r in journal_refs(&e.body) {
            if r != own {
                self.link(&r, &link)?;
            }
        }
        Ok(Outcome::Applied)
    }

    fn command(&mut self, pos: &InputPosition, c: &Command) -> Result<Outcome> {
        let key = &c.meta.idempotency_key;
        let own = format!("waybill:{key}");
        // Command dedup: the key's own lineage already lists a command record.
        keys::lineage_into(&mut self.key, &own);
        let seen = self.lineage.slot(self.tree, self.fresh, &self.key)?;
        if let Some(first) = seen.get().and_then(|v| v.iter().find(|l| l.kind == LinkKind::Command)) {
            tracing::debug!(
                idempotency_key = %key, topic = %pos.topic, partition = pos.partition, offset = pos.offset,
                first.offset = first.offset, "dropping a second command with the same idempotency key"
            );
            return Ok(Outcome::Duplicate);
        }
        let link = LineageEntry {
            kind: LinkKind::Command,
            id: key.clone(),
            name: c.body.name().to_string(),
            topic: pos.topic.clone(),
            partition: pos.partition,
            offset: pos.offset,
            at: c.meta.issued_at,
        };
        self.link(&own, &link)?;
        self.link(&format!("odoo:{}", c.meta.correlation_key), &link)?;
        for r in command_refs(&c.body) {
            self.link(&r, &link)?;
        }
        // Goods sent back to a supplier leave the stock when Waybill asks Odoo to return
        // them (the warehouse cancelled the receipt): the command carries the lines.
        if let CommandBody::ReturnToVendor(p) = &c.body {
            let what = format!("ReturnToVendor {}", p.receipt_id);
            for l in &p.lines {
                let moved = Movements { returned_to_vendor: l.quantity, ..Movements::default() };
                self.move_stock(&l.sku, moved, &what, c.meta.issued_at)?;
            }
        }
        Ok(Outcome::Applied)
    }

    fn dead_letter(&mut self, pos: &InputPosition, d: &DeadLetter) -> Result<Outcome> {
        let id = d.exception_id(pos);
        keys::exception_into(&mut self.key, &id);
        let slot = self.exceptions.slot(self.tree, self.fresh, &self.key)?;
        if slot.get().is_some_and(|x| x.raised_at.is_some()) {
            return Ok(Outcome::Duplicate);
        }
        let subject = d.subject_ref(pos);
        self.exception(&id, |v| {
            v.category = ExceptionCategory::BadInput;
            v.message.clone_from(&d.reason);
            v.subject = Some(subject.clone());
            v.order_ref.clone_from(&d.key);
            v.raised_at = Some(d.at);
            v.dead_letter_kind = Some(d.kind.clone());
        })?;
        let link = LineageEntry {
            kind: LinkKind::DeadLetter,
            id,
            name: "DeadLetter".to_string(),
            topic: pos.topic.clone(),
            partition: pos.partition,
            offset: pos.offset,
            at: d.at,
        };
        self.link(&subject.to_string(), &link)?;
        if let Some(k) = &d.key {
            self.link(&format!("odoo:{k}"), &link)?;
        }
        Ok(Outcome::Applied)
    }

    /// Changes one exception record and moves its open-index entry, the open counter of
    /// its category and its order's open count by the difference.
    fn exception(&mut self, id: &str, change: impl FnOnce(&mut ExceptionView)) -> Result<()> {
        // (category, order counted against) while open.
        fn open_state(x: Option<&ExceptionView>) -> Option<(ExceptionCategory, Option<String>)> {
            x.filter(|x| x.is_open())
                .map(|x| (x.category, if x.saga_id.is_some() { x.order_ref.clone() } else { None }))
        }
        keys::exception_into(&mut self.key, id);
        let slot = self.exceptions.slot(self.tree, self.fresh, &self.key)?;
        let before = open_state(slot.get());
        let v = slot.modify().get_or_insert_with(|| ExceptionView::new(id));
        change(v);
        let after = open_state(Some(v));
        if before == after {
            return Ok(());
        }
        if let Some((category, order)) = before {
            self.batch.remove(keys::open_exception(category.as_str(), id));
            self.count(keys::count_open(category.as_str()), -1)?;
            if let Some(o) = order {
                self.order_open_exceptions(&o, -1)?;
            }
        }
        if let Some((category, order)) = after {
            self.batch.insert(keys::open_exception(category.as_str(), id), Vec::new());
            self.count(keys::count_open(category.as_str()), 1)?;
            if let Some(o) = order {
                self.order_open_exceptions(&o, 1)?;
            }
        }
        Ok(())
    }

    /// A retired flow: its record (view and timeline), its places in the order and
    /// posting indexes, its count by status and its exceptions go, as the coordinator
    /// forgot its state; a later journal event of the key starts a new record, its sagas'
    /// sequence numbers from 1.
    fn retire(&mut self, order_ref: &str) -> Result<()> {
        keys::order_into(&mut self.key, order_ref);
        let slot = self.orders.slot(self.tree, self.fresh, &self.key)?;
        let Some(record) = slot.modify().take() else { return Ok(()) };
        let view = record.view;
        if waybill_domain::event::is_order_key(order_ref) {
            self.batch.remove(keys::order_age(view.status.as_str(), view.last_event_at.0, order_ref));
            self.count(keys::count_status(view.status.as_str()), -1)?;
        }
        for p in &view.postings {
            self.batch.remove(keys::posting(&p.posting_id));
        }
        for k in posting_ages(&view) {
            self.batch.remove(k);
        }
        // Exception ids are `<saga id>/<category>/<n>`: the sagas' own prefixes find them,
        // in the tree and among those this batch raised.
        for saga in &view.sagas {
            let prefix = keys::exception(&format!("{}/", saga.saga_id));
            let mut found: Vec<Vec<u8>> = self.exceptions.keys_with_prefix(&prefix);
            if !self.fresh {
                for k in self.tree.scan_prefix(&prefix).keys() {
                    let k = k.map_err(|e| Error::storage(format!("reading {}", keys::display(&prefix)), e))?;
                    found.push(k.to_vec());
                }
            }
            found.sort();
            found.dedup();
            for key in found {
                let slot = self.exceptions.slot(self.tree, self.fresh, &key)?;
                let Some(x) = slot.modify().take() else { continue };
                if x.is_open() {
                    self.batch.remove(keys::open_exception(x.category.as_str(), &x.exception_id));
                    self.count(keys::count_open(x.category.as_str()), -1)?;
                }
            }
        }
        Ok(())
    }

    fn order_open_exceptions(&mut self, order_ref: &str, delta: i64) -> Result<()> {
        keys::order_into(&mut self.key, order_ref);
        let slot = self.orders.slot(self.tree, self.fresh, &self.key)?;
        match slot.modify() {
            Some(OrderRecord { view: o, .. }) => {
                o.open_exceptions = (i64::from(o.open_exceptions) + delta).clamp(0, i64::from(u32::MAX)) as u32;
            }
            // Cannot happen: an exception counts against an order only after one of the
            // order's own journal events raised it, which created the view.
            None => tracing::warn!(waybill.order.ref = %order_ref, "exception for an order without a view"),
        }
        Ok(())
    }

    fn count(&mut self, key: Vec<u8>, delta: i64) -> Result<()> {
        let slot = self.counters.slot(self.tree, self.fresh, &key)?;
        let v = slot.modify();
        let n = v.unwrap_or(0) + delta;
        // Zero counters are removed so that the stored bytes depend only on the result.
        *v = (n != 0).then_some(n);
        Ok(())
    }

    fn stock_add(&mut self, warehouse: &str, sku: &str, d: StockDelta) -> Result<()> {
        keys::stock_into(&mut self.key, warehouse, sku);
        let slot = self.stock.slot(self.tree, self.fresh, &self.key)?;
        let s = slot.modify().get_or_insert_with(|| StockPosition {
            warehouse: warehouse.to_string(),
            sku: sku.to_string(),
            ordered: Qty::ZERO,
            reserved: Qty::ZERO,
            short: Qty::ZERO,
            picked: Qty::ZERO,
            shipped: Qty::ZERO,
        });
        s.ordered += d.ordered;
        s.reserved += d.reserved;
        s.short += d.short;
        s.picked += d.picked;
        s.shipped += d.shipped;
        Ok(())
    }

    /// Adds `moved` to the movements of `sku`; `what` becomes its latest movement when it
    /// is later (by time, then name) than the one known, so the result does not depend on
    /// the order partitions arrive in.
    fn move_stock(&mut self, sku: &str, moved: Movements, what: &str, at: Timestamp) -> Result<()> {
        keys::movements_into(&mut self.key, sku);
        let slot = self.movements.slot(self.tree, self.fresh, &self.key)?;
        let v = slot.modify().get_or_insert_with(|| SkuMovements {
            sku: sku.to_string(),
            movements: Movements::default(),
            last_movement: None,
            last_at: Timestamp(i64::MIN),
        });
        v.movements.received += moved.received;
        v.movements.returned_to_vendor += moved.returned_to_vendor;
        v.movements.shipped += moved.shipped;
        v.movements.restocked += moved.restocked;
        if (at, Some(what)) > (v.last_at, v.last_movement.as_deref()) {
            v.last_at = at;
            v.last_movement = Some(what.to_string());
        }
        Ok(())
    }

    /// Folds a product's `StockReconciled` record (one partition writes it: its subject's).
    fn stock_check(&mut self, sku: &str, r: &StockReconciliation, at: Timestamp) -> Result<()> {
        keys::stock_check_into(&mut self.key, sku);
        let slot = self.checks.slot(self.tree, self.fresh, &self.key)?;
        let v = slot.modify();
        let mut baseline = v.as_ref().and_then(|c| c.baseline);
        if matches!(r.outcome, ReconcileOutcome::Baseline | ReconcileOutcome::Accepted) {
            baseline = Some((r.on_hand, r.journaled.net()));
        }
        *v = Some(StockCheck { sku: sku.to_string(), baseline, last: r.clone(), at });
        Ok(())
    }

    /// Adds `link` to the lineage of `source_ref`, kept sorted by position: the same set
    /// of links gives the same value in whatever order they arrive.
    fn link(&mut self, source_ref: &str, link: &LineageEntry) -> Result<()> {
        keys::lineage_into(&mut self.key, source_ref);
        let v = self.lineage.slot(self.tree, self.fresh, &self.key)?.modify().get_or_insert_with(Vec::new);
        fn at(l: &LineageEntry) -> (&str, i32, i64) {
            (l.topic.as_str(), l.partition, l.offset)
        }
        if let Err(i) = v.binary_search_by(|l| at(l).cmp(&at(link))) {
            v.insert(i, link.clone());
        }
        Ok(())
    }
}

/// A change to one stock position.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StockDelta {
    ordered: Qty,
    reserved: Qty,
    short: Qty,
    picked: Qty,
    shipped: Qty,
}

/// The line `line_no`, added (sorted) when the order did not have it.
fn line_mut<'o>(order: &'o mut OrderView, line_no: i32, sku: &str) -> &'o mut OrderLineView {
    let i = match order.lines.binary_search_by_key(&line_no, |l| l.line_no) {
        Ok(i) => i,
        Err(i) => {
            order.lines.insert(
                i,
                OrderLineView {
                    line_no,
                    sku: sku.to_string(),
                    uom: String::new(),
                    warehouse: String::new(),
                    ordered: Qty::ZERO,
                    reserved: Qty::ZERO,
                    short: Qty::ZERO,
                    backordered: Qty::ZERO,
                    picked: Qty::ZERO,
                    shipped: Qty::ZERO,
                },
            );
            i
        }
    };
    &mut order.lines[i]
}

fn shipment_mut<'o>(order: &'o mut OrderView, shipment_id: &str) -> &'o mut ShipmentView {
    let i = match order.shipments.iter().position(|s| s.shipment_id == shipment_id) {
        Some(i) => i,
        None => {
            order.shipments.push(ShipmentView::new(shipment_id));
            order.shipments.len() - 1
        }
    };
    &mut order.shipments[i]
}

/// Folds one journal event into its order view; stock changes go to `stock` as
/// (warehouse, sku, delta).
pub(crate) fn fold_order(order: &mut OrderView, e: &JournalEvent, stock: &mut Vec<(String, String, StockDelta)>) {
    let m = &e.meta;
    order.first_event_at = order.first_event_at.min(m.at);
    order.last_event_at = order.last_event_at.max(m.at);
    if let Some(entity) = e.body.opened_entity() {
        order.entity = Some(entity.to_string());
    }
    match order.sagas.binary_search_by(|s| s.saga_id.as_str().cmp(&m.saga_id)) {
        Ok(i) => {
            order.sagas[i].last_seq = m.seq;
            order.sagas[i].last_event = e.body.name().to_string();
        }
        Err(i) => order.sagas.insert(
            i,
            SagaProgress {
                saga_id: m.saga_id.clone(),
                kind: m.kind,
                last_seq: m.seq,
                last_event: e.body.name().to_string(),
                completed_at: None,
            },
        ),
    }
    match &e.body {
        JournalBody::OrderAccepted(o) => {
            order.status = OrderStatus::Accepted;
            order.customer_ref = Some(o.customer_ref.clone());
            order.ship_to = Some(o.ship_to.clone());
            order.currency = Some(o.currency.clone());
            order.client_order_ref.clone_from(&o.client_order_ref);
            for l in &o.lines {
                let line = line_mut(order, l.line_no, &l.sku);
                line.sku.clone_from(&l.sku);
                line.uom.clone_from(&l.uom);
                line.warehouse.clone_from(&l.warehouse);
                line.ordered = l.quantity;
                stock.push((
                    l.warehouse.clone(),
                    l.sku.clone(),
                    StockDelta { ordered: l.quantity, ..Default::default() },
                ));
            }
        }
        JournalBody::MasterDataFailed(p) => {
            order.status = OrderStatus::OnHold;
            order.problems.clone_from(&p.problems);
        }
        JournalBody::ReservationRequested(_) => order.status = OrderStatus::Reserving,
        JournalBody::StockAllocated(a) => {
            order.status = OrderStatus::Reserved;
            for r in &a.lines {
                let line = line_mut(order, r.line_no, "");
                line.reserved += r.reserved;
                line.short += r.short;
                let d = StockDelta { reserved: r.reserved, short: r.short, ..Default::default() };
                stock.push((line.warehouse.clone(), line.sku.clone(), d));
            }
        }
        JournalBody::Backordered(b) => {
            for l in &b.lines {
                line_mut(order, l.line_no, &l.sku).backordered += l.quantity;
            }
        }
        JournalBody::ReleaseRequested(r) => {
            order.status = OrderStatus::Released;
            order.pick_due_at = Some(r.due_at);
        }
        JournalBody::WarehouseAccepted(w) => order.wms_order_id = Some(w.wms_order_id.clone()),
        JournalBody::PickRecorded(p) => {
            order.status = if p.complete { OrderStatus::Picked } else { OrderStatus::Picking };
            for l in &p.lines {
                let line = line_mut(order, l.line_no, &l.sku);
                line.picked += l.quantity;
                let d = StockDelta { picked: l.quantity, ..Default::default() };
                stock.push((line.warehouse.clone(), l.sku.clone(), d));
            }
        }
        JournalBody::PickOverdue(_) => {}
        JournalBody::ShipmentRecorded(g) => {
            order.status = OrderStatus::Shipped;
            let mut units = Qty::ZERO;
            for l in &g.lines {
                let line = line_mut(order, l.line_no, &l.sku);
                line.shipped += l.quantity;
                units += l.quantity;
                let d = StockDelta { shipped: l.quantity, ..Default::default() };
                stock.push((line.warehouse.clone(), l.sku.clone(), d));
            }
            let s = shipment_mut(order, &g.shipment_id);
            s.shipped_at = Some(m.at);
            s.quantity += units;
            s.packages = s.packages.saturating_add(u32::try_from(g.packages.len()).unwrap_or(u32::MAX));
        }
        JournalBody::CarrierAssigned(c) => {
            let s = shipment_mut(order, &c.shipment_id);
            s.carrier = Some(c.carrier.clone());
            s.tracking_ref = Some(c.tracking_ref.clone());
        }
        JournalBody::DeliveryConfirmed(d) => {
            let s = shipment_mut(order, &d.shipment_id);
            s.delivered = true;
            s.delivered_at = Some(m.at);
            s.signed_by.clone_from(&d.signed_by);
            if order.shipments.iter().all(|s| s.delivered) {
                order.status = OrderStatus::Delivered;
            }
        }
        JournalBody::Cancelled(c) => {
            order.status = OrderStatus::Cancelled;
            order.cancel_reason = Some(c.reason.clone());
        }
        // Exceptions count against the order in `Overlay::exception`.
        JournalBody::ExceptionRaised(_) | JournalBody::ExceptionResolved(_) => {}
        JournalBody::PostingHeld(h) => order.postings.push(PostingView {
            posting_id: h.posting_id.clone(),
            saga_id: m.saga_id.clone(),
            document: h.document,
            business_key: h.business_key.clone(),
            reasons: h.reasons.clone(),
            amount: h.amount,
            currency: h.currency.clone(),
            entity: h.entity.clone(),
            version: h.version,
            state: "held".to_string(),
            requested_by: h.requested_by.clone(),
            held_at: m.at,
            sla_due_at: h.sla_due_at,
            escalated: false,
            decided_by: None,
            decided_role: None,
            decision_reason: None,
            decided_at: None,
            refusals: Vec::new(),
            touched_by: vec![h.requested_by.clone()],
        }),
        JournalBody::PostingApproved(o) | JournalBody::PostingRejected(o) => {
            let approved = matches!(e.body, JournalBody::PostingApproved(_));
            if let Some(p) = order.postings.iter_mut().find(|p| p.posting_id == o.posting_id) {
                p.state = if approved { "approved" } else { "rejected" }.to_string();
                p.version = o.version;
                p.decided_by = Some(o.actor.clone());
                p.decided_role = Some(o.role.clone());
                p.decision_reason = Some(o.reason.clone());
                p.decided_at = Some(m.at);
            }
        }
        JournalBody::PostingEscalated(d) => {
            for p in order.postings.iter_mut().filter(|p| p.saga_id == m.saga_id && p.state == "held") {
                if p.sla_due_at <= d.due_at {
                    p.escalated = true;
                }
            }
        }
        JournalBody::ControlRefused(r) => {
            if let Some(p) = order.postings.iter_mut().find(|p| p.posting_id == r.posting_id) {
                p.refusals.push(format!("{} by {}: {}", r.action, r.actor, r.reason));
                if !p.touched_by.contains(&r.actor) {
                    p.touched_by.push(r.actor.clone());
                }
            }
        }
        JournalBody::InvoiceRecorded(r) => order.documents.push(DocumentView {
            kind: DocumentKind::Invoice,
            business_key: m.saga_id.strip_prefix("s2i:").unwrap_or(&m.saga_id).to_string(),
            number: r.document_number.clone(),
            amount: r.amount,
            at: m.at,
        }),
        JournalBody::CreditNoteRecorded(r) => order.documents.push(DocumentView {
            kind: DocumentKind::CreditNote,
            business_key: r.receipt_id.clone(),
            number: r.document_number.clone(),
            amount: r.amount,
            at: m.at,
        }),
        JournalBody::BillRecorded(b) => order.documents.push(DocumentView {
            kind: DocumentKind::VendorBill,
            business_key: b.bill_number.clone(),
            number: b.document_number.clone(),
            amount: b.amount,
            at: m.at,
        }),
        JournalBody::VendorCreditRecorded(c) => order.documents.push(DocumentView {
            kind: DocumentKind::CreditNote,
            business_key: c.receipt_id.clone(),
            number: c.credit_number.clone(),
            amount: c.amount,
            at: m.at,
        }),
        // A purchase order's record carries its currency (held bills show it), and so does a
        // statement's.
        JournalBody::PurchaseOpened(o) => order.currency = Some(o.currency.clone()),
        JournalBody::StatementOpened(s) => order.currency = Some(s.currency.clone()),
        JournalBody::LineApplied(_)
        | JournalBody::LineRecorded(_)
        | JournalBody::ApplicationScheduled(_)
        | JournalBody::StockReconciled(_)
        | JournalBody::FlowRetired(_) => {}
        JournalBody::PurchaseClosed(_)
        | JournalBody::ShipNoticeRecorded(_)
        | JournalBody::ReceiptRecorded(_)
        | JournalBody::ReceiptConfirmed(_)
        | JournalBody::ReceiptReversed(_)
        | JournalBody::BillReceived(_)
        | JournalBody::BillMatched(_) => {}
        JournalBody::InvoiceDrafted(_)
        | JournalBody::InvoiceRequested(_)
        | JournalBody::FinanceRefused(_)
        | JournalBody::ReturnOpened(_)
        | JournalBody::ReturnReceiptRecorded(_)
        | JournalBody::CreditNoteDrafted(_)
        | JournalBody::CreditNoteRequested(_)
        | JournalBody::StockAdjustmentRequested(_)
        | JournalBody::ExceptionRetried(_)
        | JournalBody::ExceptionAssigned(_)
        | JournalBody::SagaReplayed(_) => {}
        JournalBody::Completed(_) => {
            if let Ok(i) = order.sagas.binary_search_by(|s| s.saga_id.as_str().cmp(&m.saga_id)) {
                order.sagas[i].completed_at = Some(m.at);
            }
            if m.kind == SagaKind::OrderToFulfillment {
                // A cancelled order stays cancelled: completion only ends its saga. One
                // that ends before any goods left is entirely backordered.
                order.status = match order.status {
                    OrderStatus::Cancelled => OrderStatus::Cancelled,
                    OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Completed => OrderStatus::Completed,
                    _ => OrderStatus::Backordered,
                };
                order.completed_at = Some(m.at);
            }
        }
    }
}

/// Source refs a journal event is indexed under, besides its order (`odoo:<order>`).
fn journal_refs(body: &JournalBody) -> Vec<String> {
    // Each extra ref costs a sled write per order during a rebuild: index what people
    // look up (shipments, compensations, exception subjects), not every warehouse id.
    let wms = |id: &str| SourceRef::new(System::Wms, id).to_string();
    match body {
        JournalBody::ShipmentRecorded(g) => vec![wms(&g.shipment_id)],
        JournalBody::CarrierAssigned(c) => vec![wms(&c.shipment_id)],
        JournalBody::DeliveryConfirmed(d) => vec![wms(&d.shipment_id)],
        JournalBody::Cancelled(c) => c.compensations.iter().map(|k| format!("waybill:{k}")).collect(),
        JournalBody::ExceptionRaised(x) => vec![x.subject.to_string()],
        _ => Vec::new(),
    }
}

/// Source refs a command is indexed under, besides `waybill:<key>` and its order.
/// The stock movements a journal event records, by product.
fn journal_movements(body: &JournalBody) -> Vec<(&str, Movements)> {
    match body {
        JournalBody::ShipmentRecorded(g) => g
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), Movements { shipped: l.quantity, ..Movements::default() }))
            .collect(),
        JournalBody::ReceiptRecorded(g) => g
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), Movements { received: l.quantity, ..Movements::default() }))
            .collect(),
        JournalBody::ReturnReceiptRecorded(r) => r
            .lines
            .iter()
            .filter(|l| l.condition == ItemCondition::Restock)
            .map(|l| (l.sku.as_str(), Movements { restocked: l.quantity, ..Movements::default() }))
            .collect(),
        _ => Vec::new(),
    }
}

/// The business id of a movement event: the shipment or receipt.
fn movement_ref(body: &JournalBody) -> &str {
    match body {
        JournalBody::ShipmentRecorded(g) => &g.shipment_id,
        JournalBody::ReceiptRecorded(g) => &g.receipt_id,
        JournalBody::ReturnReceiptRecorded(r) => &r.receipt_id,
        _ => "",
    }
}

fn command_refs(body: &CommandBody) -> Vec<String> {
    let wms = |id: &str| SourceRef::new(System::Wms, id).to_string();
    match body {
        CommandBody::BookCarrier(b) => vec![wms(&b.shipment_id)],
        CommandBody::ConfirmShipment(c) => vec![wms(&c.shipment_id)],
        CommandBody::PostInvoice(p) => vec![wms(&p.shipment_id)],
        CommandBody::IssueCreditNote(c) => vec![wms(&c.receipt_id)],
        CommandBody::AdjustStock(a) => vec![wms(&a.receipt_id)],
        _ => Vec::new(),
    }
}

/// Applies `inputs` in order and returns the batch to write.
/// The `ps/` index keys of an order's postings.
fn posting_ages(o: &OrderView) -> Vec<Vec<u8>> {
    o.postings.iter().map(|p| keys::posting_age(&p.state, p.held_at.0, &p.posting_id)).collect()
}

/// `fresh`: the tree is empty (just cleared), so no key needs to be read from it.
pub(crate) fn build_batch(tree: &sled::Tree, fresh: bool, inputs: &[Positioned]) -> Result<(sled::Batch, ApplyStats)> {
    let mut ov = Overlay::new(tree, fresh);
    for p in inputs {
        ov.apply(p)?;
    }
    let stats = ov.stats;
    Ok((ov.into_batch(), stats))
}
