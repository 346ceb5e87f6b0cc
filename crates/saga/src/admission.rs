//! Who may send what: the rule every inbound event passes before a saga sees it
//! (DESIGN.md invariants 6 and 9). One rule, two callers: the coordinator, for records it
//! reads from the log (the topic is the sender), and HTTP ingestion, for bodies posted by
//! an authenticated caller (the caller's system is the sender), so a refusal reads the
//! same whichever way an event came in.
//!
//! - **Control events have one way in.** Approvals, rejections and workbench actions carry
//!   who acted and in which role; they are decided only when read from `waybill.control`,
//!   which only the control plane writes. Anywhere else they are `forbidden`.
//! - **Systems own their events.** Each business event type has one system of record
//!   ([`Ownership`]); the same event from any other system is refused (`ownership`).
//!
//! Pure: no I/O, no clock. The callers dead-letter what this refuses and count it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waybill_domain::{EventBody, InboundEvent, System, topic};

use crate::decision::{DeadLetter, DeadLetterKind};

/// Where an event came from, as far as Waybill can vouch for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `waybill.control`: written only by the control plane.
    Control,
    /// `waybill.inbound.<system>` on the log.
    Inbound(System),
    /// HTTP ingestion, by a caller authenticated as that system (or, where anonymous
    /// posts are allowed, claiming it).
    Ingestion(System),
}

impl Channel {
    /// The channel of a coordinator input topic; `None` for any other topic.
    pub fn of_topic(name: &str) -> Option<Channel> {
        if name == topic::CONTROL {
            return Some(Channel::Control);
        }
        topic::inbound_system(name).map(Channel::Inbound)
    }

    fn describe(self) -> String {
        match self {
            Channel::Control => format!("on {}", topic::CONTROL),
            Channel::Inbound(s) => format!("on {}", topic::inbound(s)),
            Channel::Ingestion(s) => format!("through ingestion as system {s}"),
        }
    }
}

/// Why an event was refused: the dead letter to write, plus the ownership violation to
/// count when that was the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Kind and reason for the dead-letter topic.
    pub dead_letter: DeadLetter,
    /// `(sending system, event type)` when a system sent an event it does not own.
    pub ownership: Option<(System, &'static str)>,
}

/// The system of record for each business event type. Configured as
/// `[policy.ownership]` with entries `<EventType> = "<system>"` that override the
/// defaults ([`Ownership::DEFAULTS`]): Odoo owns orders, cancellations and return
/// authorisations, purchase orders and the validation of receipts; the warehouse
/// reservations, releases, picks, goods issue, return receipts, the suppliers' shipping
/// notices (which it receives by EDI or from the supplier portal) and purchase receipts;
/// the carrier bookings and delivery; finance invoice and credit-note postings, vendor
/// bills and the journal entries of statement lines; the bank (its importer) statements.
///
/// Delivery outcomes (`CommandFailed`, `TargetUnavailable`, `TargetRecovered`,
/// [`EventBody::TARGET_REPORT_NAMES`]) are owned by the system they report about — the
/// command's target — so each system's connector may report only its own refusals and
/// outages. That rule is not configurable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ownership(pub BTreeMap<String, String>);

