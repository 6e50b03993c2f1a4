//! Rule segments end to end: created over the API, back-filled over stored profiles, kept
//! live as events arrive, with one entry or exit event per membership change.

mod common;

use std::time::Duration;

use common::{ADMIN, Http, KEY, Server};
use serde_json::{Value, json};

async fn purchase(http: &Http, url: &str, user: &str, n: u32) {
    let (status, body) = http
        .post(
            url,
            "/v1/track",
            KEY,
            &json!({"userId": user, "event": "Order Completed", "messageId": format!("{user}-{n}"),
                    "properties": {"revenue": 100}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// The segment once its member count reaches `want` (the back-fill runs in the background).
async fn members_reach(http: &Http, url: &str, id: &Value, want: u64) -> Value {
    for _ in 0..250 {
        let (_, seg) = http
            .get(&format!("{url}/v1/segments/{id}"), Some(ADMIN))
            .await
            .unwrap();
        if seg["members"] == want {
            return seg;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("segment {id} did not reach {want} members");
}

fn users(page: &Value) -> Vec<&str> {
    page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn segments_are_back_filled_kept_live_and_report_each_entry_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    for (user, n) in [("u1", 1), ("u1", 2), ("u2", 1)] {
        purchase(&http, &url, user, n).await;
    }
    http.wait_processed(&url).await;

    // Bad definitions are refused with the field and the reason.
    let segments = format!("{url}/v1/segments");
    let (status, err) = http
        .admin(
            "POST",
            &segments,
            Some(&json!({"name": "x", "rule": "computed.frequncy >= 3"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "rule");
    assert!(
        err["error"]["details"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("computed.frequncy"),
        "{err}"
    );
    let (status, _) = http
        .admin("POST", &segments, Some(&json!({"rule": "true"})))
        .await
        .unwrap();
    assert_eq!(status, 400);

    let (status, repeat) = http
        .admin(
            "POST",
            &segments,
            Some(&json!({"name": "repeat buyers", "rule": "computed.frequency >= 3"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{repeat}");
    let (status, _) = http
        .admin(
            "POST",
            &segments,
            Some(&json!({"name": "repeat buyers", "rule": "true"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 409);
    let (_, buyers) = http
        .admin(
            "POST",
            &segments,
            Some(&json!({"name": "buyers", "rule": "computed.frequency >= 1"})),
        )
        .await
        .unwrap();

    // The back-fill finds both stored customers; members come in pages.
    members_reach(&http, &url, &buyers["id"], 2).await;
    let members = format!("{segments}/{}/members", buyers["id"]);
    let (_, page) = http
        .get(&format!("{members}?limit=1"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(users(&page), ["u1"]);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, page) = http
        .get(&format!("{members}?limit=1&cursor={cursor}"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(users(&page), ["u2"]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(
        members_reach(&http, &url, &repeat["id"], 0).await["members"],
        0
    );

    // A purchase that crosses the threshold enters the customer, once.
    purchase(&http, &url, "u1", 3).await;
    http.wait_processed(&url).await;
    members_reach(&http, &url, &repeat["id"], 1).await;
    let (_, profile) = http
        .get(&format!("{url}/v1/profiles/u1"), Some(ADMIN))
        .await
        .unwrap();
    let names: Vec<&str> = profile["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["repeat buyers", "buyers"]);
    let history = |user: &'static str| {
        let (http, url) = (&http, &url);
        async move {
            let (_, h) = http
                .get(&format!("{url}/v1/profiles/{user}/history"), Some(ADMIN))
                .await
                .unwrap();
            h["history"].as_array().unwrap().clone()
        }
    };
    let h = history("u1").await;
    let summary: Vec<(&str, &str, &str)> = h
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["segment"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        summary,
        [
            ("segment.entered", "repeat buyers", "event"),
            ("segment.entered", "buyers", "backfill"),
        ]
    );

    // Raising the threshold re-evaluates everyone: the customer leaves.
    let (status, changed) = http
        .admin(
            "PUT",
            &format!("{segments}/{}", repeat["id"]),
            Some(&json!({"rule": "computed.frequency >= 4"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["version"], 2);
    members_reach(&http, &url, &repeat["id"], 0).await;
    let h = history("u1").await;
    assert_eq!(h[0]["event"], "segment.exited");
    assert_eq!(h[0]["reason"], "backfill");
    assert_eq!(h.len(), 3);

    // A deleted segment is gone, from the API and from the profile.
    let (status, _) = http
        .admin("DELETE", &format!("{segments}/{}", buyers["id"]), None)
        .await
        .unwrap();
    assert_eq!(status, 204);
    let (status, _) = http
        .get(&format!("{segments}/{}", buyers["id"]), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (_, profile) = http
        .get(&format!("{url}/v1/profiles/u1"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(profile["segments"], json!([]));
    let (_, list) = http.get(&segments, Some(ADMIN)).await.unwrap();
    assert_eq!(list["segments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn time_alone_moves_a_customer_out_of_a_recency_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("persona.toml");
    std::fs::write(&config, "[processor]\nsegment_sweep_seconds = 1\n").unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--write-key",
            KEY,
            "--admin-token",
            ADMIN,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    let (url, http) = (server.url(), Http::default());
    // A purchase 30 days ago less 3 seconds: 29 whole days now, 30 in 3 seconds.
    let at = chrono::Utc::now() - chrono::Duration::days(30) + chrono::Duration::seconds(3);
    let (status, _) = http
        .post(
            &url,
            "/v1/track",
            KEY,
            &json!({"userId": "u1", "event": "Order Completed", "timestamp": at.to_rfc3339(),
                    "properties": {"revenue": 10}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    http.wait_processed(&url).await;
    let (status, recent) = http
        .admin(
            "POST",
            &format!("{url}/v1/segments"),
            Some(&json!({"name": "bought this month", "rule": "computed.recency_days <= 29"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{recent}");
    assert_eq!(recent["time_relative"], true);
    members_reach(&http, &url, &recent["id"], 1).await;
    // No event arrives; the sweep notices the day has turned.
    let mut left = false;
    for _ in 0..100 {
        let (_, seg) = http
            .get(&format!("{url}/v1/segments/{}", recent["id"]), Some(ADMIN))
            .await
            .unwrap();
        if seg["members"] == 0 {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left, "the customer is still a member after 10 s");
    let (_, h) = http
        .get(&format!("{url}/v1/profiles/u1/history"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(h["history"][0]["event"], "segment.exited");
    assert_eq!(h["history"][0]["reason"], "sweep");
    assert_eq!(h["history"].as_array().unwrap().len(), 2);
}
