//! Odoo and the sales channel of the connector demo.
//!
//! [`start_odoo`] starts the Odoo double (JSON-RPC, 17.0) on loopback and seeds it with
//! the world's master data: products with their internal reference (`default_code`) and
//! tracking, customers with their reference (`C0000`…) and shipping addresses
//! (`C0000-SHIP`), the units, the tax codes, EUR and the warehouse `WH-MAIN` — and the
//! `GHOST-…` products of the bad-master-data orders, which Odoo has and Waybill's catalog
//! does not.
//!
//! The [`Channel`] is the web shop and the sales team: it creates each order in Odoo over
//! JSON-RPC (`sale.order` `create` named after the world's order, then `action_confirm`)
//! at the demo's rate, and cancels the orders the world says are cancelled with
//! `action_cancel` (context `disable_cancel_warning`, as Odoo's cancel wizard does) some
//! time after Waybill has the order. Waybill learns about both only through its Odoo
//! poller. The channel is also the misbehaving Kafka producer that writes the demo's
//! undecodable records straight to the inbound topics, and it holds the buyer
//! ([`super::buyer`]), who places the world's purchase orders in Odoo, and the bank
//! ([`super::bank`]), whose statements pay the invoices finance posted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waybill_connect::Failure;
use waybill_connect::odoo::poller::format as odoo_datetime;
use waybill_connect::odoo::{Odoo, OrmCall};
use waybill_domain::Money;
use waybill_domain::event::OrderReleased;
use waybill_doubles::odoo::{OdooConfig, OdooDouble};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_saga::catalog::Tracking;

use super::bank::Bank;
use super::buyer::Buyer;
use super::entities;
use super::systems::Scheduler;
use super::world::{self, Mix};
use crate::ingest::EVENT_ID_HEADER;

/// Odoo ids of the master data, by the references Waybill knows them by.
#[derive(Debug, Clone, Default)]
pub struct MasterData {
    products: HashMap<String, i64>,
    partners: HashMap<String, i64>,
    vendors: HashMap<String, i64>,
    uoms: HashMap<String, i64>,
    taxes: HashMap<String, i64>,
    currencies: HashMap<String, i64>,
    warehouse: i64,
}

/// Starts the Odoo double and seeds it for `orders` orders of `seed`.
pub fn start_odoo(orders: usize, seed: u64, mix: &Mix) -> anyhow::Result<(OdooDouble, MasterData)> {
    let odoo = OdooDouble::try_start(OdooConfig::default())
        .map_err(|e| anyhow::anyhow!("the demo's Odoo double did not start: {e}"))?;
    let mut m = MasterData {
        warehouse: odoo.create("stock.warehouse", json!({"name": "WH-MAIN", "code": "WH"})),
        ..MasterData::default()
    };
    // The two companies, in the order their `odoo_company_id` says, each with its currency.
    for e in &entities::ENTITIES {
        let currency = odoo.create("res.currency", json!({"name": e.currency}));
        let company = odoo.create("res.company", json!({"name": e.name, "currency_id": currency}));
        anyhow::ensure!(company == e.odoo_company_id, "the Odoo double gave {} id {company}", e.name);
        m.currencies.insert(e.currency.to_string(), currency);
    }
    for uom in ["Units", "kg", "Box of 12", "Pallet"] {
        m.uoms.insert(uom.into(), odoo.create("uom.uom", json!({"name": uom})));
    }
    for (code, amount) in [("VAT20", 20.0), ("VAT10", 10.0), ("VAT0", 0.0), ("US-SALES", 8.25), ("US-EXEMPT", 0.0)] {
        m.taxes.insert(code.to_string(), odoo.create("account.tax", json!({"name": code, "amount": amount})));
    }
    let product = |m: &mut MasterData, sku: &str, tracking: Tracking| {
        let tracking = match tracking {
            Tracking::Lot => "lot",
            Tracking::Serial => "serial",
            Tracking::None => "none",
        };
        let id = odoo.create(
            "product.product",
            json!({"default_code": sku, "name": format!("Product {sku}"), "tracking": tracking, "type": "product", "list_price": 10.0}),
        );
        m.products.insert(sku.to_string(), id);
    };
    for i in 0..world::PRODUCTS {
        let (sku, _, tracking) = world::product(i);
        product(&mut m, &sku, tracking);
    }
    // The products behind the bad-master-data orders: created in Odoo, unknown to Waybill.
    let now = waybill_domain::Timestamp::now();
    for i in 0..orders {
        for l in world::order(seed, i, mix, now).lines {
            if !m.products.contains_key(&l.sku) {
                product(&mut m, &l.sku, Tracking::None);
            }
        }
    }
    for i in 0..world::CUSTOMERS {
        for r in [format!("C{i:04}"), format!("C{i:04}-SHIP")] {
            let id = odoo.create("res.partner", json!({"name": format!("Customer {r}"), "ref": r}));
            m.partners.insert(r, id);
        }
    }
    for (r, name) in super::purchasing::SUPPLIERS {
        m.vendors.insert(r.to_string(), odoo.create("res.partner", json!({"name": name, "ref": r})));
    }
    Ok((odoo, m))
}

