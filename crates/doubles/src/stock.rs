//! The warehouse double's stock: on hand per product, moved by what the warehouse does
//! (receipts, shipments, restocked returns, goods sent back), served a page at a time to
//! reconciliation runs (see `waybill_connect::stock` for the shape), and open to drift —
//! a change with no movement behind it, which is what a reconciliation must find.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::http_target::Reads;

#[derive(Debug, Clone, Default)]
struct Position {
    /// Thousandths of the unit.
    on_hand: i64,
    last_movement: Option<String>,
}

/// On hand per product; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct StockLedger {
    inner: Arc<Mutex<BTreeMap<String, Position>>>,
}

impl StockLedger {
    /// A ledger with `on_hand` (thousandths) of each of `skus`, as counted at go-live.
    pub fn opening(skus: impl IntoIterator<Item = String>, on_hand: i64) -> Self {
        let ledger = StockLedger::default();
        {
            let mut m = ledger.lock();
            for sku in skus {
                m.insert(sku, Position { on_hand, last_movement: Some("opening count".into()) });
            }
        }
        ledger
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Position>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The warehouse moved `delta` (thousandths; negative out) of `sku` by `movement`
    /// (`shipment SHP-1`).
    pub fn moved(&self, sku: &str, delta: i64, movement: &str) {
        let mut m = self.lock();
        let p = m.entry(sku.to_string()).or_default();
        p.on_hand += delta;
        p.last_movement = Some(movement.to_string());
    }

    /// Stock changes with no movement behind it (a lost pallet, a wrong count, a bug):
    /// the last movement stays what it was.
    pub fn drift(&self, sku: &str, delta: i64) {
        self.lock().entry(sku.to_string()).or_default().on_hand += delta;
    }

    /// On hand of `sku` (thousandths).
    pub fn on_hand(&self, sku: &str) -> i64 {
        self.lock().get(sku).map_or(0, |p| p.on_hand)
    }

    /// One page, for `GET /v1/stock?limit=<n>[&after=<sku>]`.
    pub fn page(&self, query: &str) -> Result<Value, (u16, String)> {
        let mut limit = 100usize;
        let mut after: Option<String> = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or((400, format!("limit {v:?}: expected a number from 1 to 1000")))?;
                }
                "after" => after = Some(decode(v)),
                other => return Err((400, format!("unknown query parameter {other:?}; use limit and after"))),
            }
        }
        let m = self.lock();
        let from = match &after {
            Some(a) => m.range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => m.range::<String, _>(..),
        };
        let items: Vec<(&String, &Position)> = from.take(limit + 1).collect();
        let more = items.len() > limit;
        let page: Vec<Value> = items
            .iter()
            .take(limit)
            .map(|(sku, p)| json!({"sku": sku, "on_hand": p.on_hand as f64 / 1000.0, "last_movement": p.last_movement}))
            .collect();
        let next = if more { items.get(limit - 1).map(|(s, _)| (*s).clone()) } else { None };
        Ok(json!({"items": page, "next": next}))
    }

    /// The ledger as the read handler of an [`HttpTarget`](crate::http_target::HttpTarget).
    pub fn reads(&self) -> Reads {
        let ledger = self.clone();
        Arc::new(move |query| ledger.page(query))
    }
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_product_once_and_drift_keeps_the_last_movement() {
        let l = StockLedger::opening((0..5).map(|i| format!("SKU-{i}")), 10_000);
        l.moved("SKU-1", -2_000, "shipment SHP-1");
        l.drift("SKU-1", -500);
        let mut seen = Vec::new();
        let mut query = "limit=2".to_string();
        loop {
            let p = l.page(&query).unwrap();
            for i in p["items"].as_array().unwrap() {
                seen.push((i["sku"].as_str().unwrap().to_string(), i["on_hand"].as_f64().unwrap()));
            }
            match p["next"].as_str() {
                Some(n) => query = format!("limit=2&after={n}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[1], ("SKU-1".to_string(), 7.5));
        let p = l.page("limit=1&after=SKU-0").unwrap();
        assert_eq!(p["items"][0]["last_movement"], "shipment SHP-1");
        assert_eq!(l.page("limit=0").unwrap_err().0, 400);
        assert_eq!(decode("SKU%2F1"), "SKU/1");
    }
}
