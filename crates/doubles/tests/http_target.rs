//! The HTTP target double over real HTTP.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Reply, post};
use waybill_doubles::http_target::{AVRO_CONTENT_TYPE, Answer, HttpTarget, HttpTargetConfig, sign};
use waybill_doubles::{DownMode, Fault, Match, Times};

const SECRET: &[u8] = b"s3cret";

fn target() -> HttpTarget {
    HttpTarget::start(HttpTargetConfig::new(SECRET, |r| {
        let order = r.json.as_ref().and_then(|j| j["order"].as_str()).unwrap_or("?").to_string();
        Answer::ok(json!({"events": [{"type": "ShipmentCreated", "order": order}]}))
    }))
}

fn send(t: &HttpTarget, key: &str, body: &[u8]) -> Result<Reply, ureq::Error> {
    let signature = sign(SECRET, body);
    post(
        &t.command_url(),
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
            ("x-waybill-signature", &signature),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ],
        body,
    )
}

#[test]
fn a_signed_command_reaches_the_behaviour_once() {
    let t = target();
    let reply = send(&t, "carrier:SHP-1", br#"{"order":"SO1"}"#).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["events"][0]["order"], "SO1");
    let got = t.command("carrier:SHP-1").unwrap();
    assert_eq!(got.traceparent.as_deref(), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
    assert_eq!(got.json, Some(json!({"order": "SO1"})));
    assert_eq!(t.received().len(), 1);
}

#[test]
fn a_bad_or_missing_signature_is_401_and_reaches_nothing() {
    let t = target();
    let body = br#"{"order":"SO1"}"#;
    let wrong = sign(b"other secret", body);
    let reply = post(
        &t.command_url(),
        &[("content-type", "application/json"), ("idempotency-key", "k"), ("x-waybill-signature", &wrong)],
        body,
    )
    .unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply.json()["error"].as_str().unwrap().contains("does not match"));
    let reply =
        post(&t.command_url(), &[("content-type", "application/json"), ("idempotency-key", "k")], body).unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply.json()["error"].as_str().unwrap().contains("missing X-Waybill-Signature"));
    assert!(t.received().is_empty());
}

#[test]
fn a_repeat_gets_the_first_answer_and_a_different_body_is_409() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let t = HttpTarget::start(HttpTargetConfig::new(SECRET, move |_| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        Answer::ok(json!({"n": n}))
    }));
    let first = send(&t, "release:SO42", br#"{"order":"SO42"}"#).unwrap();
    let again = send(&t, "release:SO42", br#"{"order":"SO42"}"#).unwrap();
    assert_eq!(first.body, again.body);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(t.duplicates(), 1);
    assert_eq!(t.duplicates_of("release:SO42"), 1);
    let conflict = send(&t, "release:SO42", br#"{"order":"SO43"}"#).unwrap();
    assert_eq!(conflict.status, 409);
    let body = conflict.json();
    assert_eq!(body["first_digest"].as_str().unwrap().len(), 64);
    assert_ne!(body["first_digest"], body["this_digest"]);
}

#[test]
fn accepted_answers_202_and_avro_bodies_are_taken_raw() {
    let t = HttpTarget::start(HttpTargetConfig::new(SECRET, |_| Answer::Accepted));
    let body = [0u8, 0, 0, 0, 17, 2, 4, 6];
    let signature = sign(SECRET, &body);
    let reply = post(
        &t.command_url(),
        &[
            ("content-type", AVRO_CONTENT_TYPE),
            ("idempotency-key", "finance:INV-1"),
            ("x-waybill-signature", &signature),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(reply.status, 202);
    let got = t.command("finance:INV-1").unwrap();
    assert_eq!((got.body, got.json), (body.to_vec(), None));
    let reply = post(
        &t.command_url(),
        &[("content-type", "text/plain"), ("idempotency-key", "x"), ("x-waybill-signature", &sign(SECRET, b"hi"))],
        b"hi",
    )
    .unwrap();
    assert_eq!(reply.status, 415);
    let reply = post(
        &t.command_url(),
        &[("content-type", "application/json"), ("x-waybill-signature", &sign(SECRET, b"{}"))],
        b"{}",
    )
    .unwrap();
    assert_eq!(reply.status, 400);
}

#[test]
fn faults_slow_status_retry_after_drop_commit_then_drop() {
    let t = target();
    t.fail_next(Match::any(), Fault::Slow(Duration::from_millis(250)));
    let start = Instant::now();
    assert_eq!(send(&t, "a:1", b"{}").unwrap().status, 200);
    assert!(start.elapsed() >= Duration::from_millis(250));

    t.inject(Match::action("carrier:"), Fault::Status(503), Times::Next(1));
    assert_eq!(send(&t, "carrier:1", b"{}").unwrap().status, 503);
    t.fail_next(Match::any(), Fault::RetryAfter { status: 429, secs: 3 });
    let reply = send(&t, "a:2", b"{}").unwrap();
    assert_eq!((reply.status, reply.retry_after.as_deref()), (429, Some("3")));

    t.fail_next(Match::any(), Fault::Drop);
    assert!(send(&t, "a:3", b"{}").is_err());
    assert!(t.command("a:3").is_none());
    t.fail_next(Match::any(), Fault::CommitThenDrop);
    assert!(send(&t, "a:4", b"{}").is_err());
    assert!(t.command("a:4").is_some(), "committed before the drop");
    // The retry is a duplicate answered from the first outcome.
    assert_eq!(send(&t, "a:4", b"{}").unwrap().status, 200);
    assert_eq!(t.duplicates_of("a:4"), 1);
    assert_eq!(send(&t, "carrier:1", b"{}").unwrap().status, 200);
}

#[test]
fn down_and_up_and_the_request_log() {
    let t = target();
    t.down(DownMode::Refuse);
    assert!(send(&t, "a:1", b"{}").is_err());
    t.up();
    t.down(DownMode::Unavailable);
    assert_eq!(send(&t, "a:1", b"{}").unwrap().status, 503);
    t.up();
    assert_eq!(send(&t, "a:1", b"{}").unwrap().status, 200);
    let log = t.requests();
    assert_eq!(log.len(), 2, "a refused connection never arrives");
    assert!(log.iter().all(|r| r.idempotency_key.as_deref() == Some("a:1")));
    assert!(log[0].at <= log[1].at);
}
