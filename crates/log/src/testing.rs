//! Test support for [`EventLog`](crate::EventLog) backends and the layers above them
//! (feature `test-util`): the conformance suite, and fault injection ([`faults`]).

/// The conformance suite every [`EventLog`] backend must pass.
///
/// A backend's test file implements [`Harness`] and calls [`run_all`], or each check on
/// its own (one `#[test]` per check reads better in test output). Every check creates
/// topics with unique names, so checks can share one log (one directory, one broker);
/// each opens the log through the harness and drops it before returning. A failed check
/// panics with a message saying what the backend got wrong.
pub mod conformance {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::thread;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use crate::{AppendBatch, Error, EventLog, Offset, Position, Record, partition_for};

    /// How the suite opens and restarts the backend under test.
    pub trait Harness {
        /// Opens (or reopens after a restart) the log under test.
        fn open(&mut self) -> Arc<dyn EventLog>;
    }

    /// A harness that can crash the backend part-way through writing a batch, for a
    /// backend that writes its own storage and promises that a batch survives a crash
    /// whole or not at all (the embedded log: one frame per batch, cut off on recovery).
    ///
    /// The Kafka backend has no such harness on purpose. Its storage is the broker's: a
    /// client crash cannot tear a record the broker has accepted, and without
    /// transactions a batch spread over partitions *can* be cut short (some partitions
    /// written, others not) — `Capabilities::atomic_batches` is `false` there, and the
    /// coordinator copes through the journal range each `Checkpoint` names (see
    /// ARCHITECTURE.md, invariant 2). The torn-write check would either test nothing or
    /// assert a promise Kafka does not make.
    pub trait CrashHarness: Harness {
        /// Simulates a crash of the process while a batch was being written, leaving a
        /// torn write behind (embedded: truncate the tail of the last segment part-way
        /// through the last frame). Called with no log open.
        fn crash_during_write(&mut self);
    }

    /// A check of the suite.
    type Check = fn(&mut dyn Harness);

    /// Runs every check every backend must pass, in order, on one harness.
    pub fn run_all(h: &mut dyn Harness) {
        let checks: [(&str, Check); 11] = [
            ("ordering_per_key", ordering_per_key),
            ("atomic_batch_with_positions", atomic_batch_with_positions),
            ("restart_durability", restart_durability),
            ("offsets_dense_from_zero", offsets_dense_from_zero),
            ("read_past_end_is_error", read_past_end_is_error),
            ("unknown_topic_is_error", unknown_topic_is_error),
            ("partition_mismatch_is_error", partition_mismatch_is_error),
            ("wait_for_wakes_on_append", wait_for_wakes_on_append),
            ("wait_any_wakes_on_any_partition", wait_any_wakes_on_any_partition),
            ("concurrent_appenders_keep_per_key_order", concurrent_appenders_keep_per_key_order),
            ("headers_round_trip", headers_round_trip),
        ];
        for (name, check) in checks {
            eprintln!("conformance: {name}");
            check(h);
        }
    }

    /// [`run_all`], then the checks that crash the backend mid-write.
    pub fn run_all_with_crashes(h: &mut dyn CrashHarness) {
        run_all(h);
        eprintln!("conformance: torn_write_never_exposes_half_a_batch");
        torn_write_never_exposes_half_a_batch(h);
    }

    /// A topic name no other check (or earlier test run against the same broker) uses.
    fn unique_topic(check: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("conformance.{check}.{}-{nanos:x}-{n}", std::process::id())
    }

    fn create(log: &dyn EventLog, check: &str, partitions: u32) -> String {
        let topic = unique_topic(check);
        log.ensure_topic(&topic, partitions)
            .unwrap_or_else(|e| panic!("ensure_topic({topic:?}, {partitions}) failed: {e}"));
        topic
    }

    fn append(log: &dyn EventLog, batch: AppendBatch) -> Vec<crate::Appended> {
        let n = batch.records.len();
        let out = log.append(batch).unwrap_or_else(|e| panic!("append failed: {e}"));
        assert_eq!(out.len(), n, "append must say where each of the {n} records landed");
        out
    }

    fn batch(records: Vec<Record>) -> AppendBatch {
        AppendBatch { records, positions: Vec::new() }
    }

