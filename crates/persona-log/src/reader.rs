//! Sequential reading of the log from any retained offset.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::LogError;
use crate::record::{self, HEADER_LEN, MAX_PAYLOAD};
use crate::segment::{self, ReadStop, SegmentFile};
use crate::writer::Shared;

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    /// Byte position of the record in its segment file: with the offset, enough for
    /// [`read_at`] to fetch it again without scanning.
    pub position: u64,
    pub payload: Vec<u8>,
}

/// Reads the single record `offset`, stored at byte `position` of its segment, from the log
/// in `dir`. `None` when retention has deleted it (or it was never written).
///
/// This is how per-profile event indexes fetch events: one seek and one read each.
pub fn read_at(
    dir: impl AsRef<Path>,
    offset: u64,
    position: u64,
) -> Result<Option<Record>, LogError> {
    let segments = segment::list_segments(dir.as_ref())?;
    let Some(seg) = segments.iter().rev().find(|s| s.base <= offset) else {
        return Ok(None);
    };
    let mut file = match File::open(&seg.path) {
        Ok(f) => f,
        // Deleted by retention between listing and opening.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(&seg.path, e)),
    };
    file.seek(SeekFrom::Start(position))
        .map_err(|e| LogError::io(&seg.path, e))?;
    let mut payload = Vec::new();
    match segment::read_record(
        &mut BufReader::with_capacity(8 << 10, file),
        &mut payload,
        offset,
    ) {
        Ok(()) => Ok(Some(Record {
            offset,
            position,
            payload,
        })),
        Err(ReadStop::Io(e)) => Err(LogError::io(&seg.path, e)),
        Err(ReadStop::Eof) => Ok(None),
        Err(ReadStop::Bad(why)) => Err(LogError::Corrupt(format!(
            "{} at byte {position}: {why}",
            seg.path.display()
        ))),
    }
}

/// A cursor over the log.
///
/// A reader made by [`crate::EventLog::reader`] never passes the last durable record. A
/// reader made by [`LogReader::open_dir`] (another process, e.g. a test or an offline tool)
/// stops at the last whole record it finds.
pub struct LogReader {
    dir: PathBuf,
    live: Option<Arc<Shared>>,
    next: u64,
    cursor: Option<Cursor>,
    payload: Vec<u8>,
}

struct Cursor {
    reader: BufReader<Written>,
    /// Byte position of `LogReader::next` in the file.
    pos: u64,
    /// The segment's first offset.
    base: u64,
    path: PathBuf,
}

/// A segment file read no further than `end`. A live reader's `end` is what the writer has
/// written and synced of the active segment, so its buffer never takes in the zeros the
/// writer keeps ahead of its records, and each refill reads only new records instead of a
/// buffer's worth of zeros. Other readers read to the end of the file.
struct Written {
    file: File,
    /// Byte position of the file's cursor.
    pos: u64,
    end: u64,
}

