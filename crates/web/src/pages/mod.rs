//! One file per page family. Each handler finds who is asking ([`crate::Web::me`]),
//! calls the control plane's services on their behalf, and renders HTML ([`crate::html`]).

pub mod audit;
pub mod dashboard;
pub mod exceptions;
pub mod inbox;
pub mod orders;
pub mod reconcile;
pub mod signin;

use std::collections::HashMap;

/// A form or query value, trimmed; empty when absent.
pub(crate) fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map(|s| s.trim()).unwrap_or("")
}

/// Micros since the epoch, now.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
