//! Builders shared by Waybill's tests, so a test reads as the business story it tells and
//! every crate's tests build the same events the same way.
//!
//! - [`inbound`]: inbound events as the source systems send them (Odoo, the warehouse,
//!   the carrier, finance, operators through the control plane), with ids derived from
//!   their business keys and a fixed occurrence time ([`inbound::at_now`] for tests
//!   against a running node);
//! - [`journal`]: saga journal events, commands and dead letters as the coordinator
//!   writes them, and the complete order-to-fulfillment history of a numbered order;
//! - [`purchase`]: procure-to-receive events (purchase orders, notices, receipts, vendor
//!   bills), keyed by the purchase order.
//!
//! This crate only builds values: no I/O, no assertions, and no dependency on a crate
//! under test other than `waybill-domain`. It is a dev-dependency and is never published.

pub mod inbound;
pub mod journal;
pub mod purchase;
