use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::*;
use crate::Record;

fn open(dir: &Path) -> Result<EmbeddedLog> {
    EmbeddedLog::open(dir, EmbeddedOptions::default())
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join(SEGMENTS_DIR)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// (start, length) of every frame in a segment file.
fn frames(path: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + FRAME_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos as u64, (FRAME_HEADER + len) as u64));
        pos += FRAME_HEADER + len;
    }
    out
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

/// Creates topic `t` (2 partitions) and appends `n` batches of 5 records each.
fn fill(log: &EmbeddedLog, n: usize) {
    log.ensure_topic("t", 2).unwrap();
    for b in 0..n {
        let records = (0..5).map(|i| Record::keyed("t", format!("k{i}"), format!("b{b}r{i}"))).collect();
        log.append(AppendBatch { records, positions: vec![] }).unwrap();
    }
}

fn total(log: &EmbeddedLog) -> i64 {
    (0..2).map(|p| log.end_offset("t", p).unwrap()).sum()
}

#[test]
fn a_flipped_byte_mid_log_is_corrupt_naming_the_file_and_frame() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()).unwrap(), 10);
    let seg = &segment_files(dir.path())[0];
    let (start, len) = frames(seg)[5];
    flip(seg, start + len / 2);

    match open(dir.path()) {
        Err(Error::Corrupt { path, offset, reason }) => {
            assert_eq!(&path, seg);
            assert_eq!(offset, start);
            assert!(reason.contains("crc32"), "{reason}");
            let msg = Error::Corrupt { path, offset, reason }.to_string();
            assert!(msg.contains(&seg.display().to_string()) && msg.contains(&format!("byte {start}")), "{msg}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_damaged_length_mid_log_is_corrupt_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()).unwrap(), 10);
    let seg = &segment_files(dir.path())[0];
    let (start, _) = frames(seg)[4];
    patch(seg, start, &u32::MAX.to_le_bytes());
    match open(dir.path()) {
        Err(Error::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, start);
            assert!(reason.contains("valid frame follows"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was cut away.
    assert_eq!(frames(seg).len(), 5);
}

#[test]
fn a_torn_last_frame_is_cut_away_and_earlier_batches_survive() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()).unwrap(), 10);
    let seg = &segment_files(dir.path())[0];
    let (last_start, _) = *frames(seg).last().unwrap();
    tear_last_frame(dir.path()).unwrap();

    let log = open(dir.path()).unwrap();
    assert_eq!(total(&log), 9 * 5, "all batches but the torn one must survive");
    assert_eq!(std::fs::metadata(seg).unwrap().len(), last_start, "the torn frame must be cut off");
    let r = log.read("t", 0, 0, 1000).unwrap();
    assert!(r.iter().all(|r| !String::from_utf8_lossy(&r.value).starts_with("b9")));
    // The log keeps working after recovery, and survives another restart.
    fill(&log, 1);
    drop(log);
    assert_eq!(total(&open(dir.path()).unwrap()), 10 * 5);
}

#[test]
fn a_zeroed_tail_is_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()).unwrap(), 3);
    let seg = &segment_files(dir.path())[0];
    let len = std::fs::metadata(seg).unwrap().len();
    patch(seg, len, &[0u8; 4096]);
    let log = open(dir.path()).unwrap();
    assert_eq!(total(&log), 15);
    assert_eq!(std::fs::metadata(seg).unwrap().len(), len);
}

