//! Behaviour of the embedded log as its users see it: durable appends, recovery, segments,
//! consumers and retention, on real files.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::sync::Arc;
use std::time::Duration;

use persona_log::{EventLog, LogConfig, LogError, LogReader, LogStats, RetentionPolicy};

fn open(dir: &std::path::Path, config: LogConfig) -> EventLog {
    EventLog::open(dir, config, Arc::new(())).unwrap().0
}

fn payload(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 50)).into_bytes()
}

/// Inverts the byte at `at` of the file; doing it again puts the byte back.
fn flip_byte(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

fn read_all(reader: &mut LogReader) -> Vec<persona_log::Record> {
    let mut out = Vec::new();
    loop {
        let batch = reader.read_batch(1000).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_durable_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let mut tasks = Vec::new();
    for t in 0..32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut ranges = Vec::new();
            for i in 0..20 {
                let batch = (0..3).map(|j| payload(t * 1000 + i * 10 + j)).collect();
                ranges.push(log.append(batch).await.unwrap());
            }
            ranges
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for r in t.await.unwrap() {
            assert_eq!(r.end - r.start, 3);
            for o in r {
                assert!(seen.insert(o), "offset {o} handed out twice");
            }
        }
    }
    assert_eq!(seen.len(), 32 * 20 * 3);
    assert_eq!(log.next_offset(), 1920);
    let records = read_all(&mut log.reader().unwrap());
    assert_eq!(records.len(), 1920);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
    }
}

/// Appends abandoned while they wait (a client that hangs up) never leave the log without
/// someone to commit what is queued: every append after them still completes, and every
/// acknowledged record reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_appends_never_stall_the_ones_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    for round in 0..20 {
        let mut tasks = Vec::new();
        for t in 0..16 {
            let (log, acknowledged) = (log.clone(), acknowledged.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..5 {
                    let n = round * 10_000 + t * 100 + i;
                    let range = log.append(vec![payload(n)]).await.unwrap();
                    acknowledged.lock().unwrap().push((range.start, n));
                }
            }));
        }
        tokio::task::yield_now().await;
        // Abandon every other task wherever it happens to be waiting.
        for (t, task) in tasks.iter().enumerate() {
            if t % 2 == 1 {
                task.abort();
            }
        }
        let rest = async {
            for task in tasks {
                let _ = task.await;
            }
            log.append(vec![payload(0)]).await
        };
        // Not a timing check: a lost baton would make this wait forever.
        tokio::time::timeout(Duration::from_secs(30), rest)
            .await
            .expect("the appends left and one after them complete")
            .unwrap();
    }
    let records = read_all(&mut log.reader().unwrap());
    assert_eq!(records.len() as u64, log.next_offset());
    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.len() >= 20 * 8 * 5,
        "the tasks left alone all finish"
    );
    for &(offset, n) in acknowledged.iter() {
        assert_eq!(records[offset as usize].payload, payload(n));
    }
}

/// The bytes of each group commit, in order.
#[derive(Default)]
struct Groups(std::sync::Mutex<Vec<u64>>);

impl persona_log::CommitObserver for Groups {
    fn on_commit(&self, _records: u64, bytes: u64, _sync: Duration) {
        self.0.lock().unwrap().push(bytes);
    }
}

/// On a runtime with a single thread, the append that commits lets the others queue
/// first: concurrent appends still share a sync instead of taking one each.
#[tokio::test]
async fn concurrent_appends_share_syncs_on_a_single_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let groups = Arc::new(Groups::default());
    let log = Arc::new(
        EventLog::open(dir.path(), LogConfig::default(), groups.clone())
            .unwrap()
            .0,
    );
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![payload(i)]).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.next_offset(), 50);
    let syncs = groups.0.lock().unwrap().len();
    assert!(syncs <= 5, "50 concurrent appends took {syncs} syncs");
}

