//! The lake's scheduled jobs end to end: compaction merges many small Parquet files while
//! SQL queries run, without a query ever seeing a row twice or missing one, and recovers
//! from a compaction cut short; profile snapshots land in the lake by day and read back
//! through SQL; jobs run on their cron schedule, on request through the API and the CLI,
//! and say clearly when asked for what does not exist.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{ADMIN, Http, KEY, Server, poll};
use serde_json::{Value, json};

/// A server whose lake flushes at once (so each batch sent becomes files of its own), with
/// the given `[jobs]` schedules.
fn start(dir: &Path, jobs: &str) -> Server {
    let config = dir.join("persona.toml");
    std::fs::write(
        &config,
        format!("[lake]\nflush_seconds = 0.05\n\n[jobs]\n{jobs}\n"),
    )
    .unwrap();
    Server::start_configured(&dir.join("data"), &config)
}

async fn rows(http: &Http, base: &str, query: &str) -> Value {
    let (status, answer) = http
        .admin(
            "POST",
            &format!("{base}/v1/sql"),
            Some(&json!({ "query": query })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{query}: {answer}");
    answer["rows"].clone()
}

/// The Parquet files of each partition folder of the events table.
fn files_by_partition(events: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for date in sorted(events) {
        for hour in sorted(&date) {
            let files = sorted(&hour)
                .into_iter()
                .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            let name = hour.strip_prefix(events).unwrap().display().to_string();
            out.push((name, files));
        }
    }
    out
}

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// `persona jobs ...` against the server; returns (success, stdout, stderr).
fn jobs_cli(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = common::bin()
        .args(["jobs", "--url", base, "--admin-token", ADMIN])
        .args(args)
        .output()
        .expect("persona runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TOTALS: &str = "SELECT count(*), count(DISTINCT message_id), sum(revenue) FROM events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_files_while_queries_see_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        dir.path(),
        "compact_lake = \"off\"\nsnapshot_profiles = \"off\"",
    );
    let base = server.url();
    let http = Http::default();

    // Eight batches over two past hours, each waited for in the lake, so each hour gets a
    // file per batch.
    let batches = 8;
    for b in 0..batches {
        let batch: Vec<Value> = (0..25)
            .map(|i| {
                json!({"type": "track", "userId": format!("u{}", i % 7), "event": "Order Completed",
                       "messageId": format!("b{b}-{i}"), "properties": {"revenue": i + 1},
                       "timestamp": format!("2024-05-01T{}:{:02}:00Z", 10 + i % 2, i)})
            })
            .collect();
        let (status, answer) = http
            .post(&base, "/v1/batch", KEY, &json!({ "batch": batch }))
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
        let expected = 25 * (b + 1);
        poll(
            "the lake to hold the batch",
            Duration::from_millis(20),
            || {
                let (http, base) = (&http, &base);
                async move {
                    (rows(http, base, "SELECT count(*) FROM events").await == json!([[expected]]))
                        .then_some(())
                }
            },
        )
        .await;
    }
    let events = dir.path().join("data/lake/events");
    let before = files_by_partition(&events);
    assert_eq!(before.len(), 2, "{before:?}");
    let small_files: usize = before.iter().map(|(_, f)| f.len()).sum();
    assert!(
        before.iter().all(|(_, files)| files.len() >= batches / 2),
        "{before:?}"
    );
    let totals = rows(&http, &base, TOTALS).await;
    // 8 batches × (1 + 2 + ... + 25).
    assert_eq!(totals, json!([[200, 200, 2600.0]]));

    // Keep one hour's small files aside, to stage a compaction cut short later.
    let aside = dir.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    let hour10 = events.join(&before[0].0);
    for f in &before[0].1 {
        std::fs::copy(hour10.join(f), aside.join(f)).unwrap();
    }

    // Queries run without pause while the compaction runs; every answer must be the same.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let (stop, base, totals) = (stop.clone(), base.clone(), totals.clone());
        tokio::spawn(async move {
            let http = Http::default();
            let mut answered = 0;
            while !stop.load(Ordering::Acquire) {
                let (status, answer) = http
                    .admin(
                        "POST",
                        &format!("{base}/v1/sql"),
                        Some(&json!({ "query": TOTALS })),
                    )
                    .await
                    .unwrap();
                assert_eq!(status, 200, "a query during compaction: {answer}");
                assert_eq!(answer["rows"], totals, "a query during compaction");
                answered += 1;
            }
            answered
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cli_base = base.clone();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || jobs_cli(&cli_base, &["run", "compact-lake"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Release);
    let answered = hammer.await.unwrap();
    assert!(answered >= 1, "no query ran during the compaction");

    let run: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "request", "{run}");
    let report = &run["result"];
    assert_eq!(report["partitions"], 2, "{report}");
    assert_eq!(report["files_merged"], small_files, "{report}");
    assert_eq!(report["files_written"], 2, "{report}");
    assert_eq!(report["rows"], 200, "{report}");

    // One file an hour, named after the whole range it holds, and the same answers.
    let after = files_by_partition(&events);
    for (partition, files) in &after {
        assert_eq!(files.len(), 1, "{partition}: {files:?}");
    }
    assert_eq!(rows(&http, &base, TOTALS).await, totals);
    let first_offset = before[0].1[0]["part-".len().."part-".len() + 20].to_owned();
    assert!(
        after[0].1[0].starts_with(&format!("part-{first_offset}-")),
        "{after:?}"
    );

    // Nothing left to merge: a second run changes nothing.
    let (status, again) = http
        .admin("POST", &format!("{base}/v1/jobs/compact-lake/run"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["result"]["files_merged"], 0, "{again}");
    assert_eq!(files_by_partition(&events), after);
    let (status, list) = http
        .admin("GET", &format!("{base}/v1/jobs"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{list}");
    let compact = &list["jobs"][0];
    assert_eq!(compact["name"], "compact-lake", "{list}");
    assert_eq!(compact["schedule"], Value::Null, "{list}");
    assert_eq!(compact["runs"], 2, "{list}");
    assert_eq!(compact["last_run"]["outcome"], "succeeded", "{list}");
    server.stop();

    // A compaction cut short between putting the merged file in place and removing its
    // sources leaves both; the next start removes the sources, so nothing counts twice.
    for f in &before[0].1 {
        std::fs::copy(aside.join(f), hour10.join(f)).unwrap();
    }
    assert_eq!(sorted(&hour10).len(), before[0].1.len() + 1);
    let server = start(
        dir.path(),
        "compact_lake = \"off\"\nsnapshot_profiles = \"off\"",
    );
    let base = server.url();
    assert_eq!(rows(&http, &base, TOTALS).await, totals);
    assert_eq!(files_by_partition(&events), after);
    drop(server);

    // Another engine reads the compacted lake to the same totals.
    let script = r#"
import duckdb, json, sys
lake = f"read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)"
n, distinct, revenue = duckdb.connect().execute(
    f"SELECT count(*), count(DISTINCT message_id), sum(revenue) FROM {lake}").fetchone()
print(json.dumps([[n, distinct, revenue]]))
"#;
    let out = common::python_script(script, &[events.as_os_str()]);
    let duck: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(duck, totals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_snapshots_run_on_schedule_and_on_request() {
    let dir = tempfile::tempdir().unwrap();
    // Every minute, so the test sees a scheduled run.
    let server = start(dir.path(), "snapshot_profiles = \"* * * * *\"");
    let base = server.url();
    let http = Http::default();
    for (user, n) in [("ann", 1), ("ann", 2), ("bob", 1)] {
        http.purchase(&base, user, n).await;
    }
    let (status, answer) = http
        .post(
            &base,
            "/v1/identify",
            KEY,
            &json!({"anonymousId": "visitor-1", "traits": {"plan": "free"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    http.wait_processed(&base).await;

    let (status, list) = http
        .admin("GET", &format!("{base}/v1/jobs"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{list}");
    let snapshot = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "snapshot-profiles")
        .unwrap()
        .clone();
    assert_eq!(snapshot["schedule"], "* * * * *", "{list}");
    assert!(snapshot["next_run"].is_string(), "{list}");
    assert_eq!(
        list["jobs"][0]["schedule"], "15 * * * *",
        "compaction keeps its default schedule: {list}"
    );

    // The scheduled run, within the minute.
    let scheduled = poll("the scheduled snapshot", Duration::from_millis(500), || {
        let (http, base) = (&http, &base);
        async move {
            let (_, list) = http
                .admin("GET", &format!("{base}/v1/jobs"), None)
                .await
                .unwrap();
            let job = list["jobs"][1].clone();
            (job["last_run"]["trigger"] == "schedule").then_some(job)
        }
    })
    .await;
    assert_eq!(scheduled["last_run"]["outcome"], "succeeded", "{scheduled}");
    let scheduled_date = scheduled["last_run"]["result"]["snapshot_date"].clone();

    // On request: today's snapshot is replaced, not added to.
    let (status, run) = http
        .admin(
            "POST",
            &format!("{base}/v1/jobs/snapshot-profiles/run"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{run}");
    let report = &run["result"];
    assert_eq!(report["profiles"], 3, "{run}");
    let today = report["snapshot_date"].as_str().unwrap().to_owned();
    // (Across midnight, the scheduled run wrote the day before's snapshot instead.)
    let same_day = scheduled_date == today;
    assert_eq!(report["replaced"], same_day, "{run}");
    let file = dir.path().join(format!(
        "data/lake/profile_snapshots/snapshot_date={today}/profiles.parquet"
    ));
    assert!(file.is_file(), "{}", file.display());

    let live = rows(
        &http,
        &base,
        "SELECT user_id, frequency, monetary, json_get(traits, 'plan') FROM profiles ORDER BY user_id NULLS LAST",
    )
    .await;
    assert_eq!(
        live,
        json!([
            ["ann", 2, 200.0, null],
            ["bob", 1, 100.0, null],
            [null, 0, 0.0, "free"]
        ])
    );
    let snapshotted = rows(
        &http,
        &base,
        "SELECT user_id, frequency, monetary, json_get(traits, 'plan') FROM profile_snapshots \
         ORDER BY user_id NULLS LAST",
    )
    .await;
    assert_eq!(snapshotted, live);
    let by_day = rows(
        &http,
        &base,
        "SELECT snapshot_date, count(*) FROM profile_snapshots GROUP BY snapshot_date ORDER BY 1",
    )
    .await;
    if same_day {
        assert_eq!(by_day, json!([[today, 3]]));
    } else {
        assert_eq!(by_day, json!([[scheduled_date, 3], [today, 3]]));
    }

    // Asked for what does not exist: 404 naming the jobs; the CLI fails, saying so.
    let (status, answer) = http
        .admin("POST", &format!("{base}/v1/jobs/vacuum/run"), None)
        .await
        .unwrap();
    assert_eq!(status, 404, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"vacuum\"") && message.contains("compact-lake, snapshot-profiles"),
        "{message}"
    );
    let cli_base = base.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || jobs_cli(&cli_base, &["run", "vacuum"]))
        .await
        .unwrap();
    assert!(!ok && err.contains("no job is named"), "{err}");

    let metrics = http.get_text(&format!("{base}/metrics")).await.unwrap();
    assert!(
        metrics.contains("persona_job_runs_total{job=\"snapshot-profiles\",outcome=\"succeeded\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("persona_job_last_success_timestamp_seconds{job=\"snapshot-profiles\"}")
    );
}

#[test]
fn a_bad_schedule_stops_the_start_and_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("persona.toml");
    std::fs::write(&config, "[jobs]\ncompact_lake = \"61 * * * *\"\n").unwrap();
    let err = common::serve_refuses(&dir.path().join("data"), &config);
    assert!(err.contains("jobs.compact_lake"), "{err}");
}
