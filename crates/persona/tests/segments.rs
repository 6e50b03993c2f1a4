//! Rule segments end to end: created over the API, back-filled over stored profiles, kept
//! live as events arrive, with one entry or exit event per membership change.

mod common;

use std::time::Duration;

use common::{ADMIN, Http, KEY, Server, poll};
use serde_json::{Value, json};

/// The segment once its member count reaches `want` (the back-fill runs in the background).
async fn members_reach(http: &Http, url: &str, id: &Value, want: u64) -> Value {
    let what = format!("segment {id} to reach {want} members");
    poll(&what, Duration::from_millis(20), || async move {
        let (_, seg) = http
            .get(&format!("{url}/v1/segments/{id}"), Some(ADMIN))
            .await
            .unwrap();
        (seg["members"] == want).then_some(seg)
    })
    .await
}

/// The segment once its back-fill over the stored profiles has finished.
async fn backfilled(http: &Http, url: &str, id: &Value) -> Value {
    poll(
        &format!("segment {id}'s back-fill"),
        Duration::from_millis(20),
        || async move {
            let (_, seg) = http
                .get(&format!("{url}/v1/segments/{id}"), Some(ADMIN))
                .await
                .unwrap();
            (seg["backfill"]["state"] == "done").then_some(seg)
        },
    )
    .await
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
        http.purchase(&url, user, n).await;
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
    http.purchase(&url, "u1", 3).await;
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

    // A deleted segment is gone, from the API and from the profile, and its members leave
    // it with an exit event each.
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
    let h = history("u1").await;
    assert_eq!(
        (
            h[0]["event"].as_str(),
            h[0]["segment"].as_str(),
            h[0]["reason"].as_str()
        ),
        (Some("segment.exited"), Some("buyers"), Some("deleted")),
        "{h:?}"
    );
    assert_eq!(h.len(), 4);
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
    // The segment first, so that the purchase joins it as it is applied, with no back-fill
    // to wait for.
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
    // A purchase 30 days ago less 10 seconds: 29 whole days now, 30 in 10 seconds. The margin
    // is the time the test has to see the customer join.
    let at = chrono::Utc::now() - chrono::Duration::days(30) + chrono::Duration::seconds(10);
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
    members_reach(&http, &url, &recent["id"], 1).await;
    // No event arrives; the sweep notices the day has turned.
    members_reach(&http, &url, &recent["id"], 0).await;
    let (_, h) = http
        .get(&format!("{url}/v1/profiles/u1/history"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(h["history"][0]["event"], "segment.exited");
    assert_eq!(h["history"][0]["reason"], "sweep");
    assert_eq!(h["history"].as_array().unwrap().len(), 2);
}

/// Every page of a segment's members, as user ids (anonymous profiles as their profile id).
async fn all_members(http: &Http, url: &str, id: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = http
            .get(
                &format!("{url}/v1/segments/{id}/members?limit=7&cursor={cursor}"),
                Some(ADMIN),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{page}");
        for m in page["members"].as_array().unwrap() {
            out.push(
                m["user_id"]
                    .as_str()
                    .map_or_else(|| format!("#{}", m["profile_id"]), str::to_owned),
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

#[tokio::test]
async fn live_membership_equals_a_batch_filter_over_the_stored_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let (url, http) = (server.url(), Http::default());
    // Half the segments exist before the events (kept live), half after (back-filled).
    let rules = [
        ("buyers", "computed.frequency >= 1"),
        (
            "big spenders",
            "computed.monetary > 150 AND computed.frequency >= 1",
        ),
        (
            "german browsers",
            "traits.country = 'DE' AND computed.events.\"Product Viewed\" >= 10",
        ),
        (
            "app users, no email",
            "computed.app_sessions > 0 AND NOT computed.email_opens > 0",
        ),
    ];
    let mut ids = Vec::new();
    let create = |name: &'static str, rule: &'static str| {
        let (http, url) = (&http, &url);
        async move {
            let (status, seg) = http
                .admin(
                    "POST",
                    &format!("{url}/v1/segments"),
                    Some(&json!({"name": name, "rule": rule})),
                )
                .await
                .unwrap();
            assert_eq!(status, 201, "{seg}");
            seg["id"].clone()
        }
    };
    for (name, rule) in &rules[..2] {
        ids.push(create(name, rule).await);
    }
    let o = common::run(&[
        "simulate",
        "--customers",
        "150",
        "--days",
        "30",
        "--seed",
        "11",
        "--target",
        &url,
        "--write-key",
        KEY,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    http.wait_processed(&url).await;
    for (name, rule) in &rules[2..] {
        ids.push(create(name, rule).await);
    }
    let mut live = Vec::new();
    for id in &ids {
        backfilled(&http, &url, id).await;
        let mut members = all_members(&http, &url, id).await;
        members.sort();
        live.push(members);
    }
    // RFM, fitted by the server at a fixed time after every event.
    let as_of = (chrono::Utc::now() + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, fit) = http
        .admin(
            "POST",
            &format!("{url}/v1/rfm"),
            Some(&json!({ "as_of": as_of })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{fit}");
    server.stop();

    // The same predicates, written out by hand over the exported profiles.
    let profiles = common::exported_profiles(&data);
    let n = |p: &Value, f: &str| p["computed"][f].as_f64().unwrap_or(0.0);
    let filters: [&dyn Fn(&Value) -> bool; 4] = [
        &|p| n(p, "frequency") >= 1.0,
        &|p| n(p, "monetary") > 150.0 && n(p, "frequency") >= 1.0,
        &|p| {
            p["traits"]["country"] == "DE"
                && p["computed"]["events"]["Product Viewed"]
                    .as_f64()
                    .unwrap_or(0.0)
                    >= 10.0
        },
        &|p| n(p, "app_sessions") > 0.0 && n(p, "email_opens") <= 0.0,
    ];
    for ((name, _), (filter, members)) in rules.iter().zip(filters.iter().zip(&live)) {
        let mut want: Vec<String> = profiles
            .iter()
            .filter(|p| filter(p))
            .map(|p| {
                p["user_id"]
                    .as_str()
                    .map_or_else(|| "?".into(), str::to_owned)
            })
            .collect();
        want.sort();
        // Anonymous profiles are listed by profile id, which the export does not show.
        let named: Vec<&String> = members.iter().filter(|m| !m.starts_with('#')).collect();
        let want_named: Vec<&String> = want.iter().filter(|m| *m != "?").collect();
        assert_eq!(named, want_named, "{name}");
        assert_eq!(members.len(), want.len(), "{name}");
        assert!(
            !want.is_empty(),
            "{name} is empty: the simulation should fill it"
        );
    }

    // Every purchasing customer's served RFM scores equal a batch recomputation: quintile
    // edges over all purchasers (linear interpolation, as numpy's percentile), then scores.
    let at_fit = common::exported_profiles_as_of(&data, Some(&as_of));
    let buyers: Vec<(&str, [f64; 3])> = at_fit
        .iter()
        .filter(|p| p["computed"]["frequency"].as_f64().unwrap_or(0.0) >= 1.0)
        .map(|p| {
            let c = &p["computed"];
            let v = |f: &str| c[f].as_f64().unwrap();
            (
                p["user_id"].as_str().unwrap_or_default(),
                [v("recency_days"), v("frequency"), v("monetary")],
            )
        })
        .collect();
    assert_eq!(fit["edges"]["customers"], buyers.len());
    let edges: Vec<[f64; 4]> = (0..3)
        .map(|k| {
            let mut col: Vec<f64> = buyers.iter().map(|b| b.1[k]).collect();
            col.sort_by(f64::total_cmp);
            [0.2, 0.4, 0.6, 0.8].map(|q| {
                let pos = q * (col.len() - 1) as f64;
                let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                col[lo] + (pos - lo as f64) * (col[hi] - col[lo])
            })
        })
        .collect();
    let above = |x: f64, e: &[f64; 4]| e.iter().filter(|&&edge| x > edge).count() as u64;
    let server = Server::start(&data);
    let url = server.url();
    let mut checked = 0;
    for (user, [recency, frequency, monetary]) in buyers.iter().filter(|b| !b.0.is_empty()) {
        let (status, p) = http
            .get(
                &format!("{url}/v1/profiles/{user}?as_of={as_of}"),
                Some(ADMIN),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{p}");
        let want = json!({
            "r": 5 - above(*recency, &edges[0]),
            "f": 1 + above(*frequency, &edges[1]),
            "m": 1 + above(*monetary, &edges[2]),
        });
        let rfm = &p["rfm"];
        assert_eq!(
            json!({"r": rfm["r"], "f": rfm["f"], "m": rfm["m"]}),
            want,
            "{user}"
        );
        assert_eq!(rfm["version"], fit["edges"]["version"], "{user}");
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} purchasing customers to check"
    );
}

#[tokio::test]
async fn the_guard_warns_of_tiny_and_overlapping_segments_and_the_backfill_reports_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    // 300 one-time buyers and one big spender.
    let mut batch: Vec<Value> = (0..300)
        .map(|i| {
            json!({"type": "track", "userId": format!("c{i}"), "event": "Order Completed",
                   "messageId": format!("c{i}"), "properties": {"revenue": 50}})
        })
        .collect();
    batch.push(
        json!({"type": "track", "userId": "whale", "event": "Order Completed",
                      "messageId": "whale", "properties": {"revenue": 10000}}),
    );
    let (status, _) = http
        .post(&url, "/v1/batch", KEY, &json!({ "batch": batch }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    http.wait_processed(&url).await;

    let segments = format!("{url}/v1/segments");
    let mut ids = Vec::new();
    for (name, rule) in [
        ("buyers", "computed.frequency >= 1"),
        ("spenders", "computed.monetary > 0"),
        ("whales", "computed.monetary > 5000"),
        ("nobody", "computed.frequency > 100"),
        ("half", "user_id LIKE 'c1%'"),
    ] {
        let (status, s) = http
            .admin(
                "POST",
                &segments,
                Some(&json!({"name": name, "rule": rule})),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{s}");
        ids.push(s["id"].clone());
    }
    // Warnings are there at once, estimated on a sample; the back-fill ends in its time.
    let (_, listed) = http.get(&segments, Some(ADMIN)).await.unwrap();
    let warned = |name: &str| -> Vec<String> {
        let s = listed["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        s["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(warned("buyers").is_empty(), "{listed}");
    let spenders = warned("spenders");
    assert_eq!(spenders.len(), 1, "{spenders:?}");
    assert!(
        spenders[0].starts_with("overlaps heavily with \"buyers\"")
            && spenders[0].contains(": 100% of the customers"),
        "{spenders:?}"
    );
    let whales = warned("whales");
    assert!(
        whales[0].starts_with("tiny: matches about 0.33%"),
        "{whales:?}"
    );
    assert!(warned("nobody")[0].starts_with("matches none"));
    // c1, c10..c19, c100..c199: 111 of 301, all inside "buyers": a hierarchy, not a
    // near-duplicate.
    assert!(warned("half").is_empty(), "{:?}", warned("half"));
    for id in &ids {
        backfilled(&http, &url, id).await;
    }
    members_reach(&http, &url, &ids[0], 301).await;
}

/// What the README's examples send: `curl -d`, whose `Content-Type` is form encoding, and
/// an `Authorization` scheme in any case. A bad body answers in the API's error shape.
#[tokio::test]
async fn the_admin_api_takes_json_as_curl_sends_it_and_names_a_bad_body() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let segments = format!("{}/v1/segments", server.url());
    let http = Http::default();
    let form = "application/x-www-form-urlencoded";
    let send = |scheme: &'static str, body: &str| {
        http.admin_sent_as("POST", &segments, scheme, form, body.to_string())
    };
    let (status, seg) = send(
        "bearer",
        r#"{"name": "buyers", "rule": "computed.frequency >= 1"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{seg}");
    assert_eq!(seg["name"], "buyers");

    let (status, err) = send("Bearer", "{not json").await.unwrap();
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_json", "{err}");
    let (status, err) = send("Bearer", r#"{"name": "no rule"}"#).await.unwrap();
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "rule", "{err}");
    let (status, err) = send(
        "Bearer",
        r#"{"name": 5, "rule": "computed.frequency >= 1"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "name", "{err}");
    let (status, err) = send("Bearer", "[]").await.unwrap();
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_request", "{err}");

    // A change must name something to change; one to what it already is stores nothing.
    let one = format!("{segments}/{}", seg["id"]);
    let (status, err) = http.admin("PUT", &one, Some(&json!({}))).await.unwrap();
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`name` or `rule` is required"),
        "{err}"
    );
    assert!(seg["updated_at"].is_string(), "{seg}");
    let (status, same) = http
        .admin("PUT", &one, Some(&json!({"name": "buyers"})))
        .await
        .unwrap();
    assert_eq!(status, 200, "{same}");
    assert_eq!(
        (&same["updated_at"], &same["version"]),
        (&seg["updated_at"], &seg["version"]),
        "{same}"
    );
    server.stop();
}

/// A member who never signed up has no user id: the members page names them by an
/// anonymous id, with which the profile API finds them.
#[tokio::test]
async fn an_anonymous_member_is_named_so_that_the_profile_api_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let url = server.url();
    let http = Http::default();
    let (status, body) = http
        .post(
            &url,
            "/v1/page",
            KEY,
            &json!({"anonymousId": "anon-7", "name": "Home"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    http.wait_processed(&url).await;
    let (status, seg) = http
        .admin(
            "POST",
            &format!("{url}/v1/segments"),
            Some(&json!({"name": "browsers", "rule": "computed.page_views >= 1"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{seg}");
    members_reach(&http, &url, &seg["id"], 1).await;
    let (_, page) = http
        .get(
            &format!("{url}/v1/segments/{}/members", seg["id"]),
            Some(ADMIN),
        )
        .await
        .unwrap();
    let member = &page["members"][0];
    assert_eq!(member["user_id"], Value::Null, "{page}");
    assert_eq!(member["anonymous_id"], "anon-7", "{page}");
    let (status, profile) = http
        .get(
            &format!("{url}/v1/profiles/anonymous_id:anon-7"),
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{profile}");
    // The entry event names the anonymous id too, for webhook receivers to look them up.
    let (_, history) = http
        .get(
            &format!("{url}/v1/profiles/anonymous_id:anon-7/history"),
            Some(ADMIN),
        )
        .await
        .unwrap();
    let entered = &history["history"][0];
    assert_eq!(
        (entered["user_id"].clone(), entered["anonymous_id"].clone()),
        (Value::Null, json!("anon-7")),
        "{history}"
    );
    server.stop();
}