/// What the channel does.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Orders to create.
    pub orders: usize,
    /// Seed of the world.
    pub seed: u64,
    /// Orders per second (0: as fast as Odoo takes them).
    pub rate: f64,
    /// What goes wrong how often.
    pub mix: Mix,
}

/// Counters of the channel.
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// Orders created and confirmed in Odoo.
    pub created: AtomicU64,
    /// Orders cancelled in Odoo.
    pub cancelled: AtomicU64,
    /// Cancellations Odoo refused (the delivery was already done).
    pub cancel_refused: AtomicU64,
    /// Undecodable records written to the inbound topics.
    pub bad_records: AtomicU64,
    /// Orders still to create plus cancellations still to make.
    pub pending: AtomicU64,
}

/// Whether Waybill has seen an order (the cancellation clock starts then).
pub type Seen = Arc<dyn Fn(&str) -> bool + Send + Sync>;

struct Cancel {
    order_ref: String,
    odoo_id: i64,
    after: Duration,
    seen_at: Option<Instant>,
}

/// The sales channel.
pub struct Channel {
    odoo: Odoo,
    master: MasterData,
    cfg: ChannelConfig,
    log: Arc<dyn EventLog>,
    seen: Seen,
    stats: Arc<ChannelStats>,
    next: usize,
    cancels: Vec<Cancel>,
    buyer: Buyer,
    bank: Bank,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("next", &self.next).field("cancels", &self.cancels.len()).finish()
    }
}

/// Orders created per `create` call.
const BATCH: usize = 50;

impl Channel {
    /// A channel creating orders in `odoo` (a JSON-RPC client) with `master`'s ids; the
    /// buyer in it places purchase orders, and the warehouse and finance post the
    /// supplier's side through `later`.
    pub(super) fn new(
        odoo: Odoo,
        master: MasterData,
        cfg: ChannelConfig,
        log: Arc<dyn EventLog>,
        seen: Seen,
        later: Arc<Scheduler>,
        bank: Bank,
    ) -> Self {
        let stats = Arc::new(ChannelStats::default());
        stats.pending.store(cfg.orders as u64, Ordering::Relaxed);
        let buyer = Buyer::new(
            cfg.seed,
            later,
            master.vendors.clone(),
            master.products.clone(),
            master.currencies[entities::ENTITIES[0].currency],
        );
        Channel { odoo, master, cfg, log, seen, stats, next: 0, cancels: Vec::new(), buyer, bank }
    }

    /// Counters.
    pub fn stats(&self) -> Arc<ChannelStats> {
        self.stats.clone()
    }