/// Each sync takes what queued before it, up to `max_group_bytes`: a burst is committed in
/// several groups, none much larger than the limit, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_committed_in_groups_of_at_most_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let groups = Arc::new(Groups::default());
    let config = LogConfig {
        max_group_bytes: 1000,
        ..Default::default()
    };
    let log = Arc::new(
        EventLog::open(dir.path(), config, groups.clone())
            .unwrap()
            .0,
    );
    let payload = vec![b'x'; 84]; // 100 bytes with its 16-byte header
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (log, payload) = (log.clone(), payload.clone());
            tokio::spawn(async move { log.append(vec![payload]).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let groups = groups.0.lock().unwrap();
    assert_eq!(groups.iter().sum::<u64>(), 200 * 100);
    // The group stops once it holds the limit: ten of these requests at most.
    assert!(groups.iter().all(|&b| b <= 1000), "{groups:?}");
    assert_eq!(log.next_offset(), 200);
}

#[tokio::test]
async fn records_survive_reopen_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default());
        log.append((0..10).map(payload).collect()).await.unwrap();
    }
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.next_offset(), 10);
    let r = log.append(vec![payload(10)]).await.unwrap();
    assert_eq!(r, 10..11);
    let got: Vec<_> = read_all(&mut log.reader().unwrap())
        .into_iter()
        .map(|r| r.payload)
        .collect();
    let want: Vec<_> = (0..11).map(payload).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_every_whole_record_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default());
        for i in 0..5 {
            log.append(vec![payload(i)]).await.unwrap();
        }
    }
    let seg = dir.path().join(format!("{:020}.log", 0));
    // The records end before the zeros the writer keeps ahead of them.
    let len = persona_log::written_len(&seg).unwrap();
    assert!(std::fs::metadata(&seg).unwrap().len() > len);
    // Cut the last record in half, as a crash in the middle of a write would.
    let last_len = (16 + payload(4).len()) as u64;
    let cut = len - last_len / 2;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let (log, report) = EventLog::open(dir.path(), LogConfig::default(), Arc::new(())).unwrap();
    assert_eq!(report.kept_records, 4);
    assert_eq!(report.dropped_bytes, cut - (len - last_len));
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("incomplete record")
    );
    let q = report.quarantined.expect("cut bytes are kept aside");
    assert_eq!(std::fs::metadata(q).unwrap().len(), report.dropped_bytes);
    assert_eq!(log.next_offset(), 4);
    assert_eq!(log.append(vec![payload(99)]).await.unwrap(), 4..5);
    let records = read_all(&mut log.reader().unwrap());
    assert_eq!(records.len(), 5);
    assert_eq!(records[4].payload, payload(99));
}

#[tokio::test]
async fn a_corrupted_tail_record_is_detected_by_its_crc() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default());
        log.append((0..3).map(payload).collect()).await.unwrap();
    }
    let seg = dir.path().join(format!("{:020}.log", 0));
    let n = persona_log::written_len(&seg).unwrap() as usize;
    flip_byte(&seg, n - 2);
    let (log, report) = EventLog::open(dir.path(), LogConfig::default(), Arc::new(())).unwrap();
    assert_eq!(report.kept_records, 2);
    assert!(report.reason.unwrap().contains("CRC"));
    assert_eq!(log.next_offset(), 2);
}

#[tokio::test]
async fn segments_roll_and_readers_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1000,
        ..Default::default()
    };
    let log = open(dir.path(), config.clone());
    for i in 0..100 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    let stats = log.stats().unwrap();
    assert!(stats.segments > 5, "{stats:?}");
    assert_eq!(stats.records, 100);
    assert_eq!((stats.first_offset, stats.next_offset), (0, 100));

    let mut reader = log.reader().unwrap();
    reader.seek(37);
    let records = read_all(&mut reader);
    assert_eq!(records.first().unwrap().offset, 37);
    assert_eq!(records.len(), 63);
    assert_eq!(records[10].payload, payload(47));

    // Every record can be fetched again by offset and position, across segments.
    for r in &records {
        let again = persona_log::read_at(dir.path(), r.offset, r.position).unwrap();
        assert_eq!(again.as_ref(), Some(r));
    }
    // A wrong position is caught by the record's own offset and CRC, not returned.
    assert!(persona_log::read_at(dir.path(), 40, records[0].position).is_err());

    // Another process reading the same files sees the same records.
    let offline = read_all(&mut LogReader::open_dir(dir.path()).unwrap());
    assert_eq!(offline.len(), 100);
    drop(log);
    let reopened = LogStats::read(dir.path()).unwrap();
    assert_eq!(reopened.next_offset, 100);
    assert_eq!(reopened.segments, stats.segments);
}

