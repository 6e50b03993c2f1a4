//! `persona bench sql --lake-url s3://…`: the same lake in a bucket, beside the local one.
//!
//! The server as it was before its lake (copied before the local back-fill) is started
//! again with its lake in the bucket: the back-fill, the compaction and the queries are
//! timed as for the local lake and printed side by side, as ratios.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::json;

use super::Server;
use super::api::Api;
use super::sql::{QUERIES, timed_queries, until_in_lake};
use crate::cli::BenchSqlArgs;

/// What the local lake measured.
pub(super) struct Figures {
    pub backfill_s: f64,
    pub compact_s: f64,
    /// Each query's best time in ms, and its row count.
    pub queries: Vec<(f64, u64)>,
}

pub(super) async fn run(
    args: &BenchSqlArgs,
    url: &str,
    data: &Path,
    logged: u64,
    local: &Figures,
) -> anyhow::Result<()> {
    let mut options = String::new();
    for option in &args.lake_options {
        let Some((name, value)) = option.split_once('=') else {
            bail!("--lake-option {option:?}: expected NAME=VALUE");
        };
        options.push_str(&format!("{name} = {}\n", toml_string(value)));
    }
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nflush_seconds = 5\nmax_rows = {}\nurl = {}\n\n[lake.options]\n{options}\n[jobs]\ncompact_lake = \"off\"\n",
            args.lake_max_rows,
            toml_string(url),
        ),
    )?;
    let started = Instant::now();
    let mut server = Server::serve(data, &["--config", config.to_str().unwrap()])?;
    let api = Api::new(&server)?;
    let backfill_s = until_in_lake(&api, logged, started).await?;
    let t = Instant::now();
    let run = api
        .admin(Method::POST, "/v1/jobs/compact-lake/run", json!({}))
        .await?;
    let compact_s = t.elapsed().as_secs_f64();
    if run["outcome"] != "succeeded" {
        bail!("compaction in the bucket failed: {run}");
    }
    let queries = timed_queries(&api, args.runs).await?;
    server.stop();

    println!(
        "the lake at {url}, beside the local lake (ratio: local time over the bucket's, below 1 the bucket is slower)"
    );
    println!("{:<16} {:>12} {:>12} {:>7}", "", "local", "bucket", "ratio");
    let rate = |s: f64| logged as f64 / s;
    println!(
        "{:<16} {:>8.0} ev/s {:>8.0} ev/s {:>7.2}",
        "back-fill",
        rate(local.backfill_s),
        rate(backfill_s),
        local.backfill_s / backfill_s
    );
    println!(
        "{:<16} {:>10.2} s {:>10.2} s {:>7.2}",
        "compaction",
        local.compact_s,
        compact_s,
        local.compact_s / compact_s
    );
    for (((name, _), (ours, rows)), (theirs, their_rows)) in
        QUERIES.iter().zip(&local.queries).zip(&queries)
    {
        println!(
            "{name:<16} {ours:>9.1} ms {theirs:>9.1} ms {:>7.2}{}",
            ours / theirs,
            if rows == their_rows {
                ""
            } else {
                "  (row counts differ!)"
            }
        );
    }
    Ok(())
}

/// `value` as a TOML string.
fn toml_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

/// Copies the folder `from` to `to`, files and subfolders.
pub(super) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}
