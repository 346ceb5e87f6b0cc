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
    /// The currency the amounts above are in: the entity's (set from `[entities]`, not
    /// written here); `None` when no entities are configured. A posting in another
    /// currency is held, since its amount cannot be held against these limits.
    #[serde(skip)]
    pub currency: Option<String>,
}

impl PostingPolicy {
    /// Why a `document` in `currency` is held under this policy, if it is: its amount
    /// cannot be held against limits in the entity's currency, so a person checks it. The
    /// one rule for invoices, credit notes and vendor bills.
    pub fn foreign_currency(&self, document: &str, currency: &str) -> Option<String> {
        let books = self.currency.as_deref().filter(|c| *c != currency)?;
        Some(format!(
            "{document} in {currency} but the entity keeps its books and approval limits in {books}; check the amount and the exchange rate"
        ))
    }
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
            currency: None,
        }
    }
}

/// How far a supplier's deliveries and bills may differ from the purchase order before
/// someone must look: a receipt beyond them raises `RECEIPT_MISMATCH`, a bill beyond them
/// is held for approval (three-way match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tolerance {
    /// Percent a line may be received above the quantity ordered.
    pub over_receipt_pct: f64,
    /// Percent a line may stay short of the quantity ordered once the order is closed.
    pub under_receipt_pct: f64,
    /// Percent a bill line's quantity may exceed what was received and not yet billed.
    pub bill_quantity_pct: f64,
    /// Percent a bill line's unit price may differ from the order's.
    pub bill_price_pct: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { over_receipt_pct: 5.0, under_receipt_pct: 5.0, bill_quantity_pct: 0.0, bill_price_pct: 2.0 }
    }
}

/// Procure-to-receive settings: tolerances, by default and per supplier. A supplier's
/// entry replaces the defaults for that supplier (fields it leaves out take the built-in
/// values). Held vendor bills are approved under the posting policy's limits and SLA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProcurementPolicy {
    /// Tolerances of every supplier without an entry of its own.
    pub tolerance: Tolerance,
    /// Tolerances by supplier reference (`[policy.procurement.suppliers.SUP-3]`).
    pub suppliers: std::collections::BTreeMap<String, Tolerance>,
}

impl ProcurementPolicy {
    /// The tolerances for a supplier.
    pub fn tolerance_for(&self, supplier_ref: &str) -> &Tolerance {
        self.suppliers.get(supplier_ref).unwrap_or(&self.tolerance)
    }
}

/// Cash application settings: how far a payment may differ from the invoices it pays
/// and still be applied, the difference written off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CashPolicy {
    /// A difference up to this amount (minor units) is written off.
    pub write_off_up_to: waybill_domain::Money,
    /// …or up to this many basis points of the amount, when set (the larger applies).
    pub write_off_basis_points: Option<u32>,
    /// When statements are applied: empty, each as it arrives; a cron schedule (five
    /// fields, or six with seconds first: `0 30 6,13 * * MON-FRI`), in windows — an
    /// imported statement waits for the first window after its import, fired by the
    /// coordinator's logged timer ticks, so a replay or restore sees the same windows.
    pub schedule: String,
    /// The IANA time zone the schedule is read in (`Europe/Paris`).
    pub time_zone: String,
}

impl Default for CashPolicy {
    fn default() -> Self {
        CashPolicy {
            write_off_up_to: waybill_domain::Money(100),
            write_off_basis_points: None,
            schedule: String::new(),
            time_zone: "UTC".into(),
        }
    }
}

impl CashPolicy {
    /// The windows statements are applied in; `None` when each is applied as it arrives.
    pub fn window(&self) -> Result<Option<crate::schedule::Schedule>, String> {
        if self.schedule.trim().is_empty() {
            return Ok(None);
        }
        crate::schedule::Schedule::parse(&self.schedule, &self.time_zone).map(Some)
    }

    /// Checks the schedule at start-up: it parses, and it fires (`0 0 30 2 *`, February
    /// 30th, would silently apply every statement at once).
    pub fn check(&self) -> Result<(), String> {
        match self.window()? {
            Some(w) if w.next_after(jiff::Timestamp::now()).is_none() => Err(format!(
                "{:?} never fires (no time in the next five years matches it); correct it, or leave it empty to apply each statement as it arrives",
                self.schedule
            )),
            _ => Ok(()),
        }
    }

    /// When a statement imported at `at` is applied: at once (`at`), or at the first window
    /// after it. A schedule that does not parse (refused at start-up) applies at once.
    pub fn applied_at(&self, at: waybill_domain::Timestamp) -> waybill_domain::Timestamp {
        let Ok(Some(window)) = self.window() else { return at };
        let Ok(from) = jiff::Timestamp::from_microsecond(at.0) else { return at };
        window.next_after(from).map_or(at, |w| waybill_domain::Timestamp(w.as_microsecond()))
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
    /// Procure-to-receive: receipt and three-way-match tolerances.
    pub procurement: ProcurementPolicy,
    /// Cash application: the write-off tolerance.
    pub cash: CashPolicy,
    /// The system of record of each event type (`GoodsIssued = "wms"`); entries override
    /// the defaults of [`Ownership::DEFAULTS`](crate::admission::Ownership::DEFAULTS).
    pub ownership: crate::admission::Ownership,
    /// The legal entities, each with its policy layered on this one (`[entities]`, built
    /// by [`crate::entity::Entities::build`]); empty when none are configured.
    #[serde(skip)]
    pub entities: std::sync::Arc<crate::entity::Entities>,
}

impl Policy {
    /// Checks the values no type rules out: the dotted key of the first that is wrong
    /// and what is wrong with it. The deployment's `[policy]` and every entity's layered
    /// policy pass the same check.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let pick = self.fulfillment.pick_timeout_secs;
        if pick.is_nan() || pick <= 0.0 {
            return Err((
                "policy.fulfillment.pick_timeout_secs",
                format!("{pick} must be a positive number of seconds"),
            ));
        }
        self.cash.check().map_err(|p| ("policy.cash.schedule", p))
    }

    /// The policy decisions about a record of entity `code` follow: the entity's, or this
    /// one when the record has no entity or no entities are configured.
    pub fn for_entity(&self, code: Option<&str>) -> &Policy {
        code.and_then(|c| self.entities.get(c)).map(|e| &e.policy).unwrap_or(self)
    }
}
