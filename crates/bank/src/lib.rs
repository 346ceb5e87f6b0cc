//! The pure core of cash application: bank statements (ISO 20022 camt.053, SWIFT MT940)
//! and payment-gateway settlement reports read into one [`Statement`] model, and the
//! matcher that applies each statement line to open invoices.
//!
//! This crate owns reading bytes that are handed to it and deciding matches. It does no
//! I/O, keeps no clock and no state between calls: the cash-application saga fetches
//! files and open invoices, calls [`parse_file`] and [`matching::match_lines`], and turns
//! each [`matching::LineMatch`] into journal entries or an entry in the unmatched queue.

#![warn(missing_docs)]

pub mod camt053;
pub mod matching;
pub mod model;
pub mod mt940;
pub mod open_items;
pub mod record;
pub mod settlement;
mod text;

pub use matching::{
    Allocation, LineMatch, MatchRule, Matched, OpenInvoice, Outcome, QueueReason, Queued, Tolerance, match_lines,
    open_after,
};
pub use model::{
    Account, Balance, Checksum, Date, Direction, Format, LineKind, References, Statement, StatementLine, checksum,
};

use waybill_domain::Money;

/// Errors raised while reading a statement or matching its lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The file is not what its format requires.
    #[error("{format}: {location}: {problem}; {hint}")]
    Invalid {
        /// The format being read (`camt.053.001.02`, `MT940`, `settlement report`).
        format: String,
        /// Where: the element path and entry number, the line number, the row and column.
        location: String,
        /// What was wrong.
        problem: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// Opening balance plus the lines does not give the closing balance.
    #[error(
        "{format} statement {statement}: opening balance {opening} plus the lines ({lines}) makes {expected}, \
         but the closing balance is {closing}; the file is incomplete or altered: ask the bank to send the statement again"
    )]
    Unbalanced {
        /// The format.
        format: String,
        /// The statement id.
        statement: String,
        /// Opening balance.
        opening: Money,
        /// Sum of the lines.
        lines: Money,
        /// Opening plus lines.
        expected: Money,
        /// Closing balance in the file.
        closing: Money,
    },
    /// The same invoice number was passed twice to the matcher.
    #[error(
        "invoice {number} is listed twice among the open invoices; pass each open invoice once, with its total open amount"
    )]
    DuplicateInvoice {
        /// The invoice number.
        number: String,
    },
    /// The bytes are none of the formats this crate reads.
    #[error(
        "the file is neither camt.053 XML, MT940 nor a settlement report CSV (it starts with {start:?}); \
         check that the bank or gateway sends one of these formats"
    )]
    UnknownFormat {
        /// The first characters of the file.
        start: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a statement file of any supported format, telling the format from its content:
/// XML is camt.053, a file with a `:20:` field is MT940, anything else must be a
/// settlement report CSV with the header of [`settlement`].
pub fn parse_file(bytes: &[u8]) -> Result<Vec<Statement>> {
    let text = text::decode(bytes);
    let start = text.trim_start();
    if start.starts_with('<') {
        camt053::parse(bytes)
    } else if start.starts_with(":20:") || start.starts_with("{1:") || text.contains("\n:20:") {
        mt940::parse(bytes)
    } else if start.lines().next().is_some_and(|l| l.contains(',') || l.contains(';')) {
        settlement::parse(bytes)
    } else {
        Err(Error::UnknownFormat { start: start.chars().take(40).collect() })
    }
}
