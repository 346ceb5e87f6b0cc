//! The conformance suite against [`EmbeddedLog`], one test per check.

use std::path::PathBuf;
use std::sync::Arc;

use tempfile::TempDir;
use waybill_log::EventLog;
use waybill_log::embedded::{self, EmbeddedLog, EmbeddedOptions};
use waybill_log::testing::conformance::{self, CrashHarness, Harness};

/// A log in a temporary directory; reopening opens the same directory.
struct Embedded {
    dir: TempDir,
    options: EmbeddedOptions,
}

impl Embedded {
    fn new() -> Self {
        Embedded { dir: tempfile::tempdir().unwrap(), options: EmbeddedOptions::default() }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Harness for Embedded {
    fn open(&mut self) -> Arc<dyn EventLog> {
        Arc::new(EmbeddedLog::open(&self.path(), self.options.clone()).unwrap())
    }
}

impl CrashHarness for Embedded {
    fn crash_during_write(&mut self) {
        embedded::tear_last_frame(&self.path()).unwrap();
    }
}

macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                conformance::$check(&mut Embedded::new());
            }
        )*
    };
}

checks!(
    ordering_per_key,
    atomic_batch_with_positions,
    restart_durability,
    offsets_dense_from_zero,
    read_past_end_is_error,
    unknown_topic_is_error,
    partition_mismatch_is_error,
    wait_for_wakes_on_append,
    wait_any_wakes_on_any_partition,
    concurrent_appenders_keep_per_key_order,
    headers_round_trip,
);

#[test]
fn torn_write_never_exposes_half_a_batch() {
    conformance::torn_write_never_exposes_half_a_batch(&mut Embedded::new());
}

/// All checks on one log, with small segments so the suite also crosses segment files.
#[test]
fn run_all_on_one_log_with_small_segments() {
    let mut h = Embedded::new();
    h.options.segment_bytes = 16 * 1024;
    conformance::run_all_with_crashes(&mut h);
}
