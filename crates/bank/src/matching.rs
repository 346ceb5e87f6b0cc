//! The matcher: applies statement lines to open invoices.
//!
//! Lines are taken in order, and each line's allocations reduce the open amounts the
//! next lines see, so no invoice is ever allocated more than it has open. For a
//! customer payment (a credit line of kind [`LineKind::Payment`]) the rules are tried in
//! this order, on the gross amount the payer paid (the line amount plus the fee the
//! bank or gateway kept):
//!
//! 1. **Reference** — open invoices whose number appears in the structured creditor
//!    reference, the end-to-end id or the remittance text, as whole words: separators
//!    may differ (`INV-2026-0001`) or be dropped (`INV20260001`), but `INV/2026/0001`
//!    never matches `INV/2026/00010`. The payment is spread over them, earliest due date
//!    first: a shortfall leaves the last invoice partly open; an excess stays unapplied
//!    on the customer's account.
//! 2. **Customer and amount** — the payer is one customer (by name, or by the customer
//!    reference in the remittance text) and exactly one of its open invoices is open for
//!    exactly the amount.
//! 3. **Customer and combination** — exactly one set of two or more of the customer's
//!    open invoices (the first [`MAX_COMBINATION_INVOICES`] by due date) adds up to the
//!    amount.
//! 4. **Within tolerance** — exactly one invoice or set comes closest to the amount,
//!    within the [`Tolerance`]; the difference is written off.
//! 5. **Only open invoice** — the customer has one open invoice; the payment is applied
//!    to it (partly, or in full with the excess unapplied).
//!
//! Everything else is queued with the reason in business words and the candidate
//! invoices. Ties are never guessed: two equally good answers queue the line.
//! The result depends only on the input: not on the order of the open invoices, not
//! on a clock, not on hash order.

use std::collections::BTreeMap;
use std::fmt;

use waybill_domain::Money;

use crate::model::{Date, LineKind, StatementLine};
use crate::{Error, Result};

/// At most this many of a customer's open invoices (the earliest due) are tried in
/// combinations; more would make the search slow and the answer a guess.
pub const MAX_COMBINATION_INVOICES: usize = 15;

/// An invoice with an amount still open, as Odoo reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvoice {
    /// The invoice number (Odoo `account.move` `name`, e.g. `INV/2026/0001`).
    pub number: String,
    /// The customer's reference (Odoo partner `ref`), as payers may quote it; it tells
    /// customers apart (by name when empty).
    pub customer_ref: String,
    /// The customer's name, compared with the payer's name.
    pub customer_name: String,
    /// The amount still open (Odoo `amount_residual`), positive.
    pub open_amount: Money,
    /// ISO 4217 currency of the invoice.
    pub currency: String,
    /// The due date, which orders allocations (earliest first).
    pub due_date: Option<Date>,
}

/// How far a payment may differ from the invoices it pays and still settle them, the
/// difference written off (currency differences, small bank charges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tolerance {
    /// The largest difference, in minor units.
    pub absolute: Money,
    /// When set, the difference must also be at most this many hundredths of a percent
    /// of the invoices' open total (50 = 0.5%).
    pub basis_points: Option<u32>,
}

impl Tolerance {
    /// No difference is tolerated.
    pub const NONE: Tolerance = Tolerance { absolute: Money(0), basis_points: None };

    /// Whether a difference of `diff` on invoices open for `total` may be written off.
    pub fn allows(&self, diff: Money, total: Money) -> bool {
        let d = i128::from(diff.0.unsigned_abs());
        d <= i128::from(self.absolute.0)
            && self.basis_points.is_none_or(|bp| d * 10_000 <= i128::from(bp) * i128::from(total.0.max(0)))
    }
}

/// The rule that matched a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchRule {
    /// Invoice numbers in the payment's references.
    Reference,
    /// The customer's one invoice open for exactly the amount.
    CustomerAmount,
    /// The customer's one set of invoices that adds up to the amount.
    CustomerCombination,
    /// The customer's one invoice or set closest to the amount, within tolerance.
    WithinTolerance,
    /// The customer's only open invoice.
    OnlyOpenInvoice,
}

/// An amount applied to one invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The invoice number.
    pub invoice: String,
    /// The amount applied, positive, at most what the invoice had open.
    pub amount: Money,
}

/// A line applied to invoices. Always `sum(allocations) + write_off + remainder` equals
/// the gross amount paid, `line.amount + line.fee`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The rule that matched.
    pub rule: MatchRule,
    /// The invoices paid, earliest due first.
    pub allocations: Vec<Allocation>,
    /// The bank's or gateway's charges on the line (to book as an expense).
    pub fee: Money,
    /// A difference within tolerance written off: positive when the customer paid more
    /// (a gain), negative when less (a loss).
    pub write_off: Money,
    /// Money left unapplied, to keep on the customer's account (never dropped).
    pub remainder: Money,
}

