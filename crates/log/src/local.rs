//! Opening a node's local stores: the embedded log's directory and the sled databases
//! beside it (saga state, projections, audit).
//!
//! Each is locked by the process that has it open. A lock can outlive its last handle
//! for a moment: sled releases a database's lock only once its background threads stop,
//! and a process that was just killed holds its locks while the kernel tears it down. So
//! every store waits up to [`LOCK_WAIT`] for its lock before it reports the store as held
//! by someone else; this module is where that rule lives.

use std::time::{Duration, Instant};

/// How long opening a store waits for its lock to be released.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How often a held lock is tried again.
const RETRY: Duration = Duration::from_millis(50);

/// Calls `attempt` until it returns anything other than an error `held` recognises as
/// "the lock is held", or until [`LOCK_WAIT`] has passed; returns the last result.
pub(crate) fn wait_for_lock<T, E>(
    mut attempt: impl FnMut() -> Result<T, E>,
    held: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match attempt() {
            Err(e) if held(&e) && Instant::now() < deadline => std::thread::sleep(RETRY),
            other => return other,
        }
    }
}

/// Opens the sled database `config` describes, waiting for a lock a closing handle of
/// this process (or an exiting process) still holds. After [`LOCK_WAIT`] the lock error
/// is returned: another live process has the database open.
pub fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    wait_for_lock(|| config.open(), is_sled_lock_error)
}

/// Whether sled refused to open a database because its lock file is held. sled reports
/// it only as an I/O error with this message (sled 0.34, `config.rs`).
fn is_sled_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_whose_last_handle_is_still_being_released_opens_once_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let config = sled::Config::new().path(dir.path());
        let db = open_sled(&config).unwrap();
        db.insert(b"k", b"v").unwrap();
        // As sled's own background threads do: a handle that goes a moment after ours.
        let lingering = db.clone();
        drop(db);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(lingering);
        });
        let db = open_sled(&config).expect("the lock is waited for");
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        releaser.join().unwrap();
    }

    #[test]
    fn a_database_another_handle_keeps_open_is_refused_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let config = sled::Config::new().path(dir.path());
        let _held = open_sled(&config).unwrap();
        let started = Instant::now();
        let e = open_sled(&config).unwrap_err();
        assert!(is_sled_lock_error(&e), "{e}");
        assert!(started.elapsed() >= LOCK_WAIT);
    }
}
