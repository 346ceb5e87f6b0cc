//! ISO 20022 camt.053 (BankToCustomerStatement), message versions `.001.02` to `.001.08`.
//!
//! Elements are matched on their local names, so every version's namespace reads the
//! same way; where the versions differ the reader takes both shapes: `Sts` as text
//! (up to .06) or `Sts/Cd` (.07 on), the debtor as `Dbtr/Nm` or `Dbtr/Pty/Nm` (.08),
//! transaction amounts as `TxDtls/Amt` or `AmtDtls/TxAmt/Amt` (.02), charges as
//! `Chrgs/Amt` (.02) or `Chrgs/Rcrd/Amt` with `ChrgInclInd` (.06 on).
//!
//! One [`StatementLine`] per booked entry (`Sts` `BOOK`), or one per transaction detail
//! when a batched entry carries several `TxDtls` with amounts that add up to the entry.
//! Entries with other statuses (pending, information) are not booked and are left out.
//! Charges deducted from an entry (`Chrgs`) become the line's fee: the entry's own, or
//! when it has none, its details'; the lines of a split batch carry their details' charges.

use roxmltree::{Document, Node};
use waybill_domain::Money;

use crate::model::{Account, Balance, Date, Format, LineKind, References, Statement, StatementLine, parse_amount};
use crate::text::{clean, decode};
use crate::{Error, Result};

const NAMESPACE_PREFIX: &str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.";

/// Reads every statement (`Stmt`) of a camt.053 document. Checks each statement's
/// opening balance plus its lines against its closing balance.
pub fn parse(bytes: &[u8]) -> Result<Vec<Statement>> {
    let text = decode(bytes);
    let doc = Document::parse(&text).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Error::Invalid {
            format: "camt.053".into(),
            location: format!("line {}", e.pos().row),
            problem: "the file declares a DTD, which ISO 20022 messages never have; it is refused (entities could expand without bound)".into(),
            hint: "check where the file came from; ask the bank for the statement as its plain camt.053 XML",
        },
        e => Error::Invalid {
            format: "camt.053".into(),
            location: format!("line {}", e.pos().row),
            problem: format!("the XML is not well-formed ({e})"),
            hint: "the file is damaged or not XML; ask the bank to send it again",
        },
    })?;
    let document =
        doc.descendants().find(|n| n.is_element() && n.tag_name().name() == "Document").ok_or_else(|| {
            Error::Invalid {
                format: "camt.053".into(),
                location: "root element".into(),
                problem: format!(
                    "there is no <Document> element (the root is <{}>)",
                    doc.root_element().tag_name().name()
                ),
                hint: "this is not an ISO 20022 message; check that the bank sends camt.053",
            }
        })?;
    let version = version(document)?;
    let reader = Reader { doc: &doc, format: Format::Camt053 { version } };
    let body = child(document, "BkToCstmrStmt").ok_or_else(|| {
        reader.invalid(document, "Document".into(), "there is no <BkToCstmrStmt>".into(), HINT_SCHEMA)
    })?;
    let mut statements = Vec::new();
    for (i, stmt) in children(body, "Stmt").enumerate() {
        let statement = reader.statement(stmt, i + 1)?;
        statement.check_balance()?;
        statements.push(statement);
    }
    if statements.is_empty() {
        return Err(reader.invalid(body, "BkToCstmrStmt".into(), "the message holds no <Stmt>".into(), HINT_SCHEMA));
    }
    Ok(statements)
}

const HINT_SCHEMA: &str = "the file does not follow the camt.053 schema; ask the bank for a valid statement";

fn version(document: Node) -> Result<u8> {
    let ns = document.tag_name().namespace().unwrap_or("");
    let err = |problem: String, hint| Error::Invalid {
        format: "camt.053".into(),
        location: "Document".into(),
        problem,
        hint,
    };
    let Some(rest) = ns.strip_prefix(NAMESPACE_PREFIX) else {
        return Err(err(
            format!("the namespace is {ns:?}, not camt.053"),
            "only bank-to-customer statements (camt.053) are read here; ask the bank for camt.053 instead of camt.052 or camt.054",
        ));
    };
    match rest.parse::<u8>() {
        Ok(v @ 2..=8) => Ok(v),
        _ => Err(err(
            format!("message version camt.053.001.{rest} is not supported"),
            "versions .02 to .08 are read; ask the bank for one of them",
        )),
    }
}

