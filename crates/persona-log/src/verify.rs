//! A full check of a log's records, for `persona log verify`.
//!
//! Start-up checks only the tail of the last segment, where a crash can tear a write, and a
//! reader of another process's log stops quietly at the first record that does not read (it
//! may be looking at a write in progress). Damage inside older segments (a bad disk block, a
//! file changed by hand) would otherwise show only when a consumer reached it. This reads
//! every record from the oldest, checking each one's CRC and offset.

use std::fs::{File, TryLockError};
use std::path::Path;

use serde::Serialize;

use crate::error::LogError;
use crate::reader::LogReader;
use crate::segment;
use crate::stats::LogStats;

/// What [`verify`] found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Records read and found whole.
    pub checked_records: u64,
    pub segments: usize,
    pub first_offset: u64,
    pub next_offset: u64,
    /// A server held the log while it was read: the last segment's newest bytes may be a
    /// write in progress, so they are not judged.
    pub in_use: bool,
    /// The first damage found, where it is, and what it costs; `None` when every record
    /// reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Records read between two calls of the progress callback.
const BATCH: usize = 4096;

/// How long a running server is given to finish a record that reading stopped at.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Reads every record of the log in `dir`, calling `progress` with the records checked so
/// far. While it reads, no server can open the log (it holds the log's lock, shared); when
/// a server already has it open, the records it has written are checked all the same, and
/// one that does not read is looked at again once a write in progress would have ended.
pub fn verify(
    dir: impl AsRef<Path>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, LogError> {
    let dir = dir.as_ref();
    let (_lock, in_use) = share_lock(dir)?;
    let stats = LogStats::read(dir)?;
    let mut reader = LogReader::open_dir(dir)?;
    let mut checked = 0u64;
    let mut read_on = |reader: &mut LogReader| -> Result<(), LogError> {
        loop {
            let batch = match reader.read_batch(BATCH) {
                Ok(batch) => batch,
                // A running server's retention deleted the segment ahead: go on from the
                // oldest one left.
                Err(e) if in_use => match reader.first_offset()? {
                    first if first > reader.position() => {
                        reader.seek(first);
                        continue;
                    }
                    _ => return Err(e),
                },
                Err(e) => return Err(e),
            };
            if batch.is_empty() {
                return Ok(());
            }
            checked += batch.len() as u64;
            progress(checked);
        }
    };
    read_on(&mut reader)?;
    let stopped = reader.position();
    let problem = if stopped < stats.next_offset {
        let at = reader.location().map_or_else(String::new, |(path, byte)| {
            format!(" (byte {byte} of {})", path.display())
        });
        Some(format!(
            "offset {stopped}{at} does not read: its record is damaged or its segment cut \
             short; readers stop there, short of the {} records from there to {}",
            stats.next_offset - stopped,
            stats.next_offset
        ))
    } else if stats.last_segment_problem.is_none() {
        None
    } else {
        let mut why = stats.last_segment_problem;
        if in_use {
            // Reading may have stopped at a record the server was still writing. Once it
            // has had time to finish it, reading goes on past it; a record that still does
            // not read is damage.
            std::thread::sleep(SETTLE);
            read_on(&mut reader)?;
            why = LogStats::read(dir)?
                .last_segment_problem
                .filter(|_| reader.position() == stopped);
        }
        match (why, reader.location()) {
            (Some(why), Some((path, byte))) => Some(last_segment_problem(path, byte, &why)?),
            (Some(why), None) => Some(format!("the last segment's records end early ({why})")),
            (None, _) => None,
        }
    };
    Ok(VerifyReport {
        checked_records: checked,
        segments: stats.segments,
        first_offset: stats.first_offset,
        next_offset: stats.next_offset,
        in_use,
        problem,
    })
}

/// The log's lock, taken shared, and whether a writer holds it instead.
fn share_lock(dir: &Path) -> Result<(Option<File>, bool), LogError> {
    let path = dir.join("LOCK");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, false)),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok((Some(file), false)),
        Err(TryLockError::WouldBlock) => Ok((None, true)),
        Err(TryLockError::Error(e)) => Err(LogError::io(&path, e)),
    }
}

/// The records of the last segment stop at `byte` of `path`, for `why`, with more written
/// after: a crash's torn write, or damage with whole records behind it.
fn last_segment_problem(path: &Path, byte: u64, why: &str) -> Result<String, LogError> {
    let written = segment::written_len(path).map_err(|e| LogError::io(path, e))?;
    Ok(format!(
        "the last segment's records end at byte {byte} of {} ({why}), with {} bytes written \
         after them: a torn write if the server crashed while writing them, otherwise damage \
         and every record in them is lost; the next start cuts them off and keeps them aside",
        path.display(),
        written.saturating_sub(byte)
    ))
}