#[tokio::test]
async fn a_live_reader_sees_new_records_after_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut reader = log.reader().unwrap();
    assert!(reader.read_batch(10).unwrap().is_empty());
    log.append(vec![payload(1), payload(2)]).await.unwrap();
    assert_eq!(reader.read_batch(10).unwrap().len(), 2);
    assert!(reader.read_batch(10).unwrap().is_empty());
    log.append(vec![payload(3)]).await.unwrap();
    assert_eq!(reader.read_batch(10).unwrap()[0].payload, payload(3));
}

/// A live reader following the writer as it goes (as the stream stage does) reads each
/// record once and in order, whether a read ends inside a segment, at the end of what was
/// written so far, or where the writer rolled to a new segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reader_following_the_writer_reads_every_record_once_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2000,
        ..Default::default()
    };
    let log = Arc::new(open(dir.path(), config));
    let mut reader = log.reader().unwrap();
    let follower = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < 600 {
            let batch = reader.read_batch(7).unwrap();
            if batch.is_empty() {
                std::thread::yield_now();
            }
            seen.extend(batch.into_iter().map(|r| (r.offset, r.payload)));
        }
        seen
    });
    let mut n = 0;
    while n < 600 {
        let group: Vec<_> = (n..(n + 1 + n % 5).min(600)).map(payload).collect();
        n += group.len();
        log.append(group).await.unwrap();
    }
    let seen = follower.join().unwrap();
    assert!(log.stats().unwrap().segments > 10);
    assert_eq!(seen.len(), 600);
    for (i, (offset, p)) in seen.iter().enumerate() {
        assert_eq!((*offset, p), (i as u64, &payload(i)));
    }
}

#[tokio::test]
async fn retention_never_deletes_what_a_consumer_has_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 500,
        retention: RetentionPolicy {
            max_bytes: Some(0),
            max_age: None,
        },
        ..Default::default()
    };
    let log = open(dir.path(), config);
    assert_eq!(log.register_consumer("processor").unwrap(), 0);
    for i in 0..60 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    let before = log.stats().unwrap();
    let report = log.enforce_retention().unwrap();
    assert!(report.deleted_segments.is_empty());
    assert_eq!(report.held_for_consumers, 1);

    log.commit("processor", 30).unwrap();
    let report = log.enforce_retention().unwrap();
    assert!(!report.deleted_segments.is_empty());
    let after = log.stats().unwrap();
    assert!(
        after.first_offset <= 30 && after.first_offset > 0,
        "{after:?}"
    );
    assert!(after.segments < before.segments);
    // Everything from the committed offset on is still readable.
    let mut reader = log.reader().unwrap();
    reader.seek(30);
    assert_eq!(read_all(&mut reader).len(), 30);

    assert!(matches!(
        log.commit("processor", 61),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[tokio::test]
async fn committed_offsets_survive_reopen_and_show_in_stats() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default());
        log.append((0..8).map(payload).collect()).await.unwrap();
        log.register_consumer("lake").unwrap();
        log.commit("lake", 5).unwrap();
        // Committing the offset already recorded leaves the file alone (it is replaced,
        // with two syncs, only when the offset moves).
        let file = dir.path().join("consumers").join("lake.offset");
        let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
        let recorded = inode();
        log.commit("lake", 5).unwrap();
        assert_eq!(inode(), recorded);
        log.commit("lake", 6).unwrap();
        assert_ne!(inode(), recorded);
        log.commit("lake", 5).unwrap();
        assert!(log.register_consumer("bad/name").is_err());
    }
    let stats = LogStats::read(dir.path()).unwrap();
    assert_eq!(stats.consumers["lake"].committed_offset, 5);
    assert_eq!(stats.consumers["lake"].lag, 3);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.register_consumer("lake").unwrap(), 5);
}

