//! The checks of incoming control-plane requests that need no state: required ids,
//! versions and notes, list filters, page sizes and page tokens.
//!
//! Each is a pure function of the request's fields, so the handlers in
//! [`service`](crate::service) and [`workbench`](crate::workbench) call them before they
//! read any store, and `make fuzz` (target `control_validate`) feeds them arbitrary
//! requests. A refusal is always [`Error::InvalidArgument`] saying what to send instead.
//! Numbers a caller sends are clamped or refused here, never used in arithmetic that
//! could overflow.

use waybill_domain::{ExceptionCategory, SourceRef, Timestamp};

use crate::error::{Error, Result};
use crate::proto;

/// Postings per page when a `ListHeldPostings` request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Most postings per page, whatever the request asks for.
pub const MAX_PAGE_SIZE: usize = 500;
/// Exceptions listed when a `ListExceptions` request does not say.
pub const DEFAULT_EXCEPTIONS: usize = 100;
/// Most exceptions listed, whatever the request asks for.
pub const MAX_EXCEPTIONS: usize = 1000;
/// Audit entries listed when a `ListAudit` request does not say.
pub const DEFAULT_AUDIT_ENTRIES: usize = 100;

/// The fields of an approve or reject request that must be there before the posting is
/// looked up: a posting id, the version the caller reviewed, and (to reject) a reason.
pub fn decision(r: &proto::DecisionRequest, approve: bool) -> Result<()> {
    if r.posting_id.is_empty() {
        return Err(Error::InvalidArgument(
            "posting_id is empty; name a posting such as inv:SHP-1 (see `waybill approvals list`)".into(),
        ));
    }
    if r.expected_version <= 0 {
        return Err(Error::InvalidArgument(format!(
            "expected_version is missing; pass the version you reviewed (`waybill approvals show {}` prints it)",
            r.posting_id
        )));
    }
    if !approve && r.reason.trim().is_empty() {
        return Err(Error::InvalidArgument("a rejection needs a reason: it goes to whoever corrects the order".into()));
    }
    Ok(())
}

/// The fields of a retry or resolve request that must be there before the exception is
/// looked up: an exception id and (to resolve) a note.
pub fn exception_action(r: &proto::ExceptionActionRequest, retry: bool) -> Result<()> {
    if r.exception_id.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "exception_id is empty; name an exception such as o2f:SO0042/pick-overdue/1 (see `waybill exceptions list`)"
                .into(),
        ));
    }
    if !retry && r.note.trim().is_empty() {
        return Err(Error::InvalidArgument(format!(
            "resolving exception {} needs a note saying what was done (--note \"...\")",
            r.exception_id
        )));
    }
    Ok(())
}

/// Longest owner identity an assignment may name.
pub const MAX_OWNER_LEN: usize = 128;

/// The fields of an assign request that must be there before the exception is looked
/// up: an exception id and an owner — a person or team identity, not blank, at most
/// [`MAX_OWNER_LEN`] characters, on one line, and not `-` (which the exception list's
/// owner filter reads as "unassigned").
pub fn exception_assignment(r: &proto::AssignExceptionRequest) -> Result<()> {
    if r.exception_id.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "exception_id is empty; name an exception such as o2f:SO0042/pick-overdue/1 (see `waybill exceptions list`)"
                .into(),
        ));
    }
    let owner = r.owner.trim();
    if owner.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "assigning exception {} needs an owner: the person or team who is to work it (--owner NAME)",
            r.exception_id
        )));
    }
    if owner == "-" {
        return Err(Error::InvalidArgument(
            "owner \"-\" means \"unassigned\" in the exception list's filter; name a person or team".into(),
        ));
    }
    if owner.chars().count() > MAX_OWNER_LEN || owner.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "owner {owner:?} is not an identity: use at most {MAX_OWNER_LEN} characters on one line, such as olga@example.com or finance-ar"
        )));
    }
    Ok(())
}

/// Most allocations one statement line may be applied to by hand.
pub const MAX_ALLOCATIONS: usize = 200;
/// Longest invoice number or customer reference an allocation may name.
pub const MAX_REFERENCE_LEN: usize = 128;

