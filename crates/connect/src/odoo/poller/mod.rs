//! The Odoo poller: what changed in Odoo since its cursors, as canonical events.
//!
//! Every `interval` it reads, model by model, the records changed since that model's
//! cursor (`search_read` with an explicit field list, ordered by `write_date, id`, a page
//! at a time, counted against the connector's throttle in the bulk lane of the same
//! target) and writes their events to `waybill.inbound.odoo`, keeping Odoo's names and ids
//! as source references:
//!
//! - `sale.order` in state `sale` or `cancel`: `OrderReleased` / `OrderCancelled`
//!   (`odoo:release:<order>`, `odoo:cancel:<order>`), keyed by the order's name;
//! - `purchase.order` in state `purchase`, `done` (locked) or `cancel`:
//!   `PurchaseOrderConfirmed` / `PurchaseOrderClosed` (`odoo:po:<order>`,
//!   `odoo:po-closed:<order>`), keyed `po:<order>` ([`purchase`]).
//!
//! Event ids are deterministic per business transition, so reading a record again can
//! only repeat an id the sagas already have.
//!
//! Each model has its own cursor — the last `(write_date, id)` and the records seen within
//! the overlap window — a record on `waybill.connect.state` (key `<connector>/<model>`,
//! e.g. `odoo/sale.order`, `odoo/purchase.order`), appended in the same batch as the
//! events it covers: a restart resumes exactly there, repeating nothing and skipping
//! nothing. Odoo stamps `write_date` when a transaction
//! starts, not when it commits, so a long transaction can commit a record dated before
//! the cursor; each poll therefore also re-reads the last `overlap` before the cursor and
//! takes what it has not seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use waybill_domain::event::{OrderCancelled, OrderLine, OrderReleased};
use waybill_domain::topic::{self, headers};
use waybill_domain::{Civil, EventBody, EventMeta, InboundEvent, SourceRef, System, Timestamp};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_telemetry::metrics as names;

use super::{Odoo, OrmCall, id_of, m2o, m2o_name, money_of, qty_of, str_field};
use crate::Failure;
use crate::target::Target;

/// Poller settings.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// The connector's name (the cursor's key, the metrics' `target`).
    pub connector: String,
    /// Time between polls.
    pub interval: Duration,
    /// Records per page.
    pub page: usize,
    /// How far before the cursor each poll looks again for late commits.
    pub overlap: Duration,
    /// Warehouse code for orders whose warehouse Odoo does not say.
    pub warehouse: String,
    /// Waybill's entity code of each Odoo company (`res.company` id), from the entities'
    /// `odoo_company_id`; empty when no entities are configured (orders then name none).
    pub companies: BTreeMap<i64, String>,
}

impl PollerConfig {
    /// The entity of an order's or purchase order's `company_id`: its mapped code, or
    /// `odoo-company-<id>` for a company no entity maps (the saga holds such an order
    /// with a master-data problem that names it).
    fn company(&self, record: &Value) -> Option<String> {
        if self.companies.is_empty() {
            return None;
        }
        let id = m2o(&record["company_id"])?;
        Some(self.companies.get(&id).cloned().unwrap_or_else(|| format!("{}{id}", waybill_domain::event::ODOO_COMPANY)))
    }
}

/// Where the poller is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `write_date` of the last record read (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub write_date: String,
    /// Its id.
    pub id: i64,
    /// Records read within the overlap window before the cursor: (id, `write_date state`).
    /// The state is part of it because Odoo's `write_date` has whole seconds: an order
    /// confirmed and cancelled within one second keeps its `write_date`, and only its
    /// state tells the second read from the first.
    pub seen: BTreeSet<(i64, String)>,
}

/// The cursor's schema (`schemas/waybill.connect/PollerCursor`).
const CURSOR_SCHEMA: &str = "waybill.connect.PollerCursor";

/// The cursor as its Avro record has it.
#[derive(Serialize, Deserialize)]
struct CursorRecord {
    write_date: String,
    id: i64,
    seen: Vec<SeenRecord>,
}

#[derive(Serialize, Deserialize)]
struct SeenRecord {
    id: i64,
    mark: String,
}