/// Why a line needs a person, in business words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueReason {
    /// Money went out.
    OutgoingPayment,
    /// A refund paid to a customer.
    Refund,
    /// The card scheme took back a payment.
    Chargeback,
    /// The bank reversed or returned an earlier entry.
    Reversal,
    /// A correction by the bank or gateway.
    Adjustment,
    /// A payment of nothing (the fee ate it all).
    NothingPaid,
    /// The references name invoices, but in another currency.
    CurrencyMismatch {
        /// The payment's currency.
        payment_currency: String,
    },
    /// The references name invoices that earlier lines already paid in full.
    AlreadyPaid,
    /// Nothing names an invoice and the payer is not a customer with open invoices.
    UnknownPayer {
        /// The payer's name as the bank gave it.
        payer: Option<String>,
    },
    /// The payer's name fits several customers.
    AmbiguousPayer {
        /// The payer's name as the bank gave it.
        payer: String,
    },
    /// The customer has open invoices, but none or no set of them fits the amount.
    NoFittingAmount {
        /// The customer's name.
        customer: String,
    },
    /// Several invoices or sets of invoices fit the amount equally well.
    Ambiguous {
        /// The customer's name.
        customer: String,
        /// How many invoices or sets fit.
        options: usize,
    },
}

impl fmt::Display for QueueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueReason::OutgoingPayment => f.write_str("money paid out, not a customer payment: match it to the bill or transfer it pays"),
            QueueReason::Refund => f.write_str("a refund paid to a customer: link it to the credit note it settles"),
            QueueReason::Chargeback => f.write_str("the card scheme took back a customer's payment: reopen the invoice it paid and contact the customer"),
            QueueReason::Reversal => f.write_str("the bank reversed or returned an earlier entry: undo the application of the original payment"),
            QueueReason::Adjustment => f.write_str("a correction by the bank or payment provider: book it by hand"),
            QueueReason::NothingPaid => f.write_str("the line pays nothing after charges: book the charges and close it"),
            QueueReason::CurrencyMismatch { payment_currency } => write!(
                f,
                "the payment names open invoices, but they are not in {payment_currency}, the payment's currency: apply it by hand with the exchange rate"
            ),
            QueueReason::AlreadyPaid => f.write_str(
                "the payment names invoices that earlier lines already paid in full: check for a duplicate payment and refund or keep it on account",
            ),
            QueueReason::UnknownPayer { payer: Some(p) } => write!(
                f,
                "no open invoice is named in the payment's references and the payer \"{p}\" is not a customer with open invoices: find the customer"
            ),
            QueueReason::UnknownPayer { payer: None } => f.write_str(
                "no open invoice is named in the payment's references and the bank gave no payer name: find the customer",
            ),
            QueueReason::AmbiguousPayer { payer } => {
                write!(f, "the payer \"{payer}\" fits several customers with open invoices: say which customer paid")
            }
            QueueReason::NoFittingAmount { customer } => write!(
                f,
                "{customer} has open invoices, but no invoice and no set of invoices comes to the amount paid: ask the customer what the payment is for"
            ),
            QueueReason::Ambiguous { customer, options } => write!(
                f,
                "{options} different invoices or sets of invoices of {customer} come to the amount paid and the payment names none: ask the customer which ones it pays"
            ),
        }
    }
}

/// A line a person must look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Why.
    pub reason: QueueReason,
    /// Invoices that may be what the line is about, earliest due first.
    pub candidates: Vec<String>,
}

/// What became of one statement line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to invoices.
    Matched(Matched),
    /// A charge of the bank or gateway: book it as an expense, there is nothing to match.
    Charge {
        /// The charge, as booked (negative).
        amount: Money,
    },
    /// Left for a person.
    Queued(Queued),
}

/// The outcome for one line, named by its line id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMatch {
    /// The line's [`StatementLine::line_id`].
    pub line_id: String,
    /// What became of it.
    pub outcome: Outcome,
}

#[derive(Debug)]
struct Open<'a> {
    invoice: &'a OpenInvoice,
    left: Money,
    /// The invoice number as a reference to look for.
    number: refs::Wanted,
    /// The customer's reference as a reference to look for.
    customer_ref: refs::Wanted,
    /// The customer's name key.
    name: Vec<String>,
    /// Who the customer is: the customer reference, or the name when there is none.
    customer: &'a str,
}