/// The fields of an `AssignStatementLine` request that must be there before the statement
/// is looked up: the exception (or the statement and the line), a note, and allocations
/// that name an invoice and a positive amount each, on one line, in bounded numbers. What
/// the allocation must fit (the line's amount, the open items) is the saga's rule,
/// checked next.
pub fn statement_line_assignment(r: &proto::AssignStatementLineRequest) -> Result<()> {
    if r.exception_id.trim().is_empty() && (r.statement_key.trim().is_empty() || r.line_id.trim().is_empty()) {
        return Err(Error::InvalidArgument(
            "name the unmatched-payment exception (cash:…/unmatched-payment/N, see `waybill exceptions list --open --category unmatched-payment`), or both the statement key and the line id".into(),
        ));
    }
    if r.note.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "applying a statement line by hand needs a note saying how the allocation was established (--note \"confirmed by the customer\")".into(),
        ));
    }
    if r.allocations.is_empty() && r.on_account.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "name the invoices the line pays (--invoice NUMBER=AMOUNT, once per invoice), or the customer whose account keeps it (--on-account CUSTOMER)".into(),
        ));
    }
    if r.allocations.len() > MAX_ALLOCATIONS {
        return Err(Error::InvalidArgument(format!(
            "{} allocations are more than one line is applied to by hand (at most {MAX_ALLOCATIONS}); book it in finance and resolve the exception with a note",
            r.allocations.len()
        )));
    }
    let reference = |what: &str, text: &str| {
        if text.chars().count() > MAX_REFERENCE_LEN || text.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "{what} {text:?} is not a reference: use at most {MAX_REFERENCE_LEN} characters on one line"
            )));
        }
        Ok(())
    };
    for a in &r.allocations {
        let invoice = a.invoice.trim();
        if invoice.is_empty() {
            return Err(Error::InvalidArgument(
                "an allocation names no invoice; give each as NUMBER=AMOUNT, like INV/2026/0001=120.00".into(),
            ));
        }
        reference("invoice", invoice)?;
        if a.amount_minor <= 0 {
            return Err(Error::InvalidArgument(format!(
                "the amount for invoice {invoice} is {}: amounts are positive; leave out an invoice the line does not pay",
                waybill_domain::Money(a.amount_minor)
            )));
        }
    }
    reference("customer", r.on_account.trim())?;
    Ok(())
}

/// The target of a replay (a saga id or an order name) must not be blank.
pub fn replay_target(saga_or_order: &str) -> Result<()> {
    if saga_or_order.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "saga_id is empty; name a saga (o2f:SO0042, s2i:SHP-1, ret:RMA-1, p2r:P00042) or an order (SO0042, po:P00042)".into(),
        ));
    }
    Ok(())
}

/// A lineage query names a source reference, `system:id`.
pub fn source_ref(text: &str) -> Result<SourceRef> {
    text.parse::<SourceRef>().map_err(|_| {
        Error::InvalidArgument(format!(
            "{text:?} is not a source reference; write system:id, e.g. odoo:SO0042, wms:SHP-1, waybill:release:SO0042"
        ))
    })
}

/// A minimum age in seconds as microseconds; `None` (no filter) when it is zero or
/// negative. Ages beyond what a timestamp can hold saturate instead of overflowing.
pub fn min_age_micros(min_age_seconds: i64) -> Option<i64> {
    (min_age_seconds > 0).then(|| min_age_seconds.saturating_mul(Timestamp::MICROS_PER_SEC))
}

/// Whether something that happened at `at_us` is at least `min_age_us` old at `now`
/// (always, without a minimum age).
pub fn old_enough(at_us: i64, min_age_us: Option<i64>, now: Timestamp) -> bool {
    min_age_us.is_none_or(|min| now.0.saturating_sub(at_us) >= min)
}

/// Where a page of a list sorted by (time, id) starts: after the entry with this time
/// and id. The token a server hands out is `<time>/<id>`; a caller passes it back
/// unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// The time of the last entry of the previous page, microseconds since the epoch.
    pub at_us: i64,
    /// The id of the last entry of the previous page.
    pub id: String,
}

