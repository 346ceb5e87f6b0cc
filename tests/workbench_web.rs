//! The web workbench in a real browser: a node started in-process with the workbench on
//! 127.0.0.1:0, orders driven by appending events (held invoices, overdue picks, stock
//! shortages, a dead-lettered booking), and headless Chromium driven through ChromeDriver
//! doing what the people using it would do — sign in, approve a held invoice, be refused
//! (four-eyes, a stale page, a viewer, a forged form), retry, assign and resolve exceptions,
//! dry-run a replay, find an order by a warehouse reference, read the dashboard, sign out.
//!
//! Every page visited is saved as `target/ui-screenshots/<page>.png`; with
//! `WAYBILL_UPDATE_DOCS=1` the inbox is also copied to `docs/workbench-inbox.png`. Needs
//! Chromium and ChromeDriver: `make browser`.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/drive.rs"]
mod drive;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use browser::{Browser, PATIENCE};
use waybill_domain::{ExceptionCategory, InboundEvent, System, topic};
use waybill_projection::OrderStatus;
use waybill_server::config::Config;
use waybill_server::node::{self, Node};
use waybill_test_util::inbound::*;

/// People who sign in, with their roles and passwords.
const PEOPLE: &[(&str, &str, &str)] = &[
    ("ada", "approver", "ada-checks-every-invoice"),
    ("vic", "viewer", "vic-only-looks-around"),
    ("otto", "operator", "otto-fixes-the-warehouse"),
    // The identity that requested the held postings (the warehouse's goods issue of
    // SO-4E), here also a person who approves: four-eyes forbids approving their own.
    ("wms:SO-4E", "approver", "wms-approves-its-own"),
];

fn password(identity: &str) -> &'static str {
    PEOPLE.iter().find(|p| p.0 == identity).unwrap().2
}

/// The tokens file with `[[people]]`; hashed once per test binary (argon2id is slow on
/// purpose).
fn people_toml() -> &'static str {
    static TOML: OnceLock<String> = OnceLock::new();
    TOML.get_or_init(|| {
        PEOPLE
            .iter()
            .map(|(identity, role, pw)| {
                let hash = waybill_control::auth::hash_password(pw);
                format!("[[people]]\nidentity = \"{identity}\"\nrole = \"{role}\"\npassword_hash = \"{hash}\"\n\n")
            })
            .collect()
    })
}

/// A node with the web workbench, and a way to drive its orders.
struct Site {
    _dir: tempfile::TempDir,
    node: Option<Node>,
    /// `http://127.0.0.1:<port>` of the workbench.
    base: String,
}