/// Matches every line, in order, against the open invoices. Fails only when an invoice
/// number is given twice.
pub fn match_lines(lines: &[StatementLine], invoices: &[OpenInvoice], tolerance: &Tolerance) -> Result<Vec<LineMatch>> {
    let mut open: BTreeMap<&str, Open> = BTreeMap::new();
    for inv in invoices {
        let entry = Open {
            invoice: inv,
            left: inv.open_amount,
            number: refs::Wanted::new(&inv.number),
            customer_ref: refs::Wanted::new(&inv.customer_ref),
            name: refs::name_key(&inv.customer_name),
            customer: if inv.customer_ref.trim().is_empty() { &inv.customer_name } else { &inv.customer_ref },
        };
        if open.insert(&inv.number, entry).is_some() {
            return Err(Error::DuplicateInvoice { number: inv.number.clone() });
        }
    }
    // Allocation order: earliest due date first (no due date last), then number.
    let mut order: Vec<&str> = open.keys().copied().collect();
    order.sort_by_key(|n| (open[n].invoice.due_date.is_none(), open[n].invoice.due_date, *n));
    Ok(lines
        .iter()
        .map(|line| LineMatch { line_id: line.line_id.clone(), outcome: one(line, &mut open, &order, tolerance) })
        .collect())
}

/// What each invoice still has open after the matches: its open amount less every
/// allocation to it. The caller records this (or re-reads Odoo after posting).
pub fn open_after(invoices: &[OpenInvoice], matches: &[LineMatch]) -> BTreeMap<String, Money> {
    let mut open: BTreeMap<String, Money> = invoices.iter().map(|i| (i.number.clone(), i.open_amount)).collect();
    for m in matches {
        if let Outcome::Matched(matched) = &m.outcome {
            for a in &matched.allocations {
                if let Some(left) = open.get_mut(&a.invoice) {
                    *left = Money(left.0 - a.amount.0);
                }
            }
        }
    }
    open
}

fn queued(reason: QueueReason, candidates: Vec<String>) -> Outcome {
    Outcome::Queued(Queued { reason, candidates })
}

