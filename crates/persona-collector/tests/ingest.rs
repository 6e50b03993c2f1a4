//! End-to-end tests of the ingestion router against a real log on disk, one request at a
//! time through `oneshot`, checking both the HTTP answer and what the log holds.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use persona_collector::{
    CollectorConfig, CollectorState, Front, LogMetrics, Metrics, StageCheck, router,
};
use persona_log::{EventLog, LogConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "test-write-key";

struct Harness {
    _dir: tempfile::TempDir,
    log: Arc<EventLog>,
    state: CollectorState,
    /// What `persona serve` answers with: the router behind a [`Front`].
    app: Front,
    /// The router alone.
    router: Router,
}

fn harness() -> Harness {
    harness_with(LogConfig::default())
}

fn harness_with(log_config: LogConfig) -> Harness {
    harness_full(log_config, CollectorConfig::default())
}

fn harness_full(log_config: LogConfig, collector: CollectorConfig) -> Harness {
    harness_adjusted(log_config, collector, |state| state)
}

/// A harness whose state `adjust` changes before it is shared (to add a stage, say).
fn harness_adjusted(
    log_config: LogConfig,
    collector: CollectorConfig,
    adjust: impl FnOnce(CollectorState) -> CollectorState,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (log, _) = EventLog::open(
        dir.path().join("log"),
        log_config,
        Arc::new(LogMetrics(metrics.clone())),
    )
    .unwrap();
    let log = Arc::new(log);
    let config = CollectorConfig {
        write_keys: vec![KEY.into()],
        ..collector
    }
    .validate()
    .unwrap();
    let state = adjust(CollectorState::new(log.clone(), config, metrics));
    let router = router(state.clone());
    Harness {
        _dir: dir,
        log,
        app: Front::new(state.clone(), router.clone()),
        state,
        router,
    }
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

fn post(path: &str, body: impl Into<Body>) -> axum::http::request::Builder {
    let _ = body;
    Request::post(path)
        .header(header::AUTHORIZATION, basic(KEY))
        .header(header::CONTENT_TYPE, "application/json")
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        answer(resp).await
    }

    async fn send_to_router(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        answer(self.router.clone().oneshot(req).await.unwrap()).await
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let req = post(path, ()).body(Body::from(body.to_string())).unwrap();
        let (s, _, b) = self.send(req).await;
        (s, b)
    }

    /// Posts `body` to `/v1/batch`, expects 200 and returns what the log then holds.
    async fn batch_stored(&self, body: impl Into<Body>) -> Vec<Value> {
        let req = post("/v1/batch", ()).body(body.into()).unwrap();
        let (status, _, resp) = self.send(req).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        self.logged()
    }

    /// The `messageId`s in the log, in log order.
    fn logged_ids(&self) -> Vec<Value> {
        self.logged()
            .iter()
            .map(|m| m["messageId"].clone())
            .collect()
    }

    fn logged(&self) -> Vec<Value> {
        let mut reader = self.log.reader().unwrap();
        let mut out = Vec::new();
        loop {
            let batch = reader.read_batch(1000).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(
                batch
                    .into_iter()
                    .map(|r| serde_json::from_slice(&r.payload).unwrap()),
            );
        }
    }
}

/// An answer's status, headers and body (JSON, or else the text as a JSON string).
async fn answer(resp: axum::response::Response) -> (StatusCode, axum::http::HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

/// Each detail's message index (absent for a problem with the request as a whole) and field.
fn detail_fields(body: &Value) -> Vec<(Option<u64>, String)> {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["index"].as_u64(),
                d["field"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_call_type_and_short_form_is_stored() {
    let h = harness();
    let calls = [
        ("track", json!({"userId": "u1", "event": "Product Viewed"})),
        (
            "identify",
            json!({"userId": "u1", "traits": {"email": "a@b.c"}}),
        ),
        ("page", json!({"anonymousId": "a1", "name": "Home"})),
        ("screen", json!({"anonymousId": "a1", "name": "Cart"})),
        ("group", json!({"userId": "u1", "groupId": "acme"})),
        ("alias", json!({"userId": "u1", "previousId": "a1"})),
    ];
    for (name, body) in &calls {
        for path in [format!("/v1/{name}"), format!("/v1/{}", &name[..1])] {
            let (status, resp) = h.post_json(&path, body.clone()).await;
            assert_eq!(status, StatusCode::OK, "{path}: {resp}");
            assert_eq!(resp, json!({"success": true}));
        }
    }
    let logged = h.logged();
    assert_eq!(logged.len(), 12);
    for (i, (name, _)) in calls.iter().enumerate() {
        assert_eq!(logged[2 * i]["type"], *name);
        assert_eq!(logged[2 * i + 1]["type"], *name);
    }
    assert_eq!(logged[0]["event"], "Product Viewed");
    assert_eq!(logged[2]["traits"]["email"], "a@b.c");
    assert_eq!(logged[10]["previousId"], "a1");
    for m in &logged {
        assert!(
            m["messageId"].is_string() && m["receivedAt"].is_string() && m["timestamp"].is_string()
        );
        assert_eq!(m["writeKey"], KEY);
    }
}

#[tokio::test]
async fn batch_with_batch_level_context_and_sent_at() {
    let h = harness();
    let body = json!({
        "batch": [
            {"type": "track", "userId": "u", "event": "A", "timestamp": "2024-01-01T00:00:00Z", "messageId": "m1"},
            {"type": "identify", "anonymousId": "x", "traits": {"plan": "pro"}, "messageId": "m2"},
        ],
        "context": {"library": {"name": "analytics-node", "version": "1"}},
        "sentAt": "2024-01-01T00:00:10Z",
    });
    let (status, resp) = h.post_json("/v1/batch", body).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let logged = h.logged();
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0]["messageId"], "m1");
    assert_eq!(logged[0]["context"]["library"]["name"], "analytics-node");
    assert_eq!(logged[0]["sentAt"], "2024-01-01T00:00:10.000Z");
    // Sent 10 s after it happened by the client's clock, so 10 s before it was received.
    let received =
        chrono::DateTime::parse_from_rfc3339(logged[0]["receivedAt"].as_str().unwrap()).unwrap();
    let ts =
        chrono::DateTime::parse_from_rfc3339(logged[0]["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!((received - ts).num_seconds(), 10);
}

#[tokio::test]
async fn write_key_in_the_body_and_text_plain_as_analytics_js_sends() {
    let h = harness();
    let req = Request::post("/v1/t")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            json!({"writeKey": KEY, "anonymousId": "a", "event": "Clicked"}).to_string(),
        ))
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let logged = h.logged();
    assert_eq!(logged[0]["writeKey"], KEY);
}

#[tokio::test]
async fn bad_or_missing_write_keys_are_401() {
    let h = harness();
    let body = json!({"userId": "u", "event": "x"}).to_string();
    let req = Request::post("/v1/track")
        .header(header::AUTHORIZATION, basic("wrong"))
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, headers, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp["error"]["code"], "unauthorized");
    // The scheme to use, as a 401 must name (some HTTP clients fail without it).
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    let req = Request::post("/v1/track").body(Body::from(body)).unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing write key")
    );
    let req = Request::post("/v1/track")
        .body(Body::from(
            json!({"writeKey": "nope", "userId": "u", "event": "x"}).to_string(),
        ))
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::UNAUTHORIZED);
    // A key of the wrong type is named as such, not as missing.
    let req = Request::post("/v1/track")
        .body(Body::from(
            json!({"writeKey": 5, "userId": "u", "event": "x"}).to_string(),
        ))
        .unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp["error"]["message"],
        "writeKey in the body must be a string, got a number"
    );

    // A wrong key in the header is refused before the body is looked at: 401, not the 413
    // or 400 that this body would earn.
    for body in [vec![b' '; 600 * 1024], b"{not json".to_vec()] {
        let req = Request::post("/v1/batch")
            .header(header::AUTHORIZATION, basic("wrong"))
            .body(Body::from(body))
            .unwrap();
        let (status, _, resp) = h.send(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{resp}");
        assert_eq!(resp["error"]["message"], "invalid write key");
    }
    assert!(h.logged().is_empty());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let h = harness();
    let body = json!({"batch": (0..50).map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "E"})).collect::<Vec<_>>()});
    let gzipped = gzip(body.to_string().as_bytes());
    // A list of codings with `identity` in it is the same as `gzip` alone.
    for (i, encoding) in ["gzip", "gzip, identity", "identity,GZIP"]
        .iter()
        .enumerate()
    {
        let req = post("/v1/batch", ())
            .header(header::CONTENT_ENCODING, *encoding)
            .body(Body::from(gzipped.clone()))
            .unwrap();
        let (status, _, resp) = h.send(req).await;
        assert_eq!(status, StatusCode::OK, "{encoding}: {resp}");
        assert_eq!(h.logged().len(), 50 * (i + 1));
    }
    let req = post("/v1/batch", ())
        .header(header::CONTENT_ENCODING, "br")
        .body(Body::from(gzipped))
        .unwrap();
    let (status, headers, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{resp}");
    assert!(resp["error"]["message"].as_str().unwrap().contains("br"));
    assert_eq!(headers[header::ACCEPT_ENCODING], "gzip");

    let req = post("/v1/batch", ())
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from("not gzip at all"))
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_without_inflating_it() {
    let h = harness();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let req = post("/v1/batch", ())
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gz.finish().unwrap()))
        .unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp["error"]["code"], "batch_too_large");
}