impl Site {
    fn start(tweak: impl FnOnce(&mut Config)) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("tokens.toml"), people_toml()).unwrap();
        let mut cfg = Config { data_dir: dir.join("data"), partitions: 2, ..Config::default() };
        cfg.log.fsync = "never".into();
        cfg.ingest.listen = String::new();
        cfg.control.listen = "127.0.0.1:0".into();
        cfg.metrics.listen = "127.0.0.1:0".into();
        cfg.control.tokens_file = Some(dir.join("tokens.toml"));
        cfg.web.listen = "127.0.0.1:0".into();
        tweak(&mut cfg);
        cfg.validate().unwrap();
        let log = node::open_log(&cfg).unwrap();
        let node = Node::start(&cfg, log, drive::catalog()).unwrap();
        let base = format!("http://{}", node.web_addr.expect("the workbench listens"));
        Site { _dir: tmp, node: Some(node), base }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    fn browser(&self) -> Browser {
        Browser::start(&self.base)
    }

    /// Appends `e` to its inbound topic, stamped now, as the source system would send it.
    fn append(&self, e: InboundEvent) {
        drive::append(self.node(), e)
    }

    fn wait_status(&self, order: &str, status: OrderStatus) {
        drive::wait_status(self.node(), order, status)
    }

    fn wait_posting(&self, posting: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.node().projections.posting(posting).unwrap().is_none() {
            assert!(Instant::now() < deadline, "posting {posting} was never held");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Drives `order` to a held invoice for shipment `SHP-<order>` of `units` × `price`
    /// (minor units), requested by `wms:<order>`; returns the posting id.
    fn held_posting(&self, order: &str, units: i64, price: i64) -> String {
        drive::held_posting(self.node(), order, units, price)
    }

    /// The open exception of `category` raised for `order`, once there is one.
    fn exception_of(&self, order: &str, category: ExceptionCategory) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let xs = self.node().projections.exceptions(true, Some(category)).unwrap();
            if let Some(x) = xs.iter().find(|x| x.order_ref.as_deref() == Some(order)) {
                return x.exception_id.clone();
            }
            assert!(Instant::now() < deadline, "no open {category:?} exception for {order}: {xs:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Records of `topic` whose value or headers mention `needle`.
    fn log_records(&self, t: &str, needle: &str) -> usize {
        drive::log_records(self.node(), t, needle)
    }

    /// Commands with idempotency key `key` sent to `system`.
    fn commands_with_key(&self, system: System, key: &str) -> usize {
        drive::commands_with_key(self.node(), system, key).len()
    }

    /// Polls `ready` (something the node knows) for up to 10 s.
    fn eventually(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !ready() {
            assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn posting_state(&self, posting: &str) -> (i64, String, Option<String>) {
        let p = self.node().projections.posting(posting).unwrap().unwrap().1;
        (p.version, p.state, p.decided_by)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown();
        }
    }
}

/// Signs `identity` in with their password from the sign-in page; lands on the inbox.
fn sign_in(b: &Browser, identity: &str) {
    b.goto("/signin");
    b.fill("identity", identity);
    b.fill("password", password(identity));
    b.click("button#signin-submit");
    assert_eq!(b.path(), "/inbox", "signing in as {identity} lands on the inbox: {}", b.body());
    let role = PEOPLE.iter().find(|p| p.0 == identity).unwrap().1;
    assert_eq!(b.text("header span#whoami"), format!("{identity} ({role})"));
}

fn sign_out(b: &Browser) {
    b.click("form#signout button#signout-submit");
    assert_eq!(b.path(), "/signin", "{}", b.body());
}

/// An id as the workbench puts it in a path (`inv:SHP-1` → `inv%3ASHP-1`).
fn in_path(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The path of a posting's page; its actions are below it.
fn posting_path(posting: &str) -> String {
    format!("/postings/{}", in_path(posting))
}

#[test]
fn an_approver_approves_a_held_invoice_from_the_inbox() {
    let site = Site::start(|_| {});
    let first = site.held_posting("SO-1", 3, 1250);
    let second = site.held_posting("SO-2", 2, 4999);
    let b = site.browser();

    // Not signed in: every page sends you to the sign-in.
    b.goto("/inbox");
    assert_eq!(b.path(), "/signin");
    b.wait_for("form#signin input[name=identity]");
    b.screenshot("signin");
    sign_in(&b, "ada");

    // The inbox: held postings, oldest first, each a link to its evidence.
    let rows = b.attrs("table#inbox tr[data-posting-id]", "data-posting-id");
    assert_eq!(rows, [Some(first.clone()), Some(second.clone())], "{}", b.body());
    let shot = b.screenshot("inbox");
    if std::env::var_os("WAYBILL_UPDATE_DOCS").is_some() {
        std::fs::copy(shot, concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/workbench-inbox.png")).unwrap();
    }
    b.click(&format!("tr[data-posting-id=\"{first}\"] a.posting"));
    assert_eq!(b.path(), posting_path(&first));
    let evidence = b.text("section#evidence");
    assert!(
        evidence.contains("C1") && evidence.contains("PLAIN"),
        "the evidence names customer and product: {evidence}"
    );
    assert!(b.exists("form#approve input[type=hidden][name=csrf]"), "{}", b.body());
    b.screenshot("posting");

    // Approve with a reason: back to the inbox, which no longer lists it.
    b.fill_in("form#approve", "reason", "checked with sales");
    b.click("button#approve-submit");
    assert_eq!(b.path(), "/inbox");
    b.wait_text("div#flash.ok", &format!("{first} approved by ada"));
    let rows = b.attrs("table#inbox tr[data-posting-id]", "data-posting-id");
    assert_eq!(rows, [Some(second.clone())], "the approved posting left the inbox: {}", b.body());

    // The decision is the saga's, in the log, by the person who made it.
    site.eventually("the approval in the projection", || site.posting_state(&first).1 == "approved");
    assert_eq!(site.posting_state(&first), (2, "approved".into(), Some("ada".into())));
    assert_eq!(site.log_records(topic::CONTROL, "control:inv:SHP-SO-1:v1:approve:ada"), 1);

    // The audit page shows who approved what.
    b.goto("/audit");
    let approved = |b: &Browser| {
        let actors = b.texts("table#audit tr td.actor");
        let actions = b.texts("table#audit tr td.action");
        let outcomes = b.texts("table#audit tr td.outcome");
        (0..actors.len().min(actions.len()).min(outcomes.len()))
            .any(|i| actors[i] == "ada" && actions[i] == "approve" && outcomes[i] == "approved")
    };
    b.wait_until("the approval by ada in the audit", || {
        approved(&b) || {
            b.goto("/audit");
            false
        }
    });
    assert!(b.text("table#audit").contains(&first), "{}", b.body());
    b.screenshot("audit");
}

#[test]
fn refusals_are_said_in_words() {
    let site = Site::start(|_| {});
    let own = site.held_posting("SO-4E", 1, 1250);
    assert_eq!(site.node().projections.posting(&own).unwrap().unwrap().1.requested_by, "wms:SO-4E");
    let b = site.browser();

    // Four-eyes: the person who requested a posting may not approve it.
    sign_in(&b, "wms:SO-4E");
    b.goto(&posting_path(&own));
    b.fill_in("form#approve", "reason", "looks right to me");
    b.click("button#approve-submit");
    assert_eq!(b.status(), 403, "{}", b.body());
    let refusal = b.text("div#flash.error");
    assert!(refusal.contains("four-eyes"), "the refusal says why, in words: {refusal}");
    b.screenshot("posting-four-eyes");
    assert_eq!(site.posting_state(&own).0, 1, "nothing changed");
    sign_out(&b);

    // A stale page: the posting moved on since it was loaded (here: the page says version 7).
    sign_in(&b, "ada");
    b.goto(&posting_path(&own));
    b.set_value("form#approve input[name=expected_version]", "7");
    b.fill_in("form#approve", "reason", "checked");
    b.click("button#approve-submit");
    assert_eq!(b.status(), 409, "{}", b.body());
    let stale = b.text("div#flash.error");
    assert!(stale.contains("version 1") && stale.contains("version 7"), "both versions, in words: {stale}");

    // A form without the CSRF token is refused, even from an approver.
    let url = format!("{}/approve", posting_path(&own));
    let r = b.post(&url, &[("expected_version", "1"), ("reason", "forged")]);
    assert_eq!(r.status, 403, "no CSRF token: {}", r.body);
    let r = b.post(&url, &[("csrf", "not-the-token"), ("expected_version", "1"), ("reason", "forged")]);
    assert_eq!(r.status, 403, "a wrong CSRF token: {}", r.body);
    assert_eq!(site.posting_state(&own).0, 1, "nothing changed");
    sign_out(&b);

    // A viewer sees the evidence but no way to decide; a hand-made POST with a valid
    // session and CSRF token is refused all the same.
    sign_in(&b, "vic");
    b.goto(&posting_path(&own));
    b.wait_for("section#evidence");
    assert!(!b.exists("form#approve") && !b.exists("button#approve-submit"), "{}", b.body());
    assert!(!b.exists("form#reject"), "{}", b.body());
    let csrf = b.csrf();
    let r = b.post(&url, &[("csrf", &csrf), ("expected_version", "1"), ("reason", "I only look")]);
    assert_eq!(r.status, 403, "a viewer may not approve: {}", r.body);
    assert_eq!(site.posting_state(&own), (1, "held".into(), None), "nothing changed");
}

#[test]
fn an_operator_retries_resolves_and_dry_runs_a_replay() {
    let site = Site::start(|cfg| cfg.policy.fulfillment.pick_timeout_secs = 0.2);
    // Released to the warehouse, never picked: the pick becomes overdue.
    site.append(released("SO-W1", vec![line(1, "PLAIN", "Units", 2)]));
    site.wait_status("SO-W1", OrderStatus::Reserving);
    site.append(reserved("SO-W1", &[(1, 2, 0)]));
    let overdue = site.exception_of("SO-W1", ExceptionCategory::PickOverdue);
    // Two of three units short: a stock shortage, backordered in Odoo.
    site.append(released("SO-S1", vec![line(1, "PLAIN", "Units", 3)]));
    site.wait_status("SO-S1", OrderStatus::Reserving);
    site.append(reserved("SO-S1", &[(1, 1, 2)]));
    let shortage = site.exception_of("SO-S1", ExceptionCategory::StockShortage);
    // The carrier's booking overtakes the goods issue: dead-lettered; a replay would
    // apply it now.
    let order = "SO-R1";
    site.append(released(order, vec![line(1, "PLAIN", "Units", 1)]));
    site.wait_status(order, OrderStatus::Reserving);
    site.append(reserved(order, &[(1, 1, 0)]));
    site.wait_status(order, OrderStatus::Reserved);
    site.append(pick(order, "P-R1", vec![picked(1, "PLAIN", 1)], true));
    site.wait_status(order, OrderStatus::Picked);
    site.append(booked(order, "SHP-R1"));
    site.exception_of(order, ExceptionCategory::BadInput);
    site.append(issued(order, "SHP-R1", &[(1, "PLAIN", 1)]));
    site.wait_posting("inv:SHP-R1");

    let b = site.browser();
    sign_in(&b, "otto");

    // Retry the overdue pick: the release goes out again, same idempotency key.
    b.goto("/exceptions");
    b.wait_for(&format!("table#exceptions tr[data-exception-id=\"{overdue}\"]"));
    b.screenshot("exceptions");
    b.click(&format!("tr[data-exception-id=\"{overdue}\"] a.exception"));
    let page = b.path();
    b.wait_for("form#retry input[type=hidden][name=csrf]");
    b.screenshot("exception");
    b.click("button#retry-submit");
    assert_eq!(b.path(), page, "back on the exception's page");
    b.wait_text("div#flash.ok", "release:SO-W1 re-issued");
    site.eventually("the retried release", || site.commands_with_key(System::Wms, "release:SO-W1") == 2);

    // Hand it to the warehouse team: it stays open, with its owner.
    b.fill_in("form#assign", "owner", "warehouse-team");
    b.fill_in("form#assign", "note", "they run the wave");
    b.click("button#assign-submit");
    assert_eq!(b.path(), page, "back on the exception's page: {}", b.body());
    b.wait_text("div#flash.ok", "assigned to warehouse-team");
    let x = site.node().projections.exception(&overdue).unwrap().unwrap();
    assert_eq!((x.owner.as_deref(), x.resolved_at), (Some("warehouse-team"), None), "{x:?}");
    // The team finds it in the queue by owner.
    b.goto("/exceptions?owner=warehouse-team");
    let rows = b.attrs("table#exceptions tr[data-exception-id]", "data-exception-id");
    assert_eq!(rows, [Some(overdue.clone())], "only the team's exception: {}", b.body());

    // A stock shortage has nothing to re-issue: said in words. Resolving it takes a note.
    b.goto("/exceptions?category=stock-shortage");
    b.click(&format!("tr[data-exception-id=\"{shortage}\"] a.exception"));
    let page = b.path();
    b.click("button#retry-submit");
    assert_eq!(b.status(), 409, "{}", b.body());
    let refusal = b.text("div#flash.error");
    assert!(refusal.contains("no command to re-issue"), "the refusal says why, in words: {refusal}");
    b.fill_in("form#resolve", "note", "replenishment checked with purchasing");
    b.click("button#resolve-submit");
    assert_eq!(b.path(), page);
    b.wait_text("div#flash.ok", "resolved by otto (operator): replenishment checked");
    let x = site.node().projections.exception(&shortage).unwrap().unwrap();
    assert!(x.resolved_at.is_some(), "read your writes: {x:?}");
    assert!(x.resolution.as_deref().unwrap_or_default().contains("replenishment checked"), "{x:?}");

    // A replay dry run of the order with the dead letter: the diff lists the command it
    // would send, and nothing is sent.
    b.goto(&format!("/orders/{order}"));
    b.wait_for("form#replay input[name=dry_run]");
    b.click("button#replay-submit");
    b.wait_for("section#replay-diff");
    let commands = b.texts("ul#replay-commands > li");
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert!(commands[0].contains("confirm-shipment:SHP-R1") || commands[0].contains("ConfirmShipment"), "{commands:?}");
    b.screenshot("replay-dry-run");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(site.commands_with_key(System::Odoo, "confirm-shipment:SHP-R1"), 0, "a dry run sends nothing");
}

#[test]
fn lineage_search_and_the_dashboard() {
    let site = Site::start(|cfg| cfg.web.sample_every_secs = 1);
    let posting = site.held_posting("SO-1", 3, 1250);
    site.held_posting("SO-2", 1, 900);
    let b = site.browser();
    sign_in(&b, "vic");

    // The warehouse's shipment id finds the order, with its timeline.
    b.goto("/orders?q=SHP-SO-1");
    assert_eq!(b.path(), "/orders/SO-1", "{}", b.body());
    assert!(b.text("h1").contains("SO-1"));
    b.wait_for("ol#timeline li");
    let timeline = b.texts("ol#timeline li");
    assert!(timeline.len() >= 5, "released, reserved, picked, issued, held: {timeline:#?}");
    assert!(b.text("ol#timeline").contains("SHP-SO-1") || b.body().contains(&posting), "{timeline:#?}");
    b.screenshot("order");

    // Unfinished orders unchanged for at least 0 minutes: both shipped orders, waiting
    // for their invoices' approval.
    b.goto("/stuck?older_than_minutes=0");
    b.wait_for("table#stuck tr[data-order=\"SO-1\"]");
    b.screenshot("stuck");

    // The dashboard draws its charts from what ran.
    b.goto("/dashboard");
    b.wait_until("a chart with data", || {
        let totals = b.attrs("svg.chart", "data-total");
        totals.iter().flatten().any(|t| t.parse::<f64>().is_ok_and(|t| t > 0.0)) || {
            b.goto("/dashboard");
            false
        }
    });
    let totals = b.attrs("svg.chart", "data-total");
    assert!(totals.iter().all(Option::is_some), "every chart says its total: {totals:?}");
    b.screenshot("dashboard");
}

#[test]
fn sign_in_refuses_throttles_and_signs_out() {
    let site = Site::start(|_| {});
    let b = site.browser();

    // The session cookie: not readable by scripts, never sent from another site.
    sign_in(&b, "ada");
    let cookies = b.cookies();
    let session = cookies
        .iter()
        .find(|c| c.http_only() == Some(true))
        .unwrap_or_else(|| panic!("an HttpOnly session cookie: {cookies:?}"))
        .clone();
    assert_eq!(session.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"), "{session:?}");
    let from_script = b.js("return document.cookie;");
    assert!(!from_script.as_str().unwrap_or_default().contains(session.value()), "{from_script}");

    // Signing out ends the session: the next page asks to sign in — even with the old
    // cookie put back (the server forgot the session, not just the browser).
    sign_out(&b);
    b.goto("/inbox");
    assert_eq!(b.path(), "/signin");
    b.add_cookie(session);
    b.goto("/inbox");
    assert_eq!(b.path(), "/signin", "a signed-out session cookie still works: {}", b.body());

    // A wrong password: said in words, on the sign-in page.
    b.fill("identity", "ada");
    b.fill("password", "not-adas-password");
    b.click("button#signin-submit");
    assert_eq!(b.status(), 401);
    let error = b.text("p.error");
    assert!(error.len() > 10 && !error.contains("401"), "in words: {error}");
    assert!(!b.exists("header span#whoami"));

    // Guessing on: throttled, with how long to wait.
    let mut attempts = 1;
    while b.status() != 429 {
        assert!(attempts < 20, "20 wrong passwords in a row were never throttled");
        b.fill("identity", "ada");
        b.fill("password", &format!("guess-{attempts}"));
        b.click("button#signin-submit");
        attempts += 1;
    }
    let wait = b.text("p.error");
    assert!(
        wait.to_lowercase().contains("wait") && wait.chars().any(|c| c.is_ascii_digit()),
        "says how long to wait: {wait}"
    );
    eprintln!("throttled after {attempts} wrong passwords: {wait}");
}

/// Live refresh: an approver who keeps the inbox open sees a newly held posting appear
/// without touching the page (server-sent events from /live make the script reload the
/// list), and the inbox is usable on a tablet.
#[test]
fn the_inbox_refreshes_itself_and_fits_a_tablet() {
    let site = Site::start(|_| {});
    let first = site.held_posting("SO-L1", 1, 1250);
    let b = site.browser();
    sign_in(&b, "ada");
    let rows = b.attrs("table#inbox tr[data-posting-id]", "data-posting-id");
    assert_eq!(rows, [Some(first.clone())], "{}", b.body());
    // Mark this page: a reload (and only a reload) forgets the mark.
    b.js("window.__waybill_mark = 1; return null;");

    let second = site.held_posting("SO-L2", 1, 2500);
    b.wait_until("the new posting to appear without a click", || {
        b.attrs("table#inbox tr[data-posting-id]", "data-posting-id").contains(&Some(second.clone()))
    });
    assert_eq!(b.js("return window.__waybill_mark === undefined;"), serde_json::Value::Bool(true), "the page reloaded");
    assert_eq!(b.path(), "/inbox");

    b.resize(768, 1024);
    b.goto("/inbox");
    b.wait_for("table#inbox");
    let overflow = b.js("return document.documentElement.scrollWidth > window.innerWidth + 1;");
    assert_eq!(overflow, serde_json::Value::Bool(false), "no sideways scrolling on a tablet: {}", b.body());
    b.screenshot("inbox-tablet");
}

/// An operator runs a stock reconciliation from the findings list: the first run sets the
/// baselines; after units vanish at the warehouse, the next run shows the finding with
/// both figures, and the exceptions list has it. A viewer may not run one.
#[test]
fn an_operator_runs_a_stock_reconciliation_from_the_workbench() {
    use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig};
    use waybill_doubles::stock::StockLedger;
    use waybill_server::connectors::ConnectorSettings;

    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("wms.hmac"), "s3cret").unwrap();
    let ledger = StockLedger::opening(["PLAIN".to_string(), "BOLT".to_string()], 40_000);
    let wms = HttpTarget::start(HttpTargetConfig {
        reads: Some(("/v1/stock".into(), ledger.reads())),
        ..HttpTargetConfig::new(b"s3cret".to_vec(), |_| Answer::Accepted)
    });
    let site = Site::start(|cfg| {
        cfg.connectors.insert(
            "wms".into(),
            ConnectorSettings {
                kind: "http".into(),
                url: wms.command_url(),
                stock_url: format!("{}/v1/stock", wms.url()),
                hmac_secret_file: Some(secrets.path().join("wms.hmac")),
                ..ConnectorSettings::default()
            },
        );
        cfg.reconcile.settle_ms = 100;
    });
    let b = site.browser();
    sign_in(&b, "otto");
    b.goto("/exceptions?category=reconciliation-mismatch");
    b.click("form#reconcile button");
    b.wait_for("p#summary");
    assert!(b.text("p#summary").contains("2 seen for the first time"), "{}", b.body());
    site.eventually("the baselines", || site.node().projections.stock_checks().unwrap().len() == 2);

    ledger.drift("BOLT", -3_000);
    b.goto("/exceptions?category=reconciliation-mismatch");
    b.click("form#reconcile button");
    b.wait_for("table#findings tr[data-sku=\"BOLT\"]");
    let row = b.text("table#findings tr[data-sku=\"BOLT\"]");
    for figure in ["37", "40", "-3", "new"] {
        assert!(row.contains(figure), "{figure:?} missing from {row:?}");
    }
    b.screenshot("reconciliation");
    // The product's record: its reconciliation's timeline.
    b.click("table#findings tr[data-sku=\"BOLT\"] a");
    b.wait_for("ol#timeline li");
    assert!(b.text("ol#timeline").contains("mismatch found"), "{}", b.body());
    assert!(b.text("h1").contains("reconciliation subject"), "{}", b.text("h1"));
    assert!(!b.text("p.meta").contains("Customer"), "no customer on a product's record: {}", b.text("p.meta"));
    b.screenshot("reconciliation-subject");
    site.eventually("the finding's exception", || {
        !site.node().projections.exceptions(true, Some(ExceptionCategory::ReconciliationMismatch)).unwrap().is_empty()
    });
    b.goto("/exceptions?category=reconciliation-mismatch");
    b.wait_for("table#exceptions tr[data-exception-id^=\"rec:stock:BOLT\"]");

    // A viewer is refused, in words.
    sign_out(&b);
    sign_in(&b, "vic");
    b.goto("/exceptions?category=reconciliation-mismatch");
    b.click("form#reconcile button");
    b.wait_for("#flash.error");
    let said = b.text("#flash.error");
    assert!(said.contains("did not run") && said.contains("operator"), "{said}");
}
