//! Shared helpers of the projection tests: hand-built journal events, commands and dead
//! letters; a scenario of many orders spread over partitions; ways to apply it; and a
//! small in-memory [`EventLog`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use waybill_domain::command::{BookCarrier, ConfirmShipment, InvoiceLine, OrderOnly, PostInvoice, StockRequest};
use waybill_domain::event::{
    GoodsIssued, LineReservation, OrderLine, OrderReleased, Package, PickConfirmed, PickedLine, ShippedLine,
};
use waybill_domain::journal::{
    Allocation, Backorder, Cancelled, CarrierAssigned, DeliveryConfirmed, Empty, ExceptionRaised, ExceptionResolved,
    InputPosition, JournalMeta, ReleaseRequested, WarehouseAccepted,
};
use waybill_domain::{
    Command, CommandBody, CommandMeta, ExceptionCategory, JournalBody, JournalEvent, Money, Qty, SagaKind, SourceRef,
    System, Timestamp, topic,
};
use waybill_log::{AppendBatch, Appended, Capabilities, EventLog, Offset, StoredRecord};
use waybill_projection::{DeadLetter, Input, Positioned, ProjectionStore};

/// 2024-05-29T16:26:40Z.
pub const T0: i64 = 1_717_000_000_000_000;
pub const MIN: i64 = 60_000_000;

pub const JOURNAL_PARTITIONS: u32 = 3;
pub const COMMAND_PARTITIONS: u32 = 2;

pub fn ts(minutes: i64) -> Timestamp {
    Timestamp(T0 + minutes * MIN)
}

pub fn ev(order: &str, kind: SagaKind, seq: i64, minutes: i64, body: JournalBody) -> JournalEvent {
    JournalEvent {
        meta: JournalMeta {
            saga_id: kind.saga_id(order),
            kind,
            seq,
            correlation_key: order.to_string(),
            caused_by: format!("evt-{order}-{seq}"),
            input: Some(InputPosition { topic: topic::inbound(System::Odoo), partition: 0, offset: seq }),
            at: ts(minutes),
        },
        body,
    }
}

/// (line_no, sku, warehouse, units).
pub type LineSpec = (i32, &'static str, &'static str, i64);

pub fn order_released(order: &str, customer: &str, lines: &[LineSpec]) -> OrderReleased {
    OrderReleased {
        order_ref: order.to_string(),
        customer_ref: customer.to_string(),
        ship_to: format!("{customer}-ship"),
        currency: "EUR".to_string(),
        client_order_ref: Some(format!("PO-{order}")),
        lines: lines
            .iter()
            .map(|(no, sku, wh, units)| OrderLine {
                line_no: *no,
                sku: sku.to_string(),
                uom: "Units".to_string(),
                quantity: Qty::units(*units),
                unit_price: Money(1250),
                tax_code: Some("VAT21".to_string()),
                requested_date: ts(60 * 24),
                warehouse: wh.to_string(),
            })
            .collect(),
    }
}

pub fn lines_of(n: usize) -> Vec<LineSpec> {
    const SKUS: [&str; 4] = ["SKU-A", "SKU-B", "SKU-C", "SKU-D"];
    const WHS: [&str; 2] = ["WH1", "WH2"];
    (0..(1 + n % 3))
        .map(|i| ((i + 1) as i32 * 10, SKUS[(n + i) % 4], WHS[(n / 2 + i) % 2], (1 + (n + i) % 5) as i64))
        .collect()
}

pub fn order_ref(n: usize) -> String {
    format!("SO{n:05}")
}

pub fn shipment_id(order: &str) -> String {
    format!("SHP-{order}")
}