impl Cursor {
    /// The Confluent Avro record of `waybill.connect.PollerCursor`.
    pub fn encode(&self) -> waybill_schema::Result<Vec<u8>> {
        let record = CursorRecord {
            write_date: self.write_date.clone(),
            id: self.id,
            seen: self.seen.iter().map(|(id, mark)| SeenRecord { id: *id, mark: mark.clone() }).collect(),
        };
        waybill_schema::Registry::embedded().encode_record(CURSOR_SCHEMA, &record)
    }

    /// Reads a cursor record.
    pub fn decode(bytes: &[u8]) -> waybill_schema::Result<Cursor> {
        let r: CursorRecord = waybill_schema::Registry::embedded().decode_record(bytes)?;
        Ok(Cursor { write_date: r.write_date, id: r.id, seen: r.seen.into_iter().map(|s| (s.id, s.mark)).collect() })
    }
}

mod purchase;

/// A model the poller follows: which states count, which fields it reads, and how its
/// records become events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    SaleOrders,
    PurchaseOrders,
}

impl Feed {
    const ALL: [Feed; 2] = [Feed::SaleOrders, Feed::PurchaseOrders];

    fn model(self) -> &'static str {
        match self {
            Feed::SaleOrders => "sale.order",
            Feed::PurchaseOrders => "purchase.order",
        }
    }

    /// The states whose records become events.
    fn states(self) -> Value {
        match self {
            Feed::SaleOrders => json!(["sale", "cancel"]),
            Feed::PurchaseOrders => json!(["purchase", "done", "cancel"]),
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Feed::SaleOrders => SALE_ORDER_FIELDS,
            Feed::PurchaseOrders => purchase::ORDER_FIELDS,
        }
    }
}

const SALE_ORDER_FIELDS: &[&str] = &[
    "id",
    "name",
    "state",
    "partner_id",
    "partner_shipping_id",
    "client_order_ref",
    "currency_id",
    "company_id",
    "write_date",
    "date_order",
    "commitment_date",
    "warehouse_id",
];

/// The poller.
#[derive(Debug)]
pub struct Poller {
    cfg: PollerConfig,
    odoo: Arc<Odoo>,
    target: Arc<Target>,
    log: Arc<dyn EventLog>,
    /// One cursor per model, in the order of [`Feed::ALL`].
    cursors: Vec<(Feed, Cursor)>,
}

impl Poller {
    /// A poller of `odoo`, resuming from the cursor stored in `log`.
    pub fn new(
        cfg: PollerConfig,
        odoo: Arc<Odoo>,
        target: Arc<Target>,
        log: Arc<dyn EventLog>,
    ) -> waybill_log::Result<Self> {
        let mut cursors = Vec::with_capacity(Feed::ALL.len());
        for feed in Feed::ALL {
            let cursor = load_cursor(log.as_ref(), &cursor_key(&cfg.connector, feed.model()))?.unwrap_or_default();
            cursors.push((feed, cursor));
        }
        Ok(Poller { cfg, odoo, target, log, cursors })
    }

    /// The sale orders' cursor.
    pub fn cursor(&self) -> &Cursor {
        &self.cursors[0].1
    }

    /// The cursor of `model` (`sale.order`, `purchase.order`), if the poller follows it.
    pub fn cursor_of(&self, model: &str) -> Option<&Cursor> {
        self.cursors.iter().find(|(f, _)| f.model() == model).map(|(_, c)| c)
    }

