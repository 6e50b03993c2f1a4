//! A full disk. The log refuses what it cannot write, with a 503 that asks for a retry and
//! a `/readyz` that says why; it loses nothing it acknowledged, stores nothing it refused,
//! and takes events again as soon as there is room, without a restart. The profile store
//! stops at its first failed write, says why, and after a restart with room the processor
//! applies every event it missed, once.

mod common;

use std::collections::HashSet;

use common::acked::assert_logged_once;
use common::{ADMIN, Http, KEY, Server, log_stats, logged, poll, run};
use hyper::StatusCode;
use persona_powercut::PowerCut;
use serde_json::{Value, json};

/// A data folder whose `part` (`log`, `profiles`) lives on a disk of its own that a test
/// can fill. Fields drop in order: the disk is unmounted before its folder is removed.
struct OwnDisk {
    disk: PowerCut,
    /// Where the disk is mounted.
    disk_dir: std::path::PathBuf,
    data: std::path::PathBuf,
    tmp: tempfile::TempDir,
}

impl OwnDisk {
    fn for_part(part: &str) -> OwnDisk {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let disk_dir = tmp.path().join(format!("{part}-disk"));
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(&disk_dir).unwrap();
        let disk =
            PowerCut::mount(&disk_dir).expect("scripts/test checks that FUSE can be mounted");
        std::os::unix::fs::symlink(&disk_dir, data.join(part)).unwrap();
        OwnDisk {
            disk,
            disk_dir,
            data,
            tmp,
        }
    }
}

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

/// A write past the zeros the log keeps ahead of its records fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_events_and_room_again_takes_them_without_a_restart() {
    fill_the_log_disk_then_make_room(None).await;
}

/// With 1 MiB segments the zeros reach the segment's end, and what fails is making the
/// next segment's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_a_new_segment_and_room_again_takes_events_without_a_restart() {
    fill_the_log_disk_then_make_room(Some(1 << 20)).await;
}

