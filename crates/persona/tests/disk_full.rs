//! A full disk. The log refuses what it cannot write, with a 503 that asks for a retry and
//! a `/readyz` that says why; it loses nothing it acknowledged, stores nothing it refused,
//! and takes events again as soon as there is room, without a restart. The profile store
//! stops at its first failed write, says why, and after a restart with room the processor
//! applies every event it missed, once.

mod common;

use std::collections::HashSet;

use common::acked::assert_logged_once;
use common::{ADMIN, Http, KEY, Server, logged, poll};
use hyper::StatusCode;
use persona_powercut::PowerCut;
use serde_json::{Value, json};

/// A batch of 50 messages of about 500 bytes, with ids `b{n}-{i}`.
fn batch(n: usize) -> (Vec<String>, Value) {
    let ids: Vec<String> = (0..50).map(|i| format!("b{n}-{i}")).collect();
    let messages: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"type": "track", "userId": "u1", "event": "Filled", "messageId": id,
                   "properties": {"pad": "x".repeat(400)}})
        })
        .collect();
    (ids, json!({ "batch": messages }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_events_and_room_again_takes_them_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log_disk = tmp.path().join("log-disk");
    std::fs::create_dir(&data).unwrap();
    std::fs::create_dir(&log_disk).unwrap();
    // Only the log on the disk that fills (its own disk, as the README suggests), so that
    // what is tested is the log's answer and not the profile store's.
    let disk = PowerCut::mount(&log_disk).expect("scripts/test checks that FUSE can be mounted");
    std::os::unix::fs::symlink(&log_disk, data.join("log")).unwrap();
    let mut server = Server::start(&data);
    let (url, http) = (server.url(), Http::default());
    let send = |n: usize| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (ids, body) = batch(n);
            let (status, answer) = http.post(&url, "/v1/batch", KEY, &body).await.unwrap();
            (ids, status, answer)
        }
    };

    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let (ids, status, answer) = send(0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    acked.extend(ids);

    disk.set_full(true);
    // The zeros the log keeps written ahead of its records (a megabyte) still take groups;
    // then there is no room.
    let mut n = 1;
    loop {
        let (ids, status, answer) = send(n).await;
        n += 1;
        if status == StatusCode::OK {
            acked.extend(ids);
            assert!(n < 200, "the log never ran out of room");
            continue;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert_eq!(answer["error"]["code"], "log_unavailable", "{answer}");
        refused.extend(ids);
        break;
    }
    let (status, ready) = http.get(&format!("{url}/readyz"), None).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert!(
        ready["problems"][0]
            .as_str()
            .is_some_and(|p| p.starts_with("event log cannot write") && p.contains("No space left")),
        "{ready}"
    );
    let (ids, status, _) = send(n).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    refused.extend(ids);
    let metrics = http.get_text(&format!("{url}/metrics")).await.unwrap();
    assert!(metrics.contains("\npersona_log_writable 0\n"), "{metrics}");

    disk.set_full(false);
    let (ids, status, answer) = send(n + 1).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "room again, and no restart: {answer}"
    );
    acked.extend(ids);
    let (status, ready) = http.get(&format!("{url}/readyz"), None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{ready}");
    let metrics = http.get_text(&format!("{url}/metrics")).await.unwrap();
    assert!(metrics.contains("\npersona_log_writable 1\n"), "{metrics}");

    server.stop();
    assert_logged_once(&data, &acked);
    let stored: HashSet<String> = logged(&data)
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored.len(), acked.len());
    let kept: Vec<_> = refused.iter().filter(|id| stored.contains(*id)).collect();
    assert!(kept.is_empty(), "refused with a 503 but stored: {kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_disk_stops_the_store_and_a_restart_with_room_applies_every_event() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store_disk = tmp.path().join("store-disk");
    std::fs::create_dir(&data).unwrap();
    std::fs::create_dir(&store_disk).unwrap();
    let disk = PowerCut::mount(&store_disk).expect("scripts/test checks that FUSE can be mounted");
    std::os::unix::fs::symlink(&store_disk, data.join("profiles")).unwrap();
    let http = Http::default();
    let mut server = Server::start(&data);
    let url = server.url();
    let mut acked = 0;
    let (_, body) = batch(0);
    let (status, answer) = http.post(&url, "/v1/batch", KEY, &body).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    acked += 50;
    http.wait_processed(&url).await;

    disk.set_full(true);
    // Events still go to the log, on its own disk; the store stops at its first write.
    let mut n = 1;
    let warning = poll(
        "the store to stop",
        std::time::Duration::from_millis(50),
        || {
            let (http, url) = (http.clone(), url.clone());
            n += 1;
            let (_, body) = batch(n);
            async move {
                let (status, answer) = http.post(&url, "/v1/batch", KEY, &body).await.unwrap();
                assert_eq!(status, StatusCode::OK, "{answer}");
                let (_, ready) = http.get(&format!("{url}/readyz"), None).await.unwrap();
                let warning = ready["warnings"].as_array()?.first()?.as_str()?.to_owned();
                warning
                    .contains("stopped after a failed write")
                    .then_some(warning)
            }
        },
    )
    .await;
    acked += 50 * (n - 1);
    assert!(warning.contains("No space left on device"), "{warning}");
    let metrics = http.get_text(&format!("{url}/metrics")).await.unwrap();
    assert!(
        metrics.contains("\npersona_processor_failing 1\n"),
        "{metrics}"
    );
    let (status, answer) = http
        .admin(
            "POST",
            &format!("{url}/v1/segments"),
            Some(&json!({"name": "during", "rule": "true"})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("stopped after a failed write") && message.contains("restarts"),
        "{message}"
    );

    disk.set_full(false);
    server.kill9();
    let server = Server::start(&data);
    let url = server.url();
    http.wait_processed(&url).await;
    let (status, profile) = http
        .get(&format!("{url}/v1/profiles/u1"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["computed"]["event_count"], acked, "{profile}");
}