#[test]
fn a_good_crc_over_an_undecodable_payload_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    fill(&open(dir.path()).unwrap(), 2);
    let seg = &segment_files(dir.path())[0];
    let len = std::fs::metadata(seg).unwrap().len();
    let payload = [9u8, 1, 2, 3];
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    patch(seg, len, &frame);
    match open(dir.path()) {
        Err(Error::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, len);
            assert!(reason.contains("unknown frame kind 9"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damage_at_the_end_of_a_non_final_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let small = EmbeddedOptions { segment_bytes: 600, ..EmbeddedOptions::default() };
    fill(&EmbeddedLog::open(dir.path(), small.clone()).unwrap(), 20);
    let files = segment_files(dir.path());
    assert!(files.len() > 2, "expected several segments, got {files:?}");
    let (start, len) = *frames(&files[1]).last().unwrap();
    std::fs::OpenOptions::new().write(true).open(&files[1]).unwrap().set_len(start + len - 1).unwrap();
    match EmbeddedLog::open(dir.path(), small) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!((path, offset), (files[1].clone(), start))
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn segments_roll_and_reads_span_them_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let small = EmbeddedOptions { segment_bytes: 1000, ..EmbeddedOptions::default() };
    let log = EmbeddedLog::open(dir.path(), small.clone()).unwrap();
    fill(&log, 40);
    let files = segment_files(dir.path());
    assert!(files.len() > 5, "expected the log to roll, got {files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 1000, "{} is over segment_bytes", f.display());
    }
    let before: Vec<_> = (0..2).map(|p| log.read("t", p, 0, usize::MAX).unwrap()).collect();
    drop(log);
    let log = EmbeddedLog::open(dir.path(), small).unwrap();
    let after: Vec<_> = (0..2).map(|p| log.read("t", p, 0, usize::MAX).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(after.iter().map(Vec::len).sum::<usize>(), 200);
}

#[test]
fn a_second_open_of_the_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    match open(dir.path()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(log);
    open(dir.path()).expect("the lock must be released when the log is dropped");
}

#[test]
fn interval_and_never_policies_keep_data_across_restart() {
    for fsync in [FsyncPolicy::Interval(Duration::from_millis(5)), FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions { fsync, ..EmbeddedOptions::default() };
        let log = EmbeddedLog::open(dir.path(), options.clone()).unwrap();
        fill(&log, 5);
        std::thread::sleep(Duration::from_millis(20));
        log.flush().unwrap();
        drop(log);
        assert_eq!(total(&EmbeddedLog::open(dir.path(), options).unwrap()), 25, "{fsync:?}");
    }
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    for (topic, partitions) in [("", 1), ("has space", 1), ("ok", 0)] {
        match log.ensure_topic(topic, partitions) {
            Err(Error::InvalidRequest { reason }) => assert!(reason.contains(topic), "{reason}"),
            other => panic!("ensure_topic({topic:?}, {partitions}): {other:?}"),
        }
    }
    log.ensure_topic("ok", 1).unwrap();
    let long_header = Record::keyed("ok", "k", "v").with_header("h".repeat(70_000), "v");
    assert!(matches!(
        log.append(AppendBatch { records: vec![long_header], positions: vec![] }),
        Err(Error::InvalidRequest { .. })
    ));
    assert_eq!(log.end_offset("ok", 0).unwrap(), 0);
    assert!(log.append(AppendBatch::default()).unwrap().is_empty());
    // A negative position is the log's own record of a forgotten group: no caller of
    // `append` may forget another reader's position by mistake.
    let position = |next_offset| crate::Position { group: "g".into(), topic: "ok".into(), partition: 0, next_offset };
    log.append(AppendBatch { records: vec![], positions: vec![position(0)] }).unwrap();
    match log.append(AppendBatch { records: vec![], positions: vec![position(-1)] }) {
        Err(Error::InvalidRequest { reason }) => assert!(reason.contains("forget-group"), "{reason}"),
        other => panic!("a negative position: {other:?}"),
    }
    assert_eq!(log.committed("g", "ok", 0).unwrap(), Some(0), "the position is kept");
}

/// Group commit: appenders on many threads (one partition, so their frames interleave)
/// each get back the offsets their own records have, see their own write when the append
/// returns, and readers see dense offsets in write order and every position; a reopen
/// finds everything.
#[test]
fn concurrent_appends_commit_in_groups_and_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()).unwrap());
    log.ensure_topic("t", 1).unwrap();
    let (threads, appends) = (8, 60);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..appends {
                    let batch = AppendBatch {
                        records: vec![
                            Record::keyed("t", format!("t{t}"), format!("{t}/{i}/a")),
                            Record::keyed("t", format!("t{t}"), format!("{t}/{i}/b")),
                        ],
                        positions: vec![crate::Position {
                            group: format!("g{t}"),
                            topic: "t".into(),
                            partition: 0,
                            next_offset: i,
                        }],
                    };
                    let out = log.append(batch).unwrap();
                    // Published before append returns: a reader sees its own write.
                    assert!(log.end_offset("t", 0).unwrap() > out[1].offset);
                    mine.push((out[0].offset, format!("{t}/{i}/a")));
                    mine.push((out[1].offset, format!("{t}/{i}/b")));
                }
                mine
            })
        })
        .collect();
    let mut expected: Vec<(i64, String)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    expected.sort();
    let check = |log: &dyn EventLog| {
        let records = log.read("t", 0, 0, 10_000).unwrap();
        let got: Vec<(i64, String)> =
            records.iter().map(|r| (r.offset, String::from_utf8(r.value.clone()).unwrap())).collect();
        assert_eq!(got, expected, "every append's offsets hold its own records, densely");
        for t in 0..threads {
            assert_eq!(log.committed(&format!("g{t}"), "t", 0).unwrap(), Some(appends - 1));
        }
    };
    check(log.as_ref());
    drop(log);
    check(&open(dir.path()).unwrap());
}

