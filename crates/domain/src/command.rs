//! Outbound commands: what Waybill asks the warehouse, carriers, Odoo and finance to do.
//! Each is one Avro record `waybill.command.<Name>` with [`CommandMeta`] in `meta` and
//! the command in `data`. Every command carries a deterministic idempotency key derived
//! from business keys, which connectors pass to the target system.

use serde::{Deserialize, Serialize};

use crate::cash::StatementEntry;
use crate::event::{ItemCondition, LotQty, OrderLine, Package, ShippedLine};
use crate::purchase::{ReceiptPosting, VendorBill, VendorCredit};
use crate::value::{Money, Qty, System, Timestamp};

/// Fields every command carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMeta {
    /// Deterministic idempotency key, e.g. `release:SO0042`; the same decision always
    /// yields the same key, so a re-sent command is recognisable as a duplicate.
    pub idempotency_key: String,
    /// The saga that issued the command.
    pub saga_id: String,
    /// The order the command belongs to.
    pub correlation_key: String,
    /// The system that must carry it out.
    pub target: System,
    /// The inbound event id that caused it.
    pub caused_by: String,
    /// Decision time.
    pub issued_at: Timestamp,
}

/// A command with its common fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Common fields.
    pub meta: CommandMeta,
    /// The command.
    pub body: CommandBody,
}

/// Every command Waybill issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// Ask the warehouse to reserve stock for order lines.
    ReserveStock(StockRequest),
    /// Release reserved lines to the warehouse for picking.
    ReleaseToWarehouse(StockRequest),
    /// Compensation: give back a reservation.
    CancelReservation(OrderOnly),
    /// Compensation: withdraw a release from the warehouse.
    CancelWarehouseRelease(OrderOnly),
    /// Ask Odoo to create a backorder for quantities that could not be served.
    CreateBackorder(BackorderRequest),
    /// Ask a carrier to take a shipment.
    BookCarrier(BookCarrier),
    /// Tell Odoo the picking is done (validate with tracking reference).
    ConfirmShipment(ConfirmShipment),
    /// Ask finance to post an invoice for one shipment.
    PostInvoice(PostInvoice),
    /// Ask finance to issue a credit note for one return receipt.
    IssueCreditNote(IssueCreditNote),
    /// Ask the warehouse to adjust stock after a return.
    AdjustStock(AdjustStock),
    /// Ask Odoo to validate the incoming picking of a receipt.
    ValidateReceipt(ReceiptPosting),
    /// Compensation: ask Odoo to return a cancelled receipt's goods to the supplier (a
    /// return picking; a validated receipt is never deleted).
    ReturnToVendor(ReceiptPosting),
    /// Ask finance to post a vendor bill matched (or approved) against its order and receipts.
    PostVendorBill(VendorBill),
    /// Compensation: ask finance to credit a cancelled receipt that was billed.
    IssueVendorCreditNote(VendorCredit),
    /// Ask finance to post the journal entry of one statement line (payment applied to
    /// invoices, or a bank charge).
    PostStatementLine(StatementEntry),
}

impl CommandBody {
    /// The Avro record name (without namespace) of this command.
    pub const fn name(&self) -> &'static str {
        match self {
            CommandBody::ReserveStock(_) => "ReserveStock",
            CommandBody::ReleaseToWarehouse(_) => "ReleaseToWarehouse",
            CommandBody::CancelReservation(_) => "CancelReservation",
            CommandBody::CancelWarehouseRelease(_) => "CancelWarehouseRelease",
            CommandBody::CreateBackorder(_) => "CreateBackorder",
            CommandBody::BookCarrier(_) => "BookCarrier",
            CommandBody::ConfirmShipment(_) => "ConfirmShipment",
            CommandBody::PostInvoice(_) => "PostInvoice",
            CommandBody::IssueCreditNote(_) => "IssueCreditNote",
            CommandBody::AdjustStock(_) => "AdjustStock",
            CommandBody::ValidateReceipt(_) => "ValidateReceipt",
            CommandBody::ReturnToVendor(_) => "ReturnToVendor",
            CommandBody::PostVendorBill(_) => "PostVendorBill",
            CommandBody::IssueVendorCreditNote(_) => "IssueVendorCreditNote",
            CommandBody::PostStatementLine(_) => "PostStatementLine",
        }
    }
}

/// Lines to reserve or release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRequest {
    /// Sale order name.
    pub order_ref: String,
    /// Warehouse code.
    pub warehouse: String,
    /// Lines with the quantity to reserve or release.
    pub lines: Vec<OrderLine>,
}

/// A command about a whole order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderOnly {
    /// Sale order name.
    pub order_ref: String,
    /// Why.
    pub reason: String,
}

/// One line to backorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackorderLine {
    /// Order line number.
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity to backorder.
    pub quantity: Qty,
}

/// Quantities to backorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackorderRequest {
    /// Sale order name.
    pub order_ref: String,
    /// Lines.
    pub lines: Vec<BackorderLine>,
}

/// Book a carrier for a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookCarrier {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment id.
    pub shipment_id: String,
    /// Delivery address reference.
    pub ship_to: String,
    /// Packages.
    pub packages: Vec<Package>,
}

/// Tell Odoo a shipment left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmShipment {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment id.
    pub shipment_id: String,
    /// Carrier tracking reference.
    pub tracking_ref: String,
    /// What the shipment carried, with lots and serials, for Odoo's move lines (empty in
    /// commands written before v2: the whole open delivery is meant).
    #[serde(default)]
    pub lines: Vec<ShippedLine>,
}

/// One invoice line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    /// Order line number.
    pub line_no: i32,
    /// Product code.
    pub sku: String,
    /// Quantity invoiced.
    pub quantity: Qty,
    /// Unit price, minor units.
    pub unit_price: Money,
    /// Tax code.
    pub tax_code: String,
}

/// Post an invoice for one shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostInvoice {
    /// Sale order name.
    pub order_ref: String,
    /// Shipment invoiced (business key: one invoice per shipment).
    pub shipment_id: String,
    /// Customer.
    pub customer_ref: String,
    /// Currency.
    pub currency: String,
    /// Lines.
    pub lines: Vec<InvoiceLine>,
    /// Net total, minor units.
    pub total: Money,
}

/// Issue a credit note for one return receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCreditNote {
    /// Original sale order name.
    pub order_ref: String,
    /// Return receipt credited (business key: one credit note per receipt).
    pub receipt_id: String,
    /// The invoice being credited.
    pub invoice_number: String,
    /// Lines credited.
    pub lines: Vec<InvoiceLine>,
    /// Restocking fee deducted, minor units.
    pub restocking_fee: Money,
    /// Net amount credited, minor units.
    pub total: Money,
}

/// One stock adjustment line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentLine {
    /// Product code.
    pub sku: String,
    /// Quantity.
    pub quantity: Qty,
    /// Restock or scrap.
    pub condition: ItemCondition,
    /// Lots.
    pub lots: Vec<LotQty>,
}

/// Adjust stock after a return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustStock {
    /// Original sale order name.
    pub order_ref: String,
    /// Return receipt.
    pub receipt_id: String,
    /// Warehouse code.
    pub warehouse: String,
    /// Lines.
    pub lines: Vec<AdjustmentLine>,
}
