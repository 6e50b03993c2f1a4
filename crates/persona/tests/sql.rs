//! The SQL warehouse end to end: events written to the Parquet lake by a real server,
//! queried with `POST /v1/sql` and `persona sql` together with the live profiles and
//! segments; what is refused, and how.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ADMIN, Http, KEY, Server, poll};
use serde_json::{Value, json};

/// A server whose lake flushes at once, so a test sees its events within moments.
fn start(dir: &Path) -> Server {
    let config = dir.join("persona.toml");
    std::fs::write(&config, "[lake]\nflush_seconds = 0.1\n").unwrap();
    Server::start_configured(&dir.join("data"), &config)
}

async fn sql(http: &Http, base: &str, query: &str) -> (u16, Value) {
    sql_with(http, base, json!({ "query": query })).await
}

async fn sql_with(http: &Http, base: &str, body: Value) -> (u16, Value) {
    let (status, answer) = http
        .admin("POST", &format!("{base}/v1/sql"), Some(&body))
        .await
        .unwrap();
    (status.as_u16(), answer)
}

/// The rows of a query that must succeed.
async fn rows(http: &Http, base: &str, query: &str) -> Value {
    let (status, answer) = sql(http, base, query).await;
    assert_eq!(status, 200, "{query}: {answer}");
    answer["rows"].clone()
}

