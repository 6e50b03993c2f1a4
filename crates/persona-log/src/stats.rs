//! Summary of the log for `persona log stats` and monitoring.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::consumer;
use crate::error::LogError;
use crate::segment;

/// Sizes and positions of the log and its consumers.
#[derive(Debug, Clone, Serialize)]
pub struct LogStats {
    /// Retained records: `next_offset - first_offset`.
    pub records: u64,
    pub segments: usize,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Offset of the oldest retained record.
    pub first_offset: u64,
    /// Offset the next appended record will get.
    pub next_offset: u64,
    pub consumers: BTreeMap<String, ConsumerStats>,
    /// Why the last segment's records end before its written bytes do, when they do: a
    /// torn or damaged tail, which the next start cuts off and keeps aside, or (while a
    /// server writes) a record caught half written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_segment_problem: Option<String>,
}

/// One consumer's position.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStats {
    pub committed_offset: u64,
    /// Records appended that the consumer has not committed yet.
    pub lag: u64,
    /// How far the consumer has durably processed the log; past `committed_offset` when
    /// it keeps records it has processed (the processor keeps its dedupe window's).
    pub processed_offset: u64,
}

impl LogStats {
    /// Reads the stats of the log in `dir` from its files. Safe while another process
    /// writes: the last segment is scanned up to its last whole record.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(LogError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no event log here"),
            ));
        }
        let segments = segment::list_segments(dir)?;
        let (next, active, problem) = match segments.last() {
            Some(last) => {
                let scan = segment::scan(last)?;
                let problem = scan.problem.map(|why| {
                    let file = last.path.file_name().unwrap_or_default().to_string_lossy();
                    format!("{file}: {why}")
                });
                (scan.next_offset, (last.base, scan.valid_len), problem)
            }
            None => (0, (0, 0), None),
        };
        let mut stats = Self::from_segments(dir, &segments, next, active)?;
        stats.last_segment_problem = problem;
        Ok(stats)
    }

    /// The stats of this process's log: `active` is the base offset of the segment being
    /// written and its bytes of records (its file also holds the zeros written ahead).
    pub(crate) fn collect(
        dir: &Path,
        next_offset: u64,
        active: (u64, u64),
    ) -> Result<Self, LogError> {
        Self::from_segments(dir, &segment::list_segments(dir)?, next_offset, active)
    }

    fn from_segments(
        dir: &Path,
        segments: &[segment::SegmentFile],
        next_offset: u64,
        (active_base, active_len): (u64, u64),
    ) -> Result<Self, LogError> {
        // Retention may delete a segment between the listing and this look at it: such a
        // segment no longer counts, rather than failing the whole report.
        let mut kept = Vec::with_capacity(segments.len());
        let mut bytes = 0;
        for s in segments {
            match std::fs::metadata(&s.path) {
                Ok(m) => {
                    // A closed segment holds only records. (A roll between the listing and
                    // the look at the active segment leaves at most its zeros counted.)
                    bytes += if s.base == active_base {
                        active_len
                    } else {
                        m.len()
                    };
                    kept.push(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(&s.path, e)),
            }
        }
        let first_offset = kept.first().map_or(next_offset, |s| s.base);
        let consumers = consumer::read_all(&dir.join("consumers"))?
            .into_iter()
            .map(|(name, at)| {
                let committed_offset = at.offset;
                let lag = next_offset.saturating_sub(committed_offset);
                (
                    name,
                    ConsumerStats {
                        committed_offset,
                        lag,
                        processed_offset: at.processed,
                    },
                )
            })
            .collect();
        Ok(LogStats {
            // `next_offset` is read before the segments are listed: a roll and a retention
            // pass in between could leave the first kept segment past it.
            records: next_offset.saturating_sub(first_offset),
            segments: kept.len(),
            bytes,
            first_offset,
            next_offset,
            consumers,
            last_segment_problem: None,
        })
    }
}