#[test]
fn readers_waiting_on_their_partitions_follow_concurrent_group_commits_without_a_lost_wake_up() {
    // Appenders write to four partitions while a reader per partition follows it with
    // `wait_for`, and one more with `wait_any` over all four. Each record published wakes
    // only its partition's waiters; a wake-up lost would leave a reader asleep until its
    // (long) timeout, which the bound below would catch.
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()).unwrap());
    log.ensure_topic("t", 4).unwrap();
    let (appenders, appends) = (4, 150);
    let total = (appenders * appends) as i64;
    let started = Instant::now();
    let wait = Duration::from_secs(60);
    let readers: Vec<_> = (0..4)
        .map(|p| {
            let log = log.clone();
            std::thread::spawn(move || {
                let (mut at, mut seen) = (0, 0);
                while seen < total / 4 {
                    at = log.wait_for("t", p, at, wait).unwrap();
                    seen = log.read("t", p, 0, 100_000).unwrap().len() as i64;
                }
                at
            })
        })
        .collect();
    let any = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut ends = [0i64; 4];
            while ends.iter().sum::<i64>() < total {
                let waiting: Vec<(&str, i32, i64)> = (0..4).map(|p| ("t", p, ends[p as usize])).collect();
                log.wait_any(&waiting, wait).unwrap();
                for p in 0..4 {
                    ends[p as usize] = log.end_offset("t", p).unwrap();
                }
            }
        })
    };
    let writers: Vec<_> = (0..appenders)
        .map(|a| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..appends {
                    let p = (a + i) % 4;
                    let record = Record { partition: Some(p), ..Record::keyed("t", "k", format!("{a}/{i}")) };
                    log.append(AppendBatch { records: vec![record], positions: vec![] }).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let ends: Vec<i64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    any.join().unwrap();
    assert_eq!(ends, vec![total / 4; 4], "each reader followed its partition to the end");
    assert!(started.elapsed() < wait / 2, "no reader slept through records published for it");
}

/// The next fsyncs of `log` fail (`false`: they work again).
fn fail_fsync(log: &EmbeddedLog, fail: bool) {
    log.inner.fail_fsync.store(fail, Ordering::SeqCst);
}

fn one_record(log: &EmbeddedLog, value: &str) -> Result<Vec<crate::Appended>> {
    log.append(AppendBatch { records: vec![Record::keyed("t", "k0", value.to_string())], positions: vec![] })
}

/// A failed fsync poisons the log: the append is refused, its record is not published
/// to readers, and every later append is refused, even once fsync works again (the
/// kernel may have dropped the dirty pages, so a later good fsync proves nothing),
/// until a restart lets recovery check the files.
#[test]
fn a_failed_fsync_refuses_that_append_and_every_later_one_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    fill(&log, 2);
    assert_eq!(total(&log), 10);
    fail_fsync(&log, true);
    let err = one_record(&log, "unsynced").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "the failed fsync itself: {err}");
    assert_eq!(total(&log), 10, "a record no fsync covers is not published");
    fail_fsync(&log, false);
    let err = one_record(&log, "after").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(message.contains("fsync of") && message.contains("restart the process"), "{message}");
    assert!(log.flush().is_err(), "flush is refused too: {:?}", log.flush());
    assert_eq!(total(&log), 10, "readers keep what was durable");
    drop(log);
    // Recovery keeps every whole frame: the refused append's bytes were written and only
    // their fsync failed, so its record may come back. Its writer was told it failed and
    // must treat it as unknown (the coordinator's appends are idempotent on their keys).
    let log = open(dir.path()).unwrap();
    let after_restart = total(&log);
    assert!(after_restart == 10 || after_restart == 11, "{after_restart}");
    one_record(&log, "after restart").unwrap();
    assert_eq!(total(&log), after_restart + 1);
}

/// Appenders waiting on a group commit whose fsync fails are all told, none is left
/// waiting, and none of their records is published.
#[test]
fn every_appender_of_a_failed_group_commit_is_told_and_none_waits() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()).unwrap());
    fill(&log, 1);
    fail_fsync(&log, true);
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Arc::new(std::sync::Barrier::new(8));
    for i in 0..8 {
        let (log, tx, start) = (log.clone(), tx.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            tx.send(one_record(&log, &format!("v{i}")).map(|_| ())).unwrap()
        });
    }
    drop(tx);
    for _ in 0..8 {
        let result = rx.recv_timeout(Duration::from_secs(20)).expect("every appender returns");
        assert!(result.is_err(), "no append is acknowledged after a failed fsync");
    }
    assert_eq!(total(&log), 5, "nothing of the failed group is published");
}

/// Under `Interval`, the background flusher's failed fsync poisons the log: the next
/// append is refused with the reason.
#[test]
fn a_failed_background_fsync_refuses_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { fsync: FsyncPolicy::Interval(Duration::from_millis(5)), ..Default::default() };
    let log = EmbeddedLog::open(dir.path(), options).unwrap();
    fill(&log, 1);
    fail_fsync(&log, true);
    one_record(&log, "dirty").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match one_record(&log, "next") {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(_) => panic!("the flusher's failed fsync never refused an append"),
        }
    };
    assert!(err.to_string().contains("restart the process"), "{err}");
}
