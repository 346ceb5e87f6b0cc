//! Saga policy: the timing and business settings that decisions depend on.

use serde::{Deserialize, Serialize};

/// Settings for the order-to-fulfillment saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FulfillmentPolicy {
    /// Seconds the warehouse has, from release, to confirm the pick before a
    /// `PICK_OVERDUE` exception is raised.
    pub pick_timeout_secs: f64,
}

impl Default for FulfillmentPolicy {
    fn default() -> Self {
        FulfillmentPolicy { pick_timeout_secs: 4.0 * 3600.0 }
    }
}

/// All saga settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Order to fulfillment.
    pub fulfillment: FulfillmentPolicy,
}
