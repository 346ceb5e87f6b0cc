//! The canonical statement every reader produces: one [`Statement`] per bank statement
//! or settlement batch, one [`StatementLine`] per booked transaction.

use std::fmt;

use waybill_domain::{Civil, Money, Timestamp};

use crate::{Error, Result};

/// The file format a statement was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// ISO 20022 camt.053 (BankToCustomerStatement), with the message version (2 for
    /// `camt.053.001.02`, 8 for `camt.053.001.08`).
    Camt053 {
        /// The message version, the last number of the namespace.
        version: u8,
    },
    /// SWIFT MT940 (customer statement message).
    Mt940,
    /// A payment gateway's settlement (payout) report in the CSV layout of
    /// [`crate::settlement`].
    Settlement,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Camt053 { version } => write!(f, "camt.053.001.{version:02}"),
            Format::Mt940 => f.write_str("MT940"),
            Format::Settlement => f.write_str("settlement report"),
        }
    }
}

/// A calendar date (the booking and value dates of statements carry no time of day that
/// matters to cash application).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month, 1–31.
    pub day: u8,
}

impl Date {
    /// A date, checked against the calendar (30 February is refused).
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (1..=days).contains(&day).then_some(Date { year, month, day })
    }

    /// Parses `YYYY-MM-DD`, ignoring anything after the date (a time of day and an offset,
    /// as in an ISO 20022 `DtTm`).
    pub fn parse_iso(text: &str) -> Option<Date> {
        let t = text.trim();
        let b = t.as_bytes();
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| t.get(r).filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?.parse().ok();
        Date::new(num(0..4)?, num(5..7)? as u8, num(8..10)? as u8)
    }

    /// Midnight UTC at the start of this date, as the domain's [`Timestamp`].
    pub fn to_timestamp(self) -> Timestamp {
        Timestamp::from_civil(Civil {
            year: i64::from(self.year),
            month: i64::from(self.month),
            day: i64::from(self.day),
            hour: 0,
            minute: 0,
            second: 0,
        })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The account a statement is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// An IBAN, without spaces, upper case.
    Iban(String),
    /// Any other account identification (a domestic account number, a gateway account).
    Other(String),
}

impl Account {
    /// Classifies an identification: an IBAN when it has the IBAN shape (country letters,
    /// two check digits, 11 to 30 letters or digits), otherwise [`Account::Other`].
    pub fn from_text(text: &str) -> Account {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
        let b = compact.as_bytes();
        let iban = (15..=34).contains(&b.len())
            && b[..2].iter().all(u8::is_ascii_uppercase)
            && b[2..4].iter().all(u8::is_ascii_digit)
            && b[4..].iter().all(u8::is_ascii_alphanumeric);
        if iban { Account::Iban(compact) } else { Account::Other(text.trim().to_string()) }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Iban(s) | Account::Other(s) => f.write_str(s),
        }
    }
}

/// A balance of the account: signed (negative is a debit balance, an overdraft) in minor
/// units of the statement's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// The amount, in minor units; negative when the account is overdrawn.
    pub amount: Money,
    /// The date the balance is struck on, when the file gives one.
    pub date: Option<Date>,
}

/// One statement (camt.053 `Stmt`, one MT940 message, one settlement batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The format it was read from.
    pub format: Format,
    /// The bank's identification of the statement (camt.053 `Stmt/Id`; MT940 `:28C:`
    /// statement number, or `:20:` without one; the payout id of a settlement batch).
    pub statement_id: String,
    /// The electronic sequence number (camt.053 `ElctrncSeqNb`) or the MT940 `:20:`
    /// transaction reference, when given.
    pub sequence: Option<String>,
    /// The account.
    pub account: Account,
    /// ISO 4217 currency of the account.
    pub currency: String,
    /// Opening balance (camt.053 `OPBD`, MT940 `:60F:`/`:60M:`); none for settlement batches.
    pub opening: Option<Balance>,
    /// Closing balance (camt.053 `CLBD`, MT940 `:62F:`/`:62M:`; the payout of a settlement batch).
    pub closing: Option<Balance>,
    /// The booked lines, in file order.
    pub lines: Vec<StatementLine>,
}