impl Read for Written {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = self.end.saturating_sub(self.pos).min(buf.len() as u64) as usize;
        let n = self.file.read(&mut buf[..room])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Written {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

impl LogReader {
    pub(crate) fn live(shared: Arc<Shared>) -> Result<Self, LogError> {
        let mut r = Self::new(shared.dir.clone(), Some(shared));
        r.next = r.first_offset()?;
        Ok(r)
    }

    /// A reader over the log in `dir`, written by this or another process, from its start.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let mut r = Self::new(dir.as_ref().to_path_buf(), None);
        r.next = r.first_offset()?;
        Ok(r)
    }

    fn new(dir: PathBuf, live: Option<Arc<Shared>>) -> Self {
        LogReader {
            dir,
            live,
            next: 0,
            cursor: None,
            payload: Vec::new(),
        }
    }

    /// The oldest offset still in the log (0 when it is empty).
    pub fn first_offset(&self) -> Result<u64, LogError> {
        Ok(segment::list_segments(&self.dir)?
            .first()
            .map_or(0, |s| s.base))
    }

    /// The offset after the last record a read can return: the last durable one for a live
    /// reader, the last whole one found for a reader of another process's log.
    pub fn end_offset(&self) -> Result<u64, LogError> {
        if let Some(shared) = &self.live {
            return Ok(shared.committed());
        }
        match segment::list_segments(&self.dir)?.last() {
            Some(last) => Ok(segment::scan(last)?.next_offset),
            None => Ok(0),
        }
    }

    /// The offset the next read returns first.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The segment file and byte where the next read starts, once a read has opened it.
    pub fn location(&self) -> Option<(&Path, u64)> {
        self.cursor.as_ref().map(|c| (c.path.as_path(), c.pos))
    }

    /// Moves the cursor so the next read starts at `offset`.
    pub fn seek(&mut self, offset: u64) {
        if offset != self.next {
            self.next = offset;
            self.cursor = None;
        }
    }

    /// Reads up to `max_records` records, or fewer when the end is reached. An empty result
    /// means there is nothing more to read now.
    pub fn read_batch(&mut self, max_records: usize) -> Result<Vec<Record>, LogError> {
        let limit = self.live.as_ref().map_or(u64::MAX, |s| s.committed());
        let mut out = Vec::new();
        // Whether the live reader has looked for more of the segment at `self.next` already.
        let mut refreshed = false;
        while out.len() < max_records && self.next < limit {
            if self.cursor.is_none() {
                match self.open_cursor()? {
                    Some(c) => self.cursor = Some(c),
                    None => break,
                }
            }
            let cursor = self.cursor.as_mut().expect("opened above");
            match segment::read_record(&mut cursor.reader, &mut self.payload, self.next) {
                Ok(()) => {
                    let position = cursor.pos;
                    cursor.pos += (HEADER_LEN + self.payload.len()) as u64;
                    out.push(Record {
                        offset: self.next,
                        position,
                        payload: std::mem::take(&mut self.payload),
                    });
                    self.next += 1;
                    refreshed = false;
                }
                Err(ReadStop::Io(e)) => return Err(LogError::io(&cursor.path, e)),
                Err(stop) => {
                    // The end of what this reader may read of the segment. A live reader
                    // first learns how much more the writer has written to it since.
                    let (path, pos, base) = (cursor.path.clone(), cursor.pos, cursor.base);
                    if self.live.is_some() && !refreshed {
                        refreshed = true;
                        let end = self.readable_end(base);
                        let c = self.cursor.as_mut().expect("still open");
                        if end > c.reader.get_ref().end {
                            c.reader.get_mut().end = end;
                            // Back to the record's start, in case the stop consumed part of
                            // it (an end never falls inside a record, so this is cheap).
                            c.reader
                                .seek(SeekFrom::Start(pos))
                                .map_err(|e| LogError::io(&path, e))?;
                            continue;
                        }
                    }
                    // If the next segment starts here, continue there; otherwise we are
                    // at the end.
                    let next_segment = self.segment_starting_at(self.next)?;
                    if next_segment.is_some_and(|s| s.path != path) {
                        self.cursor = None;
                        continue;
                    }
                    // Everything before `limit` was written and synced before it was
                    // published, so in this process a record that will not read there is
                    // damage (a bad record, or a segment cut short), not a write in
                    // progress: an error, not a quiet "nothing more", which a follower
                    // would take for having caught up.
                    if self.live.is_some() {
                        let why = match stop {
                            ReadStop::Bad(why) => why,
                            _ => format!("the segment ends before offset {}", self.next),
                        };
                        return Err(LogError::Corrupt(format!(
                            "{} at byte {pos}: {why}, below the committed offset {limit}",
                            path.display()
                        )));
                    }
                    let c = self.cursor.as_mut().expect("still open");
                    c.reader
                        .seek(SeekFrom::Start(pos))
                        .map_err(|e| LogError::io(&path, e))?;
                    break;
                }
            }
        }
        Ok(out)
    }

    /// How far a reader may read the segment starting at `base`: for a live reader, the
    /// records written to it when it is the active segment; otherwise the whole file.
    fn readable_end(&self, base: u64) -> u64 {
        match &self.live {
            Some(shared) => match *shared.active.lock().expect("not poisoned") {
                (active, len) if active == base => len,
                // Closed: cut back to its records when it was closed.
                _ => u64::MAX,
            },
            None => u64::MAX,
        }
    }

    fn segment_starting_at(&self, offset: u64) -> Result<Option<SegmentFile>, LogError> {
        Ok(segment::list_segments(&self.dir)?
            .into_iter()
            .find(|s| s.base == offset))
    }

    /// Opens the segment holding `self.next` and skips to it, reading only headers.
    fn open_cursor(&self) -> Result<Option<Cursor>, LogError> {
        let segments = segment::list_segments(&self.dir)?;
        let Some(seg) = segments.iter().rev().find(|s| s.base <= self.next) else {
            return match segments.first() {
                Some(first) => Err(LogError::Corrupt(format!(
                    "offset {} was deleted by retention; the oldest retained is {}",
                    self.next, first.base
                ))),
                None => Ok(None),
            };
        };
        let file = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        let file = Written {
            file,
            pos: 0,
            end: self.readable_end(seg.base),
        };
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut pos = 0u64;
        let mut offset = seg.base;
        let mut h = [0u8; HEADER_LEN];
        while offset < self.next {
            let stop = match reader.read_exact(&mut h) {
                Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                    return Err(LogError::io(&seg.path, e));
                }
                Err(_) => Some("the segment ends".to_string()),
                Ok(()) if h == [0; HEADER_LEN] => Some("zeros where a record was".to_string()),
                Ok(()) => {
                    let header = record::parse_header(&h);
                    (header.offset != offset || header.len > MAX_PAYLOAD).then(|| {
                        format!(
                            "a header of offset {} and {} bytes",
                            header.offset, header.len
                        )
                    })
                }
            };
            if let Some(why) = stop {
                // A live reader only seeks below the committed offset, where every record
                // was written and synced: damage, which must not read as "nothing more" (a
                // follower would wait there for ever, holding retention back). Any other
                // reader may be looking at a write in progress.
                if self.live.is_none() {
                    return Ok(None);
                }
                return Err(LogError::Corrupt(format!(
                    "{} at byte {pos}, skipping to offset {}: {why} before offset {offset}",
                    seg.path.display(),
                    self.next
                )));
            }
            let header = record::parse_header(&h);
            reader
                .seek_relative(header.len as i64)
                .map_err(|e| LogError::io(&seg.path, e))?;
            pos += (HEADER_LEN as u64) + header.len as u64;
            offset += 1;
        }
        Ok(Some(Cursor {
            reader,
            pos,
            base: seg.base,
            path: seg.path.clone(),
        }))
    }
}
