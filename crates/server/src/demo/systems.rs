//! The warehouse, the carrier and finance of the connector demo: HTTP doubles on loopback
//! ([`waybill_doubles::http_target::HttpTarget`]) that check Waybill's signature, take
//! each command once per idempotency key and answer it the way the world says
//! ([`super::answers`]).
//!
//! What a real system answers at once goes back synchronously in the HTTP answer
//! (`StockReserved`, `ReleasedToWarehouse`, `CarrierBooked`, `InvoicePosted`,
//! `CreditNoteIssued`; finance refuses an invoice in a closed period with `422`). What
//! happens later — picks, goods issues, proofs of delivery, a return's authorisation
//! (Odoo's webhook automation) and its receipt — is posted to Waybill's ingestion
//! endpoint by a [`Scheduler`], each system with its own bearer token, at the world's
//! delays counted from the moment the system answered the command.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waybill_connect::Failure;
use waybill_connect::client::{Client, Timeouts};
use waybill_domain::{Command, CommandBody, CommandMeta, EventBody, InboundEvent, System};
use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig, Received};
use waybill_telemetry::TraceHeaders;

use super::answers::{REFUSAL, World};
use super::stock::WarehouseStock;

/// Later answers are due this long after the world's delay: the time the synchronous
/// answer takes to become durable in Waybill through the connector, so a pick never
/// overtakes the warehouse's acceptance of the release it belongs to.
const WAY_BACK_MS: u64 = 30;

/// Where the warehouse double serves its stock (`GET`, signed, paged).
pub const STOCK_PATH: &str = "/v1/stock";

/// Whether a system answers `body` in its answer to the command (or later, through
/// ingestion).
fn synchronous(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::StockReserved(_)
            | EventBody::ReleasedToWarehouse(_)
            | EventBody::CarrierBooked(_)
            | EventBody::InvoicePosted(_)
            | EventBody::CreditNoteIssued(_)
    )
}

/// A command from the HTTP adapter's JSON envelope `{"type", "meta", "data"}`.
pub fn command_from_json(v: &Value) -> Result<Command, String> {
    let kind = v.get("type").and_then(Value::as_str).ok_or("field `type` (the command name) is missing")?;
    let meta: CommandMeta =
        serde_json::from_value(v.get("meta").cloned().unwrap_or_default()).map_err(|e| format!("meta: {e}"))?;
    let body: CommandBody = serde_json::from_value(json!({ kind: v.get("data").cloned().unwrap_or_default() }))
        .map_err(|e| format!("{kind}: {e}"))?;
    Ok(Command { meta, body })
}

/// How fast the doubles answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// `None`: each later answer comes at the world's delay after the command (a pick
    /// 20–150 ms after the release, ...), as in the demo. `Some(d)`: every answer takes
    /// `d`, the synchronous ones and the later ones alike (the load test's `--delay-ms`).
    pub fixed: Option<Duration>,
    /// The fraction of requests the doubles answer `503` (the connectors retry them).
    pub unavailable_rate: f64,
    /// Keep every command each double received, for counting afterwards; a long load
    /// run turns this off.
    pub history: bool,
}

impl Pace {
    /// The demo's: the world's delays, no refusals, every command kept.
    pub const WORLD: Pace = Pace { fixed: None, unavailable_rate: 0.0, history: true };

    /// When an answer the world plans `after_ms` after the command is posted.
    fn later(&self, after_ms: u64) -> Duration {
        match self.fixed {
            None => Duration::from_millis(after_ms + WAY_BACK_MS),
            Some(d) => d,
        }
    }
}