fn one(line: &StatementLine, open: &mut BTreeMap<&str, Open>, order: &[&str], tol: &Tolerance) -> Outcome {
    let texts: Vec<Vec<String>> = line.references.payer_texts().map(refs::words).collect();
    let named: Vec<&str> = order.iter().copied().filter(|n| texts.iter().any(|t| open[n].number.found_in(t))).collect();
    let by_kind = match line.kind {
        LineKind::Fee => return Outcome::Charge { amount: line.amount },
        LineKind::Refund => Some(QueueReason::Refund),
        LineKind::Chargeback => Some(QueueReason::Chargeback),
        LineKind::Reversal => Some(QueueReason::Reversal),
        LineKind::Adjustment => Some(QueueReason::Adjustment),
        LineKind::Payment if line.amount.0 < 0 => Some(QueueReason::OutgoingPayment),
        LineKind::Payment if line.gross().0 <= 0 => Some(QueueReason::NothingPaid),
        LineKind::Payment => None,
    };
    if let Some(reason) = by_kind {
        return queued(reason, named.iter().map(|n| n.to_string()).collect());
    }
    let gross = line.gross();
    let payable = |n: &&str| open[n].left.0 > 0 && open[n].invoice.currency == line.currency;

    // 1. Reference.
    if !named.is_empty() {
        let usable: Vec<&str> = named.iter().copied().filter(payable).collect();
        if usable.is_empty() {
            let reason = if named.iter().any(|n| open[n].invoice.currency != line.currency) {
                QueueReason::CurrencyMismatch { payment_currency: line.currency.clone() }
            } else {
                QueueReason::AlreadyPaid
            };
            return queued(reason, named.iter().map(|n| n.to_string()).collect());
        }
        return apply(MatchRule::Reference, &usable, gross, line.fee, open, tol);
    }

    // Who paid: customers whose name is the payer's, or whose reference the payer quoted.
    let payer = line.counterparty.as_deref().map(refs::name_key).filter(|k| !k.is_empty());
    let mut customers: Vec<&str> = Vec::new();
    for n in order.iter().filter(|n| payable(n)) {
        let by_name = payer.as_ref().is_some_and(|p| refs::same_name(p, &open[n].name));
        let by_ref = texts.iter().any(|t| open[n].customer_ref.found_in(t));
        if (by_name || by_ref) && !customers.contains(&open[n].customer) {
            customers.push(open[n].customer);
        }
    }
    let customer = match customers.as_slice() {
        [] => return queued(QueueReason::UnknownPayer { payer: line.counterparty.clone() }, Vec::new()),
        [one] => *one,
        _ => {
            let candidates = order.iter().filter(|n| payable(n) && customers.contains(&open[*n].customer));
            return queued(
                QueueReason::AmbiguousPayer { payer: line.counterparty.clone().unwrap_or_default() },
                candidates.map(|n| n.to_string()).collect(),
            );
        }
    };
    let theirs: Vec<&str> = order.iter().copied().filter(|n| payable(n) && open[n].customer == customer).collect();
    let customer_name = open[theirs[0]].invoice.customer_name.clone();
    let all = || theirs.iter().map(|n| n.to_string()).collect::<Vec<_>>();

    // 2. Customer and exact amount.
    let exact: Vec<&str> = theirs.iter().copied().filter(|n| open[n].left == gross).collect();
    match exact.as_slice() {
        [one] => return apply(MatchRule::CustomerAmount, &[one], gross, line.fee, open, tol),
        [] => {}
        many => {
            let options = many.len();
            return queued(
                QueueReason::Ambiguous { customer: customer_name, options },
                many.iter().map(|n| n.to_string()).collect(),
            );
        }
    }

    // 3. and 4. Combinations: exact sets of two or more, else the closest within tolerance.
    let pool = &theirs[..theirs.len().min(MAX_COMBINATION_INVOICES)];
    let amounts: Vec<i64> = pool.iter().map(|n| open[n].left.0).collect();
    let mut exact_sets: Vec<u32> = Vec::new();
    let mut best: Option<(u64, Vec<u32>)> = None;
    for mask in 1u32..(1 << pool.len()) {
        let sum: i64 = (0..pool.len()).filter(|i| mask & (1 << i) != 0).map(|i| amounts[i]).sum();
        if sum == gross.0 && mask.count_ones() >= 2 {
            exact_sets.push(mask);
        }
        let diff = Money(gross.0 - sum);
        if diff.0 != 0 && tol.allows(diff, Money(sum)) {
            let d = diff.0.unsigned_abs();
            match &mut best {
                Some((bd, sets)) if *bd == d => sets.push(mask),
                Some((bd, _)) if *bd < d => {}
                _ => best = Some((d, vec![mask])),
            }
        }
    }
    let pick = |mask: u32| -> Vec<&str> { (0..pool.len()).filter(|i| mask & (1 << i) != 0).map(|i| pool[i]).collect() };
    match exact_sets.as_slice() {
        [one] => return apply(MatchRule::CustomerCombination, &pick(*one), gross, line.fee, open, tol),
        [] => {}
        many => {
            let options = many.len();
            let union = many.iter().fold(0, |a, m| a | m);
            return queued(
                QueueReason::Ambiguous { customer: customer_name, options },
                pick(union).iter().map(|n| n.to_string()).collect(),
            );
        }
    }
    if let Some((_, sets)) = best {
        if let [one] = sets.as_slice() {
            return apply(MatchRule::WithinTolerance, &pick(*one), gross, line.fee, open, tol);
        }
        let union = sets.iter().fold(0, |a, m| a | m);
        return queued(
            QueueReason::Ambiguous { customer: customer_name, options: sets.len() },
            pick(union).iter().map(|n| n.to_string()).collect(),
        );
    }

    // 5. The customer's only open invoice.
    if let [only] = theirs.as_slice() {
        return apply(MatchRule::OnlyOpenInvoice, &[only], gross, line.fee, open, tol);
    }
    queued(QueueReason::NoFittingAmount { customer: customer_name }, all())
}

/// Spreads `gross` over the invoices in order: all in full when the payment covers them
/// (the excess written off within tolerance, otherwise unapplied), all in full with the
/// shortfall written off within tolerance, or else earliest first until it runs out.
fn apply(
    rule: MatchRule,
    invoices: &[&str],
    gross: Money,
    fee: Money,
    open: &mut BTreeMap<&str, Open<'_>>,
    tol: &Tolerance,
) -> Outcome {
    let total: Money = invoices.iter().map(|n| open[n].left).sum();
    let diff = Money(gross.0 - total.0);
    let settle_all = diff.0 >= 0 || tol.allows(diff, total);
    let mut allocations = Vec::new();
    let mut left = gross.0;
    for n in invoices {
        let entry = open.get_mut(*n).expect("invoice is open");
        let amount = if settle_all { entry.left.0 } else { entry.left.0.min(left) };
        if amount > 0 {
            entry.left = Money(entry.left.0 - amount);
            left -= amount;
            allocations.push(Allocation { invoice: n.to_string(), amount: Money(amount) });
        }
    }
    let (write_off, remainder) = match diff.0 {
        0 => (Money(0), Money(0)),
        d if d < 0 && settle_all => (diff, Money(0)),
        d if d < 0 => (Money(0), Money(0)),
        _ if tol.allows(diff, total) => (diff, Money(0)),
        _ => (Money(0), diff),
    };
    Outcome::Matched(Matched { rule, allocations, fee, write_off, remainder })
}

