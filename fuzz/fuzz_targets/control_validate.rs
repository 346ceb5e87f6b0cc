//! Arbitrary gRPC request bodies through the control plane's request checks
//! (`waybill_control::validate`), which run before any store is read.
//!
//! Input: one byte choosing the request type, then the protobuf body as it arrives on
//! the wire. The checks must never panic (no overflow on any number), refuse only with
//! `INVALID_ARGUMENT`, and what they accept must hold what the handlers rely on: a
//! posting id and a positive version, a note to resolve, page sizes and limits within
//! bounds, page tokens that round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use waybill_control::proto;
use waybill_control::validate::{self, PageToken};
use waybill_domain::Timestamp;

fn framed(kind: u8, m: &impl Message) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&m.encode_to_vec());
    out
}

fn refused_as_invalid_argument<T>(r: &waybill_control::Result<T>) {
    if let Err(e) = r {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(!e.to_string().is_empty());
    }
}

fn page_token_round_trips(token: &str) {
    if let Ok(Some(t)) = PageToken::parse(token) {
        assert_eq!(PageToken::parse(&t.encode()).expect("an issued token parses"), Some(t));
    }
}

fn ages_are_monotonic(at: i64, min_age_seconds: i64) {
    let min = validate::min_age_micros(min_age_seconds);
    let now = Timestamp::now();
    if validate::old_enough(at, min, now) {
        assert!(validate::old_enough(at.saturating_sub(1), min, now));
    }
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        framed(
            0,
            &proto::DecisionRequest { posting_id: "inv:SHP-000029-1".into(), expected_version: 1, reason: "ok".into() },
        ),
        framed(
            1,
            &proto::DecisionRequest { posting_id: "cn:RCV-7".into(), expected_version: 3, reason: "price".into() },
        ),
        framed(
            2,
            &proto::ExceptionActionRequest { exception_id: "o2f:SO0042/pick-overdue/1".into(), note: String::new() },
        ),
        framed(
            3,
            &proto::ExceptionActionRequest { exception_id: "s2i:SHP-1/posting-refused/1".into(), note: "fixed".into() },
        ),
        framed(4, &proto::ReplayRequest { saga_id: "o2f:SO0042".into(), note: "after the fix".into() }),
        framed(
            5,
            &proto::ListHeldPostingsRequest {
                state: "all".into(),
                customer: "CUST-7".into(),
                reason_contains: "variance".into(),
                min_age_seconds: 3600,
                document: "invoice".into(),
                page_size: 20,
                page_token: "1767225600000000/inv:SHP-1".into(),
                entity: String::new(),
                min_amount_minor: 0,
                max_amount_minor: 0,
            },
        ),
        framed(
            6,
            &proto::ListExceptionsRequest {
                category: "PICK_OVERDUE".into(),
                open_only: true,
                min_age_seconds: 60,
                limit: 10,
                owner: "olga".into(),
                customer: "CUST-7".into(),
                page_size: 5,
                page_token: "pick-overdue/o2f:SO0042/pick-overdue/1".into(),
                entity: String::new(),
            },
        ),
        framed(7, &proto::ListAuditRequest { posting_id: "inv:SHP-1".into(), actor: "alice".into(), limit: 5 }),
        framed(8, &proto::GetLineageRequest { source_ref: "odoo:SO0042".into() }),
    ]
}

fuzz_target!(
    init: waybill_fuzz::write_seeds(seeds()),
    |data: &[u8]| {
        let Some((&kind, body)) = data.split_first() else { return };
        match kind % 9 {
            k @ (0 | 1) => {
                let Ok(r) = proto::DecisionRequest::decode(body) else { return };
                let approve = k == 0;
                let checked = validate::decision(&r, approve);
                refused_as_invalid_argument(&checked);
                if checked.is_ok() {
                    assert!(!r.posting_id.is_empty() && r.expected_version > 0);
                    assert!(approve || !r.reason.trim().is_empty());
                }
            }
            k @ (2 | 3) => {
                let Ok(r) = proto::ExceptionActionRequest::decode(body) else { return };
                let retry = k == 2;
                let checked = validate::exception_action(&r, retry);
                refused_as_invalid_argument(&checked);
                if checked.is_ok() {
                    assert!(!r.exception_id.trim().is_empty());
                    assert!(retry || !r.note.trim().is_empty());
                }
            }
            4 => {
                let Ok(r) = proto::ReplayRequest::decode(body) else { return };
                let checked = validate::replay_target(&r.saga_id);
                refused_as_invalid_argument(&checked);
                assert_eq!(checked.is_ok(), !r.saga_id.trim().is_empty());
            }
            5 => {
                let Ok(r) = proto::ListHeldPostingsRequest::decode(body) else { return };
                let checked = validate::held_postings(&r, &waybill_saga::Entities::default());
                refused_as_invalid_argument(&checked);
                page_token_round_trips(&r.page_token);
                ages_are_monotonic(r.page_size.into(), r.min_age_seconds);
                if let Ok(q) = checked {
                    assert!((1..=validate::MAX_PAGE_SIZE).contains(&q.page_size));
                    assert_eq!(q.after.is_some(), !r.page_token.is_empty());
                    assert_eq!(q.state.is_none(), r.state == "all");
                    assert_eq!(q.min_age_us.is_some(), r.min_age_seconds > 0);
                }
            }
            6 => {
                let Ok(r) = proto::ListExceptionsRequest::decode(body) else { return };
                let checked = validate::exceptions(&r, &waybill_saga::Entities::default());
                refused_as_invalid_argument(&checked);
                ages_are_monotonic(r.min_age_seconds.wrapping_neg(), r.min_age_seconds);
                if let Ok(q) = checked {
                    assert!((1..=validate::MAX_EXCEPTIONS).contains(&q.limit));
                    assert_eq!(q.category.map(|c| c.as_str()).unwrap_or_default(), r.category);
                }
            }
            7 => {
                let Ok(r) = proto::ListAuditRequest::decode(body) else { return };
                assert!(validate::audit_limit(r.limit) >= 1);
            }
            _ => {
                let Ok(r) = proto::GetLineageRequest::decode(body) else { return };
                let checked = validate::source_ref(&r.source_ref);
                refused_as_invalid_argument(&checked);
                if let Ok(s) = checked {
                    assert_eq!(validate::source_ref(&s.to_string()).expect("a parsed ref parses again"), s);
                }
            }
        }
    }
);
