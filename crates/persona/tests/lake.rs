//! The Parquet lake under SIGKILL: every logged event is in the lake exactly once, however
//! often the server is killed mid-flush; and another engine (DuckDB) reads the lake as it
//! is, agreeing with persona's own SQL.

mod common;

use std::sync::{Arc, Mutex};

use common::acked::{assert_acked_in_lake, spawn_senders, sql, until_acked, until_in_lake};
use common::{Http, Server, files_under, log_stats};
use serde_json::{Value, json};

const ROUNDS: usize = 3;
const CLIENTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_holds_every_logged_event_once_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Tiny, constant flushes: most kills land between a file's rename and the commit
    // of its offsets, or mid-file.
    let config = dir.path().join("persona.toml");
    std::fs::write(&config, "[lake]\nflush_seconds = 0.02\nmax_rows = 40\n").unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let http = Http::default();
    for round in 0..ROUNDS {
        let mut server = Server::start_configured(&data, &config);
        let url = server.url();
        let before = acked.lock().unwrap().len();
        let clients = spawn_senders(&url, &http, &format!("r{round}"), CLIENTS, &acked);
        until_acked(&acked, before, 300).await;
        server.kill9();
        for c in clients {
            c.await.unwrap();
        }
    }

    let mut server = Server::start_configured(&data, &config);
    let base = server.url();
    let logged = log_stats(&data)["next_offset"].as_u64().unwrap();
    assert!(
        logged > 900,
        "only {logged} events logged; the test proves nothing"
    );
    // Every record of the log, each once: offsets 0..logged with none twice.
    until_in_lake(&http, &base, logged).await;
    let stats = log_stats(&data);
    assert_eq!(
        stats["consumers"]["lake"]["committed_offset"],
        json!(logged),
        "{stats}"
    );

    assert_acked_in_lake(&http, &base, &acked).await;

    let ours = sql(
        &http,
        &base,
        "SELECT date, hour, count(*) FROM events GROUP BY date, hour ORDER BY date, hour",
    )
    .await;
    server.stop();

    // Nothing half-written is left, and DuckDB reads the same lake to the same answers.
    let events = data.join("lake/events");
    let leftovers = files_under(&events)
        .into_iter()
        .filter(|p| !p.ends_with(".parquet"))
        .collect::<Vec<_>>();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let script = r#"
import duckdb, json, sys
files = sys.argv[1] + "/**/*.parquet"
lake = f"read_parquet('{files}', hive_partitioning = true, hive_types_autocast = false)"
con = duckdb.connect()
total, distinct = con.execute(f'SELECT count(*), count(DISTINCT log_offset) FROM {lake}').fetchone()
parts = con.execute(f"SELECT date, hour, count(*) FROM {lake} GROUP BY ALL ORDER BY ALL").fetchall()
print(json.dumps({"total": total, "distinct": distinct, "partitions": [list(p) for p in parts]}))
"#;
    let out = common::python_script(script, &[events.as_os_str()]);
    let duck: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(duck["total"], json!(logged));
    assert_eq!(duck["distinct"], json!(logged));
    assert_eq!(duck["partitions"], ours);
}
