//! `persona bench sql`: the lake's back-fill rate, and typical queries over it timed beside
//! DuckDB reading the same Parquet files.
//!
//! Simulated customers are sent to a server with the lake turned off; a restart with the
//! lake on then writes the whole log to Parquet (a new consumer starts at the oldest
//! record), which times the lake writer alone. Each query then runs through `POST /v1/sql`
//! (timed at the client, answer included), then again after the `compact-lake` job has
//! merged the lake's files, and in DuckDB (in one Python process, after the server has
//! stopped, on the compacted files), the fastest of `--runs` each, and their row counts are
//! compared.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Value, json};

use super::api::Api;
use super::{Server, WRITE_KEY};
use crate::cli::BenchSqlArgs;

/// The queries, in SQL both engines take; the partition columns are text in both.
pub(super) const QUERIES: &[(&str, &str)] = &[
    ("count", "SELECT count(*) FROM events"),
    (
        "events by name",
        "SELECT event, count(*) AS n FROM events WHERE type = 'track' GROUP BY event ORDER BY n DESC, event",
    ),
    (
        "revenue by day",
        "SELECT date, sum(revenue) AS revenue, count(DISTINCT user_id) AS buyers FROM events WHERE event = 'Order Completed' GROUP BY date ORDER BY date",
    ),
    (
        "top customers",
        "SELECT user_id, count(*) AS n FROM events WHERE user_id IS NOT NULL GROUP BY user_id ORDER BY n DESC, user_id LIMIT 10",
    ),
    (
        "one day's pages",
        "SELECT name, count(DISTINCT anonymous_id) AS visitors FROM events WHERE type = 'page' AND date = (SELECT max(date) FROM events) GROUP BY name ORDER BY visitors DESC, name",
    ),
];

const DUCKDB: &str = r#"
import duckdb, json, sys, time
lake, runs, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect()
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{lake}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false)")
out = []
for q in queries:
    con.execute(q).fetchall()
    best = None
    for _ in range(runs):
        t = time.perf_counter()
        rows = con.execute(q).fetchall()
        ms = (time.perf_counter() - t) * 1e3
        best = ms if best is None else min(best, ms)
    out.append({"ms": best, "rows": len(rows)})
print(json.dumps({"version": duckdb.__version__, "queries": out}))
"#;

