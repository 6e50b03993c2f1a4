//! Property: wherever a crash cuts the newest segment, reopening keeps exactly the records
//! that were whole before the cut, in order, and appends continue right after them.

use std::fs::OpenOptions;
use std::sync::Arc;

use persona_log::{EventLog, LogConfig, LogReader};
use proptest::prelude::*;

const HEADER: u64 = 16;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        ..Default::default()
    }
}

fn read_all(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut r = LogReader::open_dir(dir).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = r.read_batch(1000).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|r| r.payload));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn recovery_keeps_every_whole_record(
        batches in proptest::collection::vec(proptest::collection::vec(1usize..120, 1..6), 1..25),
        cut_fraction in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut written: Vec<Vec<u8>> = Vec::new();
        rt.block_on(async {
            let (log, _) = EventLog::open(dir.path(), config(), Arc::new(())).unwrap();
            for sizes in &batches {
                let payloads: Vec<Vec<u8>> = sizes
                    .iter()
                    .map(|&n| (0..n).map(|i| (written.len() + i) as u8).collect())
                    .collect();
                log.append(payloads.clone()).await.unwrap();
                written.extend(payloads);
            }
        });

        // Cut the newest segment somewhere, as a crash during its last writes could.
        let mut segments: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segments.sort();
        let newest = segments.last().unwrap().clone();
        let base: usize = newest.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let len = persona_log::written_len(&newest).unwrap();
        let cut = (len as f64 * cut_fraction) as u64;
        OpenOptions::new().write(true).open(&newest).unwrap().set_len(cut).unwrap();

        // The records of the newest segment that end at or before the cut survive.
        let mut end = 0u64;
        let mut kept = base;
        for p in &written[base..] {
            end += HEADER + p.len() as u64;
            if end > cut {
                break;
            }
            kept += 1;
        }

        let (log, report) = EventLog::open(dir.path(), config(), Arc::new(())).unwrap();
        prop_assert_eq!(report.kept_records as usize, kept - base);
        prop_assert_eq!(log.next_offset() as usize, kept);
        prop_assert_eq!(read_all(dir.path()), written[..kept].to_vec());
        let next = rt.block_on(log.append(vec![b"after".to_vec()])).unwrap();
        prop_assert_eq!(next.start as usize, kept);
    }
}