impl PageToken {
    /// The token for a page that ends with the entry (`at_us`, `id`).
    pub fn new(at_us: i64, id: impl Into<String>) -> PageToken {
        PageToken { at_us, id: id.into() }
    }

    /// The text handed to the caller as `next_page_token`.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.at_us, self.id)
    }

    /// Reads a `page_token` from a request: `None` for the first page (an empty token),
    /// the position for a token this server issued, [`Error::InvalidArgument`] otherwise.
    pub fn parse(token: &str) -> Result<Option<PageToken>> {
        if token.is_empty() {
            return Ok(None);
        }
        match token.split_once('/').map(|(at, id)| (at.parse::<i64>(), id)) {
            Some((Ok(at_us), id)) => Ok(Some(PageToken::new(at_us, id))),
            _ => Err(Error::InvalidArgument("page_token is not one this server issued; start again without it".into())),
        }
    }
}

/// A checked `ListHeldPostings` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPostingsQuery {
    /// Only postings in this state (`held`, `approved`, `rejected`); `None` for every state.
    pub state: Option<&'static str>,
    /// Only this document (`invoice`, `credit-note`); `None` for both.
    pub document: Option<&'static str>,
    /// Only postings held at least this long, in microseconds; `None` for any age.
    pub min_age_us: Option<i64>,
    /// Postings per page, 1 to [`MAX_PAGE_SIZE`].
    pub page_size: usize,
    /// The page starts after this posting; `None` for the first page.
    pub after: Option<PageToken>,
    /// Only postings of this legal entity.
    pub entity: Option<String>,
}

/// An entity filter: empty for every entity, else one of the configured entities.
pub fn entity(raw: &str, entities: &waybill_saga::Entities) -> Result<Option<String>> {
    let e = raw.trim();
    if e.is_empty() {
        return Ok(None);
    }
    if entities.get(e).is_some() {
        return Ok(Some(e.to_string()));
    }
    let known: Vec<&str> = entities.iter().map(|x| x.code.as_str()).collect();
    Err(Error::InvalidArgument(if known.is_empty() {
        format!("entity {e:?}: this deployment configures no entities ([entities]); leave the filter empty")
    } else {
        format!("entity {e:?} is not configured; use one of {}", known.join(", "))
    }))
}

/// Checks a `ListHeldPostings` request: the state and document filters must be ones
/// the server knows, the page token one it issued; the page size is clamped.
pub fn held_postings(
    r: &proto::ListHeldPostingsRequest,
    entities: &waybill_saga::Entities,
) -> Result<HeldPostingsQuery> {
    let state = match r.state.as_str() {
        "" | "held" => Some("held"),
        "approved" => Some("approved"),
        "rejected" => Some("rejected"),
        "all" => None,
        s => {
            return Err(Error::InvalidArgument(format!("state {s:?} is not one of held, approved, rejected, all")));
        }
    };
    let document = match r.document.as_str() {
        "" => None,
        "invoice" => Some("invoice"),
        "credit-note" => Some("credit-note"),
        "vendor-bill" => Some("vendor-bill"),
        d => {
            return Err(Error::InvalidArgument(format!("document {d:?} is not invoice, credit-note or vendor-bill")));
        }
    };
    let page_size = match r.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => usize::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
    };
    if r.min_amount_minor < 0 || r.max_amount_minor < 0 {
        return Err(Error::InvalidArgument("amount bounds must not be negative; use 0 for no bound".into()));
    }
    if r.max_amount_minor > 0 && r.min_amount_minor > r.max_amount_minor {
        return Err(Error::InvalidArgument(format!(
            "min_amount_minor {} is above max_amount_minor {}; swap them",
            r.min_amount_minor, r.max_amount_minor
        )));
    }
    Ok(HeldPostingsQuery {
        state,
        document,
        min_age_us: min_age_micros(r.min_age_seconds),
        page_size,
        after: PageToken::parse(&r.page_token)?,
        entity: entity(&r.entity, entities)?,
    })
}