    /// Polls every `interval` until `stop`.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) {
            match self.poll() {
                Ok(n) => {
                    if failing {
                        tracing::info!(waybill.connector = %self.cfg.connector, "odoo poller works again");
                        failing = false;
                    }
                    if n > 0 {
                        continue; // more may be waiting: the next page at once
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(waybill.connector = %self.cfg.connector, error = %e, "odoo poll failed; trying again next interval");
                        failing = true;
                    }
                }
            }
            let until = Instant::now() + self.cfg.interval;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(self.cfg.interval));
            }
        }
    }

    /// One poll: one page of changes per model, each written with its cursor. Returns how
    /// many records were new.
    pub fn poll(&mut self) -> Result<usize, String> {
        let mut new = 0;
        for k in 0..self.cursors.len() {
            new += self.poll_feed(k)?;
        }
        Ok(new)
    }

    /// One page of one model's changes, written with its cursor.
    fn poll_feed(&mut self, k: usize) -> Result<usize, String> {
        let (feed, cursor) = self.cursors[k].clone();
        let model = feed.model();
        let mut rows = Vec::new();
        if !cursor.write_date.is_empty() {
            // Late commits dated inside the overlap window.
            let from = shift(&cursor.write_date, -(self.cfg.overlap.as_secs() as i64));
            let domain = json!([
                ["state", "in", feed.states()],
                ["write_date", ">=", from],
                ["write_date", "<=", cursor.write_date]
            ]);
            // The whole window, a page at a time: a change near the cursor must not hide
            // behind a page of records already seen.
            let mut offset = 0;
            loop {
                let page = self.read_at(feed, domain.clone(), offset)?;
                let n = page.len();
                for r in page {
                    let date = str_field(&r, "write_date").unwrap_or_default();
                    if !cursor.seen.contains(&seen_key(&r))
                        && (date.as_str(), id_of(&r)) <= (cursor.write_date.as_str(), cursor.id)
                    {
                        rows.push(r);
                    }
                }
                if n < self.cfg.page {
                    break;
                }
                offset += n;
            }
        }
        let domain = if cursor.write_date.is_empty() {
            json!([["state", "in", feed.states()]])
        } else {
            let (d, id) = (&cursor.write_date, cursor.id);
            json!([
                ["state", "in", feed.states()],
                "|",
                ["write_date", ">", d],
                "&",
                ["write_date", "=", d],
                ["id", ">", id]
            ])
        };
        rows.extend(self.read_at(feed, domain, 0)?);
        if rows.is_empty() {
            return Ok(0);
        }
        metrics::counter!(names::CONNECTOR_POLLED, "target" => self.cfg.connector.clone(), "model" => model)
            .increment(rows.len() as u64);
        let events = match feed {
            Feed::SaleOrders => self.sale_events(&rows)?,
            Feed::PurchaseOrders => self.purchase_events(&rows, &cursor)?,
        };
        let mut next = cursor;
        for r in &rows {
            let key = (str_field(r, "write_date").unwrap_or_default(), id_of(r));
            if (key.0.as_str(), key.1) > (next.write_date.as_str(), next.id) {
                next.write_date = key.0.clone();
                next.id = key.1;
            }
            next.seen.insert(seen_key(r));
        }
        let horizon = shift(&next.write_date, -(self.cfg.overlap.as_secs() as i64));
        next.seen.retain(|(_, d)| *d >= horizon);
        let mut records = Vec::with_capacity(events.len() + 1);
        for e in &events {
            let value = waybill_schema::encode_event(e).map_err(|x| x.to_string())?;
            records.push(
                Record::keyed(topic::inbound(System::Odoo), e.meta.correlation_key.as_bytes().to_vec(), value)
                    .with_header(headers::EVENT_ID, e.meta.event_id.as_bytes().to_vec()),
            );
        }
        let value = next.encode().map_err(|e| e.to_string())?;
        records.push(Record::keyed(topic::CONNECT_STATE, cursor_key(&self.cfg.connector, model).into_bytes(), value));
        self.log.append(AppendBatch { records, positions: Vec::new() }).map_err(|e| e.to_string())?;
        metrics::counter!(names::RECORDS_PRODUCED, "topic" => topic::inbound(System::Odoo))
            .increment(events.len() as u64);
        self.cursors[k].1 = next;
        Ok(rows.len())
    }

    fn call(&self, c: OrmCall) -> Result<Value, String> {
        // Polls share the target's throttle and breaker with the commands.
        let started = loop {
            match self.target.admit(Instant::now()) {
                Ok(_) => break Instant::now(),
                Err((wait, _)) => std::thread::sleep(wait.min(Duration::from_millis(200))),
            }
        };
        let result = self.odoo.call(&c, None);
        let now = Instant::now();
        self.target.record(now, now - started, result.as_ref().map(|_| ()));
        result.map_err(|f: Failure| format!("{}.{}: {f}", c.model, c.method))
    }

    fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        order: &str,
        limit: usize,
    ) -> Result<Vec<Value>, String> {
        let v = self.call(
            OrmCall::new(model, "search_read")
                .param("domain", domain)
                .param("fields", json!(fields))
                .param("order", json!(order))
                .param("limit", json!(limit)),
        )?;
        v.as_array().cloned().ok_or_else(|| format!("{model}.search_read answered {v}"))
    }

    /// A page of `feed`'s records, oldest change first.
    fn read_at(&self, feed: Feed, domain: Value, offset: usize) -> Result<Vec<Value>, String> {
        let model = feed.model();
        let v = self.call(
            OrmCall::new(model, "search_read")
                .param("domain", domain)
                .param("fields", json!(feed.fields()))
                .param("order", json!("write_date asc, id asc"))
                .param("offset", json!(offset))
                .param("limit", json!(self.cfg.page)),
        )?;
        v.as_array().cloned().ok_or_else(|| format!("{model}.search_read answered {v}"))
    }

    fn sale_events(&self, orders: &[Value]) -> Result<Vec<InboundEvent>, String> {
        let confirmed: Vec<i64> =
            orders.iter().filter(|o| str_field(o, "state").as_deref() == Some("sale")).map(id_of).collect();
        let lines = if confirmed.is_empty() {
            Vec::new()
        } else {
            self.search_read(
                "sale.order.line",
                json!([["order_id", "in", confirmed]]),
                &["id", "order_id", "sequence", "product_id", "product_uom_qty", "price_unit", "product_uom", "tax_id"],
                "order_id asc, sequence asc, id asc",
                10_000,
            )?
        };
        let products = self.names("product.product", &ids(&lines, "product_id"), "default_code")?;
        let taxes = self.names("account.tax", &ids(&lines, "tax_id"), "name")?;
        let mut partner_ids = ids(orders, "partner_id");
        partner_ids.extend(ids(orders, "partner_shipping_id"));
        let partners = self.names("res.partner", &partner_ids, "ref")?;
        let mut out = Vec::with_capacity(orders.len());
        for o in orders {
            let name = str_field(o, "name").unwrap_or_default();
            let id = id_of(o);
            let occurred_at = str_field(o, "write_date").and_then(|d| parse(&d)).unwrap_or_else(Timestamp::now);
            let (kind, body) = match str_field(o, "state").as_deref() {
                Some("cancel") => (
                    "cancel",
                    EventBody::OrderCancelled(OrderCancelled {
                        order_ref: name.clone(),
                        reason: "cancelled in Odoo".into(),
                    }),
                ),
                _ => {
                    let requested = str_field(o, "commitment_date")
                        .or_else(|| str_field(o, "date_order"))
                        .and_then(|d| parse(&d))
                        .unwrap_or(occurred_at);
                    let warehouse = m2o_name(&o["warehouse_id"]).unwrap_or_else(|| self.cfg.warehouse.clone());
                    let lines: Vec<OrderLine> = lines
                        .iter()
                        .filter(|l| m2o(&l["order_id"]) == Some(id))
                        .enumerate()
                        .map(|(k, l)| {
                            let product = m2o(&l["product_id"]).unwrap_or_default();
                            OrderLine {
                                line_no: (k as i32 + 1) * 10,
                                sku: products
                                    .get(&product)
                                    .cloned()
                                    .unwrap_or_else(|| format!("odoo-product-{product}")),
                                uom: m2o_name(&l["product_uom"]).unwrap_or_else(|| "Units".into()),
                                quantity: qty_of(&l["product_uom_qty"]),
                                unit_price: money_of(&l["price_unit"]),
                                tax_code: many(&l["tax_id"]).first().and_then(|t| taxes.get(t).cloned()),
                                requested_date: requested,
                                warehouse: warehouse.clone(),
                            }
                        })
                        .collect();
                    let partner = |field: &str| {
                        m2o(&o[field]).map(|p| partners.get(&p).cloned().unwrap_or_else(|| format!("odoo-partner-{p}")))
                    };
                    (
                        "release",
                        EventBody::OrderReleased(OrderReleased {
                            order_ref: name.clone(),
                            customer_ref: partner("partner_id").unwrap_or_default(),
                            ship_to: partner("partner_shipping_id")
                                .or_else(|| partner("partner_id"))
                                .unwrap_or_default(),
                            currency: m2o_name(&o["currency_id"]).unwrap_or_else(|| "EUR".into()),
                            client_order_ref: str_field(o, "client_order_ref"),
                            company: self.cfg.company(o),
                            lines,
                        }),
                    )
                }
            };
            out.push(InboundEvent {
                meta: EventMeta {
                    event_id: format!("odoo:{kind}:{name}"),
                    source: SourceRef::new(System::Odoo, format!("sale.order/{id}")),
                    correlation_key: name,
                    occurred_at,
                    actor: None,
                },
                body,
            });
        }
        Ok(out)
    }

    /// `field` of the records `ids` of `model`, by id (records without it are left out).
    fn names(&self, model: &str, ids: &[i64], field: &str) -> Result<HashMap<i64, String>, String> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self.search_read(model, json!([["id", "in", ids]]), &["id", field], "id asc", ids.len())?;
        Ok(rows.iter().filter_map(|r| Some((id_of(r), str_field(r, field)?))).collect())
    }
}

