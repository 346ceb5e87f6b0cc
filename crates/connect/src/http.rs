//! The HTTP adapter for the warehouse, carriers, finance and the bank: one configurable
//! shape instead of one adapter per vendor.
//!
//! Each command is `POST`ed to the target's URL:
//! - the body is the command as JSON (`{"type": "ReserveStock", "meta": {…}, "data":
//!   {…}}`, the Avro field names) or as the Confluent Avro record Waybill logged
//!   (`application/vnd.confluent.avro`);
//! - `Idempotency-Key` carries the command's key: the target must answer a repeat with
//!   the first answer and never act twice (this is what makes a retry after a timeout
//!   safe, the "re-read" of an HTTP target);
//! - `X-Waybill-Signature: sha256=<hex>` is the HMAC-SHA256 of the body with the shared
//!   secret, when one is configured; `Authorization: Bearer <token>` when a token is;
//! - `traceparent` continues the order's trace.
//!
//! The target answers synchronously with `2xx` and `{"events": [ … ]}` (the same JSON
//! envelopes ingestion takes, from its own system), or with `2xx` and no events when it
//! answers later through authenticated ingestion. Error statuses are classified by
//! [`crate::classify_status`].

use std::sync::Arc;

use ring::hmac;
use waybill_domain::event::DocumentRejected;
use waybill_domain::{Command, CommandBody, EventBody, InboundEvent, System};

use crate::client::{Client, Timeouts, error_message};
use crate::secret::SecretFile;
use crate::{Adapter, Call, Failure};

/// Header carrying the body's HMAC.
pub const SIGNATURE_HEADER: &str = "X-Waybill-Signature";

/// How commands are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/vnd.confluent.avro`.
    Avro,
}

/// An HTTP target.
#[derive(Debug)]
pub struct HttpAdapter {
    system: System,
    url: String,
    route: String,
    format: Format,
    client: Client,
    hmac_secret: Option<Arc<SecretFile>>,
    token: Option<Arc<SecretFile>>,
}

impl HttpAdapter {
    /// An adapter posting `system`'s commands to `url`.
    pub fn new(
        system: System,
        url: &str,
        format: Format,
        timeouts: Timeouts,
        hmac_secret: Option<Arc<SecretFile>>,
        token: Option<Arc<SecretFile>>,
    ) -> Self {
        let route = route_of(url);
        HttpAdapter {
            system,
            url: url.to_string(),
            route,
            format,
            client: Client::new(system.as_str(), timeouts),
            hmac_secret,
            token,
        }
    }
}

/// The path of `url` (`/v1/commands`), the route a client span is named after.
pub(crate) fn route_of(url: &str) -> String {
    url.split("://").nth(1).and_then(|r| r.find('/').map(|i| r[i..].to_string())).unwrap_or("/".into())
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, body);
    let mut out = String::with_capacity(71);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Adapter for HttpAdapter {
    fn deliver(&self, command: &Command, call: Call<'_>) -> Result<Vec<InboundEvent>, Failure> {
        let (content_type, body) = match self.format {
            Format::Json => ("application/json", waybill_schema::encode_command_json(command)),
            Format::Avro => ("application/vnd.confluent.avro", call.encoded.to_vec()),
        };
        let secret_failure = |e: crate::Error| Failure::Unauthorized { reason: e.to_string() };
        let mut headers = vec![
            ("Idempotency-Key", command.meta.idempotency_key.clone()),
            ("X-Waybill-Command", command.body.name().to_string()),
        ];
        if let Some(s) = &self.hmac_secret {
            headers.push((SIGNATURE_HEADER, signature(s.get().map_err(secret_failure)?.as_bytes(), &body)));
        }
        if let Some(t) = &self.token {
            headers.push(("Authorization", format!("Bearer {}", t.get().map_err(secret_failure)?)));
        }
        let answer = self.client.post(&self.url, &self.route, &headers, content_type, &body, call.trace)?;
        if let Some(f) = answer.failure() {
            if let (Failure::Unauthorized { .. }, Some(t)) = (&f, &self.token) {
                t.invalidate();
            }
            return Err(f);
        }
        parse_answer(self.system, &answer.body).map_err(|problem| Failure::Refused {
            reason: format!(
                "{} answered {} with a body Waybill cannot use: {problem}",
                self.system,
                command.body.name()
            ),
        })
    }

    fn refusal(&self, command: &Command, reason: &str) -> Option<EventBody> {
        refusal_event(command, reason)
    }
}

/// Finance refusing an invoice, a credit note or a vendor bill is a business event of its own.
pub fn refusal_event(command: &Command, reason: &str) -> Option<EventBody> {
    match &command.body {
        CommandBody::PostInvoice(p) => Some(EventBody::InvoiceRejected(DocumentRejected {
            order_ref: p.order_ref.clone(),
            business_key: p.shipment_id.clone(),
            reason: reason.to_string(),
        })),
        CommandBody::IssueCreditNote(c) => Some(EventBody::CreditNoteRejected(DocumentRejected {
            order_ref: c.order_ref.clone(),
            business_key: c.receipt_id.clone(),
            reason: reason.to_string(),
        })),
        CommandBody::PostVendorBill(b) => {
            Some(EventBody::VendorBillRejected(waybill_domain::purchase::VendorBillRejected {
                po_ref: b.po_ref.clone(),
                bill_number: b.bill_number.clone(),
                reason: reason.to_string(),
            }))
        }
        _ => None,
    }
}

/// The events of a synchronous answer: `{"events": [ … ]}`, or nothing.
fn parse_answer(system: System, body: &[u8]) -> Result<Vec<InboundEvent>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let root: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", error_message(body)))?;
    let Some(events) = root.get("events") else { return Ok(Vec::new()) };
    let Some(events) = events.as_array() else { return Err("`events` is not an array".into()) };
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let bytes = serde_json::to_vec(e).expect("a JSON value serializes");
        let event = waybill_schema::decode_event_json(&bytes).map_err(|x| format!("events[{i}]: {x}"))?;
        if event.meta.source.system != system {
            return Err(format!(
                "events[{i}] ({}) claims to come from {}, but this connector speaks for {system}",
                event.meta.event_id, event.meta.source.system
            ));
        }
        out.push(event);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn an_answer_from_another_system_is_refused() {
        let body = br#"{"events":[{"type":"OrderCancelled","meta":{"event_id":"x","source":{"system":"ODOO","id":"1"},"correlation_key":"SO1","occurred_at":0},"data":{"order_ref":"SO1","reason":"r"}}]}"#;
        assert!(parse_answer(System::Odoo, body).unwrap().len() == 1);
        assert!(parse_answer(System::Wms, body).unwrap_err().contains("claims to come from"));
        assert!(parse_answer(System::Wms, b"").unwrap().is_empty());
        assert!(parse_answer(System::Wms, b"{}").unwrap().is_empty());
    }
}