/// A checked `ListExceptions` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionsQuery {
    /// Only this category; `None` for every category.
    pub category: Option<ExceptionCategory>,
    /// Only exceptions that are still open.
    pub open_only: bool,
    /// Only exceptions raised at least this long ago, in microseconds; `None` for any age.
    pub min_age_us: Option<i64>,
    /// Most exceptions listed, 1 to [`MAX_EXCEPTIONS`]: the page size.
    pub limit: usize,
    /// Only exceptions assigned to this owner; `Some(None)` for unassigned ones (`-`).
    pub owner: Option<Option<String>>,
    /// Only exceptions of orders of this customer.
    pub customer: Option<String>,
    /// Only exceptions of this legal entity.
    pub entity: Option<String>,
    /// The page starts after this exception; `None` for the first page.
    pub after: Option<ExceptionCursor>,
}

/// Where a page of exceptions starts: after the exception with this sort key. Open
/// exceptions are listed by (category, id), all exceptions by id (the category is then
/// empty). The token handed out is `<category>/<id>` (categories contain no `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExceptionCursor {
    /// Category name of the last exception of the previous page (empty for lists of all
    /// exceptions).
    pub category: String,
    /// Its id.
    pub id: String,
}

impl ExceptionCursor {
    /// The cursor of an exception in a list (`open_only` as the list's).
    pub fn of(open_only: bool, category: ExceptionCategory, id: &str) -> Self {
        ExceptionCursor { category: if open_only { category.as_str().into() } else { String::new() }, id: id.into() }
    }

    /// The text handed to the caller as `next_page_token`.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.category, self.id)
    }

    /// Reads a `page_token`: `None` for the first page, the cursor for a token this
    /// server issued (for a list of the same kind), [`Error::InvalidArgument`] otherwise.
    pub fn parse(token: &str, open_only: bool) -> Result<Option<Self>> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || {
            Error::InvalidArgument(
                "page_token is not one this server issued for this list (same filters, same open_only); start again without it"
                    .into(),
            )
        };
        let (category, id) = token.split_once('/').ok_or_else(bad)?;
        let known = ExceptionCategory::ALL.iter().any(|c| c.as_str() == category);
        if id.is_empty() || (open_only && !known) || (!open_only && !category.is_empty()) {
            return Err(bad());
        }
        Ok(Some(ExceptionCursor { category: category.into(), id: id.into() }))
    }
}

/// Checks a `ListExceptions` request: the category must be one Waybill raises, the page
/// token one this server issued; the page size (`page_size`, else `limit`) is clamped.
pub fn exceptions(r: &proto::ListExceptionsRequest, entities: &waybill_saga::Entities) -> Result<ExceptionsQuery> {
    let category = match r.category.as_str() {
        "" => None,
        c => Some(ExceptionCategory::ALL.into_iter().find(|x| x.as_str() == c).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "category {c:?} is unknown; use one of {}",
                ExceptionCategory::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?),
    };
    let limit = match (r.page_size, r.limit) {
        (0, 0) => DEFAULT_EXCEPTIONS,
        (0, n) | (n, _) => usize::try_from(n).unwrap_or(MAX_EXCEPTIONS).min(MAX_EXCEPTIONS),
    };
    let owner = match r.owner.trim() {
        "" => None,
        "-" => Some(None),
        o => Some(Some(o.to_string())),
    };
    let customer = Some(r.customer.trim()).filter(|c| !c.is_empty()).map(str::to_string);
    Ok(ExceptionsQuery {
        category,
        open_only: r.open_only,
        min_age_us: min_age_micros(r.min_age_seconds),
        limit,
        owner,
        customer,
        entity: entity(&r.entity, entities)?,
        after: ExceptionCursor::parse(&r.page_token, r.open_only)?,
    })
}