#[tokio::test]
async fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), LogConfig::default());
    let second = EventLog::open(dir.path(), LogConfig::default(), Arc::new(()));
    assert!(matches!(second, Err(LogError::Locked(_))));
}

#[tokio::test]
async fn a_full_queue_refuses_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_queue_bytes: 100,
        ..Default::default()
    };
    let log = open(dir.path(), config);
    let err = log.append(vec![vec![0u8; 200]]).await.unwrap_err();
    assert!(matches!(err, persona_log::AppendError::TooLarge { .. }));
}

#[tokio::test]
async fn reading_an_empty_log_returns_nothing_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut offline = LogReader::open_dir(dir.path()).unwrap();
    assert!(offline.read_batch(10).unwrap().is_empty());
    // Also when the newest segment is still empty, as a crash between a roll (which creates
    // the next file) and the first write into it leaves the log.
    let small = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 10,
        ..Default::default()
    };
    let rolled = open(small.path(), config.clone());
    rolled.append(vec![payload(1)]).await.unwrap();
    rolled.append(vec![payload(2)]).await.unwrap();
    drop(rolled);
    std::fs::File::create(small.path().join(format!("{:020}.log", 2))).unwrap();
    let mut r = LogReader::open_dir(small.path()).unwrap();
    assert_eq!(read_all(&mut r).len(), 2);
    let stats = LogStats::read(small.path()).unwrap();
    assert_eq!((stats.segments, stats.next_offset), (3, 2), "{stats:?}");
    let reopened = open(small.path(), config);
    assert_eq!(reopened.append(vec![payload(3)]).await.unwrap(), 2..3);
    assert_eq!(read_all(&mut reopened.reader().unwrap()).len(), 3);
    drop(log);
}

/// A segment size of zero (or smaller than one record) still appends: each group rolls to
/// a new segment, and an empty one is never rolled onto itself.
#[tokio::test]
async fn a_zero_segment_size_rolls_every_group_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 0,
            ..Default::default()
        },
    );
    for i in 0..3 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    let stats = log.stats().unwrap();
    assert_eq!((stats.records, stats.segments), (3, 3), "{stats:?}");
    assert_eq!(read_all(&mut log.reader().unwrap()).len(), 3);
}

/// A segment cut short behind the committed offset is damage: a live reader says so
/// instead of returning nothing, which its consumer would take for having caught up.
#[tokio::test]
async fn a_live_reader_reports_a_segment_cut_short_instead_of_stalling() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 100,
            ..Default::default()
        },
    );
    for i in 0..20 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    let first = dir.path().join(format!("{:020}.log", 0));
    let len = std::fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let err = log
        .reader()
        .unwrap()
        .read_batch(100)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ends before offset"), "{err}");
}

/// The same when the damage lies before the record a reader seeks to, as the processor
/// does on every start: skipping to its offset must not read a zeroed header as the end.
#[tokio::test]
async fn a_live_reader_seeking_past_damage_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 400,
            ..Default::default()
        },
    );
    for i in 0..20 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    // The second record's header, in the first (closed) segment, read back as zeros.
    let first = dir.path().join(format!("{:020}.log", 0));
    let second = 16 + payload(0).len() as u64;
    let file = OpenOptions::new().write(true).open(&first).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0; 16], second).unwrap();
    let mut reader = log.reader().unwrap();
    reader.seek(3);
    let err = reader.read_batch(100).unwrap_err();
    assert!(matches!(err, LogError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("before offset 1"), "{err}");
}

/// A bad record that a consumer has already read past is damage to acknowledged records,
/// not a torn write: opening refuses and changes nothing, where cutting would lose them and
/// hand their offsets out again. That holds when the consumer keeps records it has
/// processed (as the processor keeps its dedupe window's) and so commits behind them.
#[tokio::test]
async fn damage_below_what_a_consumer_processed_is_refused_not_cut() {
    for keep_from in [8, 0] {
        damage_at_record_3_is_refused(8, keep_from).await;
    }
}

