//! Every injectable fault, over both transports where it differs.

use std::time::{Duration, Instant};

use serde_json::json;
use waybill_doubles::odoo::OdooVersion;
use waybill_doubles::{DownMode, Fault, Match, Times, Transport, max_in_window};

use super::support::json2;
use super::{ACME, start};

fn partner(name: &str) -> serde_json::Value {
    json!([{"name": name, "ref": name}])
}

#[test]
fn slow_answers_arrive_late_but_complete() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.fail_next(Match::call("res.partner", "create"), Fault::Slow(Duration::from_millis(300)));
    let t = Instant::now();
    rpc.ok("res.partner", "create", partner("P1"), json!({}));
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(odoo.count("res.partner", &[("ref", "P1")]), 1);
}

#[test]
fn serialization_failure_and_lock_timeout_have_odoo_shapes_and_do_nothing() {
    let (odoo, rpc) = start(OdooVersion::V19);
    odoo.fail_next(Match::on("res.partner"), Fault::SerializationFailure);
    let err = rpc.err("res.partner", "create", partner("P1"), json!({}));
    assert_eq!(err["code"], json!(0));
    assert_eq!(err["data"]["name"], "psycopg2.errors.SerializationFailure");
    assert_eq!(err["data"]["message"], "could not serialize access due to concurrent update");
    odoo.fail_next(Match::on("res.partner"), Fault::LockTimeout);
    let err = rpc.err("res.partner", "create", partner("P1"), json!({}));
    assert_eq!(err["data"]["name"], "psycopg2.errors.LockNotAvailable");
    odoo.fail_next(Match::on("res.partner"), Fault::SerializationFailure);
    let reply = json2(&odoo.url(), &rpc.key, "res.partner", "create", json!({"vals_list": [{"name": "P1"}]}));
    assert_eq!((reply.status, reply.json()["name"].clone()), (500, json!("psycopg2.errors.SerializationFailure")));
    assert_eq!(odoo.count("res.partner", &[("name", "P1")]), 0);
    rpc.ok("res.partner", "create", partner("P1"), json!({}));
    assert_eq!(odoo.count("res.partner", &[("name", "P1")]), 1);
}

#[test]
fn session_expired_is_code_100() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.fail_next(Match::any(), Fault::SessionExpired);
    let err = rpc.err("res.partner", "search", json!([[]]), json!({}));
    assert_eq!(err["code"], json!(100));
    assert_eq!(err["data"]["name"], "odoo.http.SessionExpiredException");
}

#[test]
fn http_errors_and_retry_after() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.inject(Match::action("search"), Fault::Status(502), Times::Next(2));
    for _ in 0..2 {
        let reply =
            rpc.raw("object", "execute_kw", json!([odoo.db(), 2, rpc.key, "res.partner", "search", [[]]])).unwrap();
        assert_eq!(reply.status, 502);
    }
    odoo.fail_next(Match::any(), Fault::RetryAfter { status: 429, secs: 7 });
    let reply = rpc.raw("object", "execute_kw", json!([odoo.db(), 2, rpc.key, "res.partner", "search", [[]]])).unwrap();
    assert_eq!((reply.status, reply.retry_after.as_deref()), (429, Some("7")));
    assert_eq!(rpc.ok("res.partner", "search", json!([[]]), json!({})), json!([ACME]));
}

#[test]
fn a_dropped_connection_does_nothing_and_commit_then_drop_does_it() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.fail_next(Match::call("res.partner", "create"), Fault::Drop);
    assert!(
        rpc.raw("object", "execute_kw", json!([odoo.db(), 2, rpc.key, "res.partner", "create", partner("D1")]))
            .is_err()
    );
    assert_eq!(odoo.count("res.partner", &[("ref", "D1")]), 0);

    odoo.fail_next(Match::call("res.partner", "create"), Fault::CommitThenDrop);
    assert!(
        rpc.raw("object", "execute_kw", json!([odoo.db(), 2, rpc.key, "res.partner", "create", partner("D2")]))
            .is_err()
    );
    assert_eq!(odoo.count("res.partner", &[("ref", "D2")]), 1, "the work was committed before the drop");
    assert_eq!(odoo.requests().iter().filter(|r| r.method.as_deref() == Some("create")).count(), 2);
}

#[test]
fn a_validation_error_stays_until_cleared_then_the_retry_succeeds() {
    let (odoo, rpc) = start(OdooVersion::V19);
    let id = odoo.fail_validation("res.partner", "create", "Reference must be unique");
    for _ in 0..3 {
        let err = rpc.err("res.partner", "create", partner("V1"), json!({}));
        assert_eq!(err["data"]["name"], "odoo.exceptions.ValidationError");
        assert_eq!(err["data"]["message"], "Reference must be unique");
    }
    let reply = json2(&odoo.url(), &rpc.key, "res.partner", "create", json!({"vals_list": [{"name": "V1"}]}));
    assert_eq!(reply.status, 422);
    assert!(rpc.ok("res.partner", "search", json!([[]]), json!({})).is_array(), "other methods unaffected");
    odoo.clear_fault(id);
    rpc.ok("res.partner", "create", partner("V1"), json!({}));
    assert_eq!(odoo.count("res.partner", &[("ref", "V1")]), 1);
}

#[test]
fn down_refuses_or_answers_503_until_up() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.down(DownMode::Refuse);
    assert!(!odoo.is_up());
    assert!(rpc.raw("common", "version", json!([])).is_err());
    odoo.up();
    assert_eq!(rpc.raw("common", "version", json!([])).unwrap().status, 200);
    odoo.down(DownMode::Unavailable);
    assert_eq!(rpc.raw("common", "version", json!([])).unwrap().status, 503);
    odoo.up();
    assert_eq!(rpc.ok("res.partner", "search_count", json!([[]]), json!({})), json!(1));
}

#[test]
fn the_request_log_has_arrivals_models_methods_and_keys() {
    let (odoo, rpc) = start(OdooVersion::V19);
    odoo.clear_requests();
    for _ in 0..3 {
        rpc.ok("res.partner", "search", json!([[]]), json!({}));
    }
    json2(&odoo.url(), &rpc.key, "sale.order", "search_count", json!({"domain": []}));
    let log = odoo.requests();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].transport, Transport::JsonRpc);
    assert_eq!((log[0].model.as_deref(), log[0].method.as_deref()), (Some("res.partner"), Some("search")));
    assert_eq!(log[3].transport, Transport::Json2);
    assert_eq!(log[3].key.as_deref(), Some(rpc.key.as_str()));
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(max_in_window(&log, Duration::from_secs(60)), 4);
}