/// Most audit entries a `ListAudit` request lists.
pub fn audit_limit(limit: u32) -> usize {
    match limit {
        0 => DEFAULT_AUDIT_ENTRIES,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_postings_of(r: &proto::ListHeldPostingsRequest) -> Result<HeldPostingsQuery> {
        held_postings(r, &waybill_saga::Entities::default())
    }

    fn exceptions_of(r: &proto::ListExceptionsRequest) -> Result<ExceptionsQuery> {
        exceptions(r, &waybill_saga::Entities::default())
    }

    #[test]
    fn an_entity_filter_names_a_configured_entity() {
        let none = waybill_saga::Entities::default();
        assert_eq!(entity(" ", &none).unwrap(), None);
        let e = entity("acme-de", &none).unwrap_err().to_string();
        assert!(e.contains("configures no entities"), "{e}");
        let cfg = waybill_saga::entity::EntitiesConfig {
            default: Some("acme-us".into()),
            template_dir: None,
            companies: [("acme-us", "USD"), ("acme-de", "EUR")]
                .into_iter()
                .map(|(c, cur)| (c.to_string(), serde_json::json!({ "currency": cur })))
                .collect(),
        };
        let two = waybill_saga::Entities::build(&cfg, &waybill_saga::Policy::default(), &Default::default()).unwrap();
        assert_eq!(entity("acme-de", &two).unwrap().as_deref(), Some("acme-de"));
        let e = entity("acme-fr", &two).unwrap_err().to_string();
        assert!(e.contains("use one of acme-de, acme-us"), "{e}");
        let r = proto::ListExceptionsRequest { entity: "acme-fr".into(), ..Default::default() };
        assert!(exceptions(&r, &two).is_err());
    }

    fn decision_request(posting_id: &str, expected_version: i64, reason: &str) -> proto::DecisionRequest {
        proto::DecisionRequest { posting_id: posting_id.into(), expected_version, reason: reason.into() }
    }

    #[test]
    fn decisions_need_a_posting_a_version_and_a_reason_to_reject() {
        assert!(decision(&decision_request("inv:SHP-1", 3, ""), true).is_ok());
        assert!(decision(&decision_request("inv:SHP-1", 3, "price is wrong"), false).is_ok());

        let e = decision(&decision_request("", 3, ""), true).unwrap_err();
        assert!(e.to_string().starts_with("posting_id is empty"), "{e}");
        let e = decision(&decision_request("inv:SHP-1", 0, ""), true).unwrap_err();
        assert!(e.to_string().contains("waybill approvals show inv:SHP-1"), "{e}");
        let e = decision(&decision_request("inv:SHP-1", -7, "x"), false).unwrap_err();
        assert!(e.to_string().starts_with("expected_version is missing"), "{e}");
        let e = decision(&decision_request("inv:SHP-1", 3, " \t\n"), false).unwrap_err();
        assert!(e.to_string().starts_with("a rejection needs a reason"), "{e}");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn resolving_needs_a_note_but_retrying_does_not() {
        let r = |id: &str, note: &str| proto::ExceptionActionRequest { exception_id: id.into(), note: note.into() };
        assert!(exception_action(&r("o2f:SO1/pick-overdue/1", ""), true).is_ok());
        assert!(exception_action(&r("o2f:SO1/pick-overdue/1", "called the warehouse"), false).is_ok());
        let e = exception_action(&r("o2f:SO1/pick-overdue/1", "  "), false).unwrap_err();
        assert!(e.to_string().contains("needs a note"), "{e}");
        let e = exception_action(&r(" ", "note"), true).unwrap_err();
        assert!(e.to_string().starts_with("exception_id is empty"), "{e}");
        assert!(replay_target(" \n").is_err());
        assert!(replay_target("SO0042").is_ok());
    }

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        for (at, id) in [(0, "inv:SHP-1"), (-5, ""), (i64::MAX, "a/b/c"), (i64::MIN, "cn:R/1")] {
            let t = PageToken::new(at, id);
            assert_eq!(PageToken::parse(&t.encode()).unwrap(), Some(t));
        }
        assert_eq!(PageToken::parse("").unwrap(), None);
        for bad in ["abc", "/inv:SHP-1", "12", "x/y", "99999999999999999999/id", " 5/id"] {
            let e = PageToken::parse(bad).unwrap_err();
            assert_eq!(e.to_string(), "page_token is not one this server issued; start again without it", "{bad}");
        }
    }

    #[test]
    fn held_posting_filters_are_checked_and_the_page_size_clamped() {
        let q = held_postings_of(&proto::ListHeldPostingsRequest::default()).unwrap();
        assert_eq!((q.state, q.document, q.min_age_us, q.page_size, q.after), (Some("held"), None, None, 50, None));
        let q = held_postings_of(&proto::ListHeldPostingsRequest {
            state: "all".into(),
            document: "credit-note".into(),
            min_age_seconds: 60,
            page_size: u32::MAX,
            page_token: "17/inv:SHP-2".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.state, None);
        assert_eq!(q.document, Some("credit-note"));
        assert_eq!(q.min_age_us, Some(60_000_000));
        assert_eq!(q.page_size, MAX_PAGE_SIZE);
        assert_eq!(q.after, Some(PageToken::new(17, "inv:SHP-2")));

        let bad_state = proto::ListHeldPostingsRequest { state: "Held".into(), ..Default::default() };
        assert!(held_postings_of(&bad_state).unwrap_err().to_string().contains("not one of held, approved"));
        let bad_doc = proto::ListHeldPostingsRequest { document: "bill".into(), ..Default::default() };
        assert!(
            held_postings_of(&bad_doc).unwrap_err().to_string().contains("not invoice, credit-note or vendor-bill")
        );
    }

    #[test]
    fn a_huge_minimum_age_filters_everything_instead_of_overflowing() {
        let now = Timestamp(1_767_225_600_000_000);
        let min = min_age_micros(i64::MAX);
        assert_eq!(min, Some(i64::MAX));
        assert!(!old_enough(0, min, now));
        assert!(!old_enough(now.0, min_age_micros(1), now));
        assert!(old_enough(now.0 - 1_000_000, min_age_micros(1), now));
        assert!(old_enough(i64::MAX, None, now));
        assert_eq!(min_age_micros(0), None);
        assert_eq!(min_age_micros(i64::MIN), None);
        // A timestamp far in the past (a producer's clock, or a bad record) is old.
        assert!(old_enough(i64::MIN, min_age_micros(i64::MAX / 1_000_000), now));
    }

    #[test]
    fn exception_lists_know_their_categories_and_clamp_the_limit() {
        let q = exceptions_of(&proto::ListExceptionsRequest::default()).unwrap();
        assert_eq!((q.category, q.limit, q.min_age_us), (None, DEFAULT_EXCEPTIONS, None));
        let first = ExceptionCategory::ALL[0];
        let q = exceptions_of(&proto::ListExceptionsRequest {
            category: first.as_str().into(),
            limit: 5000,
            open_only: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((q.category, q.limit, q.open_only), (Some(first), MAX_EXCEPTIONS, true));
        let e =
            exceptions_of(&proto::ListExceptionsRequest { category: "nope".into(), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains(first.as_str()), "{e}");
        assert_eq!(audit_limit(0), DEFAULT_AUDIT_ENTRIES);
        assert_eq!(audit_limit(7), 7);
    }

    #[test]
    fn assignments_need_an_exception_and_a_real_owner() {
        let r = |id: &str, owner: &str| proto::AssignExceptionRequest {
            exception_id: id.into(),
            owner: owner.into(),
            note: String::new(),
        };
        assert!(exception_assignment(&r("o2f:SO1/pick-overdue/1", "olga@example.com")).is_ok());
        assert!(exception_assignment(&r("o2f:SO1/pick-overdue/1", " finance-ar ")).is_ok());
        let e = exception_assignment(&r("", "olga")).unwrap_err();
        assert!(e.to_string().starts_with("exception_id is empty"), "{e}");
        let e = exception_assignment(&r("o2f:SO1/pick-overdue/1", "  ")).unwrap_err();
        assert!(e.to_string().contains("needs an owner"), "{e}");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = exception_assignment(&r("o2f:SO1/pick-overdue/1", "-")).unwrap_err();
        assert!(e.to_string().contains("unassigned"), "{e}");
        let e = exception_assignment(&r("o2f:SO1/pick-overdue/1", "olga\nbob")).unwrap_err();
        assert!(e.to_string().contains("is not an identity"), "{e}");
        let e = exception_assignment(&r("o2f:SO1/pick-overdue/1", &"x".repeat(MAX_OWNER_LEN + 1))).unwrap_err();
        assert!(e.to_string().contains("at most 128"), "{e}");
    }

    #[test]
    fn a_statement_line_assignment_names_the_line_a_note_and_positive_amounts() {
        let ok = proto::AssignStatementLineRequest {
            exception_id: "cash:camt053|DE00|S-1/unmatched-payment/1".into(),
            allocations: vec![proto::LineAllocation { invoice: "INV/2026/0001".into(), amount_minor: 120_00 }],
            note: "confirmed by phone".into(),
            ..Default::default()
        };
        assert!(statement_line_assignment(&ok).is_ok());
        let by_line = proto::AssignStatementLineRequest {
            exception_id: String::new(),
            statement_key: "camt053|DE00|S-1".into(),
            line_id: "L1".into(),
            ..ok.clone()
        };
        assert!(statement_line_assignment(&by_line).is_ok());
        let refused = |r: proto::AssignStatementLineRequest, says: &str| {
            let e = statement_line_assignment(&r).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.to_string().contains(says), "{e}");
        };
        refused(
            proto::AssignStatementLineRequest { line_id: String::new(), ..by_line },
            "name the unmatched-payment exception",
        );
        refused(proto::AssignStatementLineRequest { note: " ".into(), ..ok.clone() }, "needs a note");
        refused(proto::AssignStatementLineRequest { allocations: vec![], ..ok.clone() }, "--on-account CUSTOMER");
        let alloc = |invoice: &str, amount_minor| proto::AssignStatementLineRequest {
            allocations: vec![proto::LineAllocation { invoice: invoice.into(), amount_minor }],
            ..ok.clone()
        };
        refused(alloc("INV-1", 0), "the amount for invoice INV-1 is 0.00: amounts are positive");
        refused(alloc("INV-1", i64::MIN), "amounts are positive");
        refused(alloc(" ", 1), "names no invoice");
        refused(alloc("INV\n1", 1), "is not a reference");
        refused(
            proto::AssignStatementLineRequest { on_account: "C".repeat(MAX_REFERENCE_LEN + 1), ..ok.clone() },
            "at most 128",
        );
        let many = proto::AssignStatementLineRequest {
            allocations: vec![ok.allocations[0].clone(); MAX_ALLOCATIONS + 1],
            ..ok
        };
        refused(many, "more than one line is applied to by hand");
    }

    #[test]
    fn exception_lists_filter_by_owner_and_customer_and_page() {
        let q = exceptions_of(&proto::ListExceptionsRequest {
            owner: " olga ".into(),
            customer: "CUST-7".into(),
            page_size: 2,
            limit: 50,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (q.owner, q.customer, q.limit, q.after),
            (Some(Some("olga".into())), Some("CUST-7".into()), 2, None)
        );
        let q = exceptions_of(&proto::ListExceptionsRequest { owner: "-".into(), ..Default::default() }).unwrap();
        assert_eq!(q.owner, Some(None));
        // Tokens round-trip for the kind of list they came from, and only for it.
        let open = ExceptionCursor::of(true, ExceptionCategory::PickOverdue, "o2f:SO1/pick-overdue/1");
        let token = open.encode();
        assert_eq!(ExceptionCursor::parse(&token, true).unwrap(), Some(open));
        assert!(ExceptionCursor::parse(&token, false).is_err());
        let all = ExceptionCursor::of(false, ExceptionCategory::PickOverdue, "dlq:waybill.inbound.wms:0:7");
        assert_eq!(ExceptionCursor::parse(&all.encode(), false).unwrap(), Some(all));
        for bad in ["nonsense", "pick-overdue/", "nope/o2f:SO1/x/1"] {
            let e = ExceptionCursor::parse(bad, true).unwrap_err();
            assert!(e.to_string().starts_with("page_token is not one this server issued"), "{bad}: {e}");
        }
        let r = proto::ListExceptionsRequest { open_only: true, page_token: "bogus".into(), ..Default::default() };
        assert!(exceptions_of(&r).is_err());
    }

    #[test]
    fn source_refs_name_a_system_and_an_id() {
        assert_eq!(source_ref("odoo:SO0042").unwrap().to_string(), "odoo:SO0042");
        for bad in ["SO0042", "odoo:", "nosuch:1", ""] {
            let e = source_ref(bad).unwrap_err();
            assert!(e.to_string().contains("is not a source reference"), "{bad}: {e}");
        }
    }
}
