//! Event builders shared by the saga tests: the inbound builders of `waybill-test-util`,
//! and the master data the saga tests run against.
#![allow(dead_code)]

use waybill_saga::catalog::{Catalog, Tracking};
pub use waybill_test_util::inbound::*;

/// Products `PLAIN` (units), `LOTTED` (kg, lot-tracked) and `SERIAL` (serial-tracked),
/// customer `C1`, tax code `VAT20`.
pub fn catalog() -> Catalog {
    Catalog::default()
        .with_product("PLAIN", "Units", Tracking::None)
        .with_product("LOTTED", "kg", Tracking::Lot)
        .with_product("SERIAL", "Units", Tracking::Serial)
        .with_customer("C1")
        .with_tax_code("VAT20")
}

/// An order's eight inbound events from release to the invoice posted, in causal order:
/// released (one line of 2 `PLAIN`), reserved, accepted by the warehouse, picked,
/// issued as `<order>-SH`, booked, delivered, invoiced as `INV-<order>`. Its flow ends.
pub fn order_to_invoice(order: &str) -> Vec<waybill_domain::InboundEvent> {
    let sh = format!("{order}-SH");
    vec![
        released(order, vec![line(1, "PLAIN", "Units", 2)]),
        reserved(order, &[(1, 2, 0)]),
        accepted(order),
        pick(order, &format!("{order}-P"), vec![picked(1, "PLAIN", 2)], true),
        issued(order, &sh, &[(1, "PLAIN", 2)]),
        booked(order, &sh),
        delivered(order, &sh),
        invoice_posted(order, &sh, &format!("INV-{order}")),
    ]
}