/// Finding invoice numbers and names in the payer's texts.
pub mod refs {
    /// Runs of letters and digits, upper case: the words of a reference.
    pub fn words(text: &str) -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_uppercase).collect()
    }

    /// Whether `text` names `number` as whole words: the number's words appear in a row
    /// (any separators), or joined into one word (`INV20260001`), or as the body of an
    /// ISO 11649 creditor reference (`RF18INV20260001`).
    pub fn names(text: &str, number: &str) -> bool {
        Wanted::new(number).found_in(&words(text))
    }

    /// A reference to look for, split into words once.
    #[derive(Debug, Clone)]
    pub struct Wanted {
        words: Vec<String>,
        joined: String,
    }

    impl Wanted {
        /// The reference `number` (an invoice number, a customer reference).
        pub fn new(number: &str) -> Wanted {
            let words = words(number);
            let joined = words.concat();
            Wanted { words, joined }
        }

        /// Whether the words of a text (from [`words`]) name this reference; an empty
        /// reference is never found.
        pub fn found_in(&self, have: &[String]) -> bool {
            if self.words.is_empty() {
                return false;
            }
            have.windows(self.words.len()).any(|w| w == self.words.as_slice())
                || have.iter().any(|w| {
                    *w == self.joined
                        || (w.len() > 4
                            && w.starts_with("RF")
                            && w.as_bytes()[2..4].iter().all(u8::is_ascii_digit)
                            && w[4..] == self.joined)
                })
        }
    }

    const LEGAL_FORMS: [&str; 22] = [
        "AB", "AG", "AS", "BV", "CO", "CORP", "GMBH", "INC", "KG", "LLC", "LTD", "NV", "OHG", "OY", "PLC", "SA",
        "SARL", "SAS", "SE", "SPA", "SRL", "UG",
    ];

    /// A payer or customer name reduced for comparison: upper case, German letters
    /// spelled out as banks write them (`Müller` → `MUELLER`), punctuation and legal
    /// forms dropped.
    pub fn name_key(name: &str) -> Vec<String> {
        let spelled: String = name
            .chars()
            .flat_map(|c| match c {
                'ä' | 'Ä' => "AE".chars().collect::<Vec<_>>(),
                'ö' | 'Ö' => "OE".chars().collect(),
                'ü' | 'Ü' => "UE".chars().collect(),
                'ß' => "SS".chars().collect(),
                'é' | 'è' | 'ê' | 'É' => vec!['E'],
                'á' | 'à' | 'â' => vec!['A'],
                c => vec![c],
            })
            .collect();
        words(&spelled).into_iter().filter(|w| !LEGAL_FORMS.contains(&w.as_str())).collect()
    }

    /// Whether two name keys are the same name: equal, or the payer's a truncation
    /// (banks cut names to 35 characters) of at least 20 characters.
    pub fn same_name(payer: &[String], customer: &[String]) -> bool {
        if payer.is_empty() {
            return false;
        }
        let (p, c) = (payer.join(" "), customer.join(" "));
        p == c || (p.len() >= 20 && c.starts_with(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::refs::*;

    #[test]
    fn invoice_numbers_match_as_whole_words_only() {
        assert!(names("Payment INV/2026/0001 thanks", "INV/2026/0001"));
        assert!(names("inv-2026-0001", "INV/2026/0001"));
        assert!(names("INV20260001", "INV/2026/0001"));
        assert!(names("RF18INV20260001", "INV/2026/0001"));
        assert!(!names("INV/2026/00010", "INV/2026/0001"));
        assert!(!names("INV/2026/00010 INV/2026/00011", "INV/2026/0001"));
        assert!(!names("XINV/2026/0001", "INV/2026/0001"));
        assert!(!names("anything", ""));
    }

    #[test]
    fn names_compare_without_case_umlauts_or_legal_forms() {
        assert_eq!(name_key("Müller GmbH"), name_key("MUELLER"));
        assert!(same_name(&name_key("NORDWIND HANDELSGESELLSCHAFT"), &name_key("Nordwind Handelsgesellschaft mbH")));
        assert!(!same_name(&name_key("ACME"), &name_key("ACME Holding")));
    }
}