    /// Every record of a partition, read in chunks of `chunk`.
    fn read_all(log: &dyn EventLog, topic: &str, partition: i32) -> Vec<crate::StoredRecord> {
        let mut out = Vec::new();
        loop {
            let from = out.len() as Offset;
            let got = log
                .read(topic, partition, from, 97)
                .unwrap_or_else(|e| panic!("read({topic}, {partition}, {from}) failed: {e}"));
            if got.is_empty() {
                break;
            }
            out.extend(got);
        }
        for (i, r) in out.iter().enumerate() {
            assert_eq!(
                (r.topic.as_str(), r.partition, r.offset),
                (topic, partition, i as Offset),
                "read of {topic}/{partition} returned a record out of place"
            );
        }
        out
    }

    fn position(group: &str, topic: &str, partition: i32, next_offset: Offset) -> Position {
        Position { group: group.to_owned(), topic: topic.to_owned(), partition, next_offset }
    }

    /// Records of many keys, interleaved across batches, come back in append order per
    /// key, each in the partition [`partition_for`] picks.
    pub fn ordering_per_key(h: &mut dyn Harness) {
        let log = h.open();
        let partitions = 4;
        let topic = create(&*log, "ordering", partitions);
        let keys: Vec<String> = (0..23).map(|k| format!("order-{k}")).collect();
        let mut sent: HashMap<String, Vec<String>> = HashMap::new();
        for b in 0..20 {
            let mut records = Vec::new();
            for (k, key) in keys.iter().enumerate() {
                if (b + k) % 3 == 0 {
                    continue;
                }
                let value = format!("{key}#{b}");
                sent.entry(key.clone()).or_default().push(value.clone());
                records.push(Record::keyed(&topic, key.as_bytes(), value.into_bytes()));
            }
            let out = append(&*log, batch(records.clone()));
            for (r, a) in records.iter().zip(&out) {
                assert_eq!(
                    a.partition,
                    partition_for(&r.key, partitions),
                    "a record keyed {:?} went to partition {} instead of the key's hash partition",
                    String::from_utf8_lossy(&r.key),
                    a.partition
                );
            }
        }
        let mut got: HashMap<String, Vec<String>> = HashMap::new();
        for p in 0..partitions as i32 {
            for r in read_all(&*log, &topic, p) {
                assert_eq!(r.partition, partition_for(&r.key, partitions));
                let key = String::from_utf8(r.key).unwrap();
                got.entry(key).or_default().push(String::from_utf8(r.value).unwrap());
            }
        }
        for key in &keys {
            assert_eq!(got.get(key), sent.get(key), "records of key {key:?} came back out of order");
        }
    }

