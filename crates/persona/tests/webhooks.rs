//! Webhooks end to end: segment entries and exits reach a receiver over HTTP, signed, in
//! order, tried again with the same delivery id until taken, and a webhook that keeps
//! failing is turned off and goes on from where it stopped when turned on again.

mod common;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{ADMIN, Http, Server, poll};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    event: String,
    delivery: String,
    signature: String,
    raw: Bytes,
    body: Value,
}

/// A webhook receiver on a free port: records every request, and answers `status` after
/// answering the first `fail_first` requests with 500.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let seen = Arc::new(AtomicUsize::new(0));
        let (log, answer) = (got.clone(), status.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, raw: Bytes| {
            let (log, answer, seen) = (log.clone(), answer.clone(), seen.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                };
                log.lock().unwrap().push(Received {
                    event: header("x-persona-event"),
                    delivery: header("x-persona-delivery"),
                    signature: header("x-persona-signature"),
                    body: serde_json::from_slice(&raw).unwrap_or_default(),
                    raw,
                });
                if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "not yet");
                }
                (
                    StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap(),
                    "ok",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/persona", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, status }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until it has received `n` requests, and returns them.
    async fn until(&self, n: usize) -> Vec<Received> {
        poll(
            &format!("the receiver to get {n} requests"),
            Duration::from_millis(20),
            || async move {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

/// Checks `X-Persona-Signature` as a receiver would: `t=<seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<raw body>">` under the secret, with a time close to now.
fn assert_signed(r: &Received, secret: &str) {
    let (t, v1) = r
        .signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature header {:?}", r.signature));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&r.raw);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "signature of {}", r.body);
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "signed {age} s ago");
}

/// Runs the README's Python check of a signature on `raw` as a receiver would, and says
/// whether it accepts it: the documented receiver code is tested, not only persona's.
fn readme_python_accepts(secret: &str, signature: &str, raw: &[u8]) -> bool {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(readme).unwrap();
    let section = &readme[readme.find("## Webhooks").expect("a Webhooks section")..];
    let start = section.find("```python\n").expect("a Python example") + "```python\n".len();
    let code = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, raw).unwrap();
    let script = format!(
        "{code}\nimport sys\nprint(verified(sys.argv[1], sys.argv[2], open(sys.argv[3], 'rb').read()))\n"
    );
    let python = std::env::var("PERSONA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args(["-c", &script, secret, signature])
        .arg(&body)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => true,
        "False" => false,
        other => panic!("the README's check printed {other:?}"),
    }
}

fn config(dir: &std::path::Path, webhooks: &str) -> std::path::PathBuf {
    let path = dir.join("persona.toml");
    std::fs::write(&path, format!("[webhooks]\n{webhooks}\n")).unwrap();
    path
}

async fn create_segment(http: &Http, url: &str, name: &str, rule: &str) -> Value {
    let (status, seg) = http
        .admin(
            "POST",
            &format!("{url}/v1/segments"),
            Some(&json!({"name": name, "rule": rule})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{seg}");
    seg
}

/// The webhook once `done` holds of it.
async fn webhook_when(http: &Http, hook: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let done = &done;
    poll(what, Duration::from_millis(20), || async move {
        let (_, w) = http.get(hook, Some(ADMIN)).await.unwrap();
        done(&w).then_some(w)
    })
    .await
}

#[tokio::test]
async fn segment_changes_reach_a_webhook_signed_in_order_and_retried_until_taken() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(2).await;
    let cfg = config(dir.path(), "max_backoff_seconds = 0.2");
    let server = Server::start_configured(&dir.path().join("data"), &cfg);
    let (url, http) = (server.url(), Http::default());
    let hooks = format!("{url}/v1/webhooks");

    // Bad subscriptions are refused, naming the field.
    for (body, field) in [
        (
            json!({"url": "ftp://example.com/", "events": ["segment.entered"]}),
            "url",
        ),
        (json!({"events": ["segment.entered"]}), "url"),
        (
            json!({"url": "http://user:pw@127.0.0.1:1/", "events": ["segment.entered"]}),
            "url",
        ),
        (json!({"url": receiver.url}), "events"),
        (json!({"url": receiver.url, "events": []}), "events"),
        (
            json!({"url": receiver.url, "events": ["segment.entered", "segment.left"]}),
            "events[1]",
        ),
        (
            json!({"url": receiver.url, "events": ["segment.entered"], "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": receiver.url, "events": ["segment.entered"], "active": "yes"}),
            "active",
        ),
    ] {
        let (status, err) = http.admin("POST", &hooks, Some(&body)).await.unwrap();
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{body}: {err}");
    }
    let (status, err) = http
        .admin(
            "POST",
            &hooks,
            Some(&json!({"url": receiver.url, "event": ["segment.entered"]})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "an unknown field is refused: {err}");
    assert_eq!(err["error"]["details"][0]["field"], "event", "{err}");
    let (status, _) = http.get(&hooks, None).await.unwrap();
    assert_eq!(status, 401);

    // Entries before the webhook existed are not sent to it.
    let early = create_segment(&http, &url, "early buyers", "computed.frequency >= 1").await;
    http.purchase(&url, "u0", 1).await;
    http.wait_processed(&url).await;
    // Deleted, so that u1 does not enter it below; u0's exit is written now, before the
    // webhook exists.
    let early = format!("{url}/v1/segments/{}", early["id"]);
    let (status, _) = http.admin("DELETE", &early, None).await.unwrap();
    assert_eq!(status, 204);

    let secret = "a-shared-secret-of-the-receiver";
    let (status, hook) = http
        .admin(
            "POST",
            &hooks,
            Some(&json!({"url": receiver.url, "events": ["segment.entered", "segment.exited"], "secret": secret})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{hook}");
    assert_eq!(
        hook["secret"], secret,
        "the creating answer shows the secret"
    );
    assert_eq!(hook["active"], true);
    let id = hook["id"].as_u64().unwrap();
    let this = format!("{hooks}/{id}");
    let (_, shown) = http.get(&this, Some(ADMIN)).await.unwrap();
    assert!(
        shown.get("secret").is_none(),
        "a read never shows the secret: {shown}"
    );
    let (_, list) = http.get(&hooks, Some(ADMIN)).await.unwrap();
    assert_eq!(list["webhooks"][0]["url"], receiver.url.as_str());

    // One customer enters a segment: the receiver refuses twice, then takes it.
    // u0 bought once before, so only u1 enters.
    create_segment(&http, &url, "buyers", "computed.frequency >= 2").await;
    http.purchase(&url, "u1", 1).await;
    http.purchase(&url, "u1", 2).await;
    let got = receiver.until(3).await;
    let entered = &got[2];
    assert!(
        got.iter()
            .all(|r| r.delivery == entered.delivery && r.raw == entered.raw),
        "a retry is the same delivery: {got:?}"
    );
    for r in &got {
        assert_signed(r, secret);
    }
    assert!(readme_python_accepts(
        secret,
        &entered.signature,
        &entered.raw
    ));
    let mut tampered = entered.raw.to_vec();
    tampered[10] ^= 1;
    assert!(!readme_python_accepts(
        secret,
        &entered.signature,
        &tampered
    ));
    assert!(!readme_python_accepts(
        "another secret",
        &entered.signature,
        &entered.raw
    ));
    assert_eq!(entered.event, "segment.entered");
    let body = &entered.body;
    assert_eq!(
        (
            body["event"].as_str(),
            body["user_id"].as_str(),
            body["segment"].as_str()
        ),
        (Some("segment.entered"), Some("u1"), Some("buyers")),
        "{body}"
    );
    assert_eq!(body["id"], entered.delivery.as_str());
    assert_eq!(body["webhook_id"], id);
    let entered_at = body["sequence"].as_u64().unwrap();
    let w = webhook_when(&http, &this, "the delivery to be recorded", |w| {
        w["delivery"]["delivered"] == 1
    })
    .await;
    let delivery = &w["delivery"];
    assert_eq!(delivery["failed_attempts"], 2, "{w}");
    assert_eq!(delivery["last_error"]["status"], 500, "{w}");
    assert_eq!(
        delivery["last_error"]["delivery"],
        entered.delivery.as_str()
    );
    assert!(delivery["failing_since"].is_null(), "{w}");
    assert_eq!(delivery["cursor"], entered_at);

    // The rule changes so that the customer leaves: the exit follows the entry.
    let seg = format!("{url}/v1/segments/{}", body["segment_id"]);
    let (status, _) = http
        .admin(
            "PUT",
            &seg,
            Some(&json!({"rule": "computed.frequency >= 5"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let got = receiver.until(4).await;
    let exited = &got[3];
    assert_signed(exited, secret);
    assert_eq!(exited.event, "segment.exited");
    assert_eq!(exited.body["user_id"], "u1");
    assert!(exited.body["sequence"].as_u64().unwrap() > entered_at);
    assert_ne!(exited.delivery, entered.delivery);

    // Only entries now: exits are passed over (the cursor moves past them), entries sent.
    let (status, w) = http
        .admin("PUT", &this, Some(&json!({"events": ["segment.entered"]})))
        .await
        .unwrap();
    assert_eq!(status, 200, "{w}");
    let caught_up = |w: &Value| w["delivery"]["behind"] == 0 && w["delivery"]["state"] == "idle";
    let anyone = create_segment(&http, &url, "anyone", "true").await;
    http.purchase(&url, "u2", 1).await;
    http.wait_processed(&url).await;
    let got = receiver.until(5).await;
    let before_exits = webhook_when(&http, &this, "the entries to be delivered", caught_up).await;
    let entries = receiver.received().len();
    assert!(
        got[4..].iter().all(|r| r.event == "segment.entered"),
        "{got:?}"
    );
    let anyone = format!("{url}/v1/segments/{}", anyone["id"]);
    let (status, _) = http
        .admin(
            "PUT",
            &anyone,
            Some(&json!({"rule": "computed.frequency >= 100"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let passed = webhook_when(&http, &this, "the exits to be passed over", |w| {
        caught_up(w)
            && w["delivery"]["cursor"].as_u64() > before_exits["delivery"]["cursor"].as_u64()
    })
    .await;
    assert_eq!(
        receiver.received().len(),
        entries,
        "no exit was sent: {passed}"
    );

    // A test delivery, signed as the others.
    let (status, ping) = http
        .admin("POST", &format!("{this}/ping"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{ping}");
    assert_eq!(
        (ping["delivered"].as_bool(), ping["status"].as_u64()),
        (Some(true), Some(200))
    );
    let pinged = receiver
        .received()
        .into_iter()
        .find(|r| r.event == "ping")
        .expect("the ping reached the receiver");
    assert_signed(&pinged, secret);
    assert_eq!(pinged.body["webhook_id"], id);

    // Deleted: gone, and nothing more is sent.
    let (status, _) = http.admin("DELETE", &this, None).await.unwrap();
    assert_eq!(status, 204);
    let (status, _) = http.get(&this, Some(ADMIN)).await.unwrap();
    assert_eq!(status, 404);
    let before = receiver.received().len();
    // Everyone enters "anyone" again: entries a live webhook would receive.
    let (status, _) = http
        .admin("PUT", &anyone, Some(&json!({"rule": "true"})))
        .await
        .unwrap();
    assert_eq!(status, 200);
    http.purchase(&url, "u3", 1).await;
    http.wait_processed(&url).await;
    poll("the back-fill", Duration::from_millis(20), || async {
        let (_, s) = http.get(&anyone, Some(ADMIN)).await.unwrap();
        (s["backfill"]["state"] == "done" && s["members"] == 4).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        before,
        "a deleted webhook receives nothing"
    );
}

#[tokio::test]
async fn a_failing_webhook_is_turned_off_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0).await;
    receiver.status.store(503, Ordering::SeqCst);
    // Given up after about a second of failures.
    let cfg = config(
        dir.path(),
        "max_backoff_seconds = 0.1\ngive_up_after_hours = 0.0003",
    );
    let data = dir.path().join("data");
    let mut server = Server::start_configured(&data, &cfg);
    let (url, http) = (server.url(), Http::default());
    let (status, hook) = http
        .admin(
            "POST",
            &format!("{url}/v1/webhooks"),
            Some(&json!({"url": receiver.url, "events": ["segment.entered"]})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_"),
        "a secret is made when none is given"
    );
    let id = hook["id"].as_u64().unwrap();
    let this = format!("{url}/v1/webhooks/{id}");
    create_segment(&http, &url, "buyers", "computed.frequency >= 1").await;
    http.purchase(&url, "u1", 1).await;

    let w = webhook_when(&http, &this, "the webhook to be turned off", |w| {
        w["active"] == false
    })
    .await;
    let reason = w["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("503"), "{reason}");
    assert_eq!(w["delivery"]["state"], "disabled", "{w}");
    assert_eq!(w["delivery"]["behind"], 1, "{w}");
    let metrics = http.get_text(&format!("{url}/metrics")).await.unwrap();
    assert!(
        metrics.contains("persona_webhook_disabled_total 1"),
        "{metrics}"
    );
    let failed = receiver.received();
    assert!(failed.len() >= 2, "it was tried again before giving up");

    // Off survives a restart, and nothing is sent while off.
    server.stop();
    let server = Server::start_configured(&data, &cfg);
    let this = format!("{}/v1/webhooks/{id}", server.url());
    let (_, after) = http.get(&this, Some(ADMIN)).await.unwrap();
    assert_eq!(after["active"], false, "{after}");
    assert_eq!(
        (&after["delivery"]["cursor"], &after["delivery"]["behind"]),
        (&w["delivery"]["cursor"], &w["delivery"]["behind"]),
        "its place is shown as before the restart: {after}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), failed.len());

    // Turned on again with the receiver mended: the entry that failed is sent, with the
    // delivery id it had.
    receiver.status.store(200, Ordering::SeqCst);
    let (status, w) = http
        .admin("PUT", &this, Some(&json!({"active": true})))
        .await
        .unwrap();
    assert_eq!(status, 200, "{w}");
    assert!(w["disabled_reason"].is_null(), "{w}");
    let got = receiver.until(failed.len() + 1).await;
    let taken = got.last().unwrap();
    assert_signed(taken, &secret);
    assert_eq!(taken.delivery, failed[0].delivery);
    assert_eq!(taken.body["user_id"], "u1");
    webhook_when(&http, &this, "the webhook to catch up", |w| {
        w["delivery"]["behind"] == 0 && w["delivery"]["state"] == "idle"
    })
    .await;
}

#[tokio::test]
async fn a_webhook_for_some_segments_receives_only_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0).await;
    let server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    let buyers = create_segment(&http, &url, "buyers", "computed.frequency >= 1").await;
    let repeat = create_segment(&http, &url, "repeat", "computed.frequency >= 2").await;
    let hooks = format!("{url}/v1/webhooks");
    for (segments, field) in [(json!([987]), "segments[0]"), (json!("1"), "segments")] {
        let body =
            json!({"url": receiver.url, "events": ["segment.entered"], "segments": segments});
        let (status, err) = http.admin("POST", &hooks, Some(&body)).await.unwrap();
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{err}");
    }
    let body =
        json!({"url": receiver.url, "events": ["segment.entered"], "segments": [repeat["id"]]});
    let (status, hook) = http.admin("POST", &hooks, Some(&body)).await.unwrap();
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["segments"], json!([repeat["id"]]));

    // u1 enters both segments, u2 only "buyers": only u1's entry into "repeat" is sent.
    for (user, n) in [("u1", 1), ("u1", 2), ("u2", 1)] {
        http.purchase(&url, user, n).await;
    }
    http.wait_processed(&url).await;
    let this = format!("{hooks}/{}", hook["id"]);
    webhook_when(&http, &this, "the webhook to catch up", |w| {
        w["delivery"]["behind"] == 0 && w["delivery"]["state"] == "idle"
    })
    .await;
    let got = receiver.received();
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|r| {
            (
                r.body["user_id"].as_str().unwrap(),
                r.body["segment"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("u1", "repeat")], "not {} nor u2", buyers["name"]);
}