impl Statement {
    /// The key under which a caller records that this statement was ingested: format
    /// family, account and statement id. Together with [`checksum`] of the file, it lets
    /// the caller ingest each file, and each statement, once.
    pub fn dedup_key(&self) -> String {
        let family = match self.format {
            Format::Camt053 { .. } => "camt053",
            Format::Mt940 => "mt940",
            Format::Settlement => "settlement",
        };
        format!("{family}|{}|{}", self.account, self.statement_id)
    }

    /// Checks that the opening balance plus every line equals the closing balance (when
    /// both balances are given).
    pub fn check_balance(&self) -> Result<()> {
        let (Some(open), Some(close)) = (self.opening, self.closing) else { return Ok(()) };
        let lines: Money = self.lines.iter().map(|l| l.amount).sum();
        let expected = open.amount + lines;
        if expected != close.amount {
            return Err(Error::Unbalanced {
                format: self.format.to_string(),
                statement: self.statement_id.clone(),
                opening: open.amount,
                lines,
                expected,
                closing: close.amount,
            });
        }
        Ok(())
    }
}

/// Whether money came in or went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Money came in (positive amounts).
    Credit,
    /// Money went out (negative amounts).
    Debit,
}

/// What a line is, as far as the file says: the domain's kind of a statement line, which
/// the cash-application flow logs as it is (camt.053 `RvslInd`, MT940 `RC`/`RD` and
/// returned direct debits or transfers are reversals; gateway adjustments, interest and
/// transfers are adjustments).
pub use waybill_domain::cash::BankLineKind as LineKind;

/// The references a payer gave with a payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// The structured creditor reference (camt.053 `Strd/CdtrRefInf/Ref`, e.g. an ISO 11649
    /// `RF…` reference), or a referred document number (`Strd/RfrdDocInf/Nb`).
    pub creditor_reference: Vec<String>,
    /// The payer's end-to-end id (camt.053 `Refs/EndToEndId`, SEPA `EREF+`), unless
    /// `NOTPROVIDED`.
    pub end_to_end_id: Option<String>,
    /// Unstructured remittance text (camt.053 `Ustrd`, MT940 `:86:` purpose), each part as given.
    pub remittance: Vec<String>,
    /// The bank's or gateway's own reference of the line (`AcctSvcrRef`, the MT940 bank
    /// reference after `//`, the gateway's transaction id).
    pub bank_reference: Option<String>,
}

impl References {
    /// Every text a payer may have put an invoice number in: creditor references, the
    /// end-to-end id and the remittance text.
    pub fn payer_texts(&self) -> impl Iterator<Item = &str> {
        self.creditor_reference
            .iter()
            .map(String::as_str)
            .chain(self.end_to_end_id.as_deref())
            .chain(self.remittance.iter().map(String::as_str))
    }
}

/// One booked transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// Identifies the line within its statement: the bank's reference when it is unique
    /// in the statement, otherwise `<statement id>/<entry number>[/<detail number>]`.
    pub line_id: String,
    /// What the line is.
    pub kind: LineKind,
    /// The booking date, when the file gives one.
    pub booking_date: Option<Date>,
    /// The value date, when the file gives one.
    pub value_date: Option<Date>,
    /// The amount booked on the account, signed: positive is a credit (money in),
    /// negative a debit. For a gateway charge this is the net amount after the fee.
    pub amount: Money,
    /// ISO 4217 currency of `amount` and `fee`.
    pub currency: String,
    /// Charges the bank or gateway kept from this payment (zero or positive): the payer
    /// paid `amount + fee`.
    pub fee: Money,
    /// The other party's name (the debtor of a credit, the creditor of a debit).
    pub counterparty: Option<String>,
    /// The references given with the payment.
    pub references: References,
}

