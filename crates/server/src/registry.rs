//! The Confluent Schema Registry API, read-only, on its own listener (`registry.listen`):
//! the catalog compiled into this binary (`schemas/`), so kcat, Kafka UI, Kafka Connect,
//! ksqlDB or a confluent-kafka script decode every Waybill topic by asking for the id in
//! each record's 5-byte prefix. The answers are [`waybill_schema::confluent::Api`]'s;
//! this module only carries them over HTTP with Confluent's media type.
//!
//! Why its own listener rather than the ingestion port: its callers are readers — tools
//! and consumers inside the cluster — not producing systems, and it answers without
//! credentials (the schemas are the published contract of the topics, and nothing here
//! writes), while every ingestion call is authenticated as one system.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use waybill_schema::confluent::{Api, CONTENT_TYPE};

/// Largest request body read (a schema to look up or check).
const MAX_BODY: usize = 1 << 20;

/// The registry API's routes: every path goes to the catalog's answer.
pub fn router() -> Router {
    Router::new().fallback(answer).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

async fn answer(method: Method, uri: Uri, body: Bytes) -> Response {
    let r = Api::embedded().handle(method.as_str(), uri.path(), uri.query().unwrap_or(""), &body);
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, r.body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