#[tokio::test]
async fn cors_preflight_allows_any_origin() {
    let h = harness();
    let req = Request::options("/v1/batch")
        .header(header::ORIGIN, "https://shop.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        // What the RudderStack JS SDK asks for: its own `AnonymousId` header besides the
        // usual ones.
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,authorization,anonymousid,content-encoding",
        )
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = h.send(req).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_lowercase();
    for wanted in [
        "authorization",
        "content-type",
        "anonymousid",
        "content-encoding",
    ] {
        assert!(allowed.contains(wanted), "{wanted} not in {allowed}");
    }

    let req = post("/v1/track", ())
        .header(header::ORIGIN, "https://shop.example")
        .body(Body::from(json!({"userId": "u", "event": "x"}).to_string()))
        .unwrap();
    let (_, headers, _) = h.send(req).await;
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let exposed = headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
}

/// analytics.js (analytics-next) in batching mode posts `{writeKey, batch, sentAt}` as
/// `text/plain` to `/v1/b`; the classic mobile SDKs post batches to `/v1/import`.
/// analytics.js (analytics-next) loads its settings from `{cdnURL}/v1/projects/{key}/settings`
/// and will not start without them: persona answers with itself as the one destination.
#[tokio::test]
async fn browser_sdks_get_settings_that_send_their_events_here() {
    let h = harness();
    let get = |key: &str, proto: Option<&str>| {
        let req = Request::get(format!("/v1/projects/{key}/settings"))
            .header(header::HOST, "collect.example:8080")
            .header(header::ORIGIN, "https://shop.example");
        let req = match proto {
            Some(p) => req.header("x-forwarded-proto", p),
            None => req,
        };
        req.body(Body::empty()).unwrap()
    };
    let (status, headers, settings) = h.send(get(KEY, None)).await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(headers[header::CACHE_CONTROL], "private, max-age=300");
    let segment = &settings["integrations"]["Segment.io"];
    assert_eq!(segment["apiKey"], KEY);
    assert_eq!(segment["apiHost"], "collect.example:8080/v1");
    assert_eq!(segment["protocol"], "http");
    assert_eq!(
        settings["integrations"].as_object().unwrap().len(),
        1,
        "no other destination for the browser to load"
    );
    assert_eq!(
        settings["metrics"]["sampleRate"], 0,
        "no metrics sent to Segment"
    );
    let (_, _, settings) = h.send(get(KEY, Some("https"))).await;
    assert_eq!(settings["integrations"]["Segment.io"]["protocol"], "https");
    let (status, _, body) = h.send(get("wrong", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // RudderStack's SDK asks its control plane for the source, key as Basic auth (or in the
    // address): a source with no device-mode destinations sends everything here.
    let source = |uri: &str, key: Option<&str>| {
        let req = Request::get(uri);
        let req = match key {
            Some(k) => req.header(header::AUTHORIZATION, basic(k)),
            None => req,
        };
        req.body(Body::empty()).unwrap()
    };
    let (status, _, config) = h
        .send(source("/sourceConfig/?p=npm&v=2.52.21", Some(KEY)))
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["source"]["writeKey"], KEY);
    assert_eq!(config["source"]["destinations"], json!([]));
    let by_query = format!("/sourceConfig?writeKey={KEY}");
    assert_eq!(h.send(source(&by_query, None)).await.0, StatusCode::OK);
    for (uri, key) in [("/sourceConfig/", Some("wrong")), ("/sourceConfig/", None)] {
        assert_eq!(h.send(source(uri, key)).await.0, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn the_batch_aliases_sdks_post_to_are_stored() {
    let h = harness();
    let req = Request::post("/v1/b")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            json!({
                "writeKey": KEY,
                "batch": [
                    {"type": "track", "anonymousId": "a", "event": "Clicked", "messageId": "b1"},
                    {"type": "page", "anonymousId": "a", "name": "Home", "messageId": "b2"},
                ],
                "sentAt": "2026-11-28T10:00:00.000Z",
            })
            .to_string(),
        ))
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"success": true}));
    let (status, body) = h
        .post_json(
            "/v1/import",
            json!({"batch": [{"type": "identify", "userId": "u", "messageId": "i1"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.logged_ids(), [json!("b1"), json!("b2"), json!("i1")]);

    // RudderStack's JavaScript SDK with `useBeacon`: navigator.sendBeacon sets no header,
    // so the key comes in the address.
    let beacon = |key: &str| {
        Request::post(format!("/beacon/v1/batch?writeKey={key}"))
            .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body(Body::from(
                json!({"batch": [{"type": "track", "anonymousId": "a", "event": "Left",
                                  "messageId": "beacon1"}]})
                .to_string(),
            ))
            .unwrap()
    };
    let (status, _, body) = h.send(beacon("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = h.send(beacon(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.logged().last().unwrap()["messageId"], "beacon1");
    assert_eq!(h.logged().last().unwrap()["writeKey"], KEY);
}

#[tokio::test]
async fn invalid_messages_are_400_naming_the_field() {
    let h = harness();
    let cases = [
        ("/v1/track", json!({"event": "x"}), "userId"),
        ("/v1/track", json!({"userId": "u"}), "event"),
        ("/v1/track", json!({"userId": "u", "event": 7}), "event"),
        (
            "/v1/identify",
            json!({"userId": "u", "traits": "vip"}),
            "traits",
        ),
        (
            "/v1/page",
            json!({"userId": "u", "timestamp": "last tuesday"}),
            "timestamp",
        ),
        ("/v1/page", json!({"userId": "u", "sentAt": 12}), "sentAt"),
        ("/v1/group", json!({"userId": "u"}), "groupId"),
        ("/v1/alias", json!({"userId": "u"}), "previousId"),
        ("/v1/identify", json!({"userId": ["u"]}), "userId"),
    ];
    for (path, body, field) in cases {
        let (status, resp) = h.post_json(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(resp["error"]["code"], "invalid_message");
        let fields = detail_fields(&resp);
        assert!(
            fields.contains(&(Some(0), field.to_string())),
            "{path} {body}: {resp}"
        );
        assert!(resp["error"]["message"].as_str().unwrap().contains(field));
    }
    assert!(h.logged().is_empty());
}

#[tokio::test]
async fn malformed_json_is_400() {
    let h = harness();
    for body in ["{not json", "[1,2]", ""] {
        let req = post("/v1/track", ()).body(Body::from(body)).unwrap();
        let (status, _, resp) = h.send(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(resp["error"]["code"], "invalid_json");
    }
    let (status, resp) = h.post_json("/v1/batch", json!({"batch": {"a": 1}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A problem with the batch itself names no message.
    assert_eq!(detail_fields(&resp), [(None, "batch".to_string())]);
    assert!(resp["error"]["details"][0].get("index").is_none(), "{resp}");
    let body = json!({"batch": [{"type": "track", "userId": "u", "event": "x"}], "sentAt": 5});
    let (status, resp) = h.post_json("/v1/batch", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(detail_fields(&resp), [(None, "sentAt".to_string())]);
    assert!(h.logged().is_empty());
}

/// JSON the stream stage could not read back is refused at the door with a 400, never
/// acknowledged and then dropped: every value of a message is parsed, however deep.
#[tokio::test]
async fn json_the_log_readers_would_refuse_is_400_wherever_it_hides() {
    let h = harness();
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let bodies = [
        r#"{"userId": 1e400, "event": "x"}"#.to_string(),
        r#"{"userId": "u", "event": "x", "properties": {"revenue": 1e400}}"#.to_string(),
        format!(r#"{{"userId": "u", "event": "x", "properties": {{"deep": {deep}}}}}"#),
    ];
    for body in &bodies {
        let req = post("/v1/track", ())
            .body(Body::from(body.clone()))
            .unwrap();
        let (status, _, resp) = h.send(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_eq!(resp["error"]["code"], "invalid_json", "{body}");
    }
    assert!(h.logged().is_empty(), "nothing refused reaches the log");

    // A key repeated inside an object: the last one wins, as at the top level, so the
    // stored event is one the stream stage reads.
    let body = r#"{"userId": "u", "event": "Order Completed",
                   "properties": {"revenue": 1, "revenue": 2}}"#;
    let req = post("/v1/track", ()).body(Body::from(body)).unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let stored = h.logged();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["properties"], json!({"revenue": 2}));
}

/// A numeric id becomes a string of the digits sent, however long.
#[tokio::test]
async fn numeric_ids_keep_every_digit() {
    let h = harness();
    let body = r#"{"userId": 340282366920938463463374607431768211455, "event": "x",
                   "anonymousId": -7}"#;
    let req = post("/v1/track", ()).body(Body::from(body)).unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let stored = h.logged();
    assert_eq!(
        stored[0]["userId"],
        "340282366920938463463374607431768211455"
    );
    assert_eq!(stored[0]["anonymousId"], "-7");
    // A whole number however written is one customer; a fraction keeps its digits.
    for (sent, want) in [("1e3", "1000"), ("1000.0", "1000"), ("12.50", "12.5")] {
        let body = format!(r#"{{"userId": {sent}, "event": "x"}}"#);
        let req = post("/v1/track", ()).body(Body::from(body)).unwrap();
        assert_eq!(h.send(req).await.0, StatusCode::OK);
        assert_eq!(h.logged().last().unwrap()["userId"], want, "{sent}");
    }
}

/// Half an emoji, as `JSON.stringify` writes a string cut in the middle of one, costs
/// neither its batch nor its message: it is stored as U+FFFD, as Segment stores it.
#[tokio::test]
async fn lone_surrogates_are_stored_as_the_replacement_character() {
    let h = harness();
    let body = r#"{"batch": [
        {"type": "page", "userId": "u\ud83d", "name": "Sale \ud83d", "messageId": "cut"},
        {"type": "track", "userId": "u", "event": "x", "messageId": "whole",
         "properties": {"emoji": "\ud83d\ude00", "low": "\ude00!", "text": "\\ud83d"}}
    ]}"#;
    let stored = h.batch_stored(body).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["userId"], "u\u{FFFD}");
    assert_eq!(stored[0]["name"], "Sale \u{FFFD}");
    assert_eq!(
        stored[1]["properties"],
        json!({"emoji": "\u{1F600}", "low": "\u{FFFD}!", "text": "\\ud83d"})
    );
}

/// An SDK whose host was configured ending in `/` posts to `//v1/batch`.
#[tokio::test]
async fn repeated_and_trailing_slashes_reach_the_ingestion_paths() {
    let h = harness();
    for (i, path) in ["//v1/batch", "/v1/batch/", "/v1//track"]
        .iter()
        .enumerate()
    {
        let body = if path.ends_with("track") {
            json!({"userId": "u", "event": "e", "messageId": format!("m{i}")})
        } else {
            json!({"batch": [{"type": "track", "userId": "u", "event": "e",
                              "messageId": format!("m{i}")}]})
        };
        let (status, resp) = h.post_json(path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {resp}");
    }
    assert_eq!(h.logged_ids(), [json!("m0"), json!("m1"), json!("m2")]);
    // Any other method is told which one the path takes, as without the slash.
    let (status, headers, resp) = h
        .send(Request::get("/v1/track/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{resp}");
    assert_eq!(headers[header::ALLOW], "POST");
}

/// Behind a proxy on a private network (trusted by default) the client's address is the
/// last `X-Forwarded-For` entry the proxies did not add themselves; what a client wrote
/// before it is not believed; an entry that is no address is not stored as one, and neither
/// is the proxy's own address.
#[tokio::test]
async fn the_forwarded_address_is_stored_only_when_it_is_an_address() {
    let h = harness();
    let proxy: SocketAddr = "10.0.0.9:50000".parse().unwrap();
    let forwarded = [
        (Some("203.0.113.5, 10.0.0.1"), Some("203.0.113.5")),
        (Some("192.0.2.1, 203.0.113.7"), Some("203.0.113.7")),
        (Some("198.51.100.7:4711"), Some("198.51.100.7")),
        (Some("[2001:db8::1]:443"), Some("2001:db8::1")),
        (Some("[2001:db8::2]"), Some("2001:db8::2")),
        (Some("::ffff:203.0.113.6"), Some("203.0.113.6")),
        (Some("unknown"), None),
        (None, Some("10.0.0.9")),
    ];
    for (header, _) in forwarded {
        let mut req = post("/v1/track", ()).extension(ConnectInfo(proxy));
        if let Some(header) = header {
            req = req.header("x-forwarded-for", header);
        }
        let req = req
            .body(Body::from(r#"{"userId": "u", "event": "e"}"#))
            .unwrap();
        assert_eq!(h.send(req).await.0, StatusCode::OK);
    }
    let stored = h.logged();
    for (m, (header, want)) in stored.iter().zip(forwarded) {
        assert_eq!(m["context"]["ip"].as_str(), want, "{header:?}: {m}");
    }
}

/// A Latin-1 byte from a backend, or a float NaN as Python's `json.dumps` writes it, costs
/// neither its batch nor its message: stored as U+FFFD and `null`.
#[tokio::test]
async fn bytes_that_are_not_utf8_and_nan_cost_no_message() {
    let h = harness();
    let body: &[u8] = b"{\"batch\": [{\"type\": \"track\", \"userId\": \"a\", \"event\": \"e\"},
        {\"type\": \"track\", \"userId\": \"b\", \"event\": \"caf\xe9\",
         \"properties\": {\"price\": NaN, \"max\": Infinity, \"note\": \"NaN\"}}]}";
    let stored = h.batch_stored(body).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1]["event"], "caf\u{FFFD}");
    assert_eq!(
        stored[1]["properties"],
        json!({"price": null, "max": null, "note": "NaN"})
    );

    // U+FFFD takes three bytes where the stray byte took one: the repaired text is held to
    // the limit too.
    let mut body = br#"{"userId": "c", "event": "e", "properties": {"t": ""#.to_vec();
    body.extend(std::iter::repeat_n(0xe9, 20 * 1024));
    body.extend_from_slice(br#""}}"#);
    let req = post("/v1/track", ()).body(Body::from(body)).unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{resp}");
    assert_eq!(resp["error"]["code"], "message_too_large");
    assert_eq!(h.logged().len(), 2);
}

/// A number beyond a float's range or nesting past the parser's limit in one message of a
/// batch refuses that message, named by index, not the whole body.
#[tokio::test]
async fn json_that_cannot_be_stored_costs_only_its_own_message() {
    let h = harness();
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body = format!(
        r#"{{"batch": [
            {{"type": "track", "userId": "u", "event": "kept", "messageId": "m0"}},
            {{"type": "track", "userId": "u", "event": "x", "properties": {{"revenue": 1e400}}}},
            {{"type": "identify", "userId": "u", "traits": {{"deep": {deep}}}}},
            {{"type": "page", "anonymousId": "a", "name": "1e400", "messageId": "m3"}}
        ]}}"#
    );
    let req = post("/v1/batch", ()).body(Body::from(body)).unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(
        (resp["accepted"].as_u64(), resp["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    let details = resp["error"]["details"].as_array().unwrap();
    let reasons: Vec<_> = details
        .iter()
        .map(|d| (d["index"].as_u64().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, "holds a number beyond the range of a 64-bit float"),
            (2, "is nested deeper than 125 levels"),
        ]
    );
    assert_eq!(h.logged_ids(), [json!("m0"), json!("m3")]);
    let (_, _, metrics) = h
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    let metrics = metrics.as_str().unwrap();
    // Counted as the type each refused message claims.
    for want in [
        r#"persona_collector_messages_total{kind="identify",outcome="rejected"} 1"#,
        r#"persona_collector_messages_total{kind="track",outcome="rejected"} 1"#,
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }

    // A bad value outside the messages still refuses the body: nothing to keep apart.
    let body = r#"{"batch": [{"type": "track", "userId": "u", "event": "e"}],
                   "context": {"n": 1e400}}"#;
    let req = post("/v1/batch", ()).body(Body::from(body)).unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_eq!(resp["error"]["code"], "invalid_json");
    assert_eq!(h.logged().len(), 2);
}

#[tokio::test]
async fn a_partial_batch_keeps_the_valid_messages_and_names_the_invalid() {
    let h = harness();
    let big = "x".repeat(40 * 1024);
    let body = json!({"batch": [
        {"type": "track", "userId": "u", "event": "ok-0", "messageId": "m0"},
        {"type": "track", "userId": "u"},
        {"type": "identify", "userId": "u", "traits": {"plan": "pro"}, "messageId": "m2"},
        {"type": "track", "userId": "u", "event": "big", "properties": {"blob": big}},
        {"type": "purchase", "userId": "u"},
        {"type": "page", "anonymousId": "a", "messageId": "m5"},
    ]});
    let (status, resp) = h.post_json("/v1/batch", body).await;
    // 200, so no SDK resends the three that were stored; the rejects are in the body.
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["success"], true);
    assert_eq!(resp["error"]["code"], "invalid_messages");
    assert_eq!(resp["accepted"], 3);
    assert_eq!(resp["rejected"], 3);
    let fields = detail_fields(&resp);
    assert!(fields.contains(&(Some(1), "event".into())), "{resp}");
    assert!(fields.iter().any(|(i, _)| *i == Some(3)), "{resp}");
    assert!(fields.contains(&(Some(4), "type".into())), "{resp}");
    let ids: Vec<_> = h
        .logged()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["m0", "m2", "m5"]);
}

#[tokio::test]
async fn a_batch_with_only_invalid_messages_is_400_with_bounded_details() {
    let h = harness();
    // A tiny body can carry a huge number of invalid items; the answer stays small.
    let items = vec![json!(0); 5000];
    let (status, resp) = h.post_json("/v1/batch", json!({"batch": items})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(resp["error"]["code"], "invalid_messages");
    assert_eq!(resp["accepted"], 0);
    assert_eq!(resp["rejected"], 5000);
    assert_eq!(resp["error"]["details"].as_array().unwrap().len(), 100);
    let message = resp["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("and 4995 more") && message.len() < 2000,
        "{message}"
    );
    assert!(h.logged().is_empty());
}

#[tokio::test]
async fn extreme_timestamps_are_rejected_not_crashing() {
    let h = harness();
    let body = json!({"userId": "u", "event": "x", "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"});
    let (status, resp) = h.post_json("/v1/track", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_eq!(detail_fields(&resp), [(Some(0), "sentAt".to_string())]);
    let body = json!({"userId": "u", "event": "x", "timestamp": "+200000-01-01T00:00:00"});
    let (status, resp) = h.post_json("/v1/track", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(detail_fields(&resp), [(Some(0), "timestamp".to_string())]);
}

#[tokio::test]
async fn oversized_messages_and_batches_are_413() {
    let h = harness();
    let big = "x".repeat(33 * 1024);
    let (status, resp) = h
        .post_json(
            "/v1/track",
            json!({"userId": "u", "event": "x", "properties": {"b": big}}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp["error"]["code"], "message_too_large");

    let chunk = "y".repeat(20 * 1024);
    let batch: Vec<_> = (0..30)
        .map(|i| json!({"type": "track", "userId": "u", "event": format!("e{i}"), "properties": {"c": chunk}}))
        .collect();
    let (status, resp) = h.post_json("/v1/batch", json!({"batch": batch})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp["error"]["code"], "batch_too_large");
    assert!(h.logged().is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let h = harness();
    let (status, _, resp) = h
        .send(Request::get("/v1/nothing").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(resp["error"]["code"], "not_found");
    let (status, _, resp) = h
        .send(Request::get("/v1/track").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = harness();
    let (status, _, body) = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    h.post_json("/v1/track", json!({"userId": "u", "event": "x"}))
        .await;
    h.post_json("/v1/track", json!({"userId": "u"})).await;
    let (status, _, body) = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["log"]["next_offset"], 1);

    let (status, _, body) = h
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    for want in [
        r#"persona_collector_messages_total{kind="track",outcome="accepted"} 1"#,
        r#"persona_collector_messages_total{kind="track",outcome="rejected"} 1"#,
        "persona_log_fsync_duration_seconds_count 1",
        "persona_log_appended_records_total 1",
        r#"persona_http_request_duration_seconds_count{path="/v1/track",status="200"} 1"#,
        "persona_log_next_offset 1",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }

    // Asked to stop: out of rotation, yet what still arrives is taken.
    h.state.begin_stop();
    let (status, _, body) = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["problems"], json!(["shutting down"]));
    let (status, _) = h
        .post_json("/v1/track", json!({"userId": "u", "event": "late"}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// A stage behind the log that fails, as the processor does when its store cannot write.
struct FailingStage;

impl StageCheck for FailingStage {
    fn name(&self) -> &'static str {
        "processor"
    }

    fn check(&self) -> (Value, Vec<String>) {
        (
            json!({"failure": "disk full"}),
            vec!["processor failing: disk full".into()],
        )
    }
}

/// Readiness is about taking events: a failing stage behind the log is a warning, not a
/// reason for a load balancer to steer senders away (who would drop events after their
/// retries), and events sent meanwhile are stored.
#[tokio::test]
async fn a_failing_stage_behind_the_log_leaves_the_server_ready() {
    let h = harness_adjusted(LogConfig::default(), CollectorConfig::default(), |state| {
        state.with_stage(Arc::new(FailingStage))
    });
    let (status, _, body) = h
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["warnings"], json!(["processor failing: disk full"]));
    assert_eq!(body["processor"]["failure"], "disk full");
    let (status, _) = h
        .post_json("/v1/track", json!({"userId": "u", "event": "x"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.logged().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_queue_answers_503_with_retry_after_and_loses_nothing_acknowledged() {
    // A queue that holds about one message and no patience: concurrent senders must be
    // turned away rather than queued in memory.
    let h = Arc::new(harness_with(LogConfig {
        max_queue_bytes: 1000,
        queue_wait: std::time::Duration::ZERO,
        ..Default::default()
    }));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let pad = "p".repeat(400);
            let body = json!({"userId": "u", "event": "x", "messageId": format!("m{i}"), "properties": {"pad": pad}});
            let req = post("/v1/track", ()).body(Body::from(body.to_string())).unwrap();
            let (status, headers, resp) = h.send(req).await;
            (i, status, headers.get(header::RETRY_AFTER).cloned(), resp)
        }));
    }
    let mut acked = std::collections::HashSet::new();
    let mut refused = 0;
    for t in tasks {
        let (i, status, retry_after, resp) = t.await.unwrap();
        match status {
            StatusCode::OK => {
                acked.insert(format!("m{i}"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(resp["error"]["code"], "overloaded");
                assert!(retry_after.is_some(), "503 without Retry-After");
            }
            other => panic!("unexpected {other}: {resp}"),
        }
    }
    assert!(
        refused > 0,
        "nothing was refused; the queue bound is not working"
    );
    assert!(!acked.is_empty());
    let logged: std::collections::HashSet<String> = h
        .logged()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        logged, acked,
        "the log holds exactly the acknowledged messages"
    );
}

/// Bodies hold a share of the in-flight budget as their bytes arrive, so a flood of large
/// bodies gets 503 + Retry-After instead of growing memory, while a slow sender holds only
/// what it has sent; the share comes back with the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_in_flight_budget_get_503_until_one_is_answered() {
    const BUDGET: usize = 40 * 1024;
    let h = Arc::new(harness_full(
        LogConfig::default(),
        CollectorConfig {
            max_inflight_bytes: BUDGET,
            max_batch_bytes: BUDGET,
            ..Default::default()
        },
    ));
    // A slow sender sends 30 KB of its message, then stops.
    let head = format!(
        r#"{{"userId": "u", "event": "x", "messageId": "slow", "properties": {{"pad": "{}"#,
        "p".repeat(30 * 1024)
    );
    let sent = head.len();
    let (mut tx, slow_body) = http_body_util::channel::Channel::<bytes::Bytes>::new(1);
    tx.send_data(head.into()).await.unwrap();
    let slow = {
        let h = h.clone();
        tokio::spawn(async move {
            let req = post("/v1/track", ()).body(Body::new(slow_body)).unwrap();
            h.send(req).await
        })
    };
    // It holds what it has sent, no more: not the message limit it might still grow to.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while h.state.inflight.available_permits() == BUDGET {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow body took no share"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(h.state.inflight.available_permits(), BUDGET - sent);

    let track = |id: &str, pad: usize| {
        let body = json!({"userId": "u", "event": "x", "messageId": id,
                          "properties": {"pad": "q".repeat(pad)}});
        post("/v1/track", ())
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    // A small body fits in what is left...
    let (status, _, resp) = h.send(track("small", 10)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    // ...a 12 KB one does not, and is told to come back.
    let (status, headers, resp) = h.send(track("big", 12 * 1024)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{resp}");
    assert_eq!(resp["error"]["code"], "overloaded");
    assert!(headers.contains_key(header::RETRY_AFTER));

    tx.send_data(r#""}}"#.into()).await.unwrap();
    drop(tx);
    let (status, _, resp) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(
        h.state.inflight.available_permits(),
        BUDGET,
        "share returned"
    );
    let (status, _, resp) = h.send(track("big", 12 * 1024)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");

    // A gzip body whose compressed and decoded sizes together pass the budget, each alone
    // not: the compressed bytes' share pays for the decoded ones.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let letters: String = (0..30 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let body = json!({"userId": "u", "event": "x", "messageId": "zipped",
                      "properties": {"letters": letters}})
    .to_string();
    let gzipped = gzip(body.as_bytes());
    assert!(gzipped.len() + body.len() > BUDGET && body.len() < BUDGET);
    let req = post("/v1/track", ())
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzipped))
        .unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(
        h.state.inflight.available_permits(),
        BUDGET,
        "share returned"
    );
    assert_eq!(
        h.logged_ids(),
        [json!("small"), json!("slow"), json!("big"), json!("zipped")]
    );
}

/// A body that breaks off mid-way is a 400 of its own, not counted as too large.
#[tokio::test]
async fn a_body_that_breaks_off_is_400_not_413() {
    let h = harness();
    let (mut tx, body) = http_body_util::channel::Channel::<bytes::Bytes, std::io::Error>::new(1);
    tx.send_data(r#"{"userId": "u", "ev"#.into()).await.unwrap();
    tx.abort(std::io::Error::other("client went away"));
    let req = post("/v1/track", ()).body(Body::new(body)).unwrap();
    let (status, _, resp) = h.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_eq!(resp["error"]["code"], "body_unreadable");
    let (_, _, metrics) = h
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains(r#"persona_collector_refused_requests_total{reason="body_unreadable"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"reason="payload_too_large""#), "{text}");
    assert!(h.logged().is_empty());
}

/// `/metrics` answers in OpenMetrics when the scraper asks for it, as Prometheus does, and
/// otherwise in the Prometheus text format 0.0.4, whose readers count a sample as part of
/// a counter only under a family of the sample's own name.
#[tokio::test]
async fn metrics_answer_in_the_format_the_scraper_accepts() {
    let h = harness();
    let (status, resp) = h
        .post_json("/v1/track", json!({"userId": "u", "event": "A"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let scrape = |accept: Option<&str>| {
        let req = Request::get("/metrics");
        let req = match accept {
            Some(a) => req.header(header::ACCEPT, a),
            None => req,
        };
        req.body(Body::empty()).unwrap()
    };
    let sample = r#"persona_collector_messages_total{kind="track",outcome="accepted"} 1"#;
    // What Prometheus sends.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let text_004 = (
        "text/plain; version=0.0.4; charset=utf-8",
        "# TYPE persona_collector_messages_total counter\n",
        false,
    );
    let openmetrics = (
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "# TYPE persona_collector_messages counter\n",
        true,
    );
    let cases = [
        (None, text_004),
        (Some("text/plain;version=0.0.4"), text_004),
        (Some("*/*"), text_004),
        (Some(prometheus), openmetrics),
    ];
    for (accept, (content_type, family, eof)) in cases {
        let (_, headers, body) = h.send(scrape(accept)).await;
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{accept:?}");
        let text = body.as_str().unwrap();
        assert!(text.contains(family), "{accept:?}: {text}");
        assert!(text.contains(sample), "{accept:?}: {text}");
        assert_eq!(text.ends_with("# EOF\n"), eof, "{accept:?}: {text}");
        assert_eq!(text.contains("# EOF"), eof, "{accept:?}: {text}");
    }
}

/// `persona serve` answers ingestion calls in [`Front`] without the router; every answer,
/// headers included, must be the one the router and its layers give.
#[tokio::test]
async fn front_answers_as_the_router_does() {
    let h = harness();
    let valid = json!({"userId": "u", "event": "Viewed"}).to_string();
    let shop = Some("https://shop.example");
    let partial =
        json!({"batch": [{"type": "track", "userId": "u", "event": "A"}, {"type": "track"}]});
    let calls = [
        Call::new("POST", "/v1/track", Some(KEY), shop, &valid),
        Call::new("POST", "/v1/t", Some(KEY), None, &valid),
        Call::new("POST", "/v1/batch", Some(KEY), shop, &partial.to_string()),
        Call::new("POST", "/v1/track", Some("wrong-key"), None, &valid),
        Call::new("POST", "/v1/identify", Some(KEY), None, "{not json"),
        Call::new("POST", "/v1/track", Some(KEY), None, r#"{"event": "x"}"#),
        Call::new("POST", "/v1/import", None, None, &valid),
        Call::new("OPTIONS", "/v1/batch", None, shop, ""),
        Call::new("GET", "/v1/track", Some(KEY), None, ""),
        Call::new("POST", "/v1/nothing", Some(KEY), None, &valid),
        Call::new("GET", "/healthz", None, None, ""),
    ];
    for call in &calls {
        let mut front = h.send(call.request()).await;
        let mut router = h.send_to_router(call.request()).await;
        // axum's router sets `Content-Length` from the body; hyper does the same for `Front`'s
        // own answers when it writes them.
        front.1.remove(header::CONTENT_LENGTH);
        router.1.remove(header::CONTENT_LENGTH);
        assert_eq!(front, router, "{} {}", call.method, call.path);
    }
    // Both took the valid messages: twice each call, once the partial batch's good one.
    assert_eq!(h.logged_ids().len(), 2 * 3);

    // The answers it gave itself are in the latency histogram, by path and status.
    let (_, _, metrics) = h
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    let metrics = metrics.as_str().unwrap();
    for series in [
        r#"persona_http_request_duration_seconds_count{path="/v1/t",status="200"} 2"#,
        r#"persona_http_request_duration_seconds_count{path="/v1/track",status="401"} 2"#,
        r#"persona_http_request_duration_seconds_count{path="/v1/identify",status="400"} 2"#,
        // And so are the router's, its 404s and 405s included.
        r#"persona_http_request_duration_seconds_count{path="/v1/track",status="405"} 2"#,
        r#"persona_http_request_duration_seconds_count{path="unmatched",status="404"} 2"#,
        r#"persona_http_request_duration_seconds_count{path="/healthz",status="200"} 2"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
}

/// One request of [`front_answers_as_the_router_does`], to be built twice.
struct Call {
    method: &'static str,
    path: &'static str,
    key: Option<&'static str>,
    origin: Option<&'static str>,
    body: String,
}

impl Call {
    fn new(
        method: &'static str,
        path: &'static str,
        key: Option<&'static str>,
        origin: Option<&'static str>,
        body: &str,
    ) -> Call {
        let body = body.to_string();
        Call {
            method,
            path,
            key,
            origin,
            body,
        }
    }

    fn request(&self) -> Request<Body> {
        let mut req = Request::builder().method(self.method).uri(self.path);
        if let Some(key) = self.key {
            req = req.header(header::AUTHORIZATION, basic(key));
        }
        if let Some(origin) = self.origin {
            req = req
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        }
        req.header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(self.body.clone()))
            .unwrap()
    }
}