/// The order-to-fulfillment journal of order `n`. Every 5th order is short-shipped with
/// a stock-shortage exception (resolved for every 10th); every 7th (n % 7 == 3) is
/// cancelled after reservation; the others complete.
pub fn fulfillment(n: usize) -> Vec<JournalEvent> {
    let order = order_ref(n);
    let o = order.as_str();
    let k = SagaKind::OrderToFulfillment;
    let lines = lines_of(n);
    let short = n.is_multiple_of(5);
    let mut seq = 0;
    let mut minute = n as i64;
    let mut out = Vec::new();
    let mut push = |body: JournalBody, out: &mut Vec<JournalEvent>| {
        seq += 1;
        minute += 3;
        out.push(ev(o, k, seq, minute, body));
    };
    push(JournalBody::OrderAccepted(order_released(o, &format!("C{}", n % 13), &lines)), &mut out);
    push(JournalBody::ReservationRequested(Empty {}), &mut out);
    let alloc: Vec<LineReservation> = lines
        .iter()
        .enumerate()
        .map(|(i, (no, _, _, units))| {
            let s = if short && i == 0 { 1 } else { 0 };
            LineReservation { line_no: *no, reserved: Qty::units(units - s), short: Qty::units(s) }
        })
        .collect();
    push(JournalBody::StockAllocated(Allocation { lines: alloc.clone() }), &mut out);
    if short {
        push(
            JournalBody::ExceptionRaised(ExceptionRaised {
                exception_id: format!("{}/stock-shortage/1", k.saga_id(o)),
                category: ExceptionCategory::StockShortage,
                message: format!("1 unit of {} short; backordered", lines[0].1),
                subject: SourceRef::new(System::Odoo, o),
            }),
            &mut out,
        );
        push(
            JournalBody::Backordered(Backorder {
                lines: vec![waybill_domain::command::BackorderLine {
                    line_no: lines[0].0,
                    sku: lines[0].1.to_string(),
                    quantity: Qty::units(1),
                }],
            }),
            &mut out,
        );
    }
    if n % 7 == 3 {
        push(
            JournalBody::Cancelled(Cancelled {
                reason: "customer changed their mind".to_string(),
                compensations: vec![format!("unreserve:{o}")],
            }),
            &mut out,
        );
        return out;
    }
    push(JournalBody::ReleaseRequested(ReleaseRequested { due_at: ts(n as i64 + 240) }), &mut out);
    push(JournalBody::WarehouseAccepted(WarehouseAccepted { wms_order_id: format!("W-{o}") }), &mut out);
    let picked: Vec<PickedLine> = lines
        .iter()
        .zip(&alloc)
        .map(|((no, sku, _, _), a)| PickedLine {
            line_no: *no,
            sku: sku.to_string(),
            quantity: a.reserved,
            lots: Vec::new(),
            serials: Vec::new(),
            bin: "A-01".to_string(),
        })
        .collect();
    push(
        JournalBody::PickRecorded(PickConfirmed {
            order_ref: o.to_string(),
            pick_id: format!("PK-{o}"),
            lines: picked.clone(),
            complete: true,
        }),
        &mut out,
    );
    let ship = shipment_id(o);
    push(
        JournalBody::ShipmentRecorded(GoodsIssued {
            order_ref: o.to_string(),
            shipment_id: ship.clone(),
            lines: picked
                .iter()
                .map(|p| ShippedLine {
                    line_no: p.line_no,
                    sku: p.sku.clone(),
                    quantity: p.quantity,
                    lots: Vec::new(),
                    serials: Vec::new(),
                })
                .collect(),
            packages: vec![Package { package_id: format!("PKG-{o}"), weight_grams: 1200 }],
        }),
        &mut out,
    );
    push(
        JournalBody::CarrierAssigned(CarrierAssigned {
            shipment_id: ship.clone(),
            carrier: "DHL".to_string(),
            tracking_ref: format!("TRK{n:06}"),
        }),
        &mut out,
    );
    push(
        JournalBody::DeliveryConfirmed(DeliveryConfirmed { shipment_id: ship, signed_by: Some("J. Doe".to_string()) }),
        &mut out,
    );
    if short && n.is_multiple_of(10) {
        push(
            JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: format!("{}/stock-shortage/1", k.saga_id(o)),
                resolution: "backorder shipped separately".to_string(),
            }),
            &mut out,
        );
    }
    push(JournalBody::Completed(Empty {}), &mut out);
    out
}

