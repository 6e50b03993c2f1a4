//! `persona log stats`.

use anyhow::{Context, bail};
use persona_log::LogStats;

use crate::cli::{LogStatsArgs, default_data_dir};

pub fn stats(args: LogStatsArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let dir = data_dir.join("log");
    if !dir.is_dir() {
        let why = if data_dir.is_dir() {
            "it holds no event log (`log/`)"
        } else if data_dir.exists() {
            "it is not a folder"
        } else {
            "the folder does not exist"
        };
        bail!(
            "no event log in {}: {why}; --data-dir names the folder `persona serve` uses",
            data_dir.display()
        );
    }
    let stats = LogStats::read(&dir)
        .with_context(|| format!("cannot read the event log in {}", dir.display()))?;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    if let Some(problem) = &stats.last_segment_problem {
        eprintln!(
            "note: the last segment's records end early ({problem}). With no server running \
             this is a torn or damaged tail: the next start cuts it off and keeps the bytes \
             aside, or refuses if a consumer has read past it. A running server may just be \
             writing the record."
        );
    }
    Ok(())
}
