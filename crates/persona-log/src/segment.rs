//! Segment files: naming, listing, scanning and tail recovery.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::consumer::Position;
use crate::error::LogError;
use crate::record::{self, HEADER_LEN, MAX_PAYLOAD};

const SUFFIX: &str = ".log";

/// A segment file and the offset of its first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub base: u64,
    pub path: PathBuf,
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SUFFIX}"))
}

/// The segments in `dir`, oldest first. Files not named like segments are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        if let Ok(base) = stem.parse::<u64>() {
            out.push(SegmentFile {
                base,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.base);
    Ok(out)
}

/// What a sequential read of one segment found.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    /// Offset after the last whole record.
    pub next_offset: u64,
    /// Byte length of the whole records.
    pub valid_len: u64,
    /// Byte length of the file: the records and any zeros written ahead of them.
    pub file_len: u64,
    /// Why the scan stopped before the end of the records written, if it did: something
    /// other than zeros follows the last whole record.
    pub problem: Option<String>,
}

/// How far past the zeros ahead [`written_len`] looks back from the end for data.
const LOOK_BACK: usize = 1 << 20;

/// The length of a segment file without the zeros the writer keeps written ahead of its
/// records (see [`crate::writer`]): the end of its last non-zero byte. A test that cuts a
/// segment short, as a torn write would, cuts there.
pub fn written_len(path: &Path) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut chunk = vec![0u8; LOOK_BACK];
    while end > 0 {
        let start = end.saturating_sub(LOOK_BACK as u64);
        let chunk = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(last) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(start + last as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Whether everything in `r` from here on is zero.
fn only_zeros_follow(r: &mut impl Read) -> std::io::Result<bool> {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut chunk)? {
            0 => return Ok(true),
            n if chunk[..n].iter().any(|&b| b != 0) => return Ok(false),
            _ => {}
        }
    }
}

/// Reads a segment from the start and stops at the first record that is incomplete, fails
/// its CRC, or does not carry the next expected offset.
pub(crate) fn scan(seg: &SegmentFile) -> Result<Scan, LogError> {
    let file = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| LogError::io(&seg.path, e))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut pos = 0u64;
    let mut next = seg.base;
    let mut payload = Vec::new();
    let problem = loop {
        if pos == file_len {
            break None;
        }
        let why = match read_record(&mut r, &mut payload, next) {
            Ok(()) => {
                pos += (HEADER_LEN + payload.len()) as u64;
                next += 1;
                continue;
            }
            Err(ReadStop::Eof) => format!("incomplete record at byte {pos}"),
            Err(ReadStop::Bad(why)) => format!("{why} at byte {pos}"),
            Err(ReadStop::Io(e)) => return Err(LogError::io(&seg.path, e)),
        };
        // Zeros after the last record are the writer's room ahead, not damage.
        r.seek(SeekFrom::Start(pos))
            .map_err(|e| LogError::io(&seg.path, e))?;
        let zeros = only_zeros_follow(&mut r).map_err(|e| LogError::io(&seg.path, e))?;
        break (!zeros).then_some(why);
    };
    Ok(Scan {
        next_offset: next,
        valid_len: pos,
        file_len,
        problem,
    })
}

pub(crate) enum ReadStop {
    /// The file ends inside this record.
    Eof,
    /// The record is not valid.
    Bad(String),
    Io(std::io::Error),
}

/// Reads one record into `payload`, checking its CRC and that it carries `expected` offset.
pub(crate) fn read_record(
    r: &mut impl Read,
    payload: &mut Vec<u8>,
    expected: u64,
) -> Result<(), ReadStop> {
    let mut h = [0u8; HEADER_LEN];
    read_exact(r, &mut h)?;
    if h == [0; HEADER_LEN] {
        // The zeros the writer keeps ahead of its records: the end of what was written.
        // (No record's header is all zeros: its CRC covers its offset.)
        return Err(ReadStop::Eof);
    }
    let h = record::parse_header(&h);
    if h.len > MAX_PAYLOAD {
        return Err(ReadStop::Bad(format!(
            "implausible record length {}",
            h.len
        )));
    }
    payload.resize(h.len as usize, 0);
    read_exact(r, payload)?;
    if !record::checksum_ok(&h, payload) {
        return Err(ReadStop::Bad("CRC mismatch".into()));
    }
    if h.offset != expected {
        return Err(ReadStop::Bad(format!(
            "record carries offset {} where {expected} was expected",
            h.offset
        )));
    }
    Ok(())
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ReadStop> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ReadStop::Eof,
        _ => ReadStop::Io(e),
    })
}

