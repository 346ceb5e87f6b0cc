//! Reading the warehouse system's stock, page by page, for a reconciliation run.
//!
//! The HTTP shape: `GET <stock_url>?limit=<n>[&after=<sku>]` answers
//! `{"items": [{"sku": "SKU-0001", "on_hand": 118.5, "last_movement": "shipment SHP-9"}],
//! "next": "SKU-0001"}` — products in SKU order, `on_hand` in the product's unit (all
//! locations of the warehouse), `next` the cursor of the following page or `null` after
//! the last. The request is signed like a command, over its request target:
//! `X-Waybill-Signature: sha256=<hex HMAC-SHA256 of "GET <path>?<query>">`, and carries
//! the bearer token when one is configured. Every page takes a token of the target's
//! bucket and passes its breaker, like a command, so a reconciliation never crowds out
//! deliveries beyond the connector's configured rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use waybill_domain::Qty;

use crate::client::{Client, Timeouts};
use crate::error::Failure;
use crate::http::{SIGNATURE_HEADER, signature};
use crate::secret::SecretFile;
use crate::target::Target;

/// One product's stock, as the warehouse system reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockItem {
    /// Product code.
    pub sku: String,
    /// On hand, all locations.
    pub on_hand: Qty,
    /// The warehouse's last movement of the product, in its words.
    pub last_movement: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Item>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Item {
    sku: String,
    on_hand: f64,
    #[serde(default)]
    last_movement: Option<String>,
}

/// Reads a warehouse system's stock.
#[derive(Debug, Clone)]
pub struct StockReader {
    url: String,
    route: String,
    page: usize,
    client: Client,
    target: Arc<Target>,
    hmac_secret: Option<Arc<SecretFile>>,
    token: Option<Arc<SecretFile>>,
}

impl StockReader {
    /// A reader of `url` (`https://wms.example.com/v1/stock`), `page` products per call,
    /// throttled by `target` (the connector's own).
    pub fn new(
        url: &str,
        page: usize,
        timeouts: Timeouts,
        target: Arc<Target>,
        hmac_secret: Option<Arc<SecretFile>>,
        token: Option<Arc<SecretFile>>,
    ) -> Self {
        let route = crate::http::route_of(url);
        StockReader {
            url: url.to_string(),
            route,
            page: page.max(1),
            client: Client::new("wms", timeouts),
            target,
            hmac_secret,
            token,
        }
    }

    /// Every product's stock, in SKU order; `deadline` bounds the whole read (a target
    /// that is down fails the run instead of holding it).
    pub fn read_all(&self, deadline: Instant) -> Result<Vec<StockItem>, Failure> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.read_page(after.as_deref(), deadline)?;
            let next = page.next.filter(|n| !n.is_empty());
            for i in page.items {
                if !i.on_hand.is_finite() {
                    return Err(Failure::Refused {
                        reason: format!("the warehouse reported on_hand {} for {}: not a number", i.on_hand, i.sku),
                    });
                }
                out.push(StockItem {
                    sku: i.sku,
                    on_hand: Qty((i.on_hand * 1000.0).round() as i64),
                    last_movement: i.last_movement,
                });
            }
            match next {
                // A cursor that does not move would loop for ever.
                Some(n) if after.as_deref() != Some(n.as_str()) => after = Some(n),
                Some(n) => {
                    return Err(Failure::Refused {
                        reason: format!("the warehouse answered the page after {n:?} with the same cursor again"),
                    });
                }
                None => return Ok(out),
            }
        }
    }

    fn read_page(&self, after: Option<&str>, deadline: Instant) -> Result<Page, Failure> {
        let mut query = format!("limit={}", self.page);
        if let Some(a) = after {
            query.push_str("&after=");
            query.push_str(&encode(a));
        }
        let url = format!("{}?{query}", self.url);
        let secret_failure = |e: crate::Error| Failure::Unauthorized { reason: e.to_string() };
        let mut headers = Vec::new();
        if let Some(s) = &self.hmac_secret {
            let signed = format!("GET {}?{query}", self.route);
            headers.push((SIGNATURE_HEADER, signature(s.get().map_err(secret_failure)?.as_bytes(), signed.as_bytes())));
        }
        if let Some(t) = &self.token {
            headers.push(("Authorization", format!("Bearer {}", t.get().map_err(secret_failure)?)));
        }
        let started = loop {
            match self.target.admit(Instant::now()) {
                Ok(_) => break Instant::now(),
                Err((wait, _)) if Instant::now() + wait < deadline => {
                    std::thread::sleep(wait.min(Duration::from_millis(200)))
                }
                Err(_) => {
                    return Err(Failure::Unavailable {
                        reason: format!(
                            "{}: the connector's breaker or rate kept the read waiting past the run's deadline",
                            self.url
                        ),
                        retry_after: None,
                        throttled: false,
                    });
                }
            }
        };
        let result = self.client.get(&url, &self.route, &headers, None);
        let now = Instant::now();
        let answer = result.and_then(|a| a.failure().map_or(Ok(a), Err));
        self.target.record(now, now - started, answer.as_ref().map(|_| ()));
        let answer = answer?;
        serde_json::from_slice(&answer.body).map_err(|e| Failure::Refused {
            reason: format!(
                "{} answered a stock page Waybill cannot read ({e}); expected {{\"items\": [{{\"sku\", \"on_hand\", \"last_movement\"}}], \"next\"}}",
                self.url
            ),
        })
    }
}

/// Percent-encodes a query value (SKUs may hold anything).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