    /// Records in two topics and positions appended together are all visible after
    /// `append`, the positions through `committed`; with `atomic_batches`, a concurrent
    /// reader never sees part of a batch.
    pub fn atomic_batch_with_positions(h: &mut dyn Harness) {
        let log = h.open();
        let journal = create(&*log, "atomic-journal", 2);
        let commands = create(&*log, "atomic-commands", 1);
        let input = create(&*log, "atomic-input", 3);
        let group = unique_topic("group");

        let out = append(
            &*log,
            AppendBatch {
                records: vec![
                    Record { partition: Some(1), ..Record::keyed(&journal, "saga-1", "event-1") },
                    Record::keyed(&commands, "saga-1", "command-1"),
                    Record { partition: Some(1), ..Record::keyed(&journal, "saga-1", "event-2") },
                ],
                positions: vec![position(&group, &input, 2, 17), position(&group, &input, 0, 5)],
            },
        );
        assert_eq!(out.iter().map(|a| (a.partition, a.offset)).collect::<Vec<_>>(), [(1, 0), (0, 0), (1, 1)]);
        let events = read_all(&*log, &journal, 1);
        assert_eq!(events.iter().map(|r| r.value.as_slice()).collect::<Vec<_>>(), [&b"event-1"[..], b"event-2"]);
        assert_eq!(read_all(&*log, &commands, 0)[0].value, b"command-1");
        let committed = |p| log.committed(&group, &input, p).unwrap();
        assert_eq!((committed(0), committed(1), committed(2)), (Some(5), None, Some(17)));
        assert_eq!(log.committed("no-such-group", &input, 2).unwrap(), None);

        // A later position replaces the earlier one; a batch may hold only positions.
        append(&*log, AppendBatch { records: vec![], positions: vec![position(&group, &input, 2, 18)] });
        assert_eq!(committed(2), Some(18), "a later position must replace the earlier one");

        if !log.capabilities().atomic_batches {
            return;
        }
        // Each batch adds one record to each topic and moves the group to the new end.
        // A reader that looks at one piece, then another, must never find the second
        // behind the first.
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (log, journal, commands, group, stop) =
                (log.clone(), journal.clone(), commands.clone(), group.clone(), stop.clone());
            thread::spawn(move || {
                let mut checks = 0u64;
                while !stop.load(Ordering::SeqCst) || checks == 0 {
                    let pos = log.committed(&group, &journal, 0).unwrap().unwrap_or(0);
                    let j = log.end_offset(&journal, 0).unwrap();
                    let c = log.end_offset(&commands, 0).unwrap() - 1;
                    let j2 = log.end_offset(&journal, 0).unwrap();
                    assert!(j >= pos, "saw position {pos} before the records it covers ({j})");
                    assert!(c >= j, "saw {j} journal records but only {c} commands of them");
                    assert!(j2 >= c, "saw {c} commands but only {j2} journal records of them");
                    checks += 1;
                }
            })
        };
        for i in 1..=200 {
            append(
                &*log,
                AppendBatch {
                    records: vec![
                        Record { partition: Some(0), ..Record::keyed(&journal, "k", "e") },
                        Record::keyed(&commands, "k", "c"),
                    ],
                    positions: vec![position(&group, &journal, 0, i)],
                },
            );
        }
        stop.store(true, Ordering::SeqCst);
        reader.join().expect("a reader saw part of a batch");
    }

    /// Everything appended survives dropping and reopening the log, positions included,
    /// and new appends continue at the right offsets.
    pub fn restart_durability(h: &mut dyn Harness) {
        let log = h.open();
        let topic = create(&*log, "restart", 3);
        let other = create(&*log, "restart-other", 1);
        let group = unique_topic("group");
        let mut sent: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
        for b in 0..10 {
            let records: Vec<Record> =
                (0..7).map(|i| Record::keyed(&topic, format!("k{i}"), format!("v{b}-{i}"))).collect();
            let out = append(
                &*log,
                AppendBatch { records: records.clone(), positions: vec![position(&group, &other, 0, b)] },
            );
            for (r, a) in records.into_iter().zip(out) {
                sent.entry(a.partition).or_default().push(r.value);
            }
        }
        drop(log);

        let log = h.open();
        assert_eq!(log.partitions(&topic).unwrap(), 3, "partition count lost on restart");
        log.ensure_topic(&topic, 3).expect("ensure_topic of an existing topic after restart");
        for p in 0..3 {
            let values: Vec<Vec<u8>> = read_all(&*log, &topic, p).into_iter().map(|r| r.value).collect();
            assert_eq!(&values, sent.get(&p).unwrap_or(&Vec::new()), "partition {p} changed across restart");
        }
        assert_eq!(log.committed(&group, &other, 0).unwrap(), Some(9), "position lost on restart");

        let end = log.end_offset(&topic, 1).unwrap();
        let out = append(&*log, batch(vec![Record { partition: Some(1), ..Record::keyed(&topic, "k", "after") }]));
        assert_eq!(out[0].offset, end, "the first append after a restart must continue at the end");
        drop(log);

        let log = h.open();
        let last = log.read(&topic, 1, end, 10).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].value, b"after");
    }

    /// After a crash during a write, each batch is either fully present or fully absent,
    /// every batch before the last is present, and the log takes appends again.
    pub fn torn_write_never_exposes_half_a_batch(h: &mut dyn CrashHarness) {
        let log = h.open();
        let a = create(&*log, "torn-a", 2);
        let b = create(&*log, "torn-b", 1);
        let group = unique_topic("group");
        let batches = 6;
        for i in 0..batches {
            let mut records: Vec<Record> =
                (0..10).map(|r| Record::keyed(&a, format!("key-{r}"), format!("batch-{i}-{r}").repeat(20))).collect();
            records.push(Record::keyed(&b, "key", format!("batch-{i}")));
            append(&*log, AppendBatch { records, positions: vec![position(&group, &b, 0, i + 1)] });
        }
        drop(log);
        h.crash_during_write();

        let log = h.open();
        let mut per_batch: BTreeMap<i64, usize> = BTreeMap::new();
        for p in 0..2 {
            for r in read_all(&*log, &a, p) {
                let s = String::from_utf8(r.value).unwrap();
                let i: i64 = s.trim_start_matches("batch-").split('-').next().unwrap().parse().unwrap();
                *per_batch.entry(i).or_default() += 1;
            }
        }
        let in_b: Vec<i64> = read_all(&*log, &b, 0)
            .into_iter()
            .map(|r| String::from_utf8(r.value).unwrap().trim_start_matches("batch-").parse().unwrap())
            .collect();
        let survivors = in_b.len() as i64;
        assert!(
            survivors >= batches - 1,
            "only {survivors} of {batches} batches survived; all but the torn last one must"
        );
        assert_eq!(in_b, (0..survivors).collect::<Vec<_>>());
        for i in 0..batches {
            let n = per_batch.get(&i).copied().unwrap_or(0);
            let expected = if i < survivors { 10 } else { 0 };
            assert_eq!(n, expected, "batch {i} is half there: {n} of its 10 records in {a}");
        }
        assert_eq!(
            log.committed(&group, &b, 0).unwrap(),
            Some(survivors),
            "the position must be from the last batch that survived"
        );
        let out = append(&*log, batch(vec![Record::keyed(&b, "key", "after the crash")]));
        assert_eq!(out[0].offset, survivors, "appends after recovery must continue at the end");
        assert_eq!(log.read(&b, 0, survivors, 1).unwrap()[0].value, b"after the crash");
    }

    /// Offsets in each partition start at 0 with no gaps, and `end_offset` follows them.
    pub fn offsets_dense_from_zero(h: &mut dyn Harness) {
        let log = h.open();
        let topic = create(&*log, "dense", 3);
        for p in 0..3 {
            assert_eq!(log.end_offset(&topic, p).unwrap(), 0, "a new partition must start empty");
        }
        let mut next = [0 as Offset; 3];
        for b in 0..9 {
            let records: Vec<Record> = (0..(b % 4 + 1))
                .map(|i| Record { partition: Some((b + i) % 3), ..Record::keyed(&topic, "k", "v") })
                .collect();
            for a in append(&*log, batch(records)) {
                assert_eq!(a.offset, next[a.partition as usize], "offset gap in partition {}", a.partition);
                next[a.partition as usize] += 1;
            }
        }
        for p in 0..3 {
            assert_eq!(log.end_offset(&topic, p).unwrap(), next[p as usize]);
            assert_eq!(read_all(&*log, &topic, p).len() as Offset, next[p as usize]);
        }
    }

    /// Reading at the end gives nothing; past it, [`Error::OffsetOutOfRange`]; `max` is
    /// respected.
    pub fn read_past_end_is_error(h: &mut dyn Harness) {
        let log = h.open();
        let topic = create(&*log, "past-end", 1);
        assert!(log.read(&topic, 0, 0, 10).unwrap().is_empty(), "reading an empty partition at 0");
        let records = (0..5).map(|i| Record::keyed(&topic, "k", format!("v{i}"))).collect();
        append(&*log, batch(records));
        let got = log.read(&topic, 0, 1, 3).unwrap();
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2, 3], "read must honour from and max");
        assert!(log.read(&topic, 0, 2, 0).unwrap().is_empty(), "max 0 must read nothing");
        assert!(log.read(&topic, 0, 5, 10).unwrap().is_empty(), "reading at the end must be empty");
        match log.read(&topic, 0, 6, 10) {
            Err(Error::OffsetOutOfRange { offset: 6, end: 5, .. }) => {}
            other => {
                panic!("reading past the end must be OffsetOutOfRange(6, end 5), got {other:?}")
            }
        }
    }

    /// Unknown topics and partitions are errors, and a batch with one bad record appends
    /// nothing.
    pub fn unknown_topic_is_error(h: &mut dyn Harness) {
        let log = h.open();
        let missing = unique_topic("missing");
        let unknown = |r: crate::Result<_>, what: &str| match r {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, missing),
            Err(e) => panic!("{what} on a missing topic must be UnknownTopic, got {e}"),
            Ok(_) => panic!("{what} on a missing topic must fail"),
        };
        unknown(log.partitions(&missing).map(|_| ()), "partitions");
        unknown(log.read(&missing, 0, 0, 1).map(|_| ()), "read");
        unknown(log.end_offset(&missing, 0).map(|_| ()), "end_offset");

        let topic = create(&*log, "known", 2);
        let mixed = batch(vec![Record::keyed(&topic, "k", "v"), Record::keyed(&missing, "k", "v")]);
        unknown(log.append(mixed).map(|_| ()), "append");
        match log.append(batch(vec![Record { partition: Some(2), ..Record::keyed(&topic, "k", "v") }])) {
            Err(Error::UnknownPartition { partition: 2, partitions: 2, .. }) => {}
            other => {
                panic!("appending to partition 2 of 2 must be UnknownPartition, got {other:?}")
            }
        }
        match log.read(&topic, 5, 0, 1) {
            Err(Error::UnknownPartition { partition: 5, .. }) => {}
            other => panic!("reading partition 5 of 2 must be UnknownPartition, got {other:?}"),
        }
        for p in 0..2 {
            assert_eq!(log.end_offset(&topic, p).unwrap(), 0, "a failed append must not append anything");
        }
    }

    /// `ensure_topic` is idempotent for the same count and refuses another count.
    pub fn partition_mismatch_is_error(h: &mut dyn Harness) {
        let log = h.open();
        let topic = create(&*log, "mismatch", 3);
        log.ensure_topic(&topic, 3).expect("ensure_topic with the same count must succeed");
        assert_eq!(log.partitions(&topic).unwrap(), 3);
        match log.ensure_topic(&topic, 4) {
            Err(Error::PartitionMismatch { wanted: 4, actual: 3, .. }) => {}
            other => panic!("ensure_topic with 4 partitions on a 3-partition topic: {other:?}"),
        }
        assert_eq!(log.partitions(&topic).unwrap(), 3, "a refused ensure_topic must not change the topic");
    }

    /// `wait_for` returns promptly when a record arrives, and after the timeout when
    /// none does.
    pub fn wait_for_wakes_on_append(h: &mut dyn Harness) {
        let log = h.open();
        let topic = create(&*log, "wait", 1);

        let started = Instant::now();
        let end = log.wait_for(&topic, 0, 0, Duration::from_millis(200)).unwrap();
        let waited = started.elapsed();
        assert_eq!(end, 0, "wait_for on an empty partition must time out with end 0");
        assert!(waited >= Duration::from_millis(150), "wait_for returned after {waited:?}, before its timeout");

        let waiter = {
            let (log, topic) = (log.clone(), topic.clone());
            thread::spawn(move || {
                let started = Instant::now();
                let end = log.wait_for(&topic, 0, 0, Duration::from_secs(30)).unwrap();
                (end, started.elapsed())
            })
        };
        thread::sleep(Duration::from_millis(100));
        let appended = Instant::now();
        append(&*log, batch(vec![Record::keyed(&topic, "k", "v")]));
        let (end, _) = waiter.join().unwrap();
        let latency = appended.elapsed();
        assert_eq!(end, 1, "wait_for must return the new end offset");
        assert!(latency < Duration::from_secs(5), "wait_for took {latency:?} to notice an append");

        // Already past: returns at once.
        let started = Instant::now();
        assert_eq!(log.wait_for(&topic, 0, 0, Duration::from_secs(30)).unwrap(), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// `wait_any` returns promptly when a record arrives in any of the partitions it
    /// watches, and `false` after the timeout when none does.
    pub fn wait_any_wakes_on_any_partition(h: &mut dyn Harness) {
        let log = h.open();
        let a = create(&*log, "wait-any-a", 2);
        let b = create(&*log, "wait-any-b", 1);
        let watched =
            |log: &dyn EventLog, timeout| log.wait_any(&[(&a, 0, 0), (&a, 1, 0), (&b, 0, 0)], timeout).unwrap();
        let started = Instant::now();
        assert!(!watched(&*log, Duration::from_millis(200)), "nothing was appended");
        assert!(started.elapsed() >= Duration::from_millis(150), "wait_any returned before its timeout");

        let waiter = {
            let (log, a, b) = (log.clone(), a.clone(), b.clone());
            thread::spawn(move || log.wait_any(&[(&a, 0, 0), (&a, 1, 0), (&b, 0, 0)], Duration::from_secs(30)).unwrap())
        };
        thread::sleep(Duration::from_millis(100));
        let appended = Instant::now();
        let mut r = Record::keyed(&b, "k", "v");
        r.partition = Some(0);
        append(&*log, batch(vec![r]));
        assert!(waiter.join().unwrap(), "an append to a watched partition must wake wait_any");
        assert!(appended.elapsed() < Duration::from_secs(5), "wait_any took {:?}", appended.elapsed());
        // A record already there: returns at once.
        let started = Instant::now();
        assert!(watched(&*log, Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Several threads appending at once: every key's records keep their order and
    /// offsets stay dense.
    pub fn concurrent_appenders_keep_per_key_order(h: &mut dyn Harness) {
        let log = h.open();
        let partitions = 3;
        let topic = create(&*log, "concurrent", partitions);
        let (threads, batches, keys) = (4, 40, 5);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (log, topic) = (log.clone(), topic.clone());
                thread::spawn(move || {
                    for b in 0..batches {
                        let records =
                            (0..keys).map(|k| Record::keyed(&topic, format!("t{t}-k{k}"), format!("{b}"))).collect();
                        append(&*log, batch(records));
                    }
                })
            })
            .collect();
        for t in handles {
            t.join().expect("an appender thread failed");
        }
        let mut seen: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        let mut total = 0;
        for p in 0..partitions as i32 {
            for r in read_all(&*log, &topic, p) {
                total += 1;
                seen.entry(r.key).or_default().push(String::from_utf8(r.value).unwrap().parse().unwrap());
            }
        }
        assert_eq!(total, threads * batches * keys, "records lost or duplicated under concurrent appends");
        for (key, values) in seen {
            assert_eq!(
                values,
                (0..batches as u32).collect::<Vec<_>>(),
                "key {:?} lost its order under concurrent appends",
                String::from_utf8_lossy(&key)
            );
        }
    }

    /// Headers (repeated names, empty and binary values), empty keys and values, a large
    /// value and the timestamp come back as appended.
    pub fn headers_round_trip(h: &mut dyn Harness) {
        let log = h.open();
        let topic = create(&*log, "headers", 1);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let records = [
            Record::keyed(&topic, "order-1", "v1")
                .with_header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .with_header("binary", vec![0u8, 255, 1, 254])
                .with_header("empty", Vec::new())
                .with_header("binary", vec![7u8]),
            Record::keyed(&topic, Vec::new(), Vec::new()),
            Record::keyed(&topic, "order-2", big),
        ];
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        append(&*log, batch(records.iter().map(|r| Record { partition: Some(0), ..r.clone() }).collect()));
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let got = read_all(&*log, &topic, 0);
        assert_eq!(got.len(), records.len());
        for (sent, back) in records.iter().zip(&got) {
            assert_eq!(back.key, sent.key, "key changed");
            assert_eq!(back.headers, sent.headers, "headers changed (order and repeats must be kept)");
            assert_eq!(back.value, sent.value, "value changed");
            assert!(
                (before - 1000..=after + 1000).contains(&back.timestamp_ms),
                "timestamp {} is not the append time ({before}..{after})",
                back.timestamp_ms
            );
        }
        assert_eq!(got[0].header("binary"), Some(&[0u8, 255, 1, 254][..]), "header() must find the first");
    }
}

/// Fault injection for the layers above the log: a wrapper that makes any backend behave
/// like one without atomic batches that crashes in the middle of an append.
pub mod faults {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use crate::{AppendBatch, Appended, Capabilities, Error, EventLog, Offset, Record, Result, StoredRecord};

    /// Which append to cut short, and which of its records reach the log before the
    /// "crash".
    pub struct Cut {
        /// The append to cut: the first one this returns `true` for.
        pub when: Box<dyn Fn(&AppendBatch) -> bool + Send + Sync>,
        /// The records of that append that are stored (in order); the others, and its
        /// positions, are lost.
        pub keep: Box<dyn Fn(&Record) -> bool + Send + Sync>,
    }

    impl std::fmt::Debug for Cut {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Cut")
        }
    }

    /// Wraps a log: it reports no atomic batches, cuts the armed append short (stores
    /// only the records [`Cut::keep`] selects, then fails with
    /// [`Error::Unavailable`] as a crashed producer would), and can give records the
    /// append time a header names, so that two logs written by a test hold the same
    /// times.
    pub struct CutShort {
        inner: std::sync::Arc<dyn EventLog>,
        armed: Mutex<Option<Cut>>,
        cuts: AtomicU64,
        time_header: Option<String>,
    }

    impl std::fmt::Debug for CutShort {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("CutShort").field("cuts", &self.cuts.load(Ordering::SeqCst)).finish_non_exhaustive()
        }
    }

    impl CutShort {
        /// `inner`, with nothing armed yet.
        pub fn new(inner: std::sync::Arc<dyn EventLog>) -> Self {
            CutShort { inner, armed: Mutex::new(None), cuts: AtomicU64::new(0), time_header: None }
        }

        /// Records carrying header `name` (decimal milliseconds since the epoch) read
        /// back with that append time instead of the backend's.
        pub fn with_time_header(mut self, name: impl Into<String>) -> Self {
            self.time_header = Some(name.into());
            self
        }

        /// Cuts the next append `cut.when` selects.
        pub fn arm(&self, cut: Cut) {
            *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(cut);
        }

        /// How many appends were cut short so far.
        pub fn cuts(&self) -> u64 {
            self.cuts.load(Ordering::SeqCst)
        }

        fn stamp(&self, mut r: StoredRecord) -> StoredRecord {
            let ms = self.time_header.as_deref().and_then(|h| r.header(h)).and_then(|v| std::str::from_utf8(v).ok());
            if let Some(ms) = ms.and_then(|v| v.trim().parse().ok()) {
                r.timestamp_ms = ms;
            }
            r
        }
    }

    impl EventLog for CutShort {
        fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
            self.inner.ensure_topic(topic, partitions)
        }
        fn partitions(&self, topic: &str) -> Result<u32> {
            self.inner.partitions(topic)
        }
        fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
            let cut = {
                let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
                match armed.as_ref() {
                    Some(c) if (c.when)(&batch) => armed.take(),
                    _ => None,
                }
            };
            let Some(cut) = cut else { return self.inner.append(batch) };
            let kept: Vec<Record> = batch.records.into_iter().filter(|r| (cut.keep)(r)).collect();
            if !kept.is_empty() {
                self.inner.append(AppendBatch { records: kept, positions: Vec::new() })?;
            }
            self.cuts.fetch_add(1, Ordering::SeqCst);
            Err(Error::Unavailable("the process died in the middle of an append (injected by CutShort)".into()))
        }
        fn read(&self, topic: &str, partition: i32, from: Offset, max: usize) -> Result<Vec<StoredRecord>> {
            let records = self.inner.read(topic, partition, from, max)?;
            Ok(if self.time_header.is_some() { records.into_iter().map(|r| self.stamp(r)).collect() } else { records })
        }
        fn end_offset(&self, topic: &str, partition: i32) -> Result<Offset> {
            self.inner.end_offset(topic, partition)
        }
        fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Offset>> {
            self.inner.committed(group, topic, partition)
        }
        fn wait_for(&self, topic: &str, partition: i32, offset: Offset, timeout: Duration) -> Result<Offset> {
            self.inner.wait_for(topic, partition, offset, timeout)
        }
        fn wait_any(&self, positions: &[(&str, i32, Offset)], timeout: Duration) -> Result<bool> {
            self.inner.wait_any(positions, timeout)
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { atomic_batches: false, compacts: false }
        }
        fn flush(&self) -> Result<()> {
            self.inner.flush()
        }
    }
}
