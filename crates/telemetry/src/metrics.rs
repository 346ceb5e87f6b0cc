//! Every metric Waybill exports, in one place: name, type, labels and help text.
//! Names follow Prometheus conventions, `waybill_<subsystem>_<name>_<unit>`; labels have
//! bounded cardinality only (a topic, a partition, a saga kind, a category — never an
//! order id). The Grafana dashboard and the runbook (`docs/operations.md`) use these
//! names; a test keeps them in step. A metric declared here gets a panel or an alert only
//! once something in `crates/` emits it (`make deploy-check` fails otherwise).

/// What kind of metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter (`_total`).
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Distribution (`_seconds`, `_bytes`).
    Histogram,
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Prometheus name.
    pub name: &'static str,
    /// Kind.
    pub kind: Kind,
    /// Label names.
    pub labels: &'static [&'static str],
    /// Help text.
    pub help: &'static str,
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $id:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $( $(#[$doc])* pub const $id: &str = $name; )*
        /// Every metric, for describing them at start-up and for the docs.
        pub const ALL: &[Metric] = &[
            $( Metric { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help }, )*
        ];
    };
}

metrics! {
    // ---- technical ----
    /// Records consumed by the coordinator, per input topic.
    RECORDS_CONSUMED = "waybill_records_consumed_total", Counter, ["topic"], "Records consumed by the saga coordinator, per input topic.";
    /// Records produced, per output topic.
    RECORDS_PRODUCED = "waybill_records_produced_total", Counter, ["topic"], "Records written by Waybill, per output topic (journal, commands, dead letters).";
    /// Time to process one coordinator batch (read, decide, append, store).
    BATCH_DURATION = "waybill_coordinator_batch_duration_seconds", Histogram, [], "Time to process one coordinator batch: read, decide, append, store.";
    /// Time from an inbound record's append to its decision being durable.
    PROCESSING_LATENCY = "waybill_coordinator_processing_latency_seconds", Histogram, [], "Time from an inbound record's append to the durable append of its decision.";
    /// Records not yet consumed, per inbound partition.
    CONSUMER_LAG = "waybill_consumer_lag_records", Gauge, ["topic", "partition"], "Records appended to an input partition and not yet processed by the coordinator.";
    /// Kafka transactions, by outcome.
    TRANSACTIONS = "waybill_kafka_transactions_total", Counter, ["outcome"], "Kafka transactions by outcome (commit, abort).";
    /// Records sent to the dead-letter topic, by reason kind.
    DEAD_LETTERS = "waybill_dead_letters_total", Counter, ["kind"], "Records sent to the dead-letter topic, by kind (decode, unknown-schema, rule, forbidden, ownership), whether the coordinator or ingestion refused them.";
    /// Events a system sent that it is not the system of record for.
    OWNERSHIP_VIOLATIONS = "waybill_ownership_violations_total", Counter, ["system", "event"], "Events refused because the sending system does not own the event type (policy.ownership), by sending system and event type.";
    /// Ingestion requests, by system and HTTP status.
    INGEST_REQUESTS = "waybill_ingest_requests_total", Counter, ["system", "status"], "HTTP ingestion requests by the caller's system (or anonymous/unauthenticated) and response status (202, 200, 400, 401, 403, 413, 429, 503).";
    /// gRPC calls answered by the control plane, by service, method and status code. The
    /// labels carry a `grpc_` prefix because Prometheus's Kubernetes discovery already sets
    /// `service` on every scraped series.
    GRPC_REQUESTS = "waybill_grpc_requests_total", Counter, ["grpc_service", "grpc_method", "grpc_code"], "Control-plane gRPC calls by service, method and status code (OK, NOT_FOUND, ...).";
    /// Web workbench requests, by route and status class.
    WEB_REQUESTS = "waybill_web_requests_total", Counter, ["route", "status"], "Web workbench requests answered, by route (/postings/{id}, ...) and HTTP status class (2xx, 3xx, 4xx, 5xx).";
    /// Sign-ins to the web workbench, by outcome.
    WEB_SIGNINS = "waybill_web_signins_total", Counter, ["outcome"], "Sign-ins to the web workbench: ok, refused (wrong identity or password), throttled (too many failures).";
    /// Connector calls, by target (the connector's name) and outcome.
    CONNECTOR_REQUESTS = "waybill_connector_requests_total", Counter, ["target", "outcome"], "Calls to target systems by connector and outcome (ok, refused, transient, unavailable, throttled, unknown, unauthorized).";
    /// Connector call latency, by target.
    CONNECTOR_LATENCY = "waybill_connector_call_duration_seconds", Histogram, ["target"], "Latency of calls to target systems, by connector, whatever the outcome.";
    /// Retries scheduled, by target.
    CONNECTOR_RETRIES = "waybill_connector_retries_total", Counter, ["target"], "Command deliveries scheduled for another attempt after a failed call, by connector.";
    /// Times a connector held calls back, by target and cause.
    CONNECTOR_THROTTLED = "waybill_connector_throttled_total", Counter, ["target", "cause"], "Times a connector held calls back: its own token bucket (cause=bucket) or the target's 429/Retry-After (cause=target).";
    /// Breaker state per target: 0 closed, 1 open, 2 half-open.
    CONNECTOR_BREAKER_STATE = "waybill_connector_breaker_state", Gauge, ["target"], "Circuit breaker state per connector: 0 closed, 1 open (commands wait in their topic), 2 half-open (probing).";
    /// Times a breaker opened, by target.
    CONNECTOR_BREAKER_OPENS = "waybill_connector_breaker_opens_total", Counter, ["target"], "Times a connector's circuit breaker opened after consecutive failures.";
    /// Commands read and not yet delivered, by target.
    CONNECTOR_UNDELIVERED = "waybill_connector_undelivered_commands", Gauge, ["target"], "Commands a connector has read from its topic whose outcome is not yet durable, plus those not yet read.";
    /// Age of the oldest undelivered command, by target.
    CONNECTOR_OLDEST_AGE = "waybill_connector_oldest_undelivered_age_seconds", Gauge, ["target"], "Age of the oldest command a connector has not delivered yet (0 when none).";
    /// Records a poller read from a system of record, by target and model.
    CONNECTOR_POLLED = "waybill_connector_polled_records_total", Counter, ["target", "model"], "Changed records a connector's poller read from its system (e.g. Odoo sale.order), by connector and model.";
    /// Size on disk of each local store.
    STORE_SIZE = "waybill_store_size_bytes", Gauge, ["store"], "Size on disk of each local store (log, state, projections).";
    /// 1 while a partition is processed normally, 0 when stuck or the log is unreachable.
    PARTITION_HEALTHY = "waybill_partition_healthy", Gauge, ["partition"], "1 while a partition is processed, 0 when stuck past the threshold or the log is unreachable.";
    /// Partitions this process owns.
    PARTITIONS_OWNED = "waybill_partitions_owned", Gauge, [], "Partitions this process owns (all of them on the embedded log; its consumer-group share on Kafka).";
    /// Consumer-group rebalances seen by this process, by change.
    REBALANCES = "waybill_group_rebalances_total", Counter, ["change"], "Consumer-group changes of this process's partitions: assigned, revoked, lost (session expired).";
    /// Journal records replayed into the state store while restoring partitions.
    RESTORE_RECORDS = "waybill_partition_restore_records_total", Counter, [], "Journal records replayed into the saga state store while restoring partitions.";
    /// Finished flows retired once their retention passed.
    FLOWS_RETIRED = "waybill_flows_retired_total", Counter, [], "Finished flows the coordinator retired once their retention ([coordinator] retire_finished_after_days) passed: their state left the store and the snapshot.";
    /// Records the embedded log's retention deleted.
    LOG_RECORDS_EXPIRED = "waybill_log_records_expired_total", Counter, [], "Records the embedded log's retention deleted: past their topic's [topics] retention and passed by every reader that stores a position (old snapshot generations once a newer one is written).";
    /// Segment files the embedded log's retention deleted.
    LOG_SEGMENTS_DELETED = "waybill_log_segments_deleted_total", Counter, [], "Segment files the embedded log deleted once at most half of their bytes were records still kept.";
    /// Bytes the embedded log copied forward out of segments it deleted.
    LOG_COPIED_BYTES = "waybill_log_copied_forward_bytes_total", Counter, [], "Bytes of kept records (journal, control, audit, records within their retention) the embedded log copied forward out of the segments it deleted.";
    /// Time to restore one partition.
    RESTORE_DURATION = "waybill_partition_restore_duration_seconds", Histogram, [], "Time to restore one partition's sagas (state store plus journal catch-up).";
    // ---- business ----
    /// Findings a reconciliation's last run reported, by kind.
    RECONCILIATION_MISMATCHES = "waybill_reconciliation_mismatches", Gauge, ["kind"], "Subjects the last reconciliation run of each kind found beyond tolerance (each an open RECONCILIATION_MISMATCH exception); 0 when the systems agree.";
    /// When a reconciliation last completed, by kind.
    RECONCILIATION_LAST_RUN = "waybill_reconciliation_last_run_timestamp_seconds", Gauge, ["kind"], "Unix time at which the last reconciliation run of each kind completed (alert when it is older than its schedule allows).";
    /// Reconciliation runs, by kind and outcome.
    RECONCILIATION_RUNS = "waybill_reconciliation_runs_total", Counter, ["kind", "outcome"], "Reconciliation runs by kind and outcome: ok, or failed (the system of record could not be read; nothing was logged).";
    /// Sagas started, by kind.
    SAGAS_STARTED = "waybill_sagas_started_total", Counter, ["kind"], "Sagas started, by kind.";
    /// Sagas completed, by kind.
    SAGAS_COMPLETED = "waybill_sagas_completed_total", Counter, ["kind"], "Sagas completed, by kind.";
    /// Sagas that failed (rejected, refused, cancelled), by kind.
    SAGAS_FAILED = "waybill_sagas_failed_total", Counter, ["kind"], "Sagas that ended without their normal outcome (cancelled, rejected, refused), by kind.";
    /// Stage durations: order release → goods issue, goods issue → invoice posted.
    STAGE_DURATION = "waybill_saga_stage_duration_seconds", Histogram, ["stage"], "Time between business milestones: release_to_goods_issue, goods_issue_to_invoice_posted.";
    /// Held postings waiting for an approver, by document.
    POSTINGS_HELD = "waybill_postings_held", Gauge, ["document"], "Held postings waiting for an approver, by document (invoice, credit_note, vendor_bill).";
    /// Age of the oldest held posting.
    POSTINGS_OLDEST_AGE = "waybill_postings_held_oldest_age_seconds", Gauge, [], "Age of the oldest posting waiting for an approver.";
    /// Open exceptions, by category.
    EXCEPTIONS_OPEN = "waybill_exceptions_open", Gauge, ["category"], "Open exceptions on the workbench, by category.";
    /// Stock mismatches found (pick or return does not match the order).
    STOCK_MISMATCHES = "waybill_stock_mismatches_total", Counter, [], "Picks, shipments or returns that did not match the order.";
    /// Delay from an event happening at its source to Waybill deciding on it.
    ORDER_SYNC_DELAY = "waybill_order_sync_delay_seconds", Histogram, [], "Delay from an event happening at its source to Waybill's decision on it.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(m.name.starts_with("waybill_"), "{}", m.name);
            assert!(seen.insert(m.name), "{} defined twice", m.name);
            match m.kind {
                Kind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                Kind::Histogram => assert!(m.name.ends_with("_seconds") || m.name.ends_with("_bytes"), "{}", m.name),
                Kind::Gauge => {}
            }
            for l in m.labels {
                assert!(
                    !["order", "order_ref", "saga_id", "event_id"].contains(l),
                    "{} has an unbounded label {l}",
                    m.name
                );
            }
        }
    }
}
