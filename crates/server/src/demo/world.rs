//! The simulated distributor: master data and the deterministic shape of each order
//! (which ones carry bad master data, get cancelled, run short, are picked late...).
//! Everything derives from the seed and the order number, so a restarted simulator
//! makes exactly the same choices.

use waybill_domain::event::{OrderLine, OrderReleased};
use waybill_domain::{Money, Qty, Timestamp};
use waybill_saga::Catalog;
use waybill_saga::catalog::Tracking;

/// Rates of the things that go wrong, per order.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Orders with bad master data (unknown SKU, wrong unit, missing tax code).
    pub bad_master_data: f64,
    /// Orders cancelled in Odoo some time after release.
    pub cancelled: f64,
    /// Orders the warehouse cannot fully reserve.
    pub shortage: f64,
    /// Orders picked in two confirmations.
    pub partial_pick: f64,
    /// Orders whose final pick is one unit short.
    pub short_pick: f64,
    /// Orders picked after the pick timeout.
    pub late_pick: f64,
    /// Orders shipped in two shipments.
    pub split_shipment: f64,
    /// One undecodable record per this many orders.
    pub bad_record_every: usize,
    /// Orders of which the customer returns one unit after the invoice is posted.
    pub returned: f64,
    /// Invoices finance refuses (a closed period).
    pub finance_refusal: f64,
    /// One purchase order per this many sale orders (0: none; see
    /// [`super::purchasing`]).
    pub purchase_every: usize,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            bad_master_data: 0.03,
            cancelled: 0.04,
            shortage: 0.08,
            partial_pick: 0.15,
            short_pick: 0.04,
            late_pick: 0.03,
            split_shipment: 0.10,
            bad_record_every: 100,
            returned: 0.06,
            finance_refusal: 0.01,
            purchase_every: super::purchasing::ORDERS_PER_PURCHASE,
        }
    }
}

impl Mix {
    /// Every order goes the happy way: no bad master data, cancellation, shortage, partial
    /// or late pick, split shipment, return or refusal, no undecodable records and no
    /// purchase orders. Each order ends `completed`.
    pub fn happy() -> Mix {
        Mix {
            bad_master_data: 0.0,
            cancelled: 0.0,
            shortage: 0.0,
            partial_pick: 0.0,
            short_pick: 0.0,
            late_pick: 0.0,
            split_shipment: 0.0,
            bad_record_every: 0,
            returned: 0.0,
            finance_refusal: 0.0,
            purchase_every: 0,
        }
    }
}

/// Number of products, customers.
pub const PRODUCTS: usize = 48;
pub const CUSTOMERS: usize = 200;

/// The products: `SKU-0000`…; every 6th is lot-tracked in kg, every 8th serial-tracked.
pub fn product(i: usize) -> (String, &'static str, Tracking) {
    let sku = format!("SKU-{i:04}");
    if i % 6 == 1 {
        (sku, "kg", Tracking::Lot)
    } else if i % 8 == 3 {
        (sku, "Units", Tracking::Serial)
    } else if i % 5 == 2 {
        (sku, "Box of 12", Tracking::None)
    } else {
        (sku, "Units", Tracking::None)
    }
}

/// The master data of the simulated distributor.
pub fn catalog() -> Catalog {
    let mut c = Catalog::default();
    for i in 0..PRODUCTS {
        let (sku, uom, tracking) = product(i);
        c = c.with_product(&sku, uom, tracking);
    }
    for i in 0..CUSTOMERS {
        c = c.with_customer(&format!("C{i:04}"));
        // A few new customers: their first invoice waits for an approver.
        if i % 25 == 7 {
            c.new_customers.insert(format!("C{i:04}"));
        }
    }
    for t in super::entities::ENTITIES.iter().flat_map(|e| e.tax_codes) {
        c = c.with_tax_code(t);
    }
    c
}

/// A deterministic generator for one order (or one of its events).
pub fn rng(seed: u64, order: usize, salt: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(
        seed ^ (order as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

/// The order name of order number `i` (0-based).
pub fn order_ref(i: usize) -> String {
    format!("SO{:06}", i + 1)
}

/// The order number of an order name.
pub fn order_index(order_ref: &str) -> Option<usize> {
    order_ref.strip_prefix("SO")?.parse::<usize>().ok()?.checked_sub(1)
}

/// What happens to one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fate {
    /// Released with bad master data.
    pub bad_master_data: bool,
    /// Cancelled after this many ms.
    pub cancel_after_ms: Option<u64>,
    /// Reservation short.
    pub shortage: bool,
    /// Picked in two confirmations.
    pub partial_pick: bool,
    /// Final pick one unit short.
    pub short_pick: bool,
    /// Picked late.
    pub late_pick: bool,
    /// Two shipments.
    pub split_shipment: bool,
    /// The customer returns a unit.
    pub returned: bool,
    /// Finance refuses the invoice.
    pub finance_refusal: bool,
}

/// The fate of order `i`.
pub fn fate(seed: u64, i: usize, mix: &Mix) -> Fate {
    let mut r = rng(seed, i, 1);
    Fate {
        bad_master_data: r.f64() < mix.bad_master_data,
        cancel_after_ms: (r.f64() < mix.cancelled).then(|| if r.bool() { r.u64(1..40) } else { r.u64(40..400) }),
        shortage: r.f64() < mix.shortage,
        partial_pick: r.f64() < mix.partial_pick,
        short_pick: r.f64() < mix.short_pick,
        late_pick: r.f64() < mix.late_pick,
        split_shipment: r.f64() < mix.split_shipment,
        returned: r.f64() < mix.returned,
        finance_refusal: r.f64() < mix.finance_refusal,
    }
}

/// Order `i` as Odoo releases it.
pub fn order(seed: u64, i: usize, mix: &Mix, now: Timestamp) -> OrderReleased {
    let mut r = rng(seed, i, 2);
    let company = super::entities::of_order(seed, i);
    let n_lines = r.usize(1..=5);
    let mut lines: Vec<OrderLine> = (0..n_lines)
        .map(|k| {
            let (sku, uom, tracking) = product(r.usize(0..PRODUCTS));
            let quantity = match uom {
                "kg" => Qty(r.i64(1..=40) * 250),
                _ if tracking == Tracking::Serial => Qty::units(r.i64(1..=3)),
                _ => Qty::units(r.i64(1..=12)),
            };
            OrderLine {
                line_no: (k as i32 + 1) * 10,
                sku,
                uom: uom.to_string(),
                quantity,
                unit_price: Money(r.i64(199..=25_000)),
                tax_code: Some(company.tax_codes[r.usize(0..company.tax_codes.len())].to_string()),
                requested_date: now.plus_secs(86_400.0 * r.f64() * 5.0),
                warehouse: "WH-MAIN".to_string(),
            }
        })
        .collect();
    if fate(seed, i, mix).bad_master_data {
        let l = &mut lines[r.usize(0..n_lines)];
        match r.u8(0..3) {
            0 => l.sku = format!("GHOST-{:04}", r.u16(..)),
            1 => l.uom = "Pallet".to_string(),
            _ => l.tax_code = None,
        }
    }
    OrderReleased {
        order_ref: order_ref(i),
        customer_ref: format!("C{:04}", r.usize(0..CUSTOMERS)),
        ship_to: format!("C{:04}-SHIP", r.usize(0..CUSTOMERS)),
        currency: company.currency.to_string(),
        client_order_ref: Some(format!("PO-{}", r.u32(10_000..99_999))),
        lines,
        company: Some(company.code.to_string()),
    }
}