/// One of the systems' HTTP doubles.
fn target(
    system: System,
    secret: &str,
    world: Arc<World>,
    later: Arc<Scheduler>,
    pace: Pace,
    posted: Arc<Mutex<Vec<PostedInvoice>>>,
    reads: Option<(String, waybill_doubles::http_target::Reads)>,
) -> anyhow::Result<HttpTarget> {
    let behaviour = move |r: &Received| -> Answer {
        let command =
            match r.json.as_ref().ok_or_else(|| "the body is not JSON".to_string()).and_then(command_from_json) {
                Ok(c) => c,
                Err(e) => {
                    return Answer::Sync {
                        status: 400,
                        body: json!({"error": format!("cannot read the command: {e}")}),
                    };
                }
            };
        if command.meta.target != system {
            let error = format!("this is the {system} system; {} is for {}", command.body.name(), command.meta.target);
            return Answer::Sync { status: 422, body: json!({ "error": error }) };
        }
        // A warehouse that takes a cancellation stops the order's wave: picks and goods
        // issues it had not done yet will not happen.
        if system == System::Wms
            && matches!(command.body, CommandBody::CancelWarehouseRelease(_) | CommandBody::CancelReservation(_))
        {
            later.withdraw(&command.meta.correlation_key, System::Wms);
        }
        let planned = world.answer(&command);
        if planned.iter().any(|p| matches!(p.event.body, EventBody::InvoiceRejected(_))) {
            return Answer::Sync { status: 422, body: json!({ "error": REFUSAL }) };
        }
        // Finance keeps what it posted: the customers pay it, and the bank's statements say so.
        if let CommandBody::PostInvoice(i) = &command.body {
            for p in &planned {
                if let EventBody::InvoicePosted(x) = &p.event.body {
                    posted.lock().unwrap_or_else(|e| e.into_inner()).push(PostedInvoice {
                        number: x.invoice_number.clone(),
                        amount: x.amount,
                        customer_ref: i.customer_ref.clone(),
                        currency: i.currency.clone(),
                    });
                }
            }
        }
        let trace = r.traceparent.as_ref().and_then(|t| TraceHeaders::from_headers([("traceparent", t.as_bytes())]));
        let mut now = Vec::new();
        for p in planned {
            if p.event.meta.source.system == system && synchronous(&p.event.body) {
                let e = waybill_schema::encode_event_json(&p.event);
                now.push(serde_json::from_slice::<Value>(&e).expect("an encoded event is JSON"));
            } else {
                later.push(pace.later(p.after_ms), p.event, trace.clone());
            }
        }
        Answer::ok(json!({ "events": now }))
    };
    let config = HttpTargetConfig {
        name: system.as_str().to_string(),
        latency: pace.fixed.unwrap_or_default(),
        unavailable_rate: pace.unavailable_rate,
        history: pace.history,
        reads,
        ..HttpTargetConfig::new(secret.as_bytes().to_vec(), behaviour)
    };
    HttpTarget::try_start(config).map_err(|e| anyhow::anyhow!("the demo's {system} double did not start: {e}"))
}

/// The warehouse, carrier and finance doubles, and the scheduler of their later answers.
pub struct Systems {
    /// The warehouse.
    pub wms: HttpTarget,
    /// The carrier.
    pub carrier: HttpTarget,
    /// Finance.
    pub finance: HttpTarget,
    /// Odoo's command endpoint as a plain HTTP double (`ConfirmShipment`,
    /// `CreateBackorder`), when Odoo is not the Odoo double (the load test).
    pub odoo: Option<HttpTarget>,
    /// Their later answers (and Odoo's return authorisations).
    pub later: Arc<Scheduler>,
    /// The invoices finance posted, in order (the demo's bank has them paid).
    pub posted: Arc<Mutex<Vec<PostedInvoice>>>,
    /// The warehouse's stock (served at the warehouse double's `/v1/stock`).
    pub stock: WarehouseStock,
}

/// An invoice finance posted.
#[derive(Debug, Clone)]
pub struct PostedInvoice {
    /// Its number.
    pub number: String,
    /// Its amount.
    pub amount: waybill_domain::Money,
    /// The customer's reference.
    pub customer_ref: String,
    /// Its currency (each company is paid into its own account).
    pub currency: String,
}

impl std::fmt::Debug for Systems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Systems").field("wms", &self.wms.url()).finish_non_exhaustive()
    }
}

impl Systems {
    /// Starts the doubles at `pace`, each checking signatures with its secret from `hmac`:
    /// the warehouse, carrier and finance, and Odoo's command endpoint when `hmac` has a
    /// secret for Odoo.
    pub fn start(world: Arc<World>, hmac: &HashMap<System, String>, pace: Pace) -> anyhow::Result<Systems> {
        let later = Arc::new(Scheduler::new(LANES));
        let posted = Arc::new(Mutex::new(Vec::new()));
        let stock = WarehouseStock::opening();
        let _ = later.stock.set(stock.clone());
        let start = |s: System| {
            let reads = (s == System::Wms).then(|| (STOCK_PATH.to_string(), stock.ledger.reads()));
            target(s, &hmac[&s], world.clone(), later.clone(), pace, posted.clone(), reads)
        };
        Ok(Systems {
            wms: start(System::Wms)?,
            carrier: start(System::Carrier)?,
            finance: start(System::Finance)?,
            odoo: hmac.contains_key(&System::Odoo).then(|| start(System::Odoo)).transpose()?,
            later,
            posted,
            stock,
        })
    }

    /// Each double with the system it plays.
    pub fn targets(&self) -> Vec<(System, &HttpTarget)> {
        let mut out =
            vec![(System::Wms, &self.wms), (System::Carrier, &self.carrier), (System::Finance, &self.finance)];
        out.extend(self.odoo.iter().map(|o| (System::Odoo, o)));
        out
    }
}

/// Lanes of the scheduler: events of one order always take the same lane, so they are
/// posted in the order they are due.
const LANES: usize = 16;

struct Post {
    event: InboundEvent,
    trace: Option<TraceHeaders>,
}

#[derive(Default)]
struct Lane {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    posts: HashMap<u64, Post>,
}

