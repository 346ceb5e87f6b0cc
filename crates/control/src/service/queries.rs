//! Queries: orders with their timeline, lineage, exceptions, and the audit; and
//! `WatchOrder`, which follows one order until it ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use waybill_domain::{JournalBody, Timestamp, topic};
use waybill_projection::ExceptionView;

use super::convert::{document_name, order_lines, posting_proto};
use super::{Control, blocking};
use crate::auth::Role;
use crate::error::{Error, Result};
use crate::proto;
use crate::validate::{ExceptionCursor, old_enough};

impl Control {
    /// Reads and decodes the journal event a timeline entry points at.
    pub(crate) fn journal_at(&self, partition: i32, offset: i64) -> Option<JournalBody> {
        let r = self.log.read(topic::JOURNAL, partition, offset, 1).ok()?.into_iter().next()?;
        waybill_schema::decode_journal(&r.value).ok().map(|j| j.body)
    }

    fn get_order(&self, order_ref: &str) -> Result<proto::GetOrderResponse> {
        let o = self.projections.order(order_ref)?.ok_or_else(|| {
            Error::NotFound(format!(
                "order {order_ref} is not known; use the Odoo sale order name (SO0042). An order that finished longer ago than Waybill keeps finished orders ([coordinator] retire_finished_after_days) was retired and is no longer shown; its records stay in the journal"
            ))
        })?;
        let timeline = self.projections.timeline(order_ref)?;
        let released = timeline.iter().filter(|t| t.event == "OrderAccepted").find_map(|t| {
            match self.journal_at(t.partition, t.offset) {
                Some(JournalBody::OrderAccepted(o)) => Some(o),
                _ => None,
            }
        });
        let order = proto::Order {
            family: waybill_saga::AnyFlow::new(&o.order_ref).family().to_string(),
            order_ref: o.order_ref.clone(),
            status: o.status.to_string(),
            customer: o.customer_ref.clone().unwrap_or_default(),
            ship_to: o.ship_to.clone().unwrap_or_default(),
            currency: o.currency.clone().unwrap_or_default(),
            entity: o.entity.clone().unwrap_or_default(),
            client_order_ref: o.client_order_ref.clone().unwrap_or_default(),
            lines: order_lines(&o, released.as_ref()),
            shipments: o
                .shipments
                .iter()
                .map(|s| proto::Shipment {
                    shipment_id: s.shipment_id.clone(),
                    shipped_at_us: s.shipped_at.map(|t| t.0).unwrap_or_default(),
                    quantity_milli: s.quantity.0,
                    packages: s.packages,
                    carrier: s.carrier.clone().unwrap_or_default(),
                    tracking_ref: s.tracking_ref.clone().unwrap_or_default(),
                    delivered: s.delivered,
                })
                .collect(),
            problems: o.problems.clone(),
            open_exceptions: o.open_exceptions,
            postings: o.postings.iter().map(|p| posting_proto!(&o, p)).collect(),
            documents: o
                .documents
                .iter()
                .map(|d| proto::Document {
                    kind: document_name(d.kind).into(),
                    business_key: d.business_key.clone(),
                    number: d.number.clone(),
                    amount_minor: d.amount.0,
                    at_us: d.at.0,
                })
                .collect(),
            timeline: timeline
                .iter()
                .map(|t| proto::TimelineEntry {
                    at_us: t.at.0,
                    saga_id: t.saga_id.clone(),
                    seq: t.seq,
                    event: t.event.clone(),
                    summary: t.summary.clone(),
                })
                .collect(),
            first_event_at_us: o.first_event_at.0,
            last_event_at_us: o.last_event_at.0,
            cancel_reason: o.cancel_reason.clone().unwrap_or_default(),
        };
        Ok(proto::GetOrderResponse { order: Some(order) })
    }

    fn lineage(&self, source_ref: &str) -> Result<proto::GetLineageResponse> {
        crate::validate::source_ref(source_ref)?;
        let entries = self.projections.lineage(source_ref)?;
        if entries.is_empty() {
            return Err(Error::NotFound(format!(
                "nothing in Waybill is related to {source_ref}; check the system prefix and the id"
            )));
        }
        Ok(proto::GetLineageResponse {
            entries: entries
                .into_iter()
                .map(|e| proto::LineageEntry {
                    kind: match e.kind {
                        waybill_projection::LinkKind::Journal => "journal",
                        waybill_projection::LinkKind::Command => "command",
                        waybill_projection::LinkKind::DeadLetter => "dead-letter",
                    }
                    .into(),
                    id: e.id,
                    name: e.name,
                    topic: e.topic,
                    partition: e.partition,
                    offset: e.offset,
                    at_us: e.at.0,
                })
                .collect(),
        })
    }