/// The ids in a many2one (`[id, name]`) or many2many (`[id, …]`) value.
/// The distinct ids a relational `field` of `rows` names, ascending.
fn ids(rows: &[Value], field: &str) -> Vec<i64> {
    let set: BTreeSet<i64> = rows.iter().flat_map(|r| many(&r[field])).collect();
    set.into_iter().collect()
}

fn many(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(a) if a.len() == 2 && a[1].is_string() => a[0].as_i64().into_iter().collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_i64).collect(),
        Value::Number(n) => n.as_i64().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// What the cursor remembers of a record read within the overlap window: its id, and
/// its `write_date` followed by its state (so the window is pruned by date).
fn seen_key(r: &Value) -> (i64, String) {
    let date = str_field(r, "write_date").unwrap_or_default();
    (id_of(r), format!("{date} {}", str_field(r, "state").unwrap_or_default()))
}

/// Where a model's cursor is stored on `waybill.connect.state`: `<connector>/<model>`.
fn cursor_key(connector: &str, model: &str) -> String {
    format!("{connector}/{model}")
}

/// The last cursor stored under `key`.
pub fn load_cursor(log: &dyn EventLog, key: &str) -> waybill_log::Result<Option<Cursor>> {
    let mut last = None;
    for p in 0..log.partitions(topic::CONNECT_STATE)? as i32 {
        let mut from = 0;
        loop {
            let batch = log.read(topic::CONNECT_STATE, p, from, 1024)?;
            let Some(end) = batch.last() else { break };
            from = end.offset + 1;
            for r in batch.iter().filter(|r| r.key == key.as_bytes()) {
                match Cursor::decode(&r.value) {
                    Ok(c) => last = Some(c),
                    Err(e) => {
                        tracing::warn!(key, offset = r.offset, error = %e, "a poller cursor record does not decode; the one before it stands")
                    }
                }
            }
        }
    }
    Ok(last)
}

