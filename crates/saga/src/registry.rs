//! The registered flows: one line each in `flows!` below. The coordinator, the state
//! store and the metrics work on [`AnyFlow`], so a flow registered here is consumed,
//! decided, timed, watched, retried, replayed, stored and restored with no other change.
//!
//! A correlation key belongs to the first registered flow whose [`Flow::owns`] accepts
//! it; the last one (orders) takes every key no other flow claims, so flows with their
//! own key space (`po:…`, `stmt:…`, `recon:…`) are listed before it.

use waybill_domain::{InboundEvent, JournalEvent, Timestamp};

use crate::cash::StatementFlow;
use crate::decision::Cause;
use crate::flow::{self, Env, Flow, OrderFlow, ReplayRecord, Step};
use crate::procurement::PurchaseFlow;
use crate::reconcile::ReconcileFlow;
use crate::saga::Lifecycle;
use crate::watch::Stall;

macro_rules! flows {
    ($($variant:ident($flow:ty)),+ $(,)?) => {
        /// The state of one correlation key, whichever flow it belongs to (boxed: flows
        /// differ in size, and a worker keeps thousands of them).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum AnyFlow {
            $(
                #[doc = concat!("A [`", stringify!($flow), "`].")]
                $variant(Box<$flow>),
            )+
        }

        impl AnyFlow {
            /// A new, empty flow for `key`, of the flow that owns the key.
            pub fn new(key: &str) -> Self {
                $(if <$flow as Flow>::owns(key) {
                    return AnyFlow::$variant(Box::new(<$flow as Flow>::create(key)));
                })+
                unreachable!("the last registered flow owns every key")
            }

            /// The stored state of `key` (as [`AnyFlow::encode`] wrote it).
            pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, serde_json::Error> {
                $(if <$flow as Flow>::owns(key) {
                    return serde_json::from_slice::<$flow>(bytes).map(|f| AnyFlow::$variant(Box::new(f)));
                })+
                unreachable!("the last registered flow owns every key")
            }

            /// The state to store: the flow's own shape (its key says which flow it is).
            pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
                match self { $(AnyFlow::$variant(f) => serde_json::to_vec(f.as_ref()),)+ }
            }

            /// What the flow's record is (`order`, `purchase order`, `system health`…).
            pub fn family(&self) -> &'static str {
                match self { $(AnyFlow::$variant(f) => f.family(),)+ }
            }

            /// The saga id of the flow's home saga (`o2f:SO1`, `p2r:P00042`): what an
            /// operator's action on the whole flow names.
            pub fn home_saga_id(&self) -> String {
                match self { $(AnyFlow::$variant(f) => f.saga_id(&f.home()),)+ }
            }

            /// The correlation key.
            pub fn key(&self) -> &str {
                match self { $(AnyFlow::$variant(f) => f.key(),)+ }
            }

            /// Decides an inbound event ([`flow::step`]).
            pub fn step(&mut self, event: &InboundEvent, env: &Env<'_>, cause: &Cause) -> Step {
                match self { $(AnyFlow::$variant(f) => flow::step(f.as_mut(), event, env, cause),)+ }
            }

            /// Fires the timers due at `cause.at` ([`flow::tick`]).
            pub fn tick(&mut self, env: &Env<'_>, cause: &Cause) -> Step {
                match self { $(AnyFlow::$variant(f) => flow::tick(f.as_mut(), env, cause),)+ }
            }

            /// An operator's replay of the records read for it ([`flow::replay`]).
            pub fn replay(
                &mut self,
                request_id: &str,
                request: &waybill_domain::event::ReplayRequest,
                records: &[ReplayRecord],
                env: &Env<'_>,
                cause: &Cause,
            ) -> Step {
                match self {
                    $(AnyFlow::$variant(f) => flow::replay(f.as_mut(), request_id, request, records, env, cause),)+
                }
            }

            /// Folds one journal event ([`flow::apply`]).
            pub fn apply(&mut self, event: &JournalEvent) {
                match self { $(AnyFlow::$variant(f) => flow::apply(f.as_mut(), event),)+ }
            }

            /// The earliest pending timer ([`flow::next_deadline`]).
            pub fn next_deadline(&self) -> Option<Timestamp> {
                match self { $(AnyFlow::$variant(f) => flow::next_deadline(f.as_ref()),)+ }
            }

            /// True when every saga of the flow has finished.
            pub fn is_finished(&self) -> bool {
                match self { $(AnyFlow::$variant(f) => flow::is_finished(f.as_ref()),)+ }
            }

            /// When a finished flow last changed ([`flow::finished_at`]).
            pub fn finished_at(&self) -> Option<Timestamp> {
                match self { $(AnyFlow::$variant(f) => flow::finished_at(f.as_ref()),)+ }
            }

            /// Whether the flow is retired once finished ([`Flow::retires`]).
            pub fn retires(&self) -> bool {
                match self { $(AnyFlow::$variant(f) => f.retires(),)+ }
            }

            /// True once any saga of the flow has begun ([`flow::has_begun`]).
            pub fn has_begun(&self) -> bool {
                match self { $(AnyFlow::$variant(f) => flow::has_begun(f.as_ref()),)+ }
            }

            /// Journals the flow's retirement on its home saga ([`flow::retire`]).
            pub fn retire(&mut self, finished_at: Timestamp, retention_secs: i64, cause: &Cause) -> Step {
                match self { $(AnyFlow::$variant(f) => flow::retire(f.as_mut(), finished_at, retention_secs, cause),)+ }
            }

            /// Sagas that stalled silently ([`flow::stalls`]).
            pub fn stalls(&self) -> Vec<Stall> {
                match self { $(AnyFlow::$variant(f) => flow::stalls(f.as_ref()),)+ }
            }

            /// Where a journal event of this flow stands in its saga's life ([`crate::Saga::lifecycle`]).
            pub fn lifecycle(&self, event: &JournalEvent) -> Option<Lifecycle> {
                match self {
                    $(AnyFlow::$variant(f) => f.target_of_event(event).and_then(|t| f.saga(&t)).and_then(|s| s.lifecycle(&event.body)),)+
                }
            }

            /// The business stage a journal event ends, with when it began ([`Flow::stage`]).
            pub fn stage(&self, event: &JournalEvent) -> Option<(&'static str, Timestamp)> {
                match self { $(AnyFlow::$variant(f) => f.stage(event),)+ }
            }
        }
    };
}

// Each registered flow, one line; a flow with its own key prefix goes above `Order`.
flows! {
    Purchase(PurchaseFlow),
    Reconcile(ReconcileFlow),
    Statement(StatementFlow),
    Order(OrderFlow),
}