    fn exceptions(&self, r: &proto::ListExceptionsRequest) -> Result<proto::ListExceptionsResponse> {
        let q = crate::validate::exceptions(r, &self.policy.entities)?;
        let now = Timestamp::now();
        let cursor = |x: &ExceptionView| ExceptionCursor::of(q.open_only, x.category, &x.exception_id);
        // Customers and entities of orders whose exceptions the projection could not tag
        // (dead letters), looked up once per order.
        let mut orders: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        let mut matching = Vec::new();
        for mut x in self.projections.exceptions(q.open_only, q.category)? {
            if q.after.as_ref().is_some_and(|after| cursor(&x) <= *after)
                || !(q.min_age_us.is_none() || x.raised_at.is_some_and(|t| old_enough(t.0, q.min_age_us, now)))
                || q.owner.as_ref().is_some_and(|o| x.owner != *o)
            {
                continue;
            }
            if (x.customer.is_none() || x.entity.is_none())
                && let Some(order) = &x.order_ref
            {
                let (customer, entity) = match orders.get(order) {
                    Some(known) => known.clone(),
                    None => {
                        let o = self.projections.order(order)?;
                        let known = o.map(|o| (o.customer_ref, o.entity)).unwrap_or_default();
                        orders.insert(order.clone(), known.clone());
                        known
                    }
                };
                x.customer = x.customer.take().or(customer);
                x.entity = x.entity.take().or(entity);
            }
            if q.customer.as_ref().is_some_and(|c| x.customer.as_ref() != Some(c))
                || q.entity.as_ref().is_some_and(|e| x.entity.as_ref() != Some(e))
            {
                continue;
            }
            matching.push(x);
        }
        matching.sort_by_cached_key(cursor);
        let next_page_token = if matching.len() > q.limit {
            matching.truncate(q.limit);
            matching.last().map(|x| cursor(x).encode()).unwrap_or_default()
        } else {
            String::new()
        };
        let exceptions = matching.into_iter().map(crate::workbench::exception_proto).collect();
        Ok(proto::ListExceptionsResponse { exceptions, next_page_token })
    }

    fn list_audit(&self, r: &proto::ListAuditRequest) -> Result<proto::ListAuditResponse> {
        let limit = crate::validate::audit_limit(r.limit);
        let entries = self
            .audit
            .list(
                (!r.posting_id.is_empty()).then_some(r.posting_id.as_str()),
                (!r.actor.is_empty()).then_some(r.actor.as_str()),
                limit,
            )?
            .into_iter()
            .map(|e| proto::AuditEntry {
                event_id: e.event_id,
                at_us: e.at_us,
                actor: e.actor,
                role: e.role,
                peer: e.peer,
                action: e.action,
                posting_id: e.posting_id,
                order_ref: e.order_ref,
                expected_version: e.expected_version,
                reason: e.reason,
                outcome: e.outcome,
                detail: e.detail,
                topic: e.topic,
            })
            .collect();
        Ok(proto::ListAuditResponse { entries })
    }
}

/// `WatchOrder`'s order reference and timeout (0: 60 s; at most an hour).
fn watch_request(r: &proto::WatchOrderRequest) -> Result<(String, Duration)> {
    let order_ref = r.order_ref.trim();
    if order_ref.is_empty() {
        return Err(Error::InvalidArgument("order_ref is empty; give the Odoo sale order name (SO0042)".into()));
    }
    let ms = match r.timeout_ms {
        0 => 60_000,
        ms if ms > 3_600_000 => {
            return Err(Error::InvalidArgument(format!(
                "timeout_ms {ms} is more than an hour; watch again when a watch ends instead"
            )));
        }
        ms => ms,
    };
    Ok((order_ref.to_string(), Duration::from_millis(u64::from(ms))))
}

/// The `waybill.v1.Queries` service.
#[derive(Debug, Clone)]
pub struct QueriesService(pub(crate) Arc<Control>);
/// The `waybill.v1.Audit` service.
#[derive(Debug, Clone)]
pub struct AuditService(pub(crate) Arc<Control>);

#[tonic::async_trait]
impl proto::queries_server::Queries for QueriesService {
    async fn get_order(
        &self,
        request: tonic::Request<proto::GetOrderRequest>,
    ) -> Result<tonic::Response<proto::GetOrderResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "reading an order")?;
        let c = self.0.clone();
        let id = request.into_inner().order_ref;
        blocking(move || c.get_order(&id)).await
    }

    async fn get_lineage(
        &self,
        request: tonic::Request<proto::GetLineageRequest>,
    ) -> Result<tonic::Response<proto::GetLineageResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "reading lineage")?;
        let c = self.0.clone();
        let id = request.into_inner().source_ref;
        blocking(move || c.lineage(&id)).await
    }

    async fn list_exceptions(
        &self,
        request: tonic::Request<proto::ListExceptionsRequest>,
    ) -> Result<tonic::Response<proto::ListExceptionsResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "listing exceptions")?;
        let c = self.0.clone();
        let r = request.into_inner();
        blocking(move || c.exceptions(&r)).await
    }

    async fn list_orders(
        &self,
        request: tonic::Request<proto::ListOrdersRequest>,
    ) -> Result<tonic::Response<proto::ListOrdersResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "listing orders")?;
        let c = self.0.clone();
        let r = request.into_inner();
        blocking(move || c.list_orders(&r, Timestamp::now())).await
    }

    /// One stream per order rather than one `WatchOrders` stream of every completion: a
    /// caller waits for the order it placed (an integration, each client of `waybill
    /// load`), so nothing is sent that it would throw away, and the viewer role and the
    /// deadline apply per order. The streams share one waiter ([`super::watch`]), so a
    /// projection batch costs one wake-up and a read per watched order, however many are
    /// open.
    type WatchOrderStream = tonic::codegen::BoxStream<proto::OrderUpdate>;

    async fn watch_order(
        &self,
        request: tonic::Request<proto::WatchOrderRequest>,
    ) -> Result<tonic::Response<Self::WatchOrderStream>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "watching an order")?;
        let (order_ref, timeout) = watch_request(request.get_ref())?;
        let (tx, rx) = mpsc::channel(16);
        let c = self.0.clone();
        blocking(move || c.watchers.watch(&c.projections, order_ref, timeout, tx)).await?;
        Ok(tonic::Response::new(Box::pin(tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl proto::audit_server::Audit for AuditService {
    async fn list_audit(
        &self,
        request: tonic::Request<proto::ListAuditRequest>,
    ) -> Result<tonic::Response<proto::ListAuditResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "reading the audit")?;
        let c = self.0.clone();
        let r = request.into_inner();
        blocking(move || c.list_audit(&r)).await
    }
}
