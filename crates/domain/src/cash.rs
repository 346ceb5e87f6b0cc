//! Cash application: a bank statement (or a payment gateway's settlement report) with
//! the receivables open when it was imported, each line applied to invoices and posted to
//! finance as one journal entry, ever. The flow is keyed by the statement
//! (`stmt:<account>/<statement id>`), so a statement imported twice is one flow.

use serde::{Deserialize, Serialize};

use crate::value::{Money, Timestamp};

/// The prefix of a statement's correlation key.
pub const KEY_PREFIX: &str = "stmt:";

/// The correlation key of a statement's flow: `stmt:<statement key>`.
pub fn correlation_key(statement_key: &str) -> String {
    format!("{KEY_PREFIX}{statement_key}")
}

/// What a statement line is, as far as the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BankLineKind {
    /// A payment received or made.
    Payment,
    /// Money paid back to a customer.
    Refund,
    /// A charge of the bank or the gateway.
    Fee,
    /// A card payment taken back through the card scheme.
    Chargeback,
    /// The reversal or return of an earlier entry.
    Reversal,
    /// Any other correction.
    Adjustment,
}

/// One booked line of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankLine {
    /// Identifies the line within its statement (one journal entry per line, ever).
    pub line_id: String,
    /// What the line is.
    pub kind: BankLineKind,
    /// The booking date, when the file gives one.
    pub booking_date: Option<Timestamp>,
    /// The amount booked, signed: positive is money in.
    pub amount: Money,
    /// ISO 4217 currency of the amount and the fee.
    pub currency: String,
    /// What the bank or gateway kept of the payment.
    pub fee: Money,
    /// The payer or payee, as the bank names them.
    pub counterparty: Option<String>,
    /// Structured creditor references and referred document numbers.
    pub creditor_references: Vec<String>,
    /// The payer's end-to-end id.
    pub end_to_end_id: Option<String>,
    /// Unstructured remittance text, each part as given.
    pub remittance: Vec<String>,
    /// The bank's or gateway's own reference of the line.
    pub bank_reference: Option<String>,
}

/// A receivable open when the statement was imported, as finance reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenItem {
    /// The invoice number.
    pub number: String,
    /// The customer's reference.
    pub customer_ref: String,
    /// The customer's name.
    pub customer_name: String,
    /// The amount still open, positive.
    pub open_amount: Money,
    /// ISO 4217 currency.
    pub currency: String,
    /// When it is due.
    pub due_at: Option<Timestamp>,
}

/// A statement imported: its lines and the receivables they are applied to. The open
/// items are part of the input, so applying the statement again decides the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementReceived {
    /// The statement's key: account and statement id (`DE89…/2026-118`).
    pub statement_key: String,
    /// The statement's own id.
    pub statement_id: String,
    /// The file's format: `camt.053`, `mt940`, `settlement-csv`.
    pub format: String,
    /// The account (IBAN or the bank's account id).
    pub account: String,
    /// ISO 4217 currency of the account.
    pub currency: String,
    /// The legal entity whose account this is, by its code in `[entities]`; `None`: found
    /// from the account (an entity's `bank_accounts`), else the default entity. In the
    /// journal (`StatementOpened`), the entity the saga resolved.
    pub entity: Option<String>,
    /// SHA-256 of the file, hex: the same statement id with other content is refused.
    pub checksum: String,
    /// The lines, in the file's order.
    pub lines: Vec<BankLine>,
    /// The receivables open at import.
    pub open_items: Vec<OpenItem>,
}

/// An amount applied to one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceAllocation {
    /// The invoice number.
    pub invoice: String,
    /// The amount applied, positive.
    pub amount: Money,
}

/// The journal entry of one statement line, as Waybill asks finance to post it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEntry {
    /// The statement.
    pub statement_key: String,
    /// The line (one entry per line, ever).
    pub line_id: String,
    /// How it was applied: `reference`, `customer-amount`, `customer-combination`,
    /// `within-tolerance`, `only-open-invoice`, `charge` for a bank or gateway fee, or
    /// `manual` for a line an operator applied by hand.
    pub rule: String,
    /// The amount booked on the account, signed.
    pub amount: Money,
    /// ISO 4217 currency.
    pub currency: String,
    /// The booking date.
    pub booking_date: Option<Timestamp>,
    /// The payer.
    pub counterparty: Option<String>,
    /// The invoices paid.
    pub allocations: Vec<InvoiceAllocation>,
    /// Charges kept by the bank or gateway (an expense).
    pub fee: Money,
    /// A difference within tolerance written off: positive a gain, negative a loss.
    pub write_off: Money,
    /// Money left on the customer's account, unapplied.
    pub remainder: Money,
    /// The customer (finance's customer reference) whose account keeps the remainder,
    /// when an operator named one applying the line by hand; `None` when the invoices
    /// paid say whose it is (added in v2 of the schemas carrying it).
    #[serde(default)]
    pub on_account: Option<String>,
}

/// Finance posted the journal entry of a statement line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLinePosted {
    /// The statement.
    pub statement_key: String,
    /// The line.
    pub line_id: String,
    /// Finance's entry number.
    pub entry_number: String,
}

/// Finance refused the journal entry of a statement line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLineRejected {
    /// The statement.
    pub statement_key: String,
    /// The line.
    pub line_id: String,
    /// Finance's reason.
    pub reason: String,
}

/// An operator's application of one unmatched statement line by hand, as the control
/// plane authenticated it: the invoices it pays and, for what they leave of the line, the
/// customer whose account keeps it. The cash-application saga checks it against the
/// statement (`waybill_saga::cash::by_hand`) and sends the line's one journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineAssignment {
    /// The statement (the flow is keyed `stmt:<statement key>`).
    pub statement_key: String,
    /// The line's `UNMATCHED_PAYMENT` exception (`cash:<statement>/unmatched-payment/1`);
    /// empty when the operator named the line.
    pub exception_id: String,
    /// The line; empty when the operator named the exception.
    pub line_id: String,
    /// The invoices paid and how much of the line goes to each.
    pub allocations: Vec<InvoiceAllocation>,
    /// The customer whose account keeps what the allocations leave of the line; `None`:
    /// the allocations must come to the line's amount.
    pub on_account: Option<String>,
    /// Identity of the operator.
    pub actor: String,
    /// The operator's role.
    pub role: String,
    /// Network address the call came from.
    pub peer: String,
    /// Id of the control-plane request (one per call).
    pub request_id: String,
    /// The operator's note (required): how the allocation was established.
    pub note: String,
}