impl Ownership {
    /// The built-in owners, by event type.
    pub const DEFAULTS: [(&'static str, System); 27] = [
        ("OrderReleased", System::Odoo),
        ("OrderCancelled", System::Odoo),
        ("ReturnAuthorized", System::Odoo),
        ("StockReserved", System::Wms),
        ("ReleasedToWarehouse", System::Wms),
        ("PickConfirmed", System::Wms),
        ("GoodsIssued", System::Wms),
        ("ReturnReceived", System::Wms),
        ("CarrierBooked", System::Carrier),
        ("Delivered", System::Carrier),
        ("InvoicePosted", System::Finance),
        ("InvoiceRejected", System::Finance),
        ("CreditNoteIssued", System::Finance),
        ("CreditNoteRejected", System::Finance),
        ("PurchaseOrderConfirmed", System::Odoo),
        ("PurchaseOrderClosed", System::Odoo),
        ("ReceiptValidated", System::Odoo),
        ("ShipNoticeReceived", System::Wms),
        ("GoodsReceived", System::Wms),
        ("ReceiptCancelled", System::Wms),
        ("VendorBillReceived", System::Finance),
        ("VendorBillPosted", System::Finance),
        ("VendorBillRejected", System::Finance),
        ("VendorCreditNoteIssued", System::Finance),
        ("StatementReceived", System::Bank),
        ("StatementLinePosted", System::Finance),
        ("StatementLineRejected", System::Finance),
    ];

    /// The owner of event type `name`: the configured one, else the default; `None` for
    /// control events and unknown names.
    pub fn owner(&self, name: &str) -> Option<System> {
        if let Some(s) = self.0.get(name) {
            return s.parse().ok();
        }
        Self::DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// Every business event type with its owner, configured entries applied.
    pub fn table(&self) -> Vec<(&'static str, System)> {
        Self::DEFAULTS.iter().map(|(n, d)| (*n, self.owner(n).unwrap_or(*d))).collect()
    }

    /// The owner of `event`: for a delivery outcome the target it names, else
    /// [`Ownership::owner`] of its type.
    pub fn owner_of(&self, event: &EventBody) -> Option<System> {
        event.reported_target().or_else(|| self.owner(event.name()))
    }

    /// Checks the configured entries: known business event types, owned by a system that
    /// has an inbound topic.
    pub fn validate(&self) -> Result<(), String> {
        for (name, system) in &self.0 {
            if EventBody::TARGET_REPORT_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "{name} is owned by the system it names as target (a connector reports only its own system's refusals and outages); remove it from policy.ownership"
                ));
            }
            if EventBody::CONTROL_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "{name} is a control event: only the control plane sends it, so it has no owning system; remove it from policy.ownership"
                ));
            }
            if !Self::DEFAULTS.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = Self::DEFAULTS.iter().map(|(n, _)| *n).collect();
                return Err(format!("{name:?} is not an event type; use one of {}", known.join(", ")));
            }
            let ok = system.parse::<System>().ok().filter(|s| topic::INBOUND_SYSTEMS.contains(s));
            if ok.is_none() {
                let systems: Vec<&str> = topic::INBOUND_SYSTEMS.iter().map(|s| s.as_str()).collect();
                return Err(format!(
                    "policy.ownership.{name} = {system:?} is not a system that sends events; use one of {}",
                    systems.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Admits `event`, arriving through `channel`, or says why not.
pub fn admit(event: &InboundEvent, channel: Channel, ownership: &Ownership) -> Result<(), Refusal> {
    let name = event.body.name();
    let claimed = &event.meta.source;
    let forbidden = |reason: String| Refusal {
        dead_letter: DeadLetter { kind: DeadLetterKind::Forbidden, reason },
        ownership: None,
    };
    match channel {
        Channel::Control if event.body.is_control() => Ok(()),
        Channel::Control => Err(forbidden(format!(
            "{name} (event {}, claimed source {claimed}) was written to {}, which carries only the control plane's decisions and workbench actions; a system sends {name} to its own inbound topic",
            event.meta.event_id,
            topic::CONTROL
        ))),
        Channel::Inbound(_) | Channel::Ingestion(_) if event.body.is_control() => Err(forbidden(format!(
            "{name} (event {}, claimed source {claimed}) arrived {}: approvals, rejections and workbench actions are decided only when read from {}, which only the control plane writes; decide through the control plane (gRPC or `waybill approvals`) as an authenticated person",
            event.meta.event_id,
            channel.describe(),
            topic::CONTROL
        ))),
        Channel::Inbound(system) | Channel::Ingestion(system) => match ownership.owner_of(&event.body) {
            Some(owner) if owner == system => Ok(()),
            owner => {
                let what = if event.body.reported_target().is_some() {
                    format!(
                        "{name} names target {}; a system reports only the refusals and outages of commands addressed to it, so send it from the connector of {}",
                        owner.map_or("none", System::as_str),
                        owner.map_or("none", System::as_str)
                    )
                } else {
                    "Send it from the system of record, or change the owner in policy.ownership".to_string()
                };
                Err(Refusal {
                    dead_letter: DeadLetter {
                        kind: DeadLetterKind::Ownership,
                        reason: format!(
                            "system {system} does not own {name} (owner: {}); event {} (claimed source {claimed}) arrived {}. {what}",
                            owner.map_or("none", System::as_str),
                            event.meta.event_id,
                            channel.describe()
                        ),
                    },
                    ownership: Some((system, name)),
                })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use waybill_domain::event::{PostingDecision, ReleasedToWarehouse};
    use waybill_domain::{EventMeta, SourceRef, Timestamp};

    use super::*;

    fn event(source: System, body: EventBody) -> InboundEvent {
        InboundEvent {
            meta: EventMeta {
                event_id: "e1".into(),
                source: SourceRef::new(source, "x"),
                correlation_key: "SO1".into(),
                occurred_at: Timestamp(0),
                actor: None,
            },
            body,
        }
    }

    fn approval() -> EventBody {
        EventBody::PostingApproved(PostingDecision {
            order_ref: "SO1".into(),
            posting_id: "inv:SH1".into(),
            expected_version: 1,
            actor: "mallory".into(),
            reason: "forged".into(),
            role: "admin".into(),
        })
    }

    fn released() -> EventBody {
        EventBody::ReleasedToWarehouse(ReleasedToWarehouse { order_ref: "SO1".into(), wms_order_id: "W1".into() })
    }

    #[test]
    fn control_events_only_from_the_control_topic() {
        let own = Ownership::default();
        for claimed in [System::Odoo, System::Operator, System::Waybill] {
            let e = event(claimed, approval());
            let r = admit(&e, Channel::Inbound(System::Odoo), &own).unwrap_err();
            assert_eq!(r.dead_letter.kind, DeadLetterKind::Forbidden);
            assert!(r.dead_letter.reason.contains("arrived on waybill.inbound.odoo"), "{}", r.dead_letter.reason);
            assert!(r.dead_letter.reason.contains(&format!("{claimed}:x")), "{}", r.dead_letter.reason);
            assert_eq!(r.ownership, None);
        }
        assert!(admit(&event(System::Operator, approval()), Channel::Control, &own).is_ok());
        let r = admit(&event(System::Odoo, approval()), Channel::Ingestion(System::Odoo), &own).unwrap_err();
        assert!(r.dead_letter.reason.contains("arrived through ingestion as system odoo"), "{}", r.dead_letter.reason);
        let r = admit(&event(System::Wms, released()), Channel::Control, &own).unwrap_err();
        assert_eq!(r.dead_letter.kind, DeadLetterKind::Forbidden);
    }

    #[test]
    fn a_system_sends_only_what_it_owns() {
        let own = Ownership::default();
        assert!(admit(&event(System::Wms, released()), Channel::Inbound(System::Wms), &own).is_ok());
        let r = admit(&event(System::Odoo, released()), Channel::Inbound(System::Odoo), &own).unwrap_err();
        assert_eq!(r.dead_letter.kind, DeadLetterKind::Ownership);
        assert_eq!(r.ownership, Some((System::Odoo, "ReleasedToWarehouse")));
        assert!(r.dead_letter.reason.starts_with("system odoo does not own ReleasedToWarehouse (owner: wms)"));
        // The owner can be changed in configuration.
        let moved = Ownership([("ReleasedToWarehouse".to_string(), "odoo".to_string())].into());
        assert!(moved.validate().is_ok());
        assert!(admit(&event(System::Odoo, released()), Channel::Inbound(System::Odoo), &moved).is_ok());
        assert!(admit(&event(System::Wms, released()), Channel::Inbound(System::Wms), &moved).is_err());
    }

    #[test]
    fn ownership_entries_are_checked() {
        let bad = |k: &str, v: &str| Ownership([(k.to_string(), v.to_string())].into()).validate().unwrap_err();
        assert!(bad("PostingApproved", "odoo").contains("control event"));
        assert!(bad("Shipped", "wms").contains("not an event type"));
        assert!(bad("GoodsIssued", "operator").contains("not a system that sends events"));
        assert!(bad("CommandFailed", "odoo").contains("owned by the system it names as target"));
        // Every business event has an owner: by type, or (delivery outcomes) the target it
        // names; control events have none.
        for event in waybill_schema::samples::events() {
            let name = event.body.name();
            let owner = Ownership::default().owner_of(&event.body);
            assert_eq!(owner.is_none(), EventBody::CONTROL_NAMES.contains(&name), "{name}");
            let by_type = Ownership::default().owner(name).is_some();
            assert_eq!(
                by_type,
                !EventBody::CONTROL_NAMES.contains(&name) && !EventBody::TARGET_REPORT_NAMES.contains(&name),
                "{name}"
            );
        }
    }

    #[test]
    fn a_system_reports_only_its_own_refusals_and_outages() {
        let own = Ownership::default();
        let failed = |target: System| {
            EventBody::CommandFailed(waybill_domain::event::CommandFailed {
                saga_id: "o2f:SO1".into(),
                idempotency_key: "confirm-shipment:SH1".into(),
                command: "ConfirmShipment".into(),
                target,
                reason: "ValidationError".into(),
                attempts: 1,
            })
        };
        assert!(admit(&event(System::Odoo, failed(System::Odoo)), Channel::Inbound(System::Odoo), &own).is_ok());
        assert!(admit(&event(System::Wms, failed(System::Wms)), Channel::Ingestion(System::Wms), &own).is_ok());
        let r = admit(&event(System::Wms, failed(System::Odoo)), Channel::Inbound(System::Wms), &own).unwrap_err();
        assert_eq!(r.dead_letter.kind, DeadLetterKind::Ownership);
        assert_eq!(r.ownership, Some((System::Wms, "CommandFailed")));
        assert!(
            r.dead_letter.reason.starts_with("system wms does not own CommandFailed (owner: odoo)"),
            "{}",
            r.dead_letter.reason
        );
        assert!(r.dead_letter.reason.contains("send it from the connector of odoo"), "{}", r.dead_letter.reason);
        let down = |target: System| {
            EventBody::TargetUnavailable(waybill_domain::event::TargetOutage {
                target,
                since: Timestamp(0),
                reason: "connection refused".into(),
            })
        };
        assert!(admit(&event(System::Finance, down(System::Finance)), Channel::Inbound(System::Finance), &own).is_ok());
        assert!(
            admit(&event(System::Carrier, down(System::Finance)), Channel::Inbound(System::Carrier), &own).is_err()
        );
        // Not a control event: refused on the control topic like any business event.
        assert!(admit(&event(System::Odoo, down(System::Odoo)), Channel::Control, &own).is_err());
    }

    #[test]
    fn channels_of_the_coordinator_inputs() {
        assert_eq!(Channel::of_topic("waybill.control"), Some(Channel::Control));
        assert_eq!(Channel::of_topic("waybill.inbound.wms"), Some(Channel::Inbound(System::Wms)));
        assert_eq!(Channel::of_topic("waybill.journal"), None);
    }
}