    /// Runs until every order is created and every cancellation made, or `stop`.
    pub fn run(&mut self, stop: &AtomicBool) {
        let start = Instant::now();
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) {
            let due = if self.cfg.rate > 0.0 {
                ((start.elapsed().as_secs_f64() * self.cfg.rate) as usize + 1).min(self.cfg.orders)
            } else {
                self.cfg.orders
            };
            let batch: Vec<usize> = (self.next..due.min(self.next + BATCH)).collect();
            let mut busy = !batch.is_empty();
            if !batch.is_empty() {
                match self.place(&batch) {
                    Ok(()) => {
                        if failing {
                            tracing::info!("sales channel reaches Odoo again");
                            failing = false;
                        }
                        self.next = batch[batch.len() - 1] + 1;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "sales channel cannot place orders in Odoo; retrying");
                            failing = true;
                        }
                        busy = false;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
            busy |= self.cancel_due();
            busy |= self.buyer.tick(&self.odoo, &self.seen);
            busy |= self.bank.tick();
            let pending =
                (self.cfg.orders - self.next) + self.cancels.len() + self.buyer.pending() + self.bank.pending();
            self.stats.pending.store(pending as u64, Ordering::Relaxed);
            if !busy {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Creates and confirms orders `batch` in Odoo; idempotent (an order Odoo already has,
    /// from an attempt whose answer was lost, is not created again).
    fn place(&mut self, batch: &[usize]) -> Result<(), Failure> {
        let now = waybill_domain::Timestamp::now();
        let orders: Vec<OrderReleased> =
            batch.iter().map(|i| world::order(self.cfg.seed, *i, &self.cfg.mix, now)).collect();
        let names: Vec<&str> = orders.iter().map(|o| o.order_ref.as_str()).collect();
        let mut existing = self.find(&names)?;
        let missing: Vec<Value> =
            orders.iter().filter(|o| !existing.contains_key(&o.order_ref)).map(|o| self.vals(o)).collect();
        if !missing.is_empty() {
            self.odoo.call(&OrmCall::new("sale.order", "create").param("vals_list", Value::Array(missing)), None)?;
            existing = self.find(&names)?;
        }
        let drafts: Vec<i64> = existing.values().filter(|(_, state)| state == "draft").map(|(id, _)| *id).collect();
        if !drafts.is_empty() {
            self.odoo.call(&OrmCall::new("sale.order", "action_confirm").ids(&drafts), None)?;
        }
        let every = self.cfg.mix.purchase_every;
        for i in batch.iter().filter(|i| every > 0 && i.is_multiple_of(every)) {
            self.buyer.buy(&self.odoo, i / every)?;
        }
        for (i, o) in batch.iter().zip(&orders) {
            self.stats.created.fetch_add(1, Ordering::Relaxed);
            let fate = world::fate(self.cfg.seed, *i, &self.cfg.mix);
            if let (Some(ms), Some((id, _))) = (fate.cancel_after_ms, existing.get(&o.order_ref)) {
                self.cancels.push(Cancel {
                    order_ref: o.order_ref.clone(),
                    odoo_id: *id,
                    after: Duration::from_millis(ms),
                    seen_at: None,
                });
            }
            let every = self.cfg.mix.bad_record_every;
            if every > 0 && i % every == every / 2 {
                self.inject_garbage(*i, &o.order_ref);
            }
        }
        Ok(())
    }

    /// Orders named `names` in Odoo: name → (id, state).
    fn find(&self, names: &[&str]) -> Result<BTreeMap<String, (i64, String)>, Failure> {
        let rows = self.odoo.call(
            &OrmCall::new("sale.order", "search_read")
                .param("domain", json!([["name", "in", names]]))
                .param("fields", json!(["id", "name", "state"])),
            None,
        )?;
        Ok(rows
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((r["name"].as_str()?.to_string(), (r["id"].as_i64()?, r["state"].as_str()?.to_string())))
            })
            .collect())
    }

    /// The `sale.order` values of an order.
    fn vals(&self, o: &OrderReleased) -> Value {
        let m = &self.master;
        let lines: Vec<Value> = o
            .lines
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let taxes: Vec<i64> = l.tax_code.iter().filter_map(|t| m.taxes.get(t).copied()).collect();
                json!([0, 0, {
                    "sequence": (k + 1) * 10,
                    "product_id": m.products.get(&l.sku),
                    "product_uom_qty": l.quantity.0 as f64 / 1000.0,
                    "price_unit": money(l.unit_price),
                    "product_uom": m.uoms.get(&l.uom),
                    "tax_id": [[6, 0, taxes]],
                }])
            })
            .collect();
        let commitment = o.lines.iter().map(|l| l.requested_date).max().map(odoo_datetime);
        json!({
            "name": o.order_ref,
            "partner_id": m.partners.get(&o.customer_ref),
            "partner_shipping_id": m.partners.get(&o.ship_to),
            "client_order_ref": o.client_order_ref,
            "currency_id": m.currencies.get(&o.currency),
            "company_id": entities::of_code(o.company.as_deref()).odoo_company_id,
            "warehouse_id": m.warehouse,
            "commitment_date": commitment,
            "order_line": lines,
        })
    }

    /// Cancels the orders whose time has come; returns whether it did anything.
    fn cancel_due(&mut self) -> bool {
        let now = Instant::now();
        let mut did = false;
        let mut keep = Vec::with_capacity(self.cancels.len());
        for mut c in std::mem::take(&mut self.cancels) {
            if c.seen_at.is_none() && (self.seen)(&c.order_ref) {
                c.seen_at = Some(now);
            }
            if c.seen_at.is_none_or(|at| now < at + c.after) {
                keep.push(c);
                continue;
            }
            did = true;
            let call = OrmCall::new("sale.order", "action_cancel")
                .ids(&[c.odoo_id])
                .context("disable_cancel_warning", json!(true));
            match self.odoo.call(&call, None) {
                Ok(_) => {
                    self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                Err(Failure::Refused { reason }) => {
                    // The customer called too late: the delivery is done in Odoo.
                    tracing::info!(waybill.order.ref = %c.order_ref, %reason, "odoo refused the cancellation");
                    self.stats.cancel_refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(waybill.order.ref = %c.order_ref, error = %e, "cannot cancel in odoo; retrying");
                    keep.push(c);
                }
            }
        }
        self.cancels = keep;
        did
    }

    /// Writes the two undecodable records of order `i` to the inbound topics, the way a
    /// broken producer would.
    fn inject_garbage(&self, i: usize, key: &str) {
        let records: Vec<Record> = super::sim::bad_records(i, key)
            .into_iter()
            .map(|(id, topic, bytes)| {
                Record::keyed(topic, key.to_string(), bytes).with_header(EVENT_ID_HEADER, id.into_bytes())
            })
            .collect();
        let n = records.len() as u64;
        match self.log.append(AppendBatch { records, positions: Vec::new() }) {
            Ok(_) => {
                self.stats.bad_records.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the demo's undecodable records"),
        }
    }
}

fn money(m: Money) -> f64 {
    m.0 as f64 / 100.0
}
