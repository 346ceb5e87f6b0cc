//! Procure-to-receive: the purchase order Odoo confirmed, the supplier's advance shipping
//! notice, the warehouse's receipts, the supplier's bill, and what Waybill asks Odoo and
//! finance to do with them. The inbound events, commands and journal events of the flow
//! use these records; they are keyed by the purchase order (`po:<name>`).

use serde::{Deserialize, Serialize};

use crate::event::LotQty;
use crate::value::{Money, Qty, Timestamp};

/// The prefix of a purchase order's correlation key.
pub const KEY_PREFIX: &str = "po:";

/// The correlation key of a purchase order's flow: `po:P00042`.
pub fn correlation_key(po_ref: &str) -> String {
    format!("{KEY_PREFIX}{po_ref}")
}

/// One line of a confirmed purchase order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseLine {
    /// Line number within the order (Odoo `purchase.order.line` sequence).
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity ordered.
    pub quantity: Qty,
    /// Agreed price per unit, minor units, tax excluded.
    pub unit_price: Money,
}

/// Odoo confirmed a purchase order (`purchase.order` in state `purchase`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseOrderConfirmed {
    /// Purchase order name (`P00042`).
    pub po_ref: String,
    /// The supplier's reference in Odoo (`res.partner` ref).
    pub supplier_ref: String,
    /// The supplier's name.
    pub supplier_name: String,
    /// ISO 4217 currency of the prices.
    pub currency: String,
    /// The legal entity (company) that buys, by its code in `[entities]`; `None`: the
    /// default entity. In the journal (`PurchaseOpened`), the entity the saga resolved.
    pub company: Option<String>,
    /// Lines ordered.
    pub lines: Vec<PurchaseLine>,
    /// When the goods are expected (Odoo `date_planned`).
    pub expected_at: Timestamp,
}

/// Odoo closed a purchase order: nothing more will be received (the buyer locked it or
/// cancelled what is still open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseOrderClosed {
    /// Purchase order name.
    pub po_ref: String,
    /// Why, in the buyer's words.
    pub reason: String,
}

/// One line of an advance shipping notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipNoticeLine {
    /// Line number within the notice.
    pub asn_line_no: i32,
    /// The purchase order line shipped.
    pub po_line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity shipped.
    pub quantity: Qty,
    /// Lots shipped (lot-tracked products).
    pub lots: Vec<LotQty>,
    /// Serials shipped (serial-tracked products).
    pub serials: Vec<String>,
}

/// The supplier's advance shipping notice (EDI DESADV or the supplier portal), as the
/// warehouse received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipNotice {
    /// Purchase order name.
    pub po_ref: String,
    /// The notice's id (unique per supplier shipment).
    pub asn_id: String,
    /// The supplier's reference.
    pub supplier_ref: String,
    /// When the supplier shipped.
    pub shipped_at: Timestamp,
    /// Lines shipped.
    pub lines: Vec<ShipNoticeLine>,
}

/// One line of a receipt at the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedLine {
    /// The purchase order line received.
    pub po_line_no: i32,
    /// The notice line it was announced on, when the receipt was against a notice.
    pub asn_line_no: Option<i32>,
    /// Product code.
    pub sku: String,
    /// Quantity accepted into stock.
    pub quantity: Qty,
    /// Quantity received damaged (not accepted into stock).
    pub damaged: Qty,
    /// Lots received.
    pub lots: Vec<LotQty>,
    /// Serials received.
    pub serials: Vec<String>,
    /// Bin put away to.
    pub bin: String,
}

/// The warehouse received goods against a purchase order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodsReceipt {
    /// Purchase order name.
    pub po_ref: String,
    /// The warehouse's receipt id (one posting to Odoo per receipt).
    pub receipt_id: String,
    /// The notice received against, if any.
    pub asn_id: Option<String>,
    /// Lines received.
    pub lines: Vec<ReceivedLine>,
}

/// Odoo validated the incoming picking of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptValidated {
    /// Purchase order name.
    pub po_ref: String,
    /// The receipt.
    pub receipt_id: String,
    /// Odoo's picking name (`WH/IN/00012`).
    pub picking_ref: String,
}

/// A receipt was cancelled at the warehouse: the goods go back to the supplier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptCancelled {
    /// Purchase order name.
    pub po_ref: String,
    /// The receipt.
    pub receipt_id: String,
    /// Why.
    pub reason: String,
}

/// One line of a vendor bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillLine {
    /// The purchase order line billed.
    pub po_line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity billed.
    pub quantity: Qty,
    /// Price per unit billed, minor units, tax excluded.
    pub unit_price: Money,
}

/// A supplier's invoice (vendor bill), as finance received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorBill {
    /// Purchase order name.
    pub po_ref: String,
    /// The supplier's invoice number (one posting per supplier and number, ever).
    pub bill_number: String,
    /// The supplier's reference.
    pub supplier_ref: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Lines billed.
    pub lines: Vec<BillLine>,
    /// Total billed, tax excluded, minor units.
    pub amount: Money,
}

/// Finance posted a vendor bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorBillPosted {
    /// Purchase order name.
    pub po_ref: String,
    /// The supplier's invoice number.
    pub bill_number: String,
    /// Finance's document number.
    pub document_number: String,
    /// Amount posted, minor units.
    pub amount: Money,
}

/// Finance refused a vendor bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorBillRejected {
    /// Purchase order name.
    pub po_ref: String,
    /// The supplier's invoice number.
    pub bill_number: String,
    /// Finance's reason.
    pub reason: String,
}

/// Finance issued the vendor credit note of a cancelled receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorCreditIssued {
    /// Purchase order name.
    pub po_ref: String,
    /// The cancelled receipt credited.
    pub receipt_id: String,
    /// Finance's credit note number.
    pub credit_number: String,
    /// Amount credited, minor units.
    pub amount: Money,
}

/// Ask Odoo to validate the incoming picking of a receipt, or to return a cancelled
/// receipt's goods to the supplier (a return picking; never a delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPosting {
    /// Purchase order name.
    pub po_ref: String,
    /// The receipt.
    pub receipt_id: String,
    /// Lines accepted into stock.
    pub lines: Vec<ReceivedLine>,
}

/// Ask finance to issue a vendor credit note for a cancelled receipt that was billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorCredit {
    /// Purchase order name.
    pub po_ref: String,
    /// The cancelled receipt.
    pub receipt_id: String,
    /// The bill the credit note refers to.
    pub bill_number: String,
    /// The supplier's reference.
    pub supplier_ref: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Lines credited, at the billed price.
    pub lines: Vec<BillLine>,
    /// Total credited, tax excluded, minor units.
    pub amount: Money,
}

/// A vendor bill matched three ways (order × receipts × bill), as the saga decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillMatch {
    /// The supplier's invoice number.
    pub bill_number: String,
    /// Differences beyond tolerance, in words; empty when the bill matched within them.
    pub variances: Vec<String>,
}

/// A cancelled receipt, reversed: its goods go back, and a billed receipt is credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptReversal {
    /// The receipt.
    pub receipt_id: String,
    /// Why.
    pub reason: String,
    /// The vendor credit note asked for, when the receipt had been billed.
    pub credit: Option<VendorCredit>,
}