/// First child element with this local name.
fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name)
}

/// Child elements with this local name.
fn children<'a, 'i: 'a>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children().filter(move |n| n.is_element() && n.tag_name().name() == name)
}

/// The element at a path of local names.
fn at<'a, 'i>(node: Node<'a, 'i>, path: &[&str]) -> Option<Node<'a, 'i>> {
    path.iter().try_fold(node, |n, name| child(n, name))
}

/// Trimmed, non-empty text at a path.
fn text_at<'a>(node: Node<'a, '_>, path: &[&str]) -> Option<&'a str> {
    at(node, path).and_then(|n| n.text()).map(str::trim).filter(|s| !s.is_empty())
}

struct Reader<'a, 'i> {
    doc: &'a Document<'i>,
    format: Format,
}

/// Where the reader is, for error messages.
#[derive(Clone, Copy)]
struct At<'s> {
    stmt: usize,
    stmt_id: &'s str,
    entry: Option<usize>,
}

impl At<'_> {
    fn path(&self, tail: &str) -> String {
        let mut s = format!("Stmt {}", self.stmt);
        if !self.stmt_id.is_empty() {
            s.push_str(&format!(" ({})", self.stmt_id));
        }
        if let Some(e) = self.entry {
            s.push_str(&format!(", Ntry {e}"));
        }
        format!("{s}, {tail}")
    }
}

impl<'a, 'i> Reader<'a, 'i> {
    fn invalid(&self, node: Node, path: String, problem: String, hint: &'static str) -> Error {
        let row = self.doc.text_pos_at(node.range().start).row;
        Error::Invalid { format: self.format.to_string(), location: format!("{path} (line {row})"), problem, hint }
    }

    fn required<'n>(&self, node: Node<'n, 'i>, path: &[&str], at: At) -> Result<&'n str> {
        text_at(node, path).ok_or_else(|| {
            self.invalid(
                node,
                at.path(&path.join("/")),
                format!("<{}> is missing or empty", path.join("/")),
                HINT_SCHEMA,
            )
        })
    }

    /// An `Amt` element: amount in minor units and its currency.
    fn amount(&self, amt: Node, at: At, what: &str) -> Result<(Money, String)> {
        let ccy = amt.attribute("Ccy").map(str::trim).unwrap_or("");
        if ccy.len() != 3 {
            let problem = format!("the amount of {what} has no three-letter Ccy attribute");
            return Err(self.invalid(amt, at.path(what), problem, HINT_SCHEMA));
        }
        let money = parse_amount(amt.text().unwrap_or(""), '.', ccy).map_err(|p| {
            self.invalid(amt, at.path(what), p, "the amount must be a decimal with a point; ask the bank")
        })?;
        Ok((money, ccy.to_string()))
    }

    /// A date given as `Dt` or `DtTm` under the child `name` of `node`, if there is one.
    fn date(&self, node: Node, name: &str, at: At) -> Result<Option<Date>> {
        let Some(n) = child(node, name) else { return Ok(None) };
        let Some(text) = text_at(n, &["Dt"]).or_else(|| text_at(n, &["DtTm"])) else { return Ok(None) };
        Date::parse_iso(text)
            .map(Some)
            .ok_or_else(|| self.invalid(n, at.path(name), format!("{text:?} is not a date (YYYY-MM-DD)"), HINT_SCHEMA))
    }

    /// The sign of `CdtDbtInd` under `node`: +1 credit, -1 debit.
    fn sign(&self, node: Node, at: At, what: &str) -> Result<i64> {
        match text_at(node, &["CdtDbtInd"]) {
            Some("CRDT") => Ok(1),
            Some("DBIT") => Ok(-1),
            other => Err(self.invalid(
                node,
                at.path(&format!("{what}/CdtDbtInd")),
                format!("the credit/debit indicator is {other:?}, not CRDT or DBIT"),
                HINT_SCHEMA,
            )),
        }
    }

