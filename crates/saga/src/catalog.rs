//! Master data the sagas check orders against: products (with unit of measure and
//! tracking), customers and tax codes. It mirrors what Odoo holds
//! (`product.product.default_code`, `uom_id`, `tracking`; `res.partner.ref`;
//! `account.tax`) and is loaded from a file or an Odoo export at start-up.
//!
//! The catalog is an input to decisions, never part of saga state: the journal records
//! the *outcome* of each check, so replaying the journal never consults the catalog.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// How a product is tracked in the warehouse (Odoo `product.template.tracking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tracking {
    /// Not tracked.
    #[default]
    None,
    /// By lot: every picked quantity names its lots.
    Lot,
    /// By serial: one serial per unit.
    Serial,
}

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Product code (`default_code`).
    pub sku: String,
    /// Unit of measure name; order lines must use it.
    pub uom: String,
    /// Lot / serial tracking.
    #[serde(default)]
    pub tracking: Tracking,
    /// Archived products cannot be ordered.
    #[serde(default = "yes")]
    pub active: bool,
    /// List price in minor units; invoices whose unit price differs from it by more than
    /// the posting policy's tolerance are held for approval.
    #[serde(default)]
    pub list_price: Option<waybill_domain::Money>,
}

fn yes() -> bool {
    true
}

/// Master data: products, customers and tax codes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Products by SKU.
    #[serde(default)]
    pub products: BTreeMap<String, Product>,
    /// Known customer references.
    #[serde(default)]
    pub customers: BTreeSet<String>,
    /// Valid tax codes.
    #[serde(default)]
    pub tax_codes: BTreeSet<String>,
    /// Customers on credit hold: their invoices are held for approval.
    #[serde(default)]
    pub credit_hold: BTreeSet<String>,
    /// New customers: their first invoice is held when the policy says so.
    #[serde(default)]
    pub new_customers: BTreeSet<String>,
}

impl Catalog {
    /// Adds a product.
    pub fn with_product(mut self, sku: &str, uom: &str, tracking: Tracking) -> Self {
        self.products.insert(
            sku.to_string(),
            Product { sku: sku.to_string(), uom: uom.to_string(), tracking, active: true, list_price: None },
        );
        self
    }

    /// Adds a customer.
    pub fn with_customer(mut self, customer: &str) -> Self {
        self.customers.insert(customer.to_string());
        self
    }

    /// Adds a tax code.
    pub fn with_tax_code(mut self, code: &str) -> Self {
        self.tax_codes.insert(code.to_string());
        self
    }

    /// The product with `sku`.
    pub fn product(&self, sku: &str) -> Option<&Product> {
        self.products.get(sku)
    }

    /// Tracking of `sku` (untracked when unknown).
    pub fn tracking(&self, sku: &str) -> Tracking {
        self.products.get(sku).map(|p| p.tracking).unwrap_or_default()
    }
}
