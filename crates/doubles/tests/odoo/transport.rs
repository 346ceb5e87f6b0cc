//! Transports, authentication, error shapes, reading and searching.

use serde_json::{Value, json};
use waybill_doubles::odoo::OdooVersion;

use super::support::{get, json2, post};
use super::{ACME, WIDGET, start};

#[test]
fn authenticate_answers_uid_or_false_without_error() {
    let (odoo, rpc) = start(OdooVersion::V17);
    let ok = rpc.raw("common", "authenticate", json!([odoo.db(), "admin", rpc.key, {}])).unwrap().json();
    assert_eq!(ok["result"], json!(2));
    let by_password = rpc.raw("common", "login", json!([odoo.db(), "admin", "admin"])).unwrap().json();
    assert_eq!(by_password["result"], json!(2));
    let bad = rpc.raw("common", "authenticate", json!([odoo.db(), "admin", "wrong", {}])).unwrap().json();
    assert_eq!(bad["result"], json!(false));
    assert!(bad.get("error").is_none());
    let version = rpc.raw("common", "version", json!([])).unwrap().json();
    assert_eq!(version["result"]["server_version"], "17.0");
}

#[test]
fn execute_kw_with_a_bad_key_is_access_denied() {
    let (_odoo, mut rpc) = start(OdooVersion::V17);
    rpc.key = "not-a-key".into();
    let err = rpc.err("res.partner", "search", json!([[]]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.AccessDenied");
}

#[test]
fn jsonrpc_error_code_is_200_up_to_18_and_0_from_saas_18_1() {
    for (version, code) in
        [(OdooVersion::V17, 200), (OdooVersion::V18, 200), (OdooVersion::Saas18_1, 0), (OdooVersion::V19, 0)]
    {
        let (_odoo, rpc) = start(version);
        let err = rpc.err("sale.order", "create", json!([{"client_order_ref": "X"}]), json!({}));
        assert_eq!(err["code"], json!(code), "{version:?}");
        assert_eq!(err["message"], "Odoo Server Error");
        let data = &err["data"];
        assert_eq!(data["name"], "odoo.exceptions.ValidationError");
        for key in ["message", "arguments", "context", "debug"] {
            assert!(data.get(key).is_some(), "{key} missing in {data}");
        }
    }
}

#[test]
fn private_and_unknown_methods_are_refused() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let err = rpc.err("sale.order", "_action_confirm", json!([[1]]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.AccessError");
    assert!(err["data"]["message"].as_str().unwrap().contains("cannot be called remotely"));
    let err = rpc.err("sale.order", "frobnicate", json!([[1]]), json!({}));
    assert_eq!(err["data"]["name"], "builtins.AttributeError");
    let err = rpc.err("no.such.model", "search", json!([[]]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.UserError");
}

#[test]
fn search_read_honours_domain_order_fields_limit_offset() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    for name in ["Zeta", "Beta", "alpha co", "Gamma"] {
        rpc.ok("res.partner", "create", json!([{"name": name, "ref": format!("R-{name}")}]), json!({}));
    }
    let rows = rpc.ok(
        "res.partner",
        "search_read",
        json!([["|", ["name", "ilike", "a"], ["ref", "=", "R-Zeta"]], ["name"]]),
        json!({"order": "name desc, id asc", "limit": 3, "offset": 1}),
    );
    let names: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    // All match ("a" is in every name but "Zeta" matches by ref); by name desc: alpha co, Zeta, Gamma, Beta, Acme.
    assert_eq!(names, ["Zeta", "Gamma", "Beta"]);
    assert_eq!(rows[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["id", "name"]);
    let not = rpc.ok(
        "res.partner",
        "search",
        json!([["!", ["name", "in", ["Beta", "Gamma"]], ["id", ">", 1]]]),
        json!({"order": "id asc"}),
    );
    assert_eq!(not, json!([2, 4]));
    let err = rpc.err("res.partner", "search_read", json!([[]]), json!({"fields": ["name", "no_such_field"]}));
    assert_eq!(err["data"]["name"], "builtins.ValueError");
    assert!(err["data"]["message"].as_str().unwrap().contains("Invalid field 'no_such_field'"));
    let err = rpc.err("res.partner", "search", json!([[["nope", "=", 1]]]), json!({}));
    assert_eq!(err["data"]["name"], "builtins.ValueError");
    let count = rpc.ok("res.partner", "search_count", json!([[["name", "=like", "%a"]]]), json!({}));
    assert_eq!(count, json!(3));
}

#[test]
fn many2one_reads_as_id_and_display_name() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let order = rpc.ok(
        "sale.order",
        "create",
        json!([{"partner_id": ACME, "order_line": [[0, 0, {"product_id": WIDGET}]]}]),
        json!({}),
    );
    let rows = rpc.ok("sale.order", "read", json!([[order], ["partner_id", "name", "amount_total"]]), json!({}));
    assert_eq!(rows[0]["partner_id"], json!([ACME, "Acme"]));
    assert_eq!(rows[0]["name"], "S00001");
    assert_eq!(rows[0]["amount_total"], json!(10.0));
    let line = rpc.ok("sale.order.line", "search_read", json!([[["order_id", "=", order]], ["product_id"]]), json!({}));
    assert_eq!(line[0]["product_id"], json!([WIDGET, "[WID] Widget"]));
    let by_name = rpc.ok("sale.order", "search", json!([[["partner_id", "=", "Acme"]]]), json!({}));
    assert_eq!(by_name, json!([order]));
}

#[test]
fn create_takes_a_dict_or_a_vals_list() {
    let (_odoo, rpc) = start(OdooVersion::V17);
    let one = rpc.ok("res.partner", "create", json!([{"name": "One"}]), json!({}));
    assert!(one.is_i64());
    let many = rpc.ok("res.partner", "create", json!([[{"name": "Two"}, {"name": "Three"}]]), json!({}));
    assert_eq!(many, json!([3, 4]));
    let kw = rpc.ok("res.partner", "create", json!([]), json!({"vals_list": {"name": "Four"}}));
    assert_eq!(kw, json!(5));
}

#[test]
fn json2_is_absent_before_19() {
    let (odoo, rpc) = start(OdooVersion::V18);
    let reply = json2(&odoo.url(), &rpc.key, "res.partner", "search", json!({"domain": []}));
    assert_eq!(reply.status, 404);
}

#[test]
fn json2_statuses_and_named_arguments() {
    let (odoo, rpc) = start(OdooVersion::V19);
    let url = odoo.url();
    let ok = json2(&url, &rpc.key, "res.partner", "create", json!({"vals_list": [{"name": "Named"}]}));
    assert_eq!((ok.status, ok.json()), (200, json!([2])));
    let rows = json2(
        &url,
        &rpc.key,
        "res.partner",
        "search_read",
        json!({"domain": [["name", "=", "Named"]], "fields": ["name"], "limit": 5}),
    );
    assert_eq!(rows.json(), json!([{"id": 2, "name": "Named"}]));
    let written = json2(&url, &rpc.key, "res.partner", "write", json!({"ids": [2], "vals": {"ref": "N1"}}));
    assert_eq!(written.json(), json!(true));

    let bad_key = json2(&url, "nope", "res.partner", "search", json!({"domain": []}));
    assert_eq!(bad_key.status, 401);
    let unknown_model = json2(&url, &rpc.key, "no.model", "search", json!({"domain": []}));
    assert_eq!(unknown_model.status, 404);
    assert!(unknown_model.json()["message"].as_str().unwrap().contains("does not exist"));
    let unknown_method = json2(&url, &rpc.key, "res.partner", "frobnicate", json!({}));
    assert_eq!(unknown_method.status, 404);
    let private = json2(&url, &rpc.key, "res.partner", "_private", json!({}));
    assert_eq!((private.status, private.json()["name"].clone()), (403, json!("odoo.exceptions.AccessError")));
    let bad_args = json2(&url, &rpc.key, "res.partner", "search", json!({"domian": []}));
    assert_eq!(bad_args.status, 422);
    let with_ids = json2(&url, &rpc.key, "res.partner", "search", json!({"ids": [1], "domain": []}));
    assert_eq!(with_ids.status, 422);
    let user_error = json2(&url, &rpc.key, "account.move", "action_post", json!({"ids": []}));
    assert_eq!(user_error.status, 200, "posting nothing is a no-op");
    let move_id = json2(
        &url,
        &rpc.key,
        "account.move",
        "create",
        json!({"vals_list": [{"move_type": "out_invoice", "partner_id": ACME}]}),
    )
    .json()[0]
        .clone();
    let refused = json2(&url, &rpc.key, "account.move", "action_post", json!({"ids": [move_id]}));
    assert_eq!(refused.status, 422);
    let body = refused.json();
    assert_eq!(body["name"], "odoo.exceptions.UserError");
    for key in ["message", "arguments", "context", "debug"] {
        assert!(body.get(key).is_some());
    }
    let invalid_field = json2(&url, &rpc.key, "res.partner", "search_read", json!({"fields": ["nope"]}));
    assert_eq!(invalid_field.status, 500);

    // Not POST: Odoo's catch-all JSON-2 route answers 404 with a hint.
    let got = get(&format!("{url}/json/2/res.partner/search"));
    assert_eq!(got.status, 404);
    assert!(got.body.contains("Did you mean POST"));
    let wrong_db = post(
        &format!("{url}/json/2/res.partner/search"),
        &[
            ("authorization", &format!("bearer {}", rpc.key)),
            ("x-odoo-database", "other"),
            ("content-type", "application/json"),
        ],
        b"{\"domain\": []}",
    )
    .unwrap();
    assert_eq!(wrong_db.status, 404);
}

#[test]
fn a_rotated_key_stops_working_at_once_on_both_transports() {
    let (odoo, mut rpc) = start(OdooVersion::V19);
    let old = rpc.key.clone();
    assert_eq!(rpc.ok("res.partner", "search_count", json!([[]]), json!({})), json!(1));
    odoo.rotate_key("admin", "fresh-key");
    let err = rpc.err("res.partner", "search_count", json!([[]]), json!({}));
    assert_eq!(err["data"]["name"], "odoo.exceptions.AccessDenied");
    assert_eq!(json2(&odoo.url(), &old, "res.partner", "search_count", json!({"domain": []})).status, 401);
    rpc.key = "fresh-key".into();
    assert_eq!(rpc.ok("res.partner", "search_count", json!([[]]), json!({})), json!(1));
    assert_eq!(json2(&odoo.url(), "fresh-key", "res.partner", "search_count", json!({"domain": []})).json(), json!(1));
    assert_eq!(odoo.api_key("admin").as_deref(), Some("fresh-key"));
}

#[test]
fn write_date_comes_from_the_logical_clock_and_orders_pollers() {
    let (odoo, rpc) = start(OdooVersion::V17);
    odoo.freeze_clock("2030-03-01 09:00:00");
    let a = rpc.ok("res.partner", "create", json!([{"name": "A"}]), json!({}));
    let b = rpc.ok("res.partner", "create", json!([{"name": "B"}]), json!({}));
    odoo.tick();
    rpc.ok("res.partner", "write", json!([[a], {"ref": "later"}]), json!({}));
    let rows = rpc.ok(
        "res.partner",
        "search_read",
        json!([[["write_date", ">=", "2030-03-01 09:00:00"]], ["write_date"]]),
        json!({"order": "write_date asc, id asc"}),
    );
    let seen: Vec<(Value, Value)> =
        rows.as_array().unwrap().iter().map(|r| (r["id"].clone(), r["write_date"].clone())).collect();
    assert_eq!(seen, vec![(b.clone(), json!("2030-03-01 09:00:00")), (a.clone(), json!("2030-03-01 09:00:01"))]);
    assert_eq!(odoo.now(), "2030-03-01 09:00:01");
}
