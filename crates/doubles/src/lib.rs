//! Test doubles for the systems Waybill talks to, served over real HTTP on loopback.
//!
//! **A test double, not for production.** Nothing here persists, authenticates seriously
//! or scales; it exists so connector tests and the demo (`make run`) exercise real HTTP
//! against something that refuses what the real system refuses.
//!
//! Two doubles:
//!
//! - [`odoo::OdooDouble`] — Odoo 17/18/19 over JSON-RPC (`POST /jsonrpc`) and, for 19,
//!   JSON-2 (`POST /json/2/<model>/<method>`), with the business rules that `ODOO.md`
//!   (the team's notes on Odoo's external API) lists as the ones a faithful double must
//!   enforce:
//!   - errors in Odoo's shapes: JSON-RPC answers HTTP 200 with `error.code` 200 up to 18.0
//!     and 0 from saas-18.1 on (100 = session expired), `data.name` the Python exception;
//!     JSON-2 answers real statuses (401 bad key, 404 unknown model or method, 422 bad
//!     arguments and `UserError`/`ValidationError`, 403 access, 500 otherwise) with body
//!     `{name, message, arguments, context, debug}`, as Odoo 19's `Json2Dispatcher` does;
//!   - `authenticate` answers `false` (no error) on bad credentials; private methods
//!     (`_…`) are an `AccessError`; many2one fields read as `[id, "display name"]`;
//!   - `sale.order` named `S00001`…, `action_confirm` only from draft/sent, confirming
//!     creates the outgoing picking; `action_cancel` on a confirmed order returns the
//!     `sale.order.cancel` wizard and changes nothing unless `disable_cancel_warning`;
//!   - `stock.picking.button_validate` refuses no quantities and missing lots, a serial has
//!     quantity 1, lot names are unique per product; less than ordered returns the
//!     `stock.backorder.confirmation` wizard unless `skip_backorder`, and that wizard acts
//!     only when its context carries `button_validate_picking_ids`;
//!   - returns only from done pickings with a non-zero quantity;
//!   - `account.move` numbered at posting, "The entry … must be in draft." when posted
//!     twice, no lines or no customer refused, a posted move never deleted, credit notes
//!     through `account.move.reversal` carrying `reversed_entry_id`, payments through
//!     `account.payment.register`;
//!   - `write_date` from a logical clock the test controls.
//! - [`http_target::HttpTarget`] — the warehouse, carrier, finance and bank APIs as one
//!   generic command endpoint: HMAC-SHA256 signature check, idempotency by
//!   `Idempotency-Key`, and a caller-supplied behaviour deciding each answer.
//!
//! Both share [`faults`]: slow answers, error statuses, `Retry-After`, dropped
//! connections, commit-then-drop ("outcome unknown"), down/up, and a request log with
//! arrival instants.

pub mod faults;
pub mod http_target;
pub mod odoo;
mod serve;
pub mod stock;

/// Why a double could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding `127.0.0.1:0` failed; is the loopback interface up?
    #[error("could not bind a loopback port for the double: {0}")]
    Bind(#[source] std::io::Error),
    /// The double's runtime or thread could not be created.
    #[error("could not start the double's runtime thread: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Result of starting a double.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use faults::{DownMode, Fault, FaultId, Match, RequestRecord, Times, Transport, max_in_window};
