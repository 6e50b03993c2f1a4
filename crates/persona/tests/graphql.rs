//! `POST /graphql` end to end: one query gets what several REST calls get, with the same
//! values; errors come back in GraphQL's `errors`, and the endpoint needs the admin token.

mod common;

use std::time::Duration;

use common::{ADMIN, Http, KEY, Server, poll};
use serde_json::{Value, json};

async fn graphql(http: &Http, url: &str, query: &str, variables: Value) -> Value {
    let (status, answer) = http
        .admin(
            "POST",
            &format!("{url}/graphql"),
            Some(&json!({"query": query, "variables": variables})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test]
async fn one_query_reads_profiles_segments_and_members_as_rest_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    let send = |body: Value| {
        let (http, url) = (&http, &url);
        async move {
            let (status, answer) = http.post(url, "/v1/batch", KEY, &body).await.unwrap();
            assert_eq!(status, 200, "{answer}");
        }
    };
    send(json!({"batch": [
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro", "country": "DE"}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 100}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 50}},
        {"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"revenue": 10}},
    ]}))
    .await;
    http.wait_processed(&url).await;
    let (status, seg) = http
        .admin(
            "POST",
            &format!("{url}/v1/segments"),
            Some(&json!({"name": "repeat", "rule": "computed.frequency >= 2"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{seg}");
    let segment = format!("{url}/v1/segments/{}", seg["id"]);
    poll("the back-fill", Duration::from_millis(20), || async {
        let (_, s) = http.get(&segment, Some(ADMIN)).await.unwrap();
        (s["backfill"]["state"] == "done").then_some(())
    })
    .await;

    let answer = graphql(
        &http,
        &url,
        "query One($key: String!) {
           profile(key: $key) {
             userId traits segments { id name }
             computed { eventCount frequency monetary all }
             events(limit: 2) history
           }
           nobody: profile(key: \"user_id:nobody\") { userId }
         }",
        json!({"key": "u1"}),
    )
    .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let p = &answer["data"]["profile"];
    let (_, rest) = http
        .get(&format!("{url}/v1/profiles/u1"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(p["userId"], "u1");
    assert_eq!(p["traits"], rest["traits"]);
    assert_eq!(p["computed"]["frequency"], 2);
    assert_eq!(p["computed"]["monetary"], 150.0);
    assert_eq!(p["computed"]["eventCount"], rest["computed"]["event_count"]);
    assert_eq!(
        p["computed"]["all"]["avg_order_value"],
        rest["computed"]["avg_order_value"]
    );
    assert_eq!(p["segments"], json!([{"id": seg["id"], "name": "repeat"}]));
    let (_, events) = http
        .get(&format!("{url}/v1/profiles/u1/events?limit=2"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(
        p["events"], events["events"],
        "the same events, newest first"
    );
    assert_eq!(p["history"][0]["event"], "segment.entered");
    assert!(answer["data"]["nobody"].is_null(), "{answer}");

    // A segment's members with their profiles, in one request.
    let answer = graphql(
        &http,
        &url,
        "{ segments { name memberCount members(limit: 1) { members { userId profile { computed { frequency } } } nextCursor } } }",
        Value::Null,
    )
    .await;
    assert_eq!(
        answer["data"]["segments"],
        json!([{"name": "repeat", "memberCount": 1, "members": {
            "members": [{"userId": "u1", "profile": {"computed": {"frequency": 2}}}],
            "nextCursor": null}}]),
        "{answer}"
    );

    // Errors name what is wrong, in GraphQL's shape.
    let answer = graphql(
        &http,
        &url,
        "{ profile(key: \"u1\") { events(limit: 5000) } }",
        Value::Null,
    )
    .await;
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("limit") && message.contains("1000"),
        "{answer}"
    );
    assert_eq!(answer["errors"][0]["extensions"]["code"], "invalid_message");
    // A query whose lists could multiply into millions of reads is refused before any.
    let answer = graphql(
        &http,
        &url,
        "{ segments { members(limit: 1000) { members { profile { events(limit: 1000) } } } } }",
        Value::Null,
    )
    .await;
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.to_lowercase().contains("complex"), "{answer}");
    assert!(answer["data"].is_null(), "{answer}");
    // Fragments spread twice into each other, 30 deep: refused by their count, before the
    // schema's checks would spread them a billion times.
    let mut bomb = String::from("query { profile(key: \"u1\") { ...F0 } }\n");
    for i in 0..30 {
        bomb.push_str(&format!(
            "fragment F{i} on Profile {{ ...F{} ...F{} }}\n",
            i + 1,
            i + 1
        ));
    }
    bomb.push_str("fragment F30 on Profile { userId }\n");
    let answer = graphql(&http, &url, &bomb, Value::Null).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "too_complex",
        "{answer}"
    );
    let answer = graphql(
        &http,
        &url,
        "{ profile(key: \"u1\", asOf: \"yesterday\") { userId } }",
        Value::Null,
    )
    .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "invalid_message",
        "{answer}"
    );
    let answer = graphql(
        &http,
        &url,
        "{ profile(key: \"u1\") { email } }",
        Value::Null,
    )
    .await;
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("email"),
        "{answer}"
    );
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "invalid_query",
        "{answer}"
    );
    // Events are counted by their limit: 25 profiles of 1,000 events each cost too much,
    // and so does a page of members with their events.
    let aliases: String = (0..25)
        .map(|i| format!("p{i}: profile(key: \"u1\") {{ events(limit: 1000) }} "))
        .collect();
    for query in [
        format!("{{ {aliases} }}"),
        "{ segment(id: 1) { members(limit: 1000) { members { profile { events(limit: 1000) } } } } }".to_string(),
    ] {
        let answer = graphql(&http, &url, &query, Value::Null).await;
        assert_eq!(answer["errors"][0]["extensions"]["code"], "too_complex", "{answer}");
    }
    let long = format!(
        "{{ profile(key: \"u1\") {{ {} }} }}",
        "userId ".repeat(10_000)
    );
    let answer = graphql(&http, &url, &long, Value::Null).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "too_large",
        "{answer}"
    );

    // The admin token is needed, and a body that is no GraphQL request is refused.
    let (status, _) = http
        .admin_sent_as(
            "POST",
            &format!("{url}/graphql"),
            "Bearer",
            "application/json",
            "{\"query\": 1}".into(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    let (status, _) = http
        .post(
            &url,
            "/graphql",
            KEY,
            &json!({"query": "{ segments { name } }"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "a write key is not the admin token");
}