async fn send_events(http: &Http, base: &str) {
    let batch = json!({"batch": [
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m1",
         "timestamp": "2024-05-01T10:15:00Z", "properties": {"revenue": 100, "currency": "EUR"}},
        {"type": "track", "userId": "u2", "event": "Product Viewed", "messageId": "m2",
         "timestamp": "2024-05-01T10:45:00Z", "properties": {"sku": "A-1", "price": 9.5}},
        {"type": "page", "anonymousId": "a3", "name": "Pricing", "messageId": "m3",
         "timestamp": "2024-05-01T10:50:00Z", "context": {"library": {"name": "analytics.js"}}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m4",
         "timestamp": "2024-05-01T11:20:00Z", "properties": {"total": "50"}},
        {"type": "page", "userId": "u1", "name": "Home", "messageId": "m5",
         "timestamp": "2024-05-02T09:00:00Z"},
    ]});
    let (status, answer) = http.post(base, "/v1/batch", KEY, &batch).await.unwrap();
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_reads_the_lake_profiles_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let base = server.url();
    let http = Http::default();
    send_events(&http, &base).await;
    let (status, segment) = http
        .admin(
            "POST",
            &format!("{base}/v1/segments"),
            Some(&json!({"name": "repeat buyers", "rule": "computed.frequency >= 2"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{segment}");

    poll(
        "the lake to hold the events",
        Duration::from_millis(50),
        || {
            let (http, base) = (&http, &base);
            async move {
                let n = rows(http, base, "SELECT count(*) FROM events").await;
                (n == json!([[5]])).then_some(())
            }
        },
    )
    .await;

    // Hive partitions by the event's own time, in UTC.
    let data = dir.path().join("data/lake/events");
    for partition in [
        "date=2024-05-01/hour=10",
        "date=2024-05-01/hour=11",
        "date=2024-05-02/hour=09",
    ] {
        let files: Vec<_> = std::fs::read_dir(data.join(partition))
            .unwrap_or_else(|e| panic!("{partition}: {e}"))
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            files
                .iter()
                .all(|f| f.starts_with("part-") && f.ends_with(".parquet")),
            "{partition}: {files:?}"
        );
    }
    let (status, answer) = sql(
        &http,
        &base,
        "SELECT date, hour, count(*) AS n FROM events GROUP BY date, hour ORDER BY date, hour",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["rows"],
        json!([
            ["2024-05-01", "10", 3],
            ["2024-05-01", "11", 1],
            ["2024-05-02", "09", 1]
        ])
    );
    assert_eq!(answer["columns"][2], json!({"name": "n", "type": "Int64"}));
    assert_eq!(answer["row_count"], 3);
    assert_eq!(answer["truncated"], false);

    // Revenue as the profiles count it; JSON columns read with json_get.
    assert_eq!(
        rows(
            &http,
            &base,
            "SELECT sum(revenue) FROM events WHERE event = 'Order Completed'"
        )
        .await,
        json!([[150.0]])
    );
    assert_eq!(
        rows(
            &http,
            &base,
            "SELECT json_get(properties, 'sku'), CAST(json_get(properties, 'price') AS DOUBLE), \
             json_get(context, 'library', 'name') FROM events WHERE type <> 'track' OR event = 'Product Viewed' \
             ORDER BY log_offset",
        )
        .await,
        json!([["A-1", 9.5, null], [null, null, "analytics.js"], [null, null, null]])
    );
    let times = rows(
        &http,
        &base,
        "SELECT timestamp, anonymous_id, user_id FROM events WHERE message_id = 'm3'",
    )
    .await;
    assert!(
        times[0][0]
            .as_str()
            .unwrap()
            .starts_with("2024-05-01T10:50:00"),
        "{times}"
    );
    assert_eq!(
        times[0].as_array().unwrap()[1..],
        [json!("a3"), Value::Null]
    );

    // The live profiles, with the profile API's figures.
    http.wait_processed(&base).await;
    assert_eq!(
        rows(
            &http,
            &base,
            "SELECT user_id, frequency, monetary, event_count FROM profiles WHERE user_id = 'u1'",
        )
        .await,
        json!([["u1", 2, 150.0, 3]])
    );
    let anonymous = rows(
        &http,
        &base,
        "SELECT anonymous_ids FROM profiles WHERE user_id IS NULL",
    )
    .await;
    assert_eq!(anonymous, json!([[["a3"]]]));

    // Segments and their members, joined.
    poll("the segment's back-fill", Duration::from_millis(50), || {
        let (http, base) = (&http, &base);
        async move {
            let r = rows(
                http,
                base,
                "SELECT s.name, m.user_id, s.member_count FROM segment_members m \
                 JOIN segments s ON s.segment_id = m.segment_id",
            )
            .await;
            (r == json!([["repeat buyers", "u1", 1]])).then_some(())
        }
    })
    .await;
    // Events joined to profiles: what the segment's members did.
    assert_eq!(
        rows(
            &http,
            &base,
            "SELECT e.event, count(*) FROM events e JOIN segment_members m ON e.user_id = m.user_id \
             WHERE e.type = 'track' GROUP BY e.event",
        )
        .await,
        json!([["Order Completed", 2]])
    );
    let tables = rows(
        &http,
        &base,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(
        tables,
        json!([
            ["events"],
            ["profile_snapshots"],
            ["profiles"],
            ["segment_members"],
            ["segments"]
        ])
    );

    // At most `limit` rows, and the answer says it was cut.
    let (status, answer) = sql_with(
        &http,
        &base,
        json!({"query": "SELECT message_id FROM events ORDER BY log_offset", "limit": 2}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], json!([["m1"], ["m2"]]));
    assert_eq!(answer["truncated"], true);

    // Events sent after the first queries show up in later ones.
    let late = json!({"type": "track", "userId": "u9", "event": "Signed Up", "messageId": "m6",
                      "timestamp": "2024-05-03T08:00:00Z"});
    let (status, answer) = http.post(&base, "/v1/track", KEY, &late).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    poll(
        "a later event in the lake",
        Duration::from_millis(50),
        || {
            let (http, base) = (&http, &base);
            async move {
                let n = rows(
                    http,
                    base,
                    "SELECT count(*) FROM events WHERE date = '2024-05-03'",
                )
                .await;
                (n == json!([[1]])).then_some(())
            }
        },
    )
    .await;

    refusals(&http, &base, dir.path()).await;
    cli(&base);
}

/// What the warehouse refuses, each with a status, a code and a message naming the problem.
async fn refusals(http: &Http, base: &str, dir: &Path) {
    let (status, answer) = sql(http, base, "SELEC 1").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_sql")),
        "{answer}"
    );
    let (status, answer) = sql(http, base, "SELECT * FROM orders").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("orders"),
        "{answer}"
    );
    let copied = dir.join("copied.csv");
    for statement in [
        "CREATE TABLE t AS SELECT 1".to_string(),
        "INSERT INTO events SELECT * FROM events".to_string(),
        format!("COPY (SELECT 1) TO '{}'", copied.display()),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "CREATE EXTERNAL TABLE secrets STORED AS CSV LOCATION '/etc/passwd'".to_string(),
    ] {
        let (status, answer) = sql(http, base, &statement).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("read_only")),
            "{statement}: {answer}"
        );
    }
    assert!(!copied.exists(), "a refused COPY wrote its file");
    for (body, field) in [
        (json!({}), "query"),
        (json!({"query": 7}), "query"),
        (json!({"query": "SELECT 1", "limit": 0}), "limit"),
        (json!({"query": "SELECT 1", "limit": 100_001}), "limit"),
    ] {
        let (status, answer) = sql_with(http, base, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            answer["error"]["details"][0]["field"], field,
            "{body}: {answer}"
        );
    }
    let (status, answer) = sql_with(http, base, json!({"query": "SELECT 1", "sql": "x"})).await;
    assert_eq!(status, 400, "an unknown field is named: {answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("sql"));
    // The admin token is required, as for every admin call.
    let (status, _) = http
        .post(base, "/v1/sql", KEY, &json!({"query": "SELECT 1"}))
        .await
        .unwrap();
    assert_eq!(status, 401);
}

/// `persona sql` prints the answer as a table or CSV.
fn cli(base: &str) {
    let query = "SELECT event, count(*) AS n FROM events WHERE type = 'track' GROUP BY event ORDER BY event";
    let out = common::run_ok(&["sql", "--url", base, "--admin-token", ADMIN, query]);
    assert_eq!(
        String::from_utf8(out)
            .unwrap()
            .lines()
            .take(5)
            .collect::<Vec<_>>(),
        [
            "event           | n",
            "----------------+--",
            "Order Completed | 2",
            "Product Viewed  | 1",
            "Signed Up       | 1",
        ]
    );
    let out = common::run_ok(&[
        "sql",
        "--url",
        base,
        "--admin-token",
        ADMIN,
        "--format",
        "csv",
        query,
    ]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "event,n\nOrder Completed,2\nProduct Viewed,1\nSigned Up,1\n"
    );
    let failed = common::run(&[
        "sql",
        "--url",
        base,
        "--admin-token",
        ADMIN,
        "DROP TABLE events",
    ]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("read-only"), "{stderr}");
}