pub async fn sql(args: BenchSqlArgs) -> anyhow::Result<()> {
    if args.customers == 0 || args.days == 0 || args.runs == 0 || args.lake_max_rows == 0 {
        bail!("--customers, --days, --runs and --lake-max-rows must be at least 1");
    }
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var("PERSONA_TEST_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    if !probe.status.success() {
        bail!(
            "{python} cannot import duckdb, the reference: `pip install duckdb`, or pass --python (scripts/test installs it in ~/.cache/persona-venv)"
        );
    }
    let dir = tempfile::tempdir()?;
    let (data, config) = (dir.path().join("data"), dir.path().join("persona.toml"));

    std::fs::write(&config, "[lake]\nenabled = false\n")?;
    let mut server = Server::serve(&data, &["--config", config.to_str().unwrap()])?;
    let api = Api::new(&server)?;
    let sent = Command::new(std::env::current_exe()?)
        .args(["simulate", "--seed", "7", "--write-key", WRITE_KEY])
        .args(["--customers", &args.customers.to_string()])
        .args(["--days", &args.days.to_string(), "--target", api.base()])
        .status()?;
    if !sent.success() {
        bail!("persona simulate failed");
    }
    api.wait_processed().await;
    server.stop();
    let log_dir = data.join("log");
    let logged = persona_log::LogReader::open_dir(&log_dir)?.end_offset()?;
    // The same server before its lake, for the bucket's turn after the local lake's.
    let bucket = match &args.lake_url {
        Some(url) => {
            let copy = dir.path().join("data-bucket");
            super::sql_bucket::copy_dir(&data, &copy)?;
            Some((url.clone(), copy))
        }
        None => None,
    };

    std::fs::write(
        &config,
        format!(
            "[lake]\nflush_seconds = 5\nmax_rows = {}\n\n[jobs]\ncompact_lake = \"off\"\n",
            args.lake_max_rows
        ),
    )?;
    let started = Instant::now();
    let mut server = Server::serve(&data, &["--config", config.to_str().unwrap()])?;
    let api = Api::new(&server)?;
    let backfill = until_in_lake(&api, logged, started).await?;
    let lake = data.join("lake").join("events");
    let (lake_bytes, files) = size(&lake)?;
    println!(
        "lake back-fill: {logged} events in {backfill:.2} s from the restart: {:.0} events/s, {files} Parquet files, {:.1} MiB (the log: {:.1} MiB)",
        logged as f64 / backfill,
        lake_bytes as f64 / 1048576.0,
        size(&log_dir)?.0 as f64 / 1048576.0,
    );

    let small_files = timed_queries(&api, args.runs).await?;
    let t = Instant::now();
    let run = api
        .admin(Method::POST, "/v1/jobs/compact-lake/run", json!({}))
        .await?;
    let compact_s = t.elapsed().as_secs_f64();
    let report = &run["result"];
    println!(
        "compaction: {} files merged into {} in {compact_s:.2} s ({} rows, {:.1} MiB into {:.1} MiB); the lake now has {} files",
        report["files_merged"],
        report["files_written"],
        report["rows"],
        report["bytes_merged"].as_f64().unwrap_or(0.0) / 1048576.0,
        report["bytes_written"].as_f64().unwrap_or(0.0) / 1048576.0,
        size(&lake)?.1,
    );
    let ours = timed_queries(&api, args.runs).await?;
    let t = Instant::now();
    query(&api, "SELECT count(*), avg(monetary) FROM profiles").await?;
    let profiles_ms = t.elapsed().as_secs_f64() * 1e3;
    server.stop();

    let queries: Vec<&str> = QUERIES.iter().map(|(_, q)| *q).collect();
    let out = Command::new(&python)
        .args(["-c", DUCKDB])
        .arg(&lake)
        .arg(args.runs.to_string())
        .arg(serde_json::to_string(&queries)?)
        .output()?;
    if !out.status.success() {
        bail!("DuckDB failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let duck: Value = serde_json::from_slice(&out.stdout)?;
    println!(
        "{:<16} {:>13} {:>11} {:>11} {:>9}  rows",
        "query",
        "before compac.",
        "persona ms",
        format!("DuckDB {}", duck["version"].as_str().unwrap_or("?")),
        "ratio"
    );
    for ((((name, _), (ms, rows)), (before, _)), theirs) in QUERIES
        .iter()
        .zip(&ours)
        .zip(&small_files)
        .zip(duck["queries"].as_array().into_iter().flatten())
    {
        let their_ms = theirs["ms"].as_f64().unwrap_or(f64::NAN);
        let same = theirs["rows"].as_u64() == Some(*rows);
        println!(
            "{name:<16} {before:>13.1} {ms:>11.1} {their_ms:>11.1} {:>9.2}  {rows}{}",
            their_ms / ms,
            if same {
                ""
            } else {
                " (DuckDB's row count differs!)"
            }
        );
    }
    println!(
        "(persona and DuckDB on the compacted lake; ratio: DuckDB's time over persona's, above 1 persona is faster)"
    );
    println!(
        "live table: SELECT count(*), avg(monetary) FROM profiles over {} customers: {profiles_ms:.1} ms",
        args.customers
    );
    if let Some((url, copy)) = bucket {
        let local = super::sql_bucket::Figures {
            backfill_s: backfill,
            compact_s,
            queries: ours,
        };
        super::sql_bucket::run(&args, &url, &copy, logged, &local).await?;
    }
    Ok(())
}

/// Waits until SQL counts `logged` events in the lake; returns the seconds since `started`.
pub(super) async fn until_in_lake(api: &Api, logged: u64, started: Instant) -> anyhow::Result<f64> {
    loop {
        let answer = query(api, QUERIES[0].1).await?;
        if answer["rows"][0][0].as_u64() == Some(logged) {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the lake did not catch up with {logged} events in 30 minutes: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each of [`QUERIES`] through the API: the fastest of `runs` after one to warm up, and
/// its row count.
pub(super) async fn timed_queries(api: &Api, runs: usize) -> anyhow::Result<Vec<(f64, u64)>> {
    let mut timed = Vec::new();
    for (_, q) in QUERIES {
        query(api, q).await?;
        let mut best = f64::INFINITY;
        let mut rows = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let answer = query(api, q).await?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            rows = answer["row_count"].as_u64().unwrap_or(0);
        }
        timed.push((best, rows));
    }
    Ok(timed)
}

pub(super) async fn query(api: &Api, sql: &str) -> anyhow::Result<Value> {
    api.admin(
        Method::POST,
        "/v1/sql",
        json!({ "query": sql, "limit": 100_000 }),
    )
    .await
}

/// Bytes and files under `dir`.
fn size(dir: &Path) -> anyhow::Result<(u64, usize)> {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let (bytes, files) = size(&entry.path())?;
            total = (total.0 + bytes, total.1 + files);
        } else {
            total = (total.0 + entry.metadata()?.len(), total.1 + 1);
        }
    }
    Ok(total)
}