    fn statement(&self, stmt: Node<'a, 'i>, number: usize) -> Result<Statement> {
        let here = At { stmt: number, stmt_id: "", entry: None };
        let statement_id = self.required(stmt, &["Id"], here)?.to_string();
        let here = At { stmt_id: &statement_id, ..here };
        let acct = at(stmt, &["Acct"]).ok_or_else(|| {
            self.invalid(stmt, here.path("Acct"), "the statement names no account".into(), HINT_SCHEMA)
        })?;
        let account = text_at(acct, &["Id", "IBAN"])
            .map(Account::from_text)
            .or_else(|| text_at(acct, &["Id", "Othr", "Id"]).map(|s| Account::Other(s.to_string())))
            .ok_or_else(|| {
                self.invalid(acct, here.path("Acct/Id"), "the account has neither IBAN nor Othr/Id".into(), HINT_SCHEMA)
            })?;
        let mut opening = None;
        let mut closing = None;
        let mut balance_ccy = None;
        for bal in children(stmt, "Bal") {
            let code = text_at(bal, &["Tp", "CdOrPrtry", "Cd"]).unwrap_or("");
            let slot = match code {
                "OPBD" => &mut opening,
                "PRCD" if opening.is_none() => &mut opening,
                "CLBD" => &mut closing,
                _ => continue,
            };
            let amt = child(bal, "Amt").ok_or_else(|| {
                self.invalid(bal, here.path("Bal/Amt"), format!("the {code} balance has no amount"), HINT_SCHEMA)
            })?;
            let (money, ccy) = self.amount(amt, here, &format!("Bal {code}"))?;
            let sign = self.sign(bal, here, "Bal")?;
            balance_ccy.get_or_insert(ccy);
            *slot = Some(Balance { amount: Money(sign * money.0), date: self.date(bal, "Dt", here)? });
        }
        let currency = text_at(acct, &["Ccy"])
            .map(str::to_string)
            .or(balance_ccy)
            .or_else(|| children(stmt, "Ntry").find_map(|n| child(n, "Amt")?.attribute("Ccy").map(str::to_string)))
            .ok_or_else(|| {
                self.invalid(acct, here.path("Acct/Ccy"), "the statement gives no currency".into(), HINT_SCHEMA)
            })?;
        let mut lines = Vec::new();
        // (line, the bank's reference if any, positional id)
        let mut drafts: Vec<(StatementLine, Option<String>, String)> = Vec::new();
        for (i, ntry) in children(stmt, "Ntry").enumerate() {
            let here = At { entry: Some(i + 1), ..here };
            self.entry(ntry, here, &statement_id, &currency, &mut drafts)?;
        }
        for (line, bank_id, positional) in &drafts {
            let unique = bank_id.as_ref().filter(|id| drafts.iter().filter(|d| d.1.as_ref() == Some(id)).count() == 1);
            let mut line = line.clone();
            line.line_id = unique.cloned().unwrap_or_else(|| positional.clone());
            lines.push(line);
        }
        let sequence = text_at(stmt, &["ElctrncSeqNb"]).map(str::to_string);
        Ok(Statement { format: self.format, statement_id, sequence, account, currency, opening, closing, lines })
    }

