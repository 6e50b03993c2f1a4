//! Senders that count what the server acknowledged, and the check that the log holds each
//! acknowledged event exactly once: the durability tests kill the server (or its power)
//! mid-stream.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::{Http, KEY, logged, poll};
use std::time::Duration;

/// Starts `clients` senders that post events to `url` until it stops answering: single calls
/// and batches of up to 20, each message with a messageId starting with `tag`. The ids of
/// every message answered with 2xx go into `acked`.
pub fn spawn_senders(
    url: &str,
    http: &Http,
    tag: &str,
    clients: usize,
    acked: &Arc<Mutex<Vec<String>>>,
) -> Vec<JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (url, http, acked, tag) = (url.to_owned(), http.clone(), acked.clone(), tag.to_owned());
            tokio::spawn(async move {
                for seq in 0.. {
                    let n = 1 + (seq * 7 + c) % 20;
                    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-c{c}-s{seq}-{i}")).collect();
                    let msgs: Vec<_> = ids
                        .iter()
                        .map(|id| json!({"type": "track", "userId": format!("u{c}"), "event": "Tick", "messageId": id}))
                        .collect();
                    let answer = if n == 1 {
                        http.post(&url, "/v1/track", KEY, &msgs[0]).await
                    } else {
                        http.post(&url, "/v1/batch", KEY, &json!({"batch": msgs})).await
                    };
                    match answer {
                        Ok((status, _)) if status.is_success() => acked.lock().unwrap().extend(ids),
                        Ok((status, body)) => panic!("unexpected answer {status}: {body}"),
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect()
}

/// Asserts that the log under `data_dir` holds every id in `acked` exactly once. Records
/// may exceed acknowledgements (written, then killed before the answer), never the reverse.
/// Waits until more than `floor` ids have been acknowledged since `before` of them were, so
/// that a kill lands mid-stream with enough acknowledged for the test to prove something,
/// however slowly the server under test runs.
pub async fn until_acked(acked: &Mutex<Vec<String>>, before: usize, floor: usize) {
    let what = format!("{floor} acknowledged events");
    poll(&what, std::time::Duration::from_millis(10), || async move {
        (acked.lock().unwrap().len() - before > floor).then_some(())
    })
    .await
}

pub fn assert_logged_once(data_dir: &Path, acked: &[String]) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in logged(data_dir) {
        *counts
            .entry(m["messageId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {missing:?} (of {})",
        acked.len()
    );
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
    assert!(counts.len() >= acked.len());
}

/// The rows of a read-only SQL query to the server at `base`, all of them (at most 100,000).
pub async fn sql(http: &Http, base: &str, query: &str) -> Value {
    let body = json!({"query": query, "limit": 100_000});
    let (status, answer) = http
        .admin("POST", &format!("{base}/v1/sql"), Some(&body))
        .await
        .unwrap();
    assert_eq!(status, 200, "{query}: {answer}");
    assert_eq!(answer["truncated"], false, "{query}");
    answer["rows"].clone()
}

/// Checks that every acknowledged event is in the lake of the server at `base`.
pub async fn assert_acked_in_lake(http: &Http, base: &str, acked: &Mutex<Vec<String>>) {
    let in_lake: std::collections::HashSet<String> =
        sql(http, base, "SELECT message_id FROM events")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
    let missing: Vec<_> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|id| !in_lake.contains(*id))
        .take(5)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the lake: {missing:?}"
    );
}

/// Waits until the lake of the server at `base` holds the log's records `0..logged`, each
/// once, as SQL counts them.
pub async fn until_in_lake(http: &Http, base: &str, logged: u64) {
    let expected = json!([[logged, logged, 0, logged - 1]]);
    poll("the lake to catch up", Duration::from_millis(50), || {
        let expected = &expected;
        async move {
            let counts = sql(
                http,
                base,
                "SELECT count(*), count(DISTINCT log_offset), min(log_offset), max(log_offset) FROM events",
            )
            .await;
            (&counts == expected).then_some(())
        }
    })
    .await;
}