pub fn command(order: &str, key: &str, target: System, minutes: i64, body: CommandBody) -> Command {
    Command {
        meta: CommandMeta {
            idempotency_key: key.to_string(),
            saga_id: SagaKind::OrderToFulfillment.saga_id(order),
            correlation_key: order.to_string(),
            target,
            caused_by: format!("evt-{order}"),
            issued_at: ts(minutes),
        },
        body,
    }
}

/// Commands of order `n`.
pub fn commands(n: usize) -> Vec<Command> {
    let order = order_ref(n);
    let o = order.as_str();
    let released = order_released(o, "C", &lines_of(n));
    let req = StockRequest { order_ref: o.to_string(), warehouse: "WH1".to_string(), lines: released.lines.clone() };
    let mut out =
        vec![command(o, &format!("reserve:{o}"), System::Wms, n as i64 + 4, CommandBody::ReserveStock(req.clone()))];
    if n % 7 == 3 {
        out.push(command(
            o,
            &format!("unreserve:{o}"),
            System::Wms,
            n as i64 + 12,
            CommandBody::CancelReservation(OrderOnly { order_ref: o.to_string(), reason: "cancelled".to_string() }),
        ));
        return out;
    }
    let ship = shipment_id(o);
    out.push(command(o, &format!("release:{o}"), System::Wms, n as i64 + 10, CommandBody::ReleaseToWarehouse(req)));
    out.push(command(
        o,
        &format!("book:{ship}"),
        System::Carrier,
        n as i64 + 20,
        CommandBody::BookCarrier(BookCarrier {
            order_ref: o.to_string(),
            shipment_id: ship.clone(),
            ship_to: "C-ship".to_string(),
            packages: vec![Package { package_id: format!("PKG-{o}"), weight_grams: 1200 }],
        }),
    ));
    out.push(command(
        o,
        &format!("confirm:{ship}"),
        System::Odoo,
        n as i64 + 22,
        CommandBody::ConfirmShipment(ConfirmShipment {
            order_ref: o.to_string(),
            shipment_id: ship.clone(),
            tracking_ref: format!("TRK{n:06}"),
        }),
    ));
    out.push(command(
        o,
        &format!("invoice:{ship}"),
        System::Finance,
        n as i64 + 24,
        CommandBody::PostInvoice(PostInvoice {
            order_ref: o.to_string(),
            shipment_id: ship,
            customer_ref: "C".to_string(),
            currency: "EUR".to_string(),
            lines: vec![InvoiceLine {
                line_no: 10,
                sku: "SKU-A".to_string(),
                quantity: Qty::units(1),
                unit_price: Money(1250),
                tax_code: "VAT21".to_string(),
            }],
            total: Money(1250),
        }),
    ));
    out
}

pub fn dead_letter(order: Option<&str>, origin_offset: i64, reason: &str, minutes: i64) -> DeadLetter {
    DeadLetter {
        reason: reason.to_string(),
        kind: "decode".to_string(),
        origin: Some(InputPosition { topic: topic::inbound(System::Wms), partition: 0, offset: origin_offset }),
        key: order.map(str::to_string),
        subject: None,
        at: ts(minutes),
    }
}

/// Records per (topic, partition), in offset order.
#[derive(Debug, Default, Clone)]
pub struct Scenario {
    pub partitions: BTreeMap<(String, i32), Vec<Positioned>>,
}

impl Scenario {
    pub fn push(&mut self, topic: &str, partition: i32, input: Input) {
        let v = self.partitions.entry((topic.to_string(), partition)).or_default();
        let offset = v.len() as i64;
        v.push(Positioned::new(topic, partition, offset, input));
    }

    pub fn journal(&mut self, e: JournalEvent) {
        let p = waybill_log::partition_for(e.meta.correlation_key.as_bytes(), JOURNAL_PARTITIONS);
        self.push(topic::JOURNAL, p, Input::Journal(e));
    }