async fn damage_at_record_3_is_refused(processed: u64, keep_from: u64) {
    let dir = tempfile::tempdir().unwrap();
    let positions = ten_records_read_up_to(dir.path(), processed, keep_from).await;

    let segment = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let damaged = positions[3] as usize + 20; // inside record 3's payload
    bytes[damaged] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let err = match EventLog::open(dir.path(), LogConfig::default(), Arc::new(())) {
        Ok(_) => panic!("a log damaged below a consumer's offset opened"),
        Err(e) => e,
    };
    assert!(matches!(err, LogError::Corrupt(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("\"profiles\"") && text.contains("offset 3") && text.contains("offset 8"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "the segment was changed"
    );

    // Past what the consumer processed the same damage is taken for a torn write and cut.
    let fresh = tempfile::tempdir().unwrap();
    ten_records_read_up_to(fresh.path(), 2, keep_from.min(2)).await;
    let segment = fresh.path().join(format!("{:020}.log", 0));
    std::fs::write(&segment, &bytes).unwrap();
    let (log, report) = EventLog::open(fresh.path(), LogConfig::default(), Arc::new(())).unwrap();
    assert_eq!((report.kept_records, log.next_offset()), (3, 3));
}

/// A closed log of ten records whose consumer `profiles` has processed them up to
/// `processed` and keeps them from `keep_from`; the records' byte positions.
async fn ten_records_read_up_to(dir: &std::path::Path, processed: u64, keep_from: u64) -> Vec<u64> {
    let log = open(dir, LogConfig::default());
    log.register_consumer("profiles").unwrap();
    for i in 0..10 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    log.commit_keeping("profiles", processed, keep_from)
        .unwrap();
    // Retention and `log stats` go by what the consumer keeps.
    assert_eq!(log.consumers().committed("profiles"), Some(keep_from));
    read_all(&mut log.reader().unwrap())
        .iter()
        .map(|r| r.position)
        .collect()
}

#[tokio::test]
async fn the_zeros_written_ahead_are_neither_records_nor_damage() {
    let dir = tempfile::tempdir().unwrap();
    let record_bytes: u64 = (0..6).map(|i| 16 + payload(i).len() as u64).sum();
    {
        let log = open(dir.path(), LogConfig::default());
        log.append((0..6).map(payload).collect()).await.unwrap();
        assert_eq!(log.stats().unwrap().bytes, record_bytes);
    }
    let seg = dir.path().join(format!("{:020}.log", 0));
    assert!(std::fs::metadata(&seg).unwrap().len() > record_bytes);
    assert_eq!(persona_log::written_len(&seg).unwrap(), record_bytes);
    // Read from the files by another process, and reopened: nothing dropped, nothing added.
    assert_eq!(LogStats::read(dir.path()).unwrap().bytes, record_bytes);
    assert_eq!(LogStats::read(dir.path()).unwrap().records, 6);
    let (log, report) = EventLog::open(dir.path(), LogConfig::default(), Arc::new(())).unwrap();
    assert!(!report.dropped_anything(), "{report:?}");
    assert_eq!(report.kept_records, 6);
    assert_eq!(log.append(vec![payload(6)]).await.unwrap(), 6..7);
    assert_eq!(read_all(&mut log.reader().unwrap()).len(), 7);
}

#[tokio::test]
async fn a_torn_write_into_the_zeros_is_cut_without_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default());
        log.append((0..3).map(payload).collect()).await.unwrap();
    }
    let seg = dir.path().join(format!("{:020}.log", 0));
    let end = persona_log::written_len(&seg).unwrap() as usize;
    let mut bytes = std::fs::read(&seg).unwrap();
    // Part of a group that never got synced: ten bytes, then the zeros as they were.
    bytes[end..end + 10].fill(0xab);
    std::fs::write(&seg, &bytes).unwrap();
    let (log, report) = EventLog::open(dir.path(), LogConfig::default(), Arc::new(())).unwrap();
    assert_eq!((report.kept_records, report.dropped_bytes), (3, 10));
    let q = report.quarantined.expect("cut bytes are kept aside");
    assert_eq!(std::fs::read(q).unwrap(), [0xab; 10]);
    assert_eq!(log.append(vec![payload(3)]).await.unwrap(), 3..4);
    let records = read_all(&mut log.reader().unwrap());
    assert_eq!(records.len(), 4);
    assert_eq!(records[3].payload, payload(3));
}