    fn entry(
        &self,
        ntry: Node<'a, 'i>,
        here: At,
        stmt_id: &str,
        currency: &str,
        out: &mut Vec<(StatementLine, Option<String>, String)>,
    ) -> Result<()> {
        let status = text_at(ntry, &["Sts"]).or_else(|| text_at(ntry, &["Sts", "Cd"])).unwrap_or("BOOK");
        if status != "BOOK" {
            return Ok(());
        }
        let amt = child(ntry, "Amt")
            .ok_or_else(|| self.invalid(ntry, here.path("Amt"), "the entry has no amount".into(), HINT_SCHEMA))?;
        let (money, ccy) = self.amount(amt, here, "Amt")?;
        if ccy != currency {
            return Err(self.invalid(
                amt,
                here.path("Amt"),
                format!("the entry is in {ccy} but the account is in {currency}"),
                "a statement's entries are booked in the account's currency; ask the bank to correct the file",
            ));
        }
        let amount = Money(self.sign(ntry, here, "Ntry")? * money.0);
        let reversal = text_at(ntry, &["RvslInd"]).is_some_and(|v| v == "true" || v == "1");
        let entry_kind = kind_of(ntry, reversal);
        let booking_date = self.date(ntry, "BookgDt", here)?;
        let value_date = self.date(ntry, "ValDt", here)?;
        let entry_ref = text_at(ntry, &["AcctSvcrRef"]).map(str::to_string);
        let entry_fee = self.charges(ntry, here, currency)?;
        let details: Vec<Node> = children(ntry, "NtryDtls").flat_map(|d| children(d, "TxDtls")).collect();
        let positional = format!("{stmt_id}/{}", here.entry.unwrap_or(0));
        let base = StatementLine {
            line_id: String::new(),
            kind: entry_kind,
            booking_date,
            value_date,
            amount,
            currency: currency.to_string(),
            fee: entry_fee,
            counterparty: None,
            references: References { bank_reference: entry_ref.clone(), ..References::default() },
        };
        let mut entry_info = References::default();
        if let Some(info) = text_at(ntry, &["AddtlNtryInf"]).and_then(clean) {
            entry_info.remittance.push(info);
        }
        // Split a batch into its transactions when every detail has an amount in the
        // account's currency; otherwise the entry stays one line with every reference.
        let amounts: Option<Vec<Money>> = (details.len() > 1)
            .then(|| {
                details.iter().map(|tx| self.detail_amount(*tx, here, currency)).collect::<Result<Option<Vec<_>>>>()
            })
            .transpose()?
            .flatten();
        let Some(amounts) = amounts else {
            let mut line = base;
            let mut names = Vec::new();
            // Charges given on the entry already cover its details; count the details' only without them.
            let count_charges = entry_fee.0 == 0;
            for tx in &details {
                self.merge_detail(*tx, &mut line, &mut names, (amount.0 < 0, count_charges), here, currency)?;
            }
            names.dedup();
            line.counterparty = if names.len() == 1 { names.pop() } else { None };
            line.references.remittance.extend(entry_info.remittance);
            out.push((line, entry_ref, positional));
            return Ok(());
        };
        let total: Money = amounts.iter().copied().sum();
        if total != amount {
            return Err(self.invalid(
                ntry,
                here.path("NtryDtls/TxDtls"),
                format!("the {} transaction details add up to {total} but the entry is {amount}", details.len()),
                "the batch does not add up; ask the bank to send the statement again",
            ));
        }
        for (k, (tx, part)) in details.iter().zip(amounts).enumerate() {
            let mut line = StatementLine { amount: part, fee: Money(0), ..base.clone() };
            let mut names = Vec::new();
            self.merge_detail(*tx, &mut line, &mut names, (part.0 < 0, true), here, currency)?;
            line.counterparty = names.pop();
            let bank_id = text_at(*tx, &["Refs", "AcctSvcrRef"])
                .map(str::to_string)
                .or_else(|| entry_ref.as_ref().map(|r| format!("{r}/{}", k + 1)));
            line.references.bank_reference = bank_id.clone();
            out.push((line, bank_id, format!("{positional}/{}", k + 1)));
        }
        Ok(())
    }

    /// The signed amount of one transaction detail in the account's currency, if it has one.
    fn detail_amount(&self, tx: Node, here: At, currency: &str) -> Result<Option<Money>> {
        let amt = child(tx, "Amt").or_else(|| at(tx, &["AmtDtls", "TxAmt", "Amt"]));
        let Some(amt) = amt else { return Ok(None) };
        let (money, ccy) = self.amount(amt, here, "TxDtls/Amt")?;
        if ccy != currency {
            return Ok(None);
        }
        let sign = match text_at(tx, &["CdtDbtInd"]) {
            Some(_) => self.sign(tx, here, "TxDtls")?,
            None => match text_at(tx.parent().and_then(|d| d.parent()).unwrap_or(tx), &["CdtDbtInd"]) {
                Some("DBIT") => -1,
                _ => 1,
            },
        };
        Ok(Some(Money(sign * money.0)))
    }