    pub fn command(&mut self, c: Command) {
        let p = waybill_log::partition_for(c.meta.correlation_key.as_bytes(), COMMAND_PARTITIONS);
        self.push(&topic::commands(c.meta.target), p, Input::Command(c));
    }

    pub fn len(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    /// Every record, partition after partition.
    pub fn sequential(&self) -> Vec<Positioned> {
        self.partitions.values().flatten().cloned().collect()
    }
}

/// `orders` orders with their journals and commands, journal checkpoints, a duplicate
/// journal event and a duplicate command (copies at later offsets, as after a crash),
/// dead letters (one of them twice, one resolved by a saga).
pub fn scenario(orders: usize) -> Scenario {
    let mut s = Scenario::default();
    for n in 1..=orders {
        let mut journal = fulfillment(n);
        if n % 4 == 1 {
            let o = order_ref(n);
            let next = journal.len() as i64 + 1;
            journal.push(ev(
                &o,
                SagaKind::OrderToFulfillment,
                next,
                n as i64 + 90,
                JournalBody::ExceptionResolved(ExceptionResolved {
                    exception_id: format!("dlq:waybill.inbound.wms:0:{n}"),
                    resolution: "replayed after the fix".to_string(),
                }),
            ));
        }
        let last = journal.last().cloned();
        for (i, e) in journal.into_iter().enumerate() {
            s.journal(e);
            if i % 4 == 3 {
                let p = waybill_log::partition_for(order_ref(n).as_bytes(), JOURNAL_PARTITIONS);
                s.push(topic::JOURNAL, p, Input::Skip); // a coordinator checkpoint
            }
        }
        let cmds = commands(n);
        let first = cmds[0].clone();
        for c in cmds {
            s.command(c);
        }
        if n % 6 == 0 {
            s.journal(last.expect("every order has a journal"));
            s.command(first);
        }
        if n % 4 == 1 || n % 9 == 0 {
            let o = order_ref(n);
            let d = dead_letter(
                Some(&o),
                n as i64,
                &format!("cannot decode PickConfirmed for {o}: missing field bin"),
                n as i64 + 5,
            );
            s.push(topic::DLQ, 0, Input::DeadLetter(d.clone()));
            if n % 9 == 0 {
                s.push(topic::DLQ, 0, Input::DeadLetter(d));
            }
        }
    }
    s.push(topic::DLQ, 0, Input::DeadLetter(dead_letter(None, 999_999, "unknown schema id 77", 0)));
    // The coordinator ends every batch with a checkpoint; readers hold journal events
    // until one covers them.
    for p in 0..JOURNAL_PARTITIONS as i32 {
        s.push(topic::JOURNAL, p, Input::Skip);
    }
    s
}

/// A small xorshift generator, so interleavings are reproducible without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The scenario's records in a random interleaving of partitions that keeps each
/// partition's offset order.
pub fn interleaved(s: &Scenario, seed: u64) -> Vec<Positioned> {
    let mut rng = Rng(seed | 1);
    let mut queues: Vec<std::collections::VecDeque<Positioned>> =
        s.partitions.values().map(|v| v.iter().cloned().collect()).collect();
    let mut out = Vec::with_capacity(s.len());
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len()).filter(|i| !queues[*i].is_empty()).collect();
        let q = &mut queues[live[rng.below(live.len())]];
        for _ in 0..=rng.below(5) {
            if let Some(p) = q.pop_front() {
                out.push(p);
            }
        }
    }
    out
}

/// Applies `records` in batches whose sizes are drawn from `sizes` in turn.
pub fn apply_in_batches(store: &ProjectionStore, records: &[Positioned], sizes: &[usize]) {
    let mut i = 0;
    let mut k = 0;
    while i < records.len() {
        let n = sizes[k % sizes.len()].max(1).min(records.len() - i);
        store.apply(&records[i..i + n]).expect("apply");
        i += n;
        k += 1;
    }
}