/// What opening the log found at the end of its last segment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// The segment that was checked (the newest one).
    pub segment: Option<PathBuf>,
    /// Whole records found in it, all kept.
    pub kept_records: u64,
    /// Bytes after the last whole record that were cut off.
    pub dropped_bytes: u64,
    /// Why they were cut off.
    pub reason: Option<String>,
    /// Where the cut-off bytes were saved, so nothing is destroyed unseen.
    pub quarantined: Option<PathBuf>,
}

impl RecoveryReport {
    pub fn dropped_anything(&self) -> bool {
        self.dropped_bytes > 0
    }
}

/// Checks the last segment and cuts off whatever follows its last whole record.
///
/// A crash can leave a partly written group commit at the tail. Nothing in it was
/// acknowledged (acks follow the sync), so cutting it is safe; the bytes are still copied
/// to `<segment>.torn-<n>` first, because a bad record in the *middle* of a segment would
/// mean disk damage, and an operator should be able to look at what was cut.
///
/// A torn write can only hold records no consumer has seen (consumers read only what was
/// synced). So when a consumer has processed past the first bad record, the damage is to
/// acknowledged records: nothing is cut, and opening fails with what was found. Cutting
/// would lose them for good, and new appends would reuse offsets the consumer has passed.
pub(crate) fn recover_tail(
    seg: &SegmentFile,
    consumers: &BTreeMap<String, Position>,
) -> Result<(Scan, RecoveryReport), LogError> {
    let mut scan = scan(seg)?;
    // Checked whether or not the records end in zeros: a lost page of acknowledged records
    // may read back as zeros too. What a consumer has processed counts, not only what it
    // committed: the processor commits behind what it has processed, to keep its dedupe
    // window's records.
    if let Some((consumer, offset)) = consumers
        .iter()
        .map(|(name, at)| (name, at.processed))
        .filter(|(_, o)| *o > scan.next_offset)
        .max_by_key(|(_, o)| *o)
    {
        return Err(LogError::Corrupt(format!(
            "{}: {} (offset {}), but consumer {consumer:?} has already processed \
             up to offset {offset}, so the damage is to acknowledged records, not a torn write; \
             nothing was changed. Restore the segment from a backup, or move it aside to \
             start without its records",
            seg.path.display(),
            scan.problem
                .clone()
                .unwrap_or_else(|| format!("the records end at byte {}", scan.valid_len)),
            scan.next_offset,
        )));
    }
    let mut report = RecoveryReport {
        segment: Some(seg.path.clone()),
        kept_records: scan.next_offset - seg.base,
        ..Default::default()
    };
    if scan.problem.is_some() {
        let quarantine = unused_path(&seg.path);
        let mut src = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        src.seek(SeekFrom::Start(scan.valid_len))
            .map_err(|e| LogError::io(&seg.path, e))?;
        let mut tail = Vec::new();
        src.read_to_end(&mut tail)
            .map_err(|e| LogError::io(&seg.path, e))?;
        // The zeros written ahead are not part of what was cut.
        tail.truncate(tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1));
        let kept = File::create(&quarantine).and_then(|mut q| {
            q.write_all(&tail)?;
            q.sync_all()
        });
        if let Err(e) = kept {
            // A full disk, say: leave no empty or partial copy behind to be taken for one.
            let _ = std::fs::remove_file(&quarantine);
            return Err(LogError::io(&quarantine, e));
        }
        // The quarantine's name is durable before the segment loses those bytes.
        persona_core::durable::sync_parent(&quarantine)
            .map_err(|e| LogError::io(&quarantine, e))?;

        let f = OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .map_err(|e| LogError::io(&seg.path, e))?;
        f.set_len(scan.valid_len)
            .map_err(|e| LogError::io(&seg.path, e))?;
        f.sync_all().map_err(|e| LogError::io(&seg.path, e))?;
        report.dropped_bytes = tail.len() as u64;
        scan.file_len = scan.valid_len;
        report.reason = scan.problem.clone();
        report.quarantined = Some(quarantine);
    }
    Ok((scan, report))
}

fn unused_path(seg: &Path) -> PathBuf {
    (1..)
        .map(|n| PathBuf::from(format!("{}.torn-{n}", seg.display())))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

/// Creates `dir` and any missing parents durably (see [`persona_core::durable`]).
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), LogError> {
    persona_core::durable::create_dir_all(dir).map_err(|e| LogError::io(dir, e))
}

/// Makes a file's creation, rename or deletion durable by syncing its directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    persona_core::durable::sync_dir(dir).map_err(|e| LogError::io(dir, e))
}
