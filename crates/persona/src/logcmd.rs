//! `persona log stats` and `persona log verify`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use persona_log::LogStats;

use crate::cli::{LogStatsArgs, default_data_dir};

/// The log folder of the data folder `args` name, or an error saying why there is none.
fn log_dir(args: LogStatsArgs) -> anyhow::Result<PathBuf> {
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
    Ok(dir)
}

pub fn stats(args: LogStatsArgs) -> anyhow::Result<()> {
    let dir = log_dir(args)?;
    let stats = LogStats::read(&dir)
        .with_context(|| format!("cannot read the event log in {}", dir.display()))?;
    crate::say::print_json(&stats)?;
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

/// Reads every record, with a progress bar; prints the report as JSON and fails when a
/// record does not read.
pub fn verify(args: LogStatsArgs) -> anyhow::Result<()> {
    let dir = log_dir(args)?;
    let stats = LogStats::read(&dir)
        .with_context(|| format!("cannot read the event log in {}", dir.display()))?;
    let bar = crate::client::progress_bar(stats.records, "verifying records");
    let report = persona_log::verify(&dir, |checked| bar.set_position(checked))
        .with_context(|| format!("cannot read the event log in {}", dir.display()))?;
    bar.finish_and_clear();
    crate::say::print_json(&report)?;
    match &report.problem {
        Some(problem) => bail!("the event log in {} is damaged: {problem}", dir.display()),
        None => Ok(()),
    }
}
