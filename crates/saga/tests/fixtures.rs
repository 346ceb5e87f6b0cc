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