/// Parses Odoo's `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn parse(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    Some(Timestamp::from_civil(Civil { year: y, month: m, day: d, hour: hh, minute: mm, second: ss }))
}

/// Formats a time as Odoo's `YYYY-MM-DD HH:MM:SS`.
pub fn format(t: Timestamp) -> String {
    let c = t.civil();
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

fn shift(s: &str, secs: i64) -> String {
    parse(s).map(|t| format(Timestamp(t.0 + secs * 1_000_000))).unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odoo_datetimes_round_trip() {
        for s in ["1970-01-01 00:00:00", "2026-12-01 09:44:38", "2024-02-29 23:59:59", "2000-03-01 00:00:00"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(shift("2026-01-01 00:00:01", -2), "2025-12-31 23:59:59");
        assert_eq!(parse("2026-12-01 09:44:38").unwrap().0 / 1_000_000, 1_796_118_278);
    }

    #[test]
    fn a_cursor_round_trips_through_its_avro_record() {
        let c = Cursor {
            write_date: "2026-12-01 10:00:05".into(),
            id: 42,
            seen: [(41, "2026-12-01 10:00:04 sale".to_string()), (42, "2026-12-01 10:00:05 cancel".to_string())].into(),
        };
        let bytes = c.encode().unwrap();
        assert_eq!(bytes[0], 0, "Confluent framing");
        assert_eq!(Cursor::decode(&bytes).unwrap(), c);
    }

    #[test]
    fn many2x_values_give_their_ids() {
        assert_eq!(many(&json!([7, "Azure Interior"])), vec![7]);
        assert_eq!(many(&json!([1, 2, 3])), vec![1, 2, 3]);
        assert_eq!(many(&json!(false)), Vec::<i64>::new());
    }
}
