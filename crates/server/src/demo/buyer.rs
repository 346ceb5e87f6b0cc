//! The buyer of the connector demo: places the world's purchase orders in the Odoo
//! double ([`super::purchasing`]) — `purchase.order` `create` named after the world's
//! order, then `button_confirm`, which creates the incoming receipt in Odoo — and, once
//! Waybill has the order (its Odoo poller read it), lets the supplier's side happen: the
//! warehouse posts the shipping notice, the receipts and any receipt sent back to
//! ingestion with its token, finance posts the supplier's bill, and the buyer closes a
//! short-delivered order in Odoo (`button_done`). Waybill validates the receipts and
//! returns goods in the Odoo double through its Odoo connector.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use waybill_connect::Failure;
use waybill_connect::odoo::poller::format as odoo_datetime;
use waybill_connect::odoo::{Odoo, OrmCall};
use waybill_domain::{EventBody, System};

use super::answers::event;
use super::channel::Seen;
use super::purchasing::{self, Step};
use super::systems::Scheduler;

/// A purchase order placed in Odoo, waiting for Waybill to have it.
struct Placed {
    key: String,
    odoo_id: i64,
    steps: Vec<Step>,
}

/// A close due in Odoo.
struct Close {
    at: Instant,
    odoo_id: i64,
    po_ref: String,
}

/// The buyer.
pub(super) struct Buyer {
    seed: u64,
    later: Arc<Scheduler>,
    vendors: HashMap<String, i64>,
    products: HashMap<String, i64>,
    currency: i64,
    placed: Vec<Placed>,
    closes: Vec<Close>,
}

impl Buyer {
    pub(super) fn new(
        seed: u64,
        later: Arc<Scheduler>,
        vendors: HashMap<String, i64>,
        products: HashMap<String, i64>,
        currency: i64,
    ) -> Self {
        Buyer { seed, later, vendors, products, currency, placed: Vec::new(), closes: Vec::new() }
    }

    /// Orders placed and not yet seen by Waybill, plus closes not yet made.
    pub(super) fn pending(&self) -> usize {
        self.placed.len() + self.closes.len()
    }

    /// Creates and confirms purchase order `j` in Odoo; idempotent (an order Odoo already
    /// has, from an attempt whose answer was lost, is not created again).
    pub(super) fn buy(&mut self, odoo: &Odoo, j: usize) -> Result<(), Failure> {
        let mut steps = purchasing::plan(self.seed, j, waybill_domain::Timestamp::now());
        let first = steps.remove(0);
        let EventBody::PurchaseOrderConfirmed(po) = first.body else {
            unreachable!("a purchasing plan starts with the confirmation")
        };
        let find = || -> Result<Option<(i64, String)>, Failure> {
            let rows = odoo.call(
                &OrmCall::new("purchase.order", "search_read")
                    .param("domain", json!([["name", "=", po.po_ref]]))
                    .param("fields", json!(["id", "state"])),
                None,
            )?;
            Ok(rows
                .as_array()
                .and_then(|r| r.first())
                .and_then(|r| Some((r["id"].as_i64()?, r["state"].as_str()?.to_string()))))
        };
        let (id, state) = match find()? {
            Some(found) => found,
            None => {
                let lines: Vec<serde_json::Value> = po
                    .lines
                    .iter()
                    .map(|l| {
                        json!([0, 0, {
                            "product_id": self.products.get(&l.sku),
                            "product_qty": l.quantity.0 as f64 / 1000.0,
                            "price_unit": l.unit_price.0 as f64 / 100.0,
                        }])
                    })
                    .collect();
                let vals = json!([{
                    "name": po.po_ref,
                    "partner_id": self.vendors.get(&po.supplier_ref),
                    "currency_id": self.currency,
                    // The French company buys (the default entity).
                    "company_id": super::entities::ENTITIES[0].odoo_company_id,
                    "date_planned": odoo_datetime(po.expected_at),
                    "order_line": lines,
                }]);
                odoo.call(&OrmCall::new("purchase.order", "create").param("vals_list", vals), None)?;
                find()?.ok_or_else(|| Failure::Refused {
                    reason: format!("Odoo did not keep purchase order {}", po.po_ref),
                })?
            }
        };
        if state == "draft" {
            odoo.call(&OrmCall::new("purchase.order", "button_confirm").ids(&[id]), None)?;
        }
        self.placed.push(Placed { key: waybill_domain::purchase::correlation_key(&po.po_ref), odoo_id: id, steps });
        Ok(())
    }

    /// Lets the supplier's side of each order Waybill now has happen, and closes the
    /// orders whose time has come. Returns whether it did anything.
    pub(super) fn tick(&mut self, odoo: &Odoo, seen: &Seen) -> bool {
        let mut did = false;
        let now = Instant::now();
        let mut waiting = Vec::with_capacity(self.placed.len());
        for p in std::mem::take(&mut self.placed) {
            if !seen(&p.key) {
                waiting.push(p);
                continue;
            }
            did = true;
            for s in p.steps {
                match s.body {
                    EventBody::PurchaseOrderClosed(c) => self.closes.push(Close {
                        at: now + Duration::from_millis(s.after_ms),
                        odoo_id: p.odoo_id,
                        po_ref: c.po_ref,
                    }),
                    body => {
                        debug_assert!(matches!(s.system, System::Wms | System::Finance));
                        self.later.push(Duration::from_millis(s.after_ms), event(s.id, s.system, &p.key, body), None);
                    }
                }
            }
        }
        self.placed = waiting;
        let mut keep = Vec::with_capacity(self.closes.len());
        for c in std::mem::take(&mut self.closes) {
            if c.at > now {
                keep.push(c);
                continue;
            }
            did = true;
            match odoo.call(&OrmCall::new("purchase.order", "button_done").ids(&[c.odoo_id]), None) {
                Ok(_) => {}
                Err(Failure::Refused { reason }) => {
                    tracing::warn!(po = %c.po_ref, %reason, "odoo refused to lock the purchase order");
                }
                Err(e) => {
                    tracing::warn!(po = %c.po_ref, error = %e, "cannot lock the purchase order in odoo; retrying");
                    keep.push(c);
                }
            }
        }
        self.closes = keep;
        did
    }
}