pub fn temp_store() -> (tempfile::TempDir, ProjectionStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ProjectionStore::open(dir.path().join("projection")).expect("open store");
    (dir, store)
}

/// An in-memory [`EventLog`] for runner tests.
#[derive(Debug, Default)]
pub struct MemLog {
    topics: Mutex<BTreeMap<String, Vec<Vec<StoredRecord>>>>,
}

impl EventLog for MemLog {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> waybill_log::Result<()> {
        let mut t = self.topics.lock().unwrap();
        let v = t.entry(topic.to_string()).or_insert_with(|| vec![Vec::new(); partitions as usize]);
        if v.len() != partitions as usize {
            return Err(waybill_log::Error::PartitionMismatch {
                topic: topic.to_string(),
                wanted: partitions,
                actual: v.len() as u32,
            });
        }
        Ok(())
    }

    fn partitions(&self, topic: &str) -> waybill_log::Result<u32> {
        let t = self.topics.lock().unwrap();
        t.get(topic)
            .map(|v| v.len() as u32)
            .ok_or_else(|| waybill_log::Error::UnknownTopic { topic: topic.to_string() })
    }

    fn append(&self, batch: AppendBatch) -> waybill_log::Result<Vec<Appended>> {
        let mut t = self.topics.lock().unwrap();
        let mut out = Vec::new();
        for r in batch.records {
            let parts =
                t.get_mut(&r.topic).ok_or_else(|| waybill_log::Error::UnknownTopic { topic: r.topic.clone() })?;
            let partition = r.partition.unwrap_or_else(|| waybill_log::partition_for(&r.key, parts.len() as u32));
            let part = &mut parts[partition as usize];
            let offset = part.len() as Offset;
            part.push(StoredRecord {
                topic: r.topic,
                partition,
                offset,
                timestamp_ms: 0,
                key: r.key,
                headers: r.headers,
                value: r.value,
            });
            out.push(Appended { partition, offset });
        }
        Ok(out)
    }

    fn read(&self, topic: &str, partition: i32, from: Offset, max: usize) -> waybill_log::Result<Vec<StoredRecord>> {
        let t = self.topics.lock().unwrap();
        let part = t
            .get(topic)
            .and_then(|v| v.get(partition as usize))
            .ok_or_else(|| waybill_log::Error::UnknownTopic { topic: topic.to_string() })?;
        let end = part.len() as Offset;
        if from > end {
            return Err(waybill_log::Error::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset: from,
                end,
            });
        }
        Ok(part[from as usize..].iter().take(max).cloned().collect())
    }

    fn end_offset(&self, topic: &str, partition: i32) -> waybill_log::Result<Offset> {
        let t = self.topics.lock().unwrap();
        t.get(topic)
            .and_then(|v| v.get(partition as usize))
            .map(|p| p.len() as Offset)
            .ok_or_else(|| waybill_log::Error::UnknownTopic { topic: topic.to_string() })
    }

    fn committed(&self, _group: &str, _topic: &str, _partition: i32) -> waybill_log::Result<Option<Offset>> {
        Ok(None)
    }

    fn wait_for(&self, topic: &str, partition: i32, _offset: Offset, timeout: Duration) -> waybill_log::Result<Offset> {
        std::thread::sleep(timeout.min(Duration::from_millis(5)));
        self.end_offset(topic, partition)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { atomic_batches: true }
    }

    fn flush(&self) -> waybill_log::Result<()> {
        Ok(())
    }
}

/// Creates Waybill's internal topics with the scenario's partition counts.
pub fn create_topics(log: &dyn EventLog) {
    log.ensure_topic(topic::JOURNAL, JOURNAL_PARTITIONS).unwrap();
    for t in topic::command_topics() {
        log.ensure_topic(&t, COMMAND_PARTITIONS).unwrap();
    }
    log.ensure_topic(topic::DLQ, 1).unwrap();
}