async fn fill_the_log_disk_then_make_room(segment_bytes: Option<u64>) {
    // Only the log on the disk that fills (its own disk, as the README suggests), so that
    // what is tested is the log's answer and not the profile store's.
    let own = OwnDisk::for_part("log");
    let (disk, log_disk, data, tmp) = (&own.disk, &own.disk_dir, &own.data, &own.tmp);
    let config = tmp.path().join("persona.toml");
    let settings =
        segment_bytes.map_or_else(String::new, |b| format!("[log]\nsegment_bytes = {b}\n"));
    std::fs::write(&config, settings).unwrap();
    let mut server = Server::start_configured(data, &config);
    let (url, http) = (server.url(), Http::default());
    let send = |n: usize| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (ids, body) = batch(n);
            let (status, answer) = http.post(&url, "/v1/batch", KEY, &body).await.unwrap();
            (ids, status, answer)
        }
    };
    let ready = || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&format!("{url}/readyz"), None).await.unwrap() }
    };

    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let (ids, status, answer) = send(0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    acked.extend(ids);

    let mut n = 1;
    if let Some(limit) = segment_bytes {
        // Groups until one ends past the roll size, with room: the next starts a segment.
        while newest_segment_len(log_disk) <= limit {
            let (ids, status, answer) = send(n).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            acked.extend(ids);
            n += 1;
        }
    }
    let full_from = n;
    disk.set_full(true);
    // The zeros the log keeps written ahead of its records (a megabyte) still take groups;
    // then there is no room.
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
    let (status, readiness) = ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{readiness}");
    let problem = readiness["problems"][0].as_str().unwrap_or_default();
    assert!(
        problem.starts_with("event log cannot write") && problem.contains("No space left"),
        "{readiness}"
    );
    if segment_bytes.is_some() {
        assert_eq!(
            n,
            full_from + 1,
            "the first group after the disk filled is refused"
        );
        assert!(
            problem.contains(".log"),
            "making the new segment failed: {problem}"
        );
    }
    let metrics = http.get_text(&format!("{url}/metrics")).await.unwrap();
    assert!(metrics.contains("\npersona_log_writable 0\n"), "{metrics}");
    if segment_bytes.is_none() {
        // Only a write can tell there is room again, and a load balancer sends none to a
        // server it took out: after the Retry-After's while the server says it is ready
        // again, and the next request finds out.
        tokio::time::sleep(persona_log::TROUBLE_HOLD).await;
        let (status, readiness) = ready().await;
        assert_eq!(status, StatusCode::OK, "{readiness}");
        // An alert must not clear because nobody asked: the gauge waits for a write.
        let metrics = http.get_text(&format!("{url}/metrics")).await.unwrap();
        assert!(metrics.contains("\npersona_log_writable 0\n"), "{metrics}");
    }
    let (ids, status, _) = send(n).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    refused.extend(ids);
    assert_eq!(ready().await.0, StatusCode::SERVICE_UNAVAILABLE);

    disk.set_full(false);
    let (ids, status, answer) = send(n + 1).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "room again, and no restart: {answer}"
    );
    acked.extend(ids);
    let (status, readiness) = ready().await;
    assert_eq!(status, StatusCode::OK, "{readiness}");
    let metrics = http.get_text(&format!("{url}/metrics")).await.unwrap();
    assert!(metrics.contains("\npersona_log_writable 1\n"), "{metrics}");

    server.stop();
    assert_logged_once(data, &acked);
    let stored: HashSet<String> = logged(data)
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored.len(), acked.len());
    let kept: Vec<_> = refused.iter().filter(|id| stored.contains(*id)).collect();
    assert!(kept.is_empty(), "refused with a 503 but stored: {kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_disk_stops_the_store_and_a_restart_with_room_applies_every_event() {
    let own = OwnDisk::for_part("profiles");
    let (disk, data) = (&own.disk, &own.data);
    let http = Http::default();
    let mut server = Server::start(data);
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
    let server = Server::start(data);
    let url = server.url();
    http.wait_processed(&url).await;
    let (status, profile) = http
        .get(&format!("{url}/v1/profiles/u1"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["computed"]["event_count"], acked, "{profile}");
}

/// An import into a stopped server's log on a disk that fills says how far it got, and
/// that is what the log holds.
#[test]
fn an_import_that_fills_the_disk_says_how_far_it_got() {
    let own = OwnDisk::for_part("log");
    let (disk, data, tmp) = (&own.disk, &own.data, &own.tmp);
    let file = |name: &str, lines: usize| {
        let path = tmp.path().join(name);
        let text: String = (0..lines)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"type": "track", "userId": "u1", "event": "Imported",
                           "messageId": format!("{name}-{i}"), "properties": {"pad": "x".repeat(400)}})
                )
            })
            .collect();
        std::fs::write(&path, text).unwrap();
        path
    };
    let import = |path: &std::path::Path| {
        run(&[
            "import",
            path.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
    };
    // A first import makes the log's segment, with its megabyte of zeros written ahead.
    assert!(import(&file("first.jsonl", 1)).status.success());
    disk.set_full(true);
    let out = import(&file("big.jsonl", 5_000));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let (before, after) = err
        .split_once(" valid messages before line ")
        .unwrap_or_else(|| panic!("no count in: {err}"));
    let number = |s: &str| {
        s.parse::<u64>()
            .unwrap_or_else(|_| panic!("{s:?} in: {err}"))
    };
    let stored = number(before.rsplit(' ').next().unwrap());
    let line = number(after.split(' ').next().unwrap());
    assert!(err.contains("No space left on device"), "{err}");
    assert!(stored > 0 && stored < 5_000, "{err}");
    assert_eq!(line, stored + 1, "every line valid: {err}");
    disk.set_full(false);
    assert_eq!(log_stats(data)["records"], 1 + stored);
}

/// The length of the newest segment file in the log folder `dir`.
fn newest_segment_len(dir: &std::path::Path) -> u64 {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .expect("a segment");
    std::fs::metadata(newest).unwrap().len()
}