impl StatementLine {
    /// Credit or debit.
    pub fn direction(&self) -> Direction {
        if self.amount.0 < 0 { Direction::Debit } else { Direction::Credit }
    }

    /// What the payer paid before the bank's or gateway's charges: `amount + fee`.
    pub fn gross(&self) -> Money {
        self.amount + self.fee
    }
}

/// The SHA-256 digest of a file, in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checksum(pub String);

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 digest of a file's bytes, so the caller can refuse a file it has already
/// ingested (together with each statement's [`Statement::dedup_key`]).
pub fn checksum(bytes: &[u8]) -> Checksum {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    Checksum(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The number of decimals of a currency's minor unit (ISO 4217): 0 for JPY and KRW, 3
/// for the Gulf dinars, 2 otherwise.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "VND" | "VUV"
        | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Parses an unsigned decimal amount (`105678.50`, or `1234,5` with `decimal = ','`) into
/// minor units of `currency`. Refuses signs, thousands separators, and more decimals
/// than the currency has (unless they are zeros). The error text says what was wrong.
pub fn parse_amount(text: &str, decimal: char, currency: &str) -> std::result::Result<Money, String> {
    let t = text.trim();
    let digits = minor_digits(currency);
    let (whole, frac) = t.split_once(decimal).unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(format!("the amount {t:?} is empty"));
    }
    if !whole.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return Err(format!("the amount {t:?} is not a plain decimal number with {decimal:?} as decimal separator"));
    }
    let (kept, dropped) = frac.split_at(frac.len().min(digits as usize));
    if dropped.bytes().any(|c| c != b'0') {
        return Err(format!("the amount {t:?} has more than {digits} decimals, which {currency} does not have"));
    }
    let overflow = || format!("the amount {t:?} is too large");
    let mut minor: i64 = 0;
    for c in whole.bytes().chain(kept.bytes()) {
        minor = minor.checked_mul(10).and_then(|m| m.checked_add(i64::from(c - b'0'))).ok_or_else(overflow)?;
    }
    for _ in kept.len()..digits as usize {
        minor = minor.checked_mul(10).ok_or_else(overflow)?;
    }
    Ok(Money(minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_minor_units_of_their_currency() {
        assert_eq!(parse_amount("105678.50", '.', "SEK"), Ok(Money(105_678_50)));
        assert_eq!(parse_amount("500000", '.', "SEK"), Ok(Money(500_000_00)));
        assert_eq!(parse_amount("9,", ',', "EUR"), Ok(Money(9_00)));
        assert_eq!(parse_amount("1125250,4", ',', "EUR"), Ok(Money(1_125_250_40)));
        assert_eq!(parse_amount("1500", '.', "JPY"), Ok(Money(1500)));
        assert_eq!(parse_amount("1.250", '.', "KWD"), Ok(Money(1250)));
        assert_eq!(parse_amount("1.500", '.', "EUR"), Ok(Money(1_50)));
        assert!(parse_amount("1.505", '.', "EUR").unwrap_err().contains("more than 2 decimals"));
        assert!(parse_amount("1,000.00", '.', "EUR").is_err());
        assert!(parse_amount("-5", '.', "EUR").is_err());
    }

    #[test]
    fn dates_are_checked_against_the_calendar() {
        assert_eq!(Date::parse_iso("2010-10-18T13:15:00+01:00"), Date::new(2010, 10, 18));
        assert_eq!(Date::parse_iso("2024-02-29"), Date::new(2024, 2, 29));
        assert_eq!(Date::parse_iso("2026-02-29"), None);
        assert_eq!(Date::parse_iso("18.10.2010"), None);
        assert_eq!(Date::new(2026, 1, 1).unwrap().to_string(), "2026-01-01");
    }

    #[test]
    fn ibans_are_told_from_other_account_ids() {
        assert_eq!(Account::from_text("DE89 3704 0044 0532 0130 00"), Account::Iban("DE89370400440532013000".into()));
        assert_eq!(Account::from_text("50880050/0194787400888"), Account::Other("50880050/0194787400888".into()));
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(checksum(b"abc").0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
