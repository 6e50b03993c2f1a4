//! Committed offsets of the log's consumers, one small file each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::LogError;
use crate::segment::sync_dir;

#[derive(Serialize, Deserialize)]
struct OffsetFile {
    offset: u64,
    /// Written only when it is past `offset`; files from before it existed read as
    /// `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    processed: Option<u64>,
}

/// Where a consumer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// The committed offset: retention keeps every record from it on, and the consumer
    /// resumes there.
    pub offset: u64,
    /// How far the consumer has durably processed the log, at least `offset`. A consumer
    /// may keep records it has processed (the processor keeps its dedupe window's), so
    /// this can be further on; every record before it was synced when the consumer read
    /// it, so damage before it cannot be a torn write.
    pub processed: u64,
}

/// The registered consumers and where each stands.
///
/// Each commit replaces `consumers/<name>.offset` atomically (write, sync, rename, sync the
/// folder), so a crash leaves either the old or the new offset, never a torn one.
pub struct Consumers {
    dir: PathBuf,
    offsets: Mutex<BTreeMap<String, Position>>,
}

impl Consumers {
    /// Reads the committed offsets under `<log dir>/consumers`. Does not need the log's lock,
    /// so `persona log stats` can read them while a server runs.
    pub(crate) fn open(log_dir: &Path) -> Result<Self, LogError> {
        let dir = log_dir.join("consumers");
        crate::segment::create_dir_durably(&dir)?;
        let offsets = read_all(&dir)?;
        Ok(Consumers {
            dir,
            offsets: Mutex::new(offsets),
        })
    }

    pub(crate) fn register(
        &self,
        name: &str,
        start: impl FnOnce() -> Result<u64, LogError>,
    ) -> Result<u64, LogError> {
        check_name(name)?;
        let mut offsets = self.offsets.lock().unwrap();
        if let Some(at) = offsets.get(name) {
            return Ok(at.offset);
        }
        let offset = start()?;
        let start = Position {
            offset,
            processed: offset,
        };
        self.write(name, start)?;
        offsets.insert(name.to_string(), start);
        Ok(start.offset)
    }

    pub(crate) fn commit(&self, name: &str, at: Position) -> Result<(), LogError> {
        check_name(name)?;
        let mut offsets = self.offsets.lock().unwrap();
        // The file already says so: rewriting it would cost a replace and two syncs, and
        // the stream stage commits after every batch while its durable offset moves once a
        // second.
        if offsets.get(name) == Some(&at) {
            return Ok(());
        }
        self.write(name, at)?;
        offsets.insert(name.to_string(), at);
        Ok(())
    }

    /// Forgets a consumer, so it no longer holds back retention.
    pub fn unregister(&self, name: &str) -> Result<(), LogError> {
        check_name(name)?;
        let mut offsets = self.offsets.lock().unwrap();
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(path, e)),
        }
        offsets.remove(name);
        Ok(())
    }

    /// The offset `name` has committed, if it is registered.
    pub fn committed(&self, name: &str) -> Option<u64> {
        self.offsets.lock().unwrap().get(name).map(|at| at.offset)
    }

    /// Every consumer's committed offset.
    pub fn all(&self) -> BTreeMap<String, u64> {
        let offsets = self.offsets.lock().unwrap();
        offsets
            .iter()
            .map(|(n, at)| (n.clone(), at.offset))
            .collect()
    }

    /// Every consumer's position.
    pub(crate) fn positions(&self) -> BTreeMap<String, Position> {
        self.offsets.lock().unwrap().clone()
    }

    /// The lowest committed offset: retention must not delete anything at or after it.
    pub fn min_committed(&self) -> Option<u64> {
        self.offsets
            .lock()
            .unwrap()
            .values()
            .map(|at| at.offset)
            .min()
    }

    /// Runs `f` with the lowest committed offset while no consumer can register or commit,
    /// so what `f` deletes stays behind every consumer.
    pub(crate) fn while_held<T>(&self, f: impl FnOnce(Option<u64>) -> T) -> T {
        let offsets = self.offsets.lock().unwrap();
        f(offsets.values().map(|at| at.offset).min())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.offset"))
    }

    fn write(&self, name: &str, at: Position) -> Result<(), LogError> {
        let path = self.path(name);
        let tmp = self.dir.join(format!("{name}.offset.tmp"));
        let file = OffsetFile {
            offset: at.offset,
            processed: (at.processed > at.offset).then_some(at.processed),
        };
        let body = serde_json::to_vec(&file).expect("serialisable");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| LogError::io(&path, e))?;
        sync_dir(&self.dir)
    }
}

pub(crate) fn read_all(dir: &Path) -> Result<BTreeMap<String, Position>, LogError> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LogError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".offset"))
        else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|e| LogError::io(&path, e))?;
        let parsed: OffsetFile = serde_json::from_slice(&bytes)
            .map_err(|e| LogError::Corrupt(format!("{}: {e}", path.display())))?;
        let processed = parsed.processed.unwrap_or(0).max(parsed.offset);
        out.insert(
            name.to_string(),
            Position {
                offset: parsed.offset,
                processed,
            },
        );
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), LogError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidConsumer(name.to_string()))
    }
}