#[tokio::test]
async fn acknowledged_records_read_back_as_zeros_are_refused_not_taken_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let positions = ten_records_read_up_to(dir.path(), 8, 8).await;
    // A lost page of records that reads back as zeros, as the zeros ahead of them do.
    let segment = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[positions[6] as usize..].fill(0);
    std::fs::write(&segment, &bytes).unwrap();
    let err = match EventLog::open(dir.path(), LogConfig::default(), Arc::new(())) {
        Ok(_) => panic!("a log whose consumer is past its end opened"),
        Err(e) => e,
    };
    assert!(matches!(err, LogError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("offset 6"), "{err}");
}

/// `verify` reads every record: an intact log passes with each one counted; one flipped
/// byte inside an older segment, which start-up and offline readers pass over, is named by
/// offset and file, with what it costs.
#[tokio::test]
async fn verify_finds_damage_inside_an_older_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1000,
        ..Default::default()
    };
    let log = open(dir.path(), config);
    for i in 0..100 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    let where_is_40 = LogReader::open_dir(dir.path())
        .map(|mut r| read_all(&mut r)[40].position)
        .unwrap();
    // While a server has the log open, what it has written is checked all the same.
    let report = persona_log::verify(dir.path(), |_| {}).unwrap();
    assert!(report.in_use);
    assert_eq!((report.checked_records, report.problem), (100, None));
    drop(log);

    let mut seen = 0;
    let report = persona_log::verify(dir.path(), |n| seen = n).unwrap();
    assert!(!report.in_use);
    assert_eq!(report.problem, None);
    assert_eq!((report.checked_records, seen), (100, 100));
    assert_eq!((report.first_offset, report.next_offset), (0, 100));

    // Flip a byte of offset 40's payload, in whichever segment holds it.
    let segments = {
        let mut s: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        s.sort();
        s
    };
    let base = |p: &std::path::PathBuf| -> u64 {
        p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
    };
    let holder = segments.iter().rev().find(|p| base(p) <= 40).unwrap();
    assert_ne!(holder, segments.last().unwrap(), "an older segment");
    flip_byte(holder, where_is_40 as usize + 20);

    let report = persona_log::verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.checked_records, 40);
    let problem = report.problem.expect("damage reported");
    assert!(problem.starts_with("offset 40 "), "{problem}");
    assert!(problem.contains(&holder.display().to_string()), "{problem}");
    assert!(problem.contains("short of the 60 records"), "{problem}");

    // Damage at the start of the last segment, whole records behind it: not passed off as
    // a torn write alone, and what follows it is counted.
    flip_byte(holder, where_is_40 as usize + 20);
    flip_byte(segments.last().unwrap(), 20);
    let report = persona_log::verify(dir.path(), |_| {}).unwrap();
    let problem = report.problem.expect("damage reported");
    assert!(problem.contains("records end at byte 0 of"), "{problem}");
    let after: u64 = problem
        .split(" bytes written after")
        .next()
        .and_then(|p| p.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {problem}"));
    assert!(after > 100, "{problem}");
    assert!(problem.contains("otherwise damage"), "{problem}");
}

/// With a server holding the log, a record in its active segment that still does not read
/// once a write in progress would have ended is reported, not taken for that write.
#[tokio::test]
async fn verify_reports_damage_under_a_running_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    for i in 0..10 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    let fifth = read_all(&mut LogReader::open_dir(dir.path()).unwrap())[5].position;
    let segment = dir.path().join(format!("{:020}.log", 0));
    flip_byte(&segment, fifth as usize + 20);

    let report = persona_log::verify(dir.path(), |_| {}).unwrap();
    assert!(report.in_use);
    assert_eq!(report.checked_records, 5);
    let problem = report.problem.expect("damage reported");
    assert!(
        problem.contains(&format!("records end at byte {fifth} of")),
        "{problem}"
    );
    drop(log);
}
