//! `persona segments …`, `persona models …` and `persona webhooks …` against a running server: the same answers
//! as the API, the admin token found where `serve` saved it, and the server's errors shown
//! with a failing exit.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Http, KEY, Server, poll_blocking, run};
use serde_json::{Value, json};

/// Runs an admin command against `url`, reading the token from `data_dir` as a user on the
/// server's machine would; returns the exit's success, the parsed stdout and the stderr.
fn admin(url: &str, data_dir: &Path, args: &[&str]) -> (bool, Value, String) {
    let data_dir = data_dir.to_str().unwrap();
    let mut all = args.to_vec();
    all.extend(["--url", url, "--data-dir", data_dir]);
    let out = run(&all);
    let stdout = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stdout, stderr)
}

/// Polls `get` (a command printing a segment or model) until `done` holds for its answer.
fn until(url: &str, dir: &Path, get: &[&str], done: impl Fn(&Value) -> bool) -> Value {
    let what = format!("{get:?} to reach the state waited for");
    poll_blocking(&what, Duration::from_millis(50), || {
        let (ok, answer, err) = admin(url, dir, get);
        assert!(ok, "{get:?}: {err}");
        done(&answer).then_some(answer)
    })
}

fn member_ids(page: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn segments_and_models_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // No --admin-token: serve generates one and saves it in the data folder.
    let server = Server::start_with(dir.path(), &["--write-key", KEY], &[]);
    let url = server.url();
    let http = Http::default();
    // Customers c0..c5 with i + 1 purchases of 50 each.
    let batch: Vec<Value> = (0..6)
        .flat_map(|i| {
            (0..=i).map(move |j| {
                json!({"type": "track", "userId": format!("c{i}"), "event": "Order Completed",
                       "messageId": format!("c{i}-{j}"), "properties": {"revenue": 50}})
            })
        })
        .collect();
    let (status, body) = http
        .post(&url, "/v1/batch", KEY, &json!({ "batch": batch }))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    http.wait_processed(&url).await;
    let d = dir.path();

    let (ok, created, err) = admin(
        &url,
        d,
        &[
            "segments",
            "create",
            "--name",
            "big spenders",
            "--rule",
            "computed.monetary > 200",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(created["name"], "big spenders");
    let id = created["id"].to_string();
    until(&url, d, &["segments", "get", &id], |s| {
        s["backfill"]["state"] == "done"
    });
    let (ok, page, err) = admin(&url, d, &["segments", "members", &id, "--limit", "10"]);
    assert!(ok, "{err}");
    assert_eq!(member_ids(&page), ["c4", "c5"], "{page}");

    // A rule over a field profiles do not have: the server's 400, named, and a failing exit.
    let (ok, _, err) = admin(
        &url,
        d,
        &[
            "segments",
            "create",
            "--name",
            "x",
            "--rule",
            "computed.nope > 1",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("400") && err.contains("computed.nope"),
        "{err}"
    );

    let (ok, updated, err) = admin(
        &url,
        d,
        &[
            "segments",
            "update",
            &id,
            "--rule",
            "computed.frequency >= 3",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(updated["version"], 2, "{updated}");
    until(&url, d, &["segments", "get", &id], |s| {
        s["backfill"]["state"] == "done" && s["members"] == 4
    });
    let (_, page, _) = admin(&url, d, &["segments", "members", &id]);
    assert_eq!(member_ids(&page), ["c2", "c3", "c4", "c5"], "{page}");
    // Paging with the cursor the server returned; a typed cursor cannot smuggle in query.
    let (_, first, _) = admin(&url, d, &["segments", "members", &id, "--limit", "3"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (ok, rest, err) = admin(
        &url,
        d,
        &[
            "segments", "members", &id, "--limit", "3", "--cursor", &cursor,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(member_ids(&rest), ["c5"], "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);
    let (ok, _, err) = admin(
        &url,
        d,
        &[
            "segments",
            "members",
            &id,
            "--cursor",
            &format!("{cursor}&limit=1"),
        ],
    );
    assert!(!ok && err.contains("cursor"), "{err}");

    let (ok, _, err) = admin(&url, d, &["segments", "delete", &id]);
    assert!(ok, "{err}");
    let (_, list, _) = admin(&url, d, &["segments", "list"]);
    assert_eq!(list["segments"].as_array().map(Vec::len), Some(0), "{list}");

    let (ok, model, err) = admin(
        &url,
        d,
        &[
            "models",
            "train",
            "--name",
            "value",
            "--features",
            "computed.frequency,computed.monetary",
            "--k",
            "2",
            "--seed",
            "3",
        ],
    );
    assert!(ok, "{err}");
    let model_id = model["id"].to_string();
    let ready = until(&url, d, &["models", "get", &model_id], |m| {
        m["status"] != "training"
    });
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["active"], true, "{ready}");
    let (_, curves, _) = admin(&url, d, &["models", "curves", &model_id]);
    assert_eq!(curves["id"].to_string(), model_id, "{curves}");
    assert!(!curves["curves"].is_null(), "{curves}");

    // A wrong token is refused with the server's 401.
    let (ok, _, err) = admin(&url, d, &["models", "list", "--admin-token", "wrong"]);
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn webhooks_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--write-key", KEY], &[]);
    let (url, d) = (server.url(), dir.path());
    // Nothing listens on the discard port: deliveries and pings are refused.
    let receiver = "http://127.0.0.1:9/hooks";

    let (ok, created, err) = admin(&url, d, &["webhooks", "create", "--endpoint", receiver]);
    assert!(ok, "{err}");
    assert_eq!(
        created["events"],
        json!(["segment.entered", "segment.exited"]),
        "every event by default"
    );
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].to_string();

    let (ok, off, err) = admin(&url, d, &["webhooks", "update", &id, "--disable"]);
    assert!(ok, "{err}");
    assert_eq!(off["active"], false);
    let args = [
        "webhooks",
        "update",
        &id,
        "--enable",
        "--events",
        "segment.exited",
    ];
    let (ok, on, err) = admin(&url, d, &args);
    assert!(ok, "{err}");
    assert_eq!(
        (on["active"].as_bool(), on["events"].clone()),
        (Some(true), json!(["segment.exited"]))
    );

    let (ok, ping, err) = admin(&url, d, &["webhooks", "ping", &id]);
    assert!(!ok, "a ping not taken fails the command");
    assert_eq!(ping["delivered"], false, "{ping}");
    assert!(err.to_lowercase().contains("refused"), "{err}");

    let (ok, _, err) = admin(
        &url,
        d,
        &["webhooks", "create", "--endpoint", "hooks.example.com"],
    );
    assert!(!ok);
    assert!(err.contains("400") && err.contains("http://"), "{err}");
    let (ok, _, err) = admin(&url, d, &["webhooks", "update", &id]);
    assert!(!ok && err.contains("--endpoint"), "{err}");

    let (ok, list, _) = admin(&url, d, &["webhooks", "list"]);
    assert!(ok);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    let (ok, deleted, err) = admin(&url, d, &["webhooks", "delete", &id]);
    assert!(ok, "{err}");
    assert!(deleted.is_null(), "a deletion prints nothing");
    let (ok, _, err) = admin(&url, d, &["webhooks", "get", &id]);
    assert!(!ok && err.contains("404"), "{err}");
}
