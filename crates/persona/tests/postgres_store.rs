//! `persona serve` with `[store] backend = "postgres"` and a Redis cache in front:
//! profiles, segments and the processor's offset live in a real PostgreSQL schema (`PERSONA_TEST_POSTGRES_URL`, by
//! default the local server that `scripts/test` makes sure is running), nothing of them in
//! the data folder; a restart goes on from the stored offset without counting an event
//! twice; a second server on the same schema is refused, and bad settings are named.

mod common;

use std::path::Path;

use common::{ADMIN, Http, Server, poll};
use serde_json::json;

fn redis_url() -> String {
    std::env::var("PERSONA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn server_url() -> String {
    std::env::var("PERSONA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Rows of `sql` as text, on a connection of the test's own.
async fn sql(query: &str) -> Vec<Vec<Option<String>>> {
    let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is not answering: {e}", server_url()));
    tokio::spawn(connection);
    client
        .simple_query(query)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

fn one(rows: Vec<Vec<Option<String>>>) -> String {
    rows[0][0].clone().unwrap()
}

/// `url` with the connections named `name`, so that the test can find them on the server.
fn named_connections(url: &str, name: &str) -> String {
    if url.contains("://") {
        let join = if url.contains('?') { '&' } else { '?' };
        format!("{url}{join}application_name={name}")
    } else {
        format!("{url} application_name={name}")
    }
}

/// A config file keeping profiles in `schema` (its connections named after it), which is
/// dropped first.
async fn config(dir: &Path, schema: &str) -> std::path::PathBuf {
    sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
    let path = dir.join("persona.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n\
             cache_url = \"{}\"\n",
            named_connections(&server_url(), schema),
            redis_url()
        ),
    )
    .unwrap();
    path
}

/// Drops the test's schema when the test ends, passed or not.
struct DropSchema(String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &server_url(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0),
            ])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_segments_and_offsets_live_in_postgresql_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("persona_e2e_{}", std::process::id());
    let _dropped = DropSchema(schema.clone());
    let config = config(dir.path(), &schema).await;
    let data = dir.path().join("data");
    let http = Http::default();

    let mut server = Server::start_configured(&data, &config);
    let base = server.url();
    for n in 1..=3 {
        http.purchase(&base, "ann", n).await;
    }
    http.purchase(&base, "bob", 1).await;
    // An anonymous visitor who then identifies: the processor reads the batch's unknown
    // identities from PostgreSQL in one query, and must still merge them right.
    for (path, body) in [
        (
            "/v1/page",
            json!({"anonymousId": "device-1", "name": "Home"}),
        ),
        (
            "/v1/identify",
            json!({"anonymousId": "device-1", "userId": "dee"}),
        ),
        ("/v1/track", json!({"userId": "dee", "event": "Signed Up"})),
    ] {
        let (status, answer) = http.post(&base, path, common::KEY, &body).await.unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    http.wait_processed(&base).await;
    let (status, dee) = http
        .get(
            &format!("{base}/v1/profiles/anonymous_id:device-1"),
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{dee}");
    assert_eq!(dee["user_id"], "dee", "{dee}");
    assert_eq!(dee["computed"]["event_count"], 3, "{dee}");
    assert_eq!(dee["computed"]["page_views"], 1, "{dee}");
    let (status, created) = http
        .admin(
            "POST",
            &format!("{base}/v1/segments"),
            Some(&json!({"name": "repeat buyers", "rule": "computed.frequency >= 2"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    let members_url = format!("{base}/v1/segments/{}/members", created["id"]);
    let members = poll(
        "the segment's members",
        std::time::Duration::from_millis(50),
        || async {
            let (_, page) = http.get(&members_url, Some(ADMIN)).await.unwrap();
            let members = page["members"].as_array()?.clone();
            (!members.is_empty()).then_some(members)
        },
    )
    .await;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["user_id"], "ann");

    // Everything is in the schema, nothing in the data folder.
    assert!(!data.join("profiles").exists(), "no embedded store made");
    assert_eq!(
        one(sql(&format!("SELECT count(*) FROM {schema}.profiles")).await),
        "3"
    );
    assert_eq!(
        sql(&format!(
            "SELECT s.name, i.key FROM {schema}.members m JOIN {schema}.segments s \
             ON s.id = m.segment JOIN {schema}.identities i ON i.profile = m.profile"
        ))
        .await,
        [[Some("repeat buyers".to_string()), Some("u:ann".to_string())]]
    );
    assert_eq!(
        one(sql(&format!(
            "SELECT value FROM {schema}.meta WHERE key = 'offset:processor'"
        ))
        .await),
        "7",
        "the processor's offset, past the seven events"
    );

    // A restart reads the profiles back and goes on from the stored offset: no event is
    // applied twice, and new ones add to what was there.
    server.stop();
    let server = Server::start_configured(&data, &config);
    let base = server.url();
    http.purchase(&base, "ann", 4).await;
    http.wait_processed(&base).await;
    let (status, profile) = http
        .get(&format!("{base}/v1/profiles/ann"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["computed"]["frequency"], 4);
    assert_eq!(profile["computed"]["monetary"].as_f64(), Some(400.0));
    assert_eq!(profile["segments"][0]["name"], "repeat buyers");
    assert_eq!(profile["stale"], false);

    // PostgreSQL ends every connection (a restart, a failover): the server opens them
    // again, the processor goes back to the stored offset, and no event is lost or
    // counted twice.
    let ended = sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{schema}'"
    ))
    .await;
    assert_eq!(ended.len(), 5, "four readers and the writer");
    http.purchase(&base, "ann", 5).await;
    http.wait_processed(&base).await;
    let profile = poll(
        "the profile after the reconnect",
        std::time::Duration::from_millis(50),
        || async {
            let (status, profile) = http
                .get(&format!("{base}/v1/profiles/ann"), Some(ADMIN))
                .await
                .unwrap();
            (status == 200 && profile["computed"]["frequency"] == 5).then_some(profile)
        },
    )
    .await;
    assert_eq!(profile["computed"]["monetary"].as_f64(), Some(500.0));
    // Profile reads go through the Redis cache in front of PostgreSQL: the read above
    // filled it (a reconnect starts the cache afresh), so this one is answered from it.
    let (status, again) = http
        .get(&format!("{base}/v1/profiles/ann"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), &again["computed"]),
        (200, &profile["computed"])
    );
    let metrics = http.get_text(&format!("{base}/metrics")).await.unwrap();
    let hits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("persona_profile_cache_hits_total "))
        .unwrap_or_else(|| panic!("no cache hits counted: {metrics}"))
        .parse()
        .unwrap();
    assert!(hits >= 1.0, "{metrics}");

    // A second server on the same schema would corrupt it: refused, naming where.
    let refused = common::serve_refuses(&dir.path().join("other"), &config);
    assert!(refused.contains("in use by another process"), "{refused}");
    assert!(
        refused.contains(&format!("schema {schema} of PostgreSQL")),
        "{refused}"
    );
    drop(server);
}

#[test]
fn bad_store_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases = [
        ("[store]\nbackend = \"postgres\"\n", "store.url is missing"),
        ("[store]\nbackend = \"mysql\"\n", "store.backend must be"),
        (
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://localhost/x\"\nschema = \"A-B\"\n",
            "store.schema",
        ),
        (
            "[store]\nurl = \"postgres://localhost/x\"\n",
            "for store.backend = \"postgres\"",
        ),
        (
            // Nothing listens on port 1: the start fails at once, saying where it looked.
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://persona:secret@127.0.0.1:1/x\"\n",
            "cannot open the profile store in schema persona of PostgreSQL 127.0.0.1:1/x",
        ),
        (
            "[store]\nbackend = \"postgres\"\n\
             url = \"postgres://persona:secret@127.0.0.1/x?sslmode=verify_full\"\n",
            "store.url: not a PostgreSQL connection string: sslmode \"verify_full\" is not one of",
        ),
        (
            "[store]\nbackend = \"postgres\"\n\
             url = \"host=127.0.0.1 password=secret sslkey=/k.pem\"\n",
            "sslkey is not supported",
        ),
        (
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://127.0.0.1/x\"\n\
             cache_ca_file = \"/ca.pem\"\n",
            "store.cache_ca_file needs store.cache_url",
        ),
    ];
    for (file, expected) in cases {
        let config = dir.path().join("persona.toml");
        std::fs::write(&config, file).unwrap();
        let said = common::serve_refuses(&data, &config);
        assert!(said.contains(expected), "{file}: {said}");
        assert!(!said.contains("secret"), "a password printed: {said}");
    }
}

/// `persona bench store` replays one log into each store (embedded, PostgreSQL, PostgreSQL
/// behind Redis) and looks profiles up in each: every event reaches each, every customer is
/// found in each. Timings are not judged here.
#[test]
fn bench_store_replays_into_both_stores_and_finds_every_customer() {
    let schema = format!("persona_bench_test_{}", std::process::id());
    let out = common::run_ok(&[
        "bench",
        "store",
        "--postgres",
        &server_url(),
        "--redis",
        &redis_url(),
        "--schema",
        &schema,
        "--profiles",
        "300",
        "--seconds",
        "0.3",
        "--threads",
        "2",
    ]);
    let out = String::from_utf8(out).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&out[out.find("\n{").expect("a JSON report")..]).unwrap();
    assert_eq!(report["events"], 1200, "{out}");
    for side in ["embedded", "postgres", "postgres_redis"] {
        assert_eq!(report[side]["replay"]["events"], 1200, "{side}: {out}");
        assert!(
            report[side]["lookups"]["lookups"].as_u64().unwrap() > 0,
            "{side}: {out}"
        );
        assert_eq!(report[side]["lookups"]["misses"], 0, "{side}: {out}");
    }
    assert!(report["lookup_ratio"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out.contains("| replay, events/s |"), "{out}");
}
