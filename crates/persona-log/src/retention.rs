//! Deleting closed segments without ever dropping what a consumer still needs.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use crate::error::LogError;
use crate::segment::{self, sync_dir};
use crate::writer::Shared;

/// What one retention pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionReport {
    pub deleted_segments: Vec<PathBuf>,
    pub deleted_bytes: u64,
    /// Segments the policy wanted gone but a consumer had not yet committed past.
    pub held_for_consumers: usize,
}

pub(crate) fn enforce(shared: &Shared) -> Result<RetentionReport, LogError> {
    let policy = &shared.config.retention;
    if policy.max_bytes.is_none() && policy.max_age.is_none() {
        return Ok(RetentionReport::default());
    }
    shared
        .consumers
        .while_held(|min_committed| delete_closed(shared, min_committed))
}

fn delete_closed(shared: &Shared, min_committed: Option<u64>) -> Result<RetentionReport, LogError> {
    let policy = &shared.config.retention;
    let mut report = RetentionReport::default();
    let segments = segment::list_segments(&shared.dir)?;
    // The newest segment is being written to and is never deleted. A closed segment's
    // records end where the next segment begins.
    let closed: Vec<_> = segments
        .windows(2)
        .map(|w| (w[0].clone(), w[1].base))
        .collect();
    let mut sizes = Vec::with_capacity(closed.len());
    for (seg, _) in &closed {
        let meta = std::fs::metadata(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        sizes.push((meta.len(), meta.modified().ok()));
    }
    let mut closed_bytes: u64 = sizes.iter().map(|(len, _)| len).sum();
    let safe_before = min_committed.unwrap_or(u64::MAX);
    let now = SystemTime::now();

    for ((seg, end), (len, modified)) in closed.iter().zip(sizes) {
        let too_big = policy.max_bytes.is_some_and(|max| closed_bytes > max);
        let too_old = match (policy.max_age, modified) {
            (Some(age), Some(m)) => now.duration_since(m).is_ok_and(|d| d > age),
            _ => false,
        };
        if !too_big && !too_old {
            break; // oldest first: once one is kept, the newer ones are too
        }
        if *end > safe_before {
            report.held_for_consumers += 1;
            break;
        }
        std::fs::remove_file(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        tracing::info!(segment = %seg.path.display(), bytes = len, "retention deleted a log segment");
        closed_bytes -= len;
        report.deleted_bytes += len;
        report.deleted_segments.push(seg.path.clone());
    }
    if !report.deleted_segments.is_empty() {
        sync_dir(&shared.dir)?;
    }
    Ok(report)
}