    /// Adds a transaction detail's references, counterparty name, kind and charges to a line.
    fn merge_detail(
        &self,
        tx: Node,
        line: &mut StatementLine,
        names: &mut Vec<String>,
        (debit, count_charges): (bool, bool),
        here: At,
        currency: &str,
    ) -> Result<()> {
        let refs = &mut line.references;
        if let Some(e2e) = text_at(tx, &["Refs", "EndToEndId"]).filter(|e| *e != "NOTPROVIDED") {
            if refs.end_to_end_id.is_none() {
                refs.end_to_end_id = Some(e2e.to_string());
            } else {
                refs.remittance.push(e2e.to_string());
            }
        }
        for rmt in children(tx, "RmtInf") {
            refs.remittance.extend(children(rmt, "Ustrd").filter_map(|u| u.text()).filter_map(clean));
            for strd in children(rmt, "Strd") {
                refs.creditor_reference.extend(text_at(strd, &["CdtrRefInf", "Ref"]).map(str::to_string));
                for doc in children(strd, "RfrdDocInf") {
                    refs.creditor_reference.extend(text_at(doc, &["Nb"]).map(str::to_string));
                }
                refs.remittance.extend(children(strd, "AddtlRmtInf").filter_map(|u| u.text()).filter_map(clean));
            }
        }
        if let Some(info) = text_at(tx, &["AddtlTxInf"]).and_then(clean) {
            refs.remittance.push(info);
        }
        let parties = child(tx, "RltdPties");
        let (party, ultimate) = if debit { ("Cdtr", "UltmtCdtr") } else { ("Dbtr", "UltmtDbtr") };
        let name = parties.and_then(|p| {
            [party, ultimate]
                .iter()
                .find_map(|who| text_at(p, &[who, "Nm"]).or_else(|| text_at(p, &[who, "Pty", "Nm"])).and_then(clean))
        });
        names.extend(name);
        if child(tx, "RtrInf").is_some() {
            line.kind = LineKind::Reversal;
        } else if child(tx, "BkTxCd").is_some() && line.kind == LineKind::Payment {
            line.kind = kind_of(tx, false);
        }
        if count_charges {
            line.fee = line.fee + self.charges(tx, here, currency)?;
        }
        Ok(())
    }

    /// Charges included in the amount of an entry or detail (deducted by the bank).
    fn charges(&self, node: Node, here: At, currency: &str) -> Result<Money> {
        let mut total = Money(0);
        for chrgs in children(node, "Chrgs") {
            let records: Vec<Node> = children(chrgs, "Rcrd").collect();
            let amounts: Vec<Node> = if records.is_empty() {
                child(chrgs, "Amt").into_iter().collect()
            } else {
                records
                    .iter()
                    .filter(|r| text_at(**r, &["ChrgInclInd"]) != Some("false"))
                    .filter_map(|r| child(*r, "Amt"))
                    .collect()
            };
            for amt in amounts {
                let (money, ccy) = self.amount(amt, here, "Chrgs/Amt")?;
                if ccy != currency {
                    return Err(self.invalid(
                        amt,
                        here.path("Chrgs/Amt"),
                        format!("charges are in {ccy} but the account is in {currency}"),
                        "charges deducted from an entry are in the account's currency; ask the bank to correct the file",
                    ));
                }
                total = total + money;
            }
        }
        Ok(total)
    }
}

/// The kind of an entry or detail from its bank transaction code (ISO 20022 external
/// code list: sub-families) and the reversal indicator.
fn kind_of(node: Node, reversal: bool) -> LineKind {
    if reversal {
        return LineKind::Reversal;
    }
    match text_at(node, &["BkTxCd", "Domn", "Fmly", "SubFmlyCd"]).unwrap_or("") {
        "CHRG" | "COMM" | "FEES" => LineKind::Fee,
        "RRTN" | "RPCR" | "ARET" | "UPDD" | "PRDD" | "RCDD" => LineKind::Reversal,
        "CAJT" | "DAJT" | "INTR" => LineKind::Adjustment,
        _ => LineKind::Payment,
    }
}
