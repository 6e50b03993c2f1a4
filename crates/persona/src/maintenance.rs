//! The scheduled jobs of `persona serve`: what each one does, built from the server's parts.

use std::sync::Arc;

use persona_jobs::{JobSpec, Work};
use persona_lake::{LakeGate, LakeStorage};
use persona_log::EventLog;
use persona_warehouse::Warehouse;

use crate::settings::Settings;

/// The names the API and the CLI know the jobs by.
pub const COMPACT_LAKE: &str = "compact-lake";
pub const SNAPSHOT_PROFILES: &str = "snapshot-profiles";

/// The server's jobs, on the schedules of `settings`.
pub fn jobs(
    settings: &Settings,
    log: Arc<EventLog>,
    lake: LakeStorage,
    gate: LakeGate,
    warehouse: Arc<Warehouse>,
) -> Vec<JobSpec> {
    let target = settings.lake.compact_target_bytes;
    let compact: Work = Box::new(move || {
        // Files past the lake writer's committed offset may still be replaced by it. With
        // the lake turned off there is no writer, no consumer, and nothing new to merge.
        let committed = log
            .consumers()
            .committed(persona_lake::CONSUMER)
            .unwrap_or(0);
        let report = persona_lake::compact(&lake, committed, target, &gate, chrono::Utc::now())
            .map_err(|e| format!("cannot compact the lake: {e}"))?;
        serde_json::to_value(report).map_err(|e| e.to_string())
    });
    let snapshot: Work = Box::new(move || {
        let report = warehouse
            .snapshot_profiles()
            .map_err(|e| format!("cannot write the profile snapshot: {e}"))?;
        serde_json::to_value(report).map_err(|e| e.to_string())
    });
    vec![
        JobSpec {
            name: COMPACT_LAKE,
            description: "Merges each past hour's small Parquet files of the events lake into few large ones, so queries open fewer files",
            schedule: settings.jobs.compact_lake.clone(),
            work: compact,
        },
        JobSpec {
            name: SNAPSHOT_PROFILES,
            description: "Writes every profile, with its computed figures, to the lake as today's snapshot (SQL table profile_snapshots)",
            schedule: settings.jobs.snapshot_profiles.clone(),
            work: snapshot,
        },
    ]
}
