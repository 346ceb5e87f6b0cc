//! The dead-letter topic for the `waybill` binary: listing and replay are the control
//! plane's ([`waybill_control::dead_letters`]), which serves them while the server runs;
//! `waybill dlq --data-dir` uses the same functions on a stopped server's log.

pub use waybill_control::dead_letters::{DeadLetter, REPLAY_GROUP, list, replay};
