//! The warehouse double's stock in the connector demo: every product counted at go-live,
//! then moved by what the warehouse tells Waybill — goods issued, purchase receipts,
//! receipts sent back to the supplier, customer returns put back on the shelf — at the
//! moment ingestion takes the event. Reconciliation runs read it through the warehouse
//! connector's `stock_url`; the demo loses a few units of one product on the way, with no
//! movement behind them, for the run at the end to find.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use waybill_domain::event::ItemCondition;
use waybill_domain::{EventBody, InboundEvent};
use waybill_doubles::stock::StockLedger;

use super::world;

/// Units of each product at go-live.
pub const OPENING_UNITS: i64 = 5_000;

/// The product the demo's warehouse loses units of, and how many.
pub const DRIFT: (&str, i64) = ("SKU-0011", 12);

/// Each purchase receipt's accepted lines (sku, thousandths), by receipt id.
type Receipts = Arc<Mutex<HashMap<String, Vec<(String, i64)>>>>;

/// The warehouse's stock and what it needs to move it.
#[derive(Debug, Clone)]
pub struct WarehouseStock {
    /// On hand per product.
    pub ledger: StockLedger,
    /// Each purchase receipt's accepted lines, for when it is sent back.
    receipts: Receipts,
}

impl WarehouseStock {
    /// Every product of the world at [`OPENING_UNITS`].
    pub fn opening() -> Self {
        let skus = (0..world::PRODUCTS).map(|i| world::product(i).0);
        WarehouseStock { ledger: StockLedger::opening(skus, OPENING_UNITS * 1000), receipts: Arc::default() }
    }

    /// Moves the stock for an event the warehouse has just told Waybill about.
    pub fn told(&self, e: &InboundEvent) {
        match &e.body {
            EventBody::GoodsIssued(g) => {
                for l in &g.lines {
                    self.ledger.moved(&l.sku, -l.quantity.0, &format!("shipment {}", g.shipment_id));
                }
            }
            EventBody::GoodsReceived(r) => {
                let lines: Vec<(String, i64)> = r.lines.iter().map(|l| (l.sku.clone(), l.quantity.0)).collect();
                for (sku, q) in &lines {
                    self.ledger.moved(sku, *q, &format!("receipt {}", r.receipt_id));
                }
                self.receipts.lock().unwrap_or_else(|p| p.into_inner()).insert(r.receipt_id.clone(), lines);
            }
            EventBody::ReceiptCancelled(c) => {
                let lines = self.receipts.lock().unwrap_or_else(|p| p.into_inner()).remove(&c.receipt_id);
                for (sku, q) in lines.unwrap_or_default() {
                    self.ledger.moved(&sku, -q, &format!("return to supplier {}", c.receipt_id));
                }
            }
            EventBody::ReturnReceived(r) => {
                for l in r.lines.iter().filter(|l| l.condition == ItemCondition::Restock) {
                    self.ledger.moved(&l.sku, l.quantity.0, &format!("return receipt {}", r.receipt_id));
                }
            }
            _ => {}
        }
    }

    /// Loses [`DRIFT`]: units gone with no movement behind them.
    pub fn lose(&self) {
        self.ledger.drift(DRIFT.0, -DRIFT.1 * 1000);
    }
}
