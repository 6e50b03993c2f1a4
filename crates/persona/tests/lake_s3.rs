//! The lake in an object store: with `[lake] url = "s3://…"`, `persona serve` writes its
//! Parquet files to a real S3-compatible server (s3s-fs, which keeps each object as a
//! file; `scripts/test` builds it and names it in `PERSONA_TEST_S3S`), in the same layout
//! as on disk. SQL reads them back over S3; a SIGKILL mid-flush leaves every event in the
//! bucket exactly once; compaction and profile snapshots work there; and a bucket out of
//! reach holds up the lake, never the server, which catches up once the bucket is back.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::acked::{assert_acked_in_lake, spawn_senders, sql, until_acked, until_in_lake};
use common::{Http, KEY, Server, files_under, log_stats, poll};
use serde_json::{Value, json};

const ACCESS_KEY: &str = "persona-test";
const SECRET_KEY: &str = "persona-test-secret";
/// The bucket, and the lake's path in it.
const BUCKET: &str = "lake";
const PREFIX: &str = "persona";

/// An S3-compatible server of the test's own, keeping its buckets as folders of `root`.
struct S3Server {
    child: Child,
}

impl S3Server {
    fn start(root: &Path, port: u16) -> S3Server {
        let binary = std::env::var("PERSONA_TEST_S3S")
            .expect("PERSONA_TEST_S3S must name the s3s-fs binary (scripts/test builds it)");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server { child }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config file putting the lake in the bucket of the server on `port`, flushing at
/// once, with the jobs run only on request.
fn config(dir: &Path, port: u16, secret: &str) -> PathBuf {
    let path = dir.join("persona.toml");
    std::fs::write(
        &path,
        format!(
            r#"[lake]
flush_seconds = 0.05
max_rows = 40
url = "s3://{BUCKET}/{PREFIX}"

[lake.options]
aws_endpoint = "http://127.0.0.1:{port}"
aws_allow_http = "true"
aws_region = "us-east-1"
aws_access_key_id = "{ACCESS_KEY}"
aws_secret_access_key = "{secret}"

[jobs]
compact_lake = "off"
snapshot_profiles = "off"
"#
        ),
    )
    .unwrap();
    path
}

async fn run_job(http: &Http, base: &str, job: &str) -> Value {
    let (status, run) = http
        .admin("POST", &format!("{base}/v1/jobs/{job}/run"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{run}");
    run["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_in_a_bucket_holds_every_event_once_and_answers_sql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("s3");
    let port = free_port();
    let _s3 = S3Server::start(&root, port);
    let config = config(dir.path(), port, SECRET_KEY);
    let lake = root.join(BUCKET).join(PREFIX);
    let http = Http::default();

    // Live traffic, killed mid-stream twice: flushes of 40 events every 50 ms, so most
    // kills land during an upload or between an upload and its commit.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..2 {
        let mut server = Server::start_configured(&data, &config);
        let url = server.url();
        let before = acked.lock().unwrap().len();
        let clients = spawn_senders(&url, &http, &format!("r{round}"), 4, &acked);
        until_acked(&acked, before, 300).await;
        server.kill9();
        for c in clients {
            c.await.unwrap();
        }
    }

    let mut server = Server::start_configured(&data, &config);
    let base = server.url();
    // Three batches dated in a past hour, each waited for in the lake: three small files
    // there for compaction to merge.
    for b in 0..3 {
        let batch: Vec<Value> = (0..10)
            .map(|i| {
                json!({"type": "track", "userId": format!("old{i}"), "event": "Order Completed",
                       "messageId": format!("old-{b}-{i}"), "properties": {"revenue": 10},
                       "timestamp": format!("2024-05-01T10:{:02}:00Z", b * 10 + i)})
            })
            .collect();
        let (status, answer) = http
            .post(&base, "/v1/batch", KEY, &json!({ "batch": batch }))
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
        let logged = log_stats(&data)["next_offset"].as_u64().unwrap();
        until_in_lake(&http, &base, logged).await;
    }
    let logged = log_stats(&data)["next_offset"].as_u64().unwrap();
    assert!(
        logged > 600,
        "only {logged} events logged; the test proves nothing"
    );
    assert_eq!(
        log_stats(&data)["consumers"]["lake"]["committed_offset"],
        json!(logged)
    );

    // The files are objects of the bucket, in the lake's layout; nothing of the lake is
    // on local disk, and no staged file is left behind.
    let objects = files_under(&lake.join("events"));
    assert!(!objects.is_empty());
    assert!(
        objects.iter().all(|f| f.starts_with("date=")
            && f.contains("/hour=")
            && f.ends_with(".parquet")
            && f.contains("/part-")),
        "{objects:?}"
    );
    assert!(files_under(&data.join("lake")).is_empty());
    assert!(files_under(&data.join("lake-staging")).is_empty());
    let old_hour = lake.join("events/date=2024-05-01/hour=10");
    assert_eq!(
        files_under(&old_hour).len(),
        3,
        "{:?}",
        files_under(&old_hour)
    );

    // Every acknowledged event is there.
    assert_acked_in_lake(&http, &base, &acked).await;

    // Compaction merges the past hour's three files in the bucket; the answers stay.
    let totals = "SELECT count(*), count(DISTINCT log_offset), sum(revenue) FROM events";
    let before = sql(&http, &base, totals).await;
    let report = run_job(&http, &base, "compact-lake").await;
    assert_eq!(report["files_merged"], 3, "{report}");
    assert_eq!(report["files_written"], 1, "{report}");
    assert_eq!(
        files_under(&old_hour).len(),
        1,
        "{:?}",
        files_under(&old_hour)
    );
    assert_eq!(sql(&http, &base, totals).await, before);

    // The profile snapshot goes to the bucket too, and reads back through SQL.
    let report = run_job(&http, &base, "snapshot-profiles").await;
    let path = report["path"].as_str().unwrap();
    assert!(
        path.starts_with(&format!(
            "s3://{BUCKET}/{PREFIX}/profile_snapshots/snapshot_date="
        )),
        "{report}"
    );
    let snapshots = files_under(&lake.join("profile_snapshots"));
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let profiles = sql(&http, &base, "SELECT count(*) FROM profiles").await;
    assert_eq!(
        sql(&http, &base, "SELECT count(*) FROM profile_snapshots").await,
        profiles
    );
    assert_eq!(json!([[report["profiles"]]]), profiles, "{report}");
    server.stop();

    // Another engine reads the bucket's objects as the Parquet lake they are.
    let script = r#"
import duckdb, sys
lake = f"read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)"
print(duckdb.connect().execute(f'SELECT count(DISTINCT log_offset) FROM {lake}').fetchone()[0])
"#;
    let out = common::python_script(script, &[lake.join("events").as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&out).trim(), logged.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_out_of_reach_holds_up_the_lake_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("s3");
    let port = free_port();
    let http = Http::default();

    // No server on the port yet: persona starts, takes events, and says the lake fails.
    let mut server = Server::start_configured(&data, &config(dir.path(), port, SECRET_KEY));
    let base = server.url();
    for n in 0..20 {
        http.purchase(&base, "early", n).await;
    }
    http.wait_processed(&base).await;
    let failing = || async {
        let metrics = http.get_text(&format!("{base}/metrics")).await.unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("persona_lake_failing "))
            .map(str::to_owned)
    };
    poll(
        "the lake to say it fails",
        Duration::from_millis(50),
        || async { (failing().await.as_deref() == Some("1")).then_some(()) },
    )
    .await;
    let (status, profile) = http
        .admin("GET", &format!("{base}/v1/profiles/early"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["computed"]["frequency"], 20, "{profile}");

    // The bucket comes up: the lake catches up on its own, each event once.
    let _s3 = S3Server::start(&root, port);
    until_in_lake(&http, &base, 20).await;
    assert_eq!(failing().await.as_deref(), Some("0"));
    server.stop();

    // Wrong credentials are refused by the server, and said; nothing is committed.
    let mut server = Server::start_configured(&data, &config(dir.path(), port, "not-the-secret"));
    let base = server.url();
    for n in 20..25 {
        http.purchase(&base, "early", n).await;
    }
    poll(
        "the lake to say it fails",
        Duration::from_millis(50),
        || async {
            let metrics = http.get_text(&format!("{base}/metrics")).await.unwrap();
            metrics
                .lines()
                .any(|l| l == "persona_lake_failing 1")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        log_stats(&data)["consumers"]["lake"]["committed_offset"],
        json!(20)
    );
    server.stop();
}

#[test]
fn bad_lake_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("persona.toml");
    for (lake, expected) in [
        ("url = \"ftp://host/lake\"", "the scheme \"ftp\""),
        (
            "url = \"s3://lake/p\"\n[lake.options]\naws_endpoit = \"http://x\"",
            "lake.options.aws_endpoit: not a setting of S3",
        ),
        (
            "[lake.options]\naws_region = \"eu-west-1\"",
            "lake.options.aws_region: options are for a lake in an object store",
        ),
    ] {
        std::fs::write(&config, format!("[lake]\n{lake}\n")).unwrap();
        let said = common::serve_refuses(&dir.path().join("data"), &config);
        assert!(said.contains(expected), "{lake}: {said}");
    }
}
