//! Saga policy: the timing and business settings that decisions depend on.

use serde::{Deserialize, Serialize};

/// Settings for the order-to-fulfillment saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FulfillmentPolicy {
    /// Seconds the warehouse has, from release, to confirm the pick before a
    /// `PICK_OVERDUE` exception is raised.
    pub pick_timeout_secs: f64,
}

impl Default for FulfillmentPolicy {
    fn default() -> Self {
        FulfillmentPolicy { pick_timeout_secs: 4.0 * 3600.0 }
    }
}

/// When a shipment is invoiced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InvoiceTrigger {
    /// When the goods leave the warehouse.
    #[default]
    GoodsIssue,
    /// On proof of delivery.
    Delivery,
}

/// The posting policy: when invoices and credit notes are held for approval, who may
/// approve how much, and what returns cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostingPolicy {
    /// When shipments are invoiced by default.
    pub invoice_on: InvoiceTrigger,
    /// Customers invoiced on proof of delivery instead (entity or customer policy).
    pub invoice_on_delivery_for: std::collections::BTreeSet<String>,
    /// Invoices above this amount (minor units) are held.
    pub hold_invoices_above: waybill_domain::Money,
    /// Unit price variance from the list price, in percent, above which an invoice is held.
    pub price_tolerance_pct: f64,
    /// Hold invoices to customers flagged as new in the master data (the catalog's
    /// `new_customers`, Odoo's onboarding flag) until the flag is cleared.
    pub hold_first_invoice_to_new_customer: bool,
    /// Credit notes above this amount (minor units) are held.
    pub hold_credit_notes_above: waybill_domain::Money,
    /// Restocking fee on returned goods that go back to stock, in percent.
    pub restocking_fee_pct: f64,
    /// Seconds a held posting may wait before it is escalated.
    pub approval_sla_secs: f64,
    /// The highest amount (minor units) each role may approve. Roles not listed may not
    /// decide postings at all.
    pub approval_limits: std::collections::BTreeMap<String, waybill_domain::Money>,
}

impl Default for PostingPolicy {
    fn default() -> Self {
        PostingPolicy {
            invoice_on: InvoiceTrigger::GoodsIssue,
            invoice_on_delivery_for: Default::default(),
            hold_invoices_above: waybill_domain::Money(5_000_00),
            price_tolerance_pct: 5.0,
            hold_first_invoice_to_new_customer: true,
            hold_credit_notes_above: waybill_domain::Money(500_00),
            restocking_fee_pct: 10.0,
            approval_sla_secs: 24.0 * 3600.0,
            approval_limits: [
                ("approver".to_string(), waybill_domain::Money(10_000_00)),
                ("senior-approver".to_string(), waybill_domain::Money(i64::MAX)),
                ("admin".to_string(), waybill_domain::Money(i64::MAX)),
            ]
            .into_iter()
            .collect(),
        }
    }
}

/// All saga settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Order to fulfillment.
    pub fulfillment: FulfillmentPolicy,
    /// Ship-to-invoice and returns: held postings and approvals.
    pub posting: PostingPolicy,
    /// The system of record of each event type (`GoodsIssued = "wms"`); entries override
    /// the defaults of [`Ownership::DEFAULTS`](crate::admission::Ownership::DEFAULTS).
    pub ownership: crate::admission::Ownership,
}
