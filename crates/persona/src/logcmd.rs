//! `persona log stats`.

use anyhow::Context;
use persona_log::LogStats;

use crate::cli::{LogStatsArgs, default_data_dir};

pub fn stats(args: LogStatsArgs) -> anyhow::Result<()> {
    let dir = args.data_dir.unwrap_or_else(default_data_dir).join("log");
    let stats = LogStats::read(&dir)
        .with_context(|| format!("cannot read the event log in {}", dir.display()))?;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(())
}
