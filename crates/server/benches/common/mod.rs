//! What the bench binaries share: the saga workload (pipeline row 2, the tracing and
//! Kafka benches), statistics and formatting, CPU-time readings and the environment line.
//!
//! Each bench includes this file as `mod common;`; not every bench uses every item.
#![allow(dead_code)]

use waybill_domain::event::{
    CarrierBooked, Delivered, EventBody, GoodsIssued, LineReservation, LotQty, Package, PickConfirmed, PickedLine,
    ReleasedToWarehouse, ShippedLine, StockReserved,
};
use waybill_domain::{EventMeta, InboundEvent, Qty, SourceRef, System, Timestamp};
use waybill_log::Record;
use waybill_saga::Catalog;
use waybill_saga::catalog::Tracking;
use waybill_server::demo::world::{self, Mix};
use waybill_server::ingest::{inbound_topic, record_for};

/// Seed of the generated orders.
pub const SEED: u64 = 0x5EED_0042;
/// Partitions of every topic.
pub const PARTITIONS: u32 = 4;

/// Nanoseconds this thread has run on a CPU (Linux `/proc/thread-self/schedstat`), so a
/// figure can also be given as if the thread had had a core to itself.
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Threads of this process now (Linux `/proc/self/status`).
pub fn process_threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()
}

/// Minor page faults of this thread so far (Linux `/proc/thread-self/stat`, field 10).
pub fn thread_minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

pub fn cpu_secs_since(start: Option<u64>) -> f64 {
    match (start, thread_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => f64::NAN,
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(default)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Orders with clean master data (every order must complete).
pub fn clean_mix() -> Mix {
    Mix { bad_master_data: 0.0, ..Mix::default() }
}

pub fn event(id: String, system: System, key: &str, at: Timestamp, body: EventBody) -> InboundEvent {
    InboundEvent {
        meta: EventMeta {
            source: SourceRef::new(system, id.rsplit(':').next().unwrap_or(key).to_string()),
            event_id: id,
            correlation_key: key.to_string(),
            occurred_at: at,
            actor: None,
        },
        body,
    }
}

/// The inbound events of one order, fully reserved and picked, one shipment, delivered:
/// `OrderReleased`, `StockReserved`, `ReleasedToWarehouse`, `PickConfirmed` (complete),
/// `GoodsIssued`, `CarrierBooked`, `Delivered`, in causal order.
pub fn order_events(i: usize, catalog: &Catalog, now: Timestamp) -> Vec<InboundEvent> {
    let order = world::order(SEED, i, &clean_mix(), now);
    let key = order.order_ref.clone();
    let n = &key[2..];
    let mut out = Vec::with_capacity(7);
    let reserved = StockReserved {
        order_ref: key.clone(),
        lines: order
            .lines
            .iter()
            .map(|l| LineReservation { line_no: l.line_no, reserved: l.quantity, short: Qty::ZERO })
            .collect(),
    };
    let mut picked = Vec::new();
    let mut shipped = Vec::new();
    for (k, l) in order.lines.iter().enumerate() {
        let (lots, serials) = match catalog.tracking(&l.sku) {
            Tracking::Lot => (vec![LotQty { lot: format!("LOT-{}-{}", l.sku, k % 3), quantity: l.quantity }], vec![]),
            Tracking::Serial => {
                (vec![], (0..l.quantity.0 / 1000).map(|s| format!("SN-{key}-{}-{s}", l.line_no)).collect())
            }
            Tracking::None => (vec![], vec![]),
        };
        picked.push(PickedLine {
            line_no: l.line_no,
            sku: l.sku.clone(),
            quantity: l.quantity,
            lots: lots.clone(),
            serials: serials.clone(),
            bin: format!("B{:02}-01", k + 1),
        });
        shipped.push(ShippedLine { line_no: l.line_no, sku: l.sku.clone(), quantity: l.quantity, lots, serials });
    }
    let weight: i64 = shipped.iter().map(|l| l.quantity.0).sum::<i64>() / 2 + 300;
    let pick_id = format!("PK-{n}-1");
    let shipment_id = format!("SHP-{n}-1");
    out.push(event(format!("odoo:release:{key}"), System::Odoo, &key, now, EventBody::OrderReleased(order.clone())));
    out.push(event(format!("wms:reserved:{key}"), System::Wms, &key, now, EventBody::StockReserved(reserved)));
    out.push(event(
        format!("wms:accepted:{key}"),
        System::Wms,
        &key,
        now,
        EventBody::ReleasedToWarehouse(ReleasedToWarehouse { order_ref: key.clone(), wms_order_id: format!("W{n}") }),
    ));
    out.push(event(
        format!("wms:pick:{pick_id}"),
        System::Wms,
        &key,
        now,
        EventBody::PickConfirmed(PickConfirmed { order_ref: key.clone(), pick_id, lines: picked, complete: true }),
    ));
    out.push(event(
        format!("wms:issued:{shipment_id}"),
        System::Wms,
        &key,
        now,
        EventBody::GoodsIssued(GoodsIssued {
            order_ref: key.clone(),
            shipment_id: shipment_id.clone(),
            lines: shipped,
            packages: vec![Package { package_id: format!("PKG-{shipment_id}"), weight_grams: weight }],
        }),
    ));
    out.push(event(
        format!("carrier:booked:{shipment_id}"),
        System::Carrier,
        &key,
        now,
        EventBody::CarrierBooked(CarrierBooked {
            order_ref: key.clone(),
            shipment_id: shipment_id.clone(),
            carrier: ["DHL", "UPS", "DPD"][i % 3].into(),
            tracking_ref: format!("1Z{:010}", i * 7919),
        }),
    ));
    out.push(event(
        format!("carrier:pod:{shipment_id}"),
        System::Carrier,
        &key,
        now,
        EventBody::Delivered(Delivered { order_ref: key.clone(), shipment_id, signed_by: Some("reception".into()) }),
    ));
    out
}

pub fn to_record(e: &InboundEvent) -> anyhow::Result<Record> {
    Ok(record_for(&inbound_topic(e), e, waybill_schema::encode_event(e)?))
}

pub fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Nanoseconds every live thread of this process has run on a CPU (the sum of
/// `/proc/self/task/*/schedstat`): the coordinator plus exporter, librdkafka and sled threads.
pub fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        if let Some(ns) =
            std::fs::read_to_string(path).ok().and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(total)
}

/// The saga workload of pipeline row 2: orders `first..first + orders`, each a complete
/// order-to-fulfillment saga of seven inbound events, as one backlog across topics (every
/// order's Odoo and warehouse events, then all the carrier events; the coordinator merges
/// topics in append order).
pub fn saga_backlog(first: usize, orders: usize, now: Timestamp) -> anyhow::Result<Vec<Record>> {
    let catalog = world::catalog();
    let mut all = Vec::with_capacity(orders * 7);
    let mut carrier = Vec::with_capacity(orders * 2);
    for i in first..first + orders {
        for e in order_events(i, &catalog, now) {
            let r = to_record(&e)?;
            if e.meta.source.system == System::Carrier { carrier.push(r) } else { all.push(r) }
        }
    }
    all.extend(carrier);
    Ok(all)
}

/// The environment line under every table.
pub fn environment() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let rustc = command_output("rustc", &["-V"]).unwrap_or_else(|| "unknown".into());
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown".into());
    let kernel = command_output("uname", &["-sr"]).unwrap_or_else(|| "unknown".into());
    format!("{cores} cores, {rustc}, {kernel}, {date}")
}