/// Posts events to Waybill's ingestion when they are due, each as its system with that
/// system's token.
pub struct Scheduler {
    lanes: Vec<(Mutex<Lane>, Condvar)>,
    seq: AtomicU64,
    /// Events scheduled and not yet accepted by ingestion.
    pub pending: AtomicU64,
    /// Events ingestion accepted.
    pub posted: AtomicU64,
    /// Events ingestion refused for good (they are in its dead-letter topic).
    pub refused: AtomicU64,
    stop: AtomicBool,
    endpoint: OnceLock<(String, HashMap<System, String>)>,
    /// The warehouse's stock, moved by each of its events ingestion takes.
    stock: OnceLock<WarehouseStock>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("pending", &self.pending)
            .field("posted", &self.posted)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    fn new(lanes: usize) -> Self {
        Scheduler {
            lanes: (0..lanes).map(|_| (Mutex::new(Lane::default()), Condvar::new())).collect(),
            seq: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            posted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            endpoint: OnceLock::new(),
            stock: OnceLock::new(),
        }
    }

    fn lane(&self, key: &str) -> &(Mutex<Lane>, Condvar) {
        let h = key.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.lanes[h % self.lanes.len()]
    }

    /// Posts `event` after `delay`.
    pub fn push(&self, delay: Duration, event: InboundEvent, trace: Option<TraceHeaders>) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        let (lane, wake) = self.lane(&event.meta.correlation_key);
        let mut lane = lane.lock().unwrap_or_else(|p| p.into_inner());
        lane.due.push(Reverse((Instant::now() + delay, n)));
        lane.posts.insert(n, Post { event, trace });
        wake.notify_one();
    }

    /// Drops what `system` was still to post about `key` (a cancelled order's picks and
    /// goods issues).
    pub fn withdraw(&self, key: &str, system: System) {
        let (lane, _) = self.lane(key);
        let mut lane = lane.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<u64> = lane
            .posts
            .iter()
            .filter(|(_, p)| p.event.meta.correlation_key == key && p.event.meta.source.system == system)
            .map(|(n, _)| *n)
            .collect();
        for n in &gone {
            lane.posts.remove(n);
        }
        lane.due.retain(|Reverse((_, n))| !gone.contains(n));
        self.pending.fetch_sub(gone.len() as u64, Ordering::Relaxed);
    }

    /// Starts posting to `url` (`…/v1/events`) with each system's bearer token.
    pub fn start(
        self: &Arc<Self>,
        url: String,
        tokens: HashMap<System, String>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let _ = self.endpoint.set((url, tokens));
        (0..self.lanes.len())
            .map(|i| {
                let me = self.clone();
                std::thread::Builder::new()
                    .name(format!("demo-poster-{i}"))
                    .spawn(move || me.run(i))
                    .map_err(anyhow::Error::from)
            })
            .collect()
    }

    /// Stops the posting threads (what is not posted yet stays unposted).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, wake) in &self.lanes {
            wake.notify_all();
        }
    }

    fn run(&self, i: usize) {
        let (url, tokens) = self.endpoint.get().expect("started with an endpoint");
        let client =
            Client::new("waybill", Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(30) });
        let (lane, wake) = &self.lanes[i];
        while !self.stop.load(Ordering::Relaxed) {
            let post = {
                let mut l = lane.lock().unwrap_or_else(|p| p.into_inner());
                match l.due.peek().copied() {
                    Some(Reverse((at, n))) if at <= Instant::now() => {
                        l.due.pop();
                        l.posts.remove(&n)
                    }
                    Some(Reverse((at, _))) => {
                        let wait = at.saturating_duration_since(Instant::now());
                        let _ = wake.wait_timeout(l, wait).unwrap_or_else(|p| p.into_inner());
                        continue;
                    }
                    None => {
                        let _ = wake.wait_timeout(l, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner());
                        continue;
                    }
                }
            };
            if let Some(post) = post {
                self.deliver(&client, url, tokens, &post);
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Posts one event until ingestion takes it (or refuses it for good).
    fn deliver(&self, client: &Client, url: &str, tokens: &HashMap<System, String>, post: &Post) {
        let system = post.event.meta.source.system;
        let Some(token) = tokens.get(&system) else {
            tracing::error!(%system, "the demo has no ingestion token for this system");
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let body = waybill_schema::encode_event_json(&post.event);
        let headers = [("Authorization", format!("Bearer {token}"))];
        let mut warned = false;
        while !self.stop.load(Ordering::Relaxed) {
            let outcome = client
                .post(url, "/v1/events", &headers, "application/json", &body, post.trace.as_ref())
                .and_then(|a| a.failure().map_or(Ok(()), Err));
            let wait = match outcome {
                Ok(()) => {
                    if let Some(stock) = self.stock.get() {
                        stock.told(&post.event);
                    }
                    self.posted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(Failure::Refused { reason }) | Err(Failure::Unauthorized { reason }) => {
                    tracing::error!(event.id = %post.event.meta.event_id, %system, %reason, "ingestion refused the demo's event");
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(Failure::Unavailable { retry_after, .. }) => retry_after.unwrap_or(Duration::from_millis(100)),
                Err(e) => {
                    if !warned {
                        tracing::warn!(event.id = %post.event.meta.event_id, error = %e, "cannot post to ingestion; retrying");
                        warned = true;
                    }
                    Duration::from_millis(100)
                }
            };
            std::thread::sleep(wait.min(Duration::from_secs(2)));
        }
    }
}
