//! Cluster models end to end: trained over the API on the stored profiles, read with their
//! metrics and cluster names, activated, and assigned live, with an entry and exit event
//! for every move.

mod common;

use std::time::Duration;

use common::{ADMIN, Http, KEY, Server, poll};
use serde_json::{Value, json};

/// Three kinds of customer: (prefix, purchases each, revenue per purchase).
const GROUPS: [(&str, u32, u32); 3] = [("small", 1, 10), ("mid", 4, 120), ("big", 12, 900)];
const PER_GROUP: u32 = 12;

async fn buy(http: &Http, url: &str, user: &str, purchases: u32, revenue: u32, tag: &str) {
    let batch: Vec<Value> = (0..purchases)
        .map(|i| {
            json!({"type": "track", "userId": user, "event": "Order Completed",
                   "messageId": format!("{user}-{tag}-{i}"), "properties": {"revenue": revenue}})
        })
        .collect();
    let (status, body) = http
        .post(url, "/v1/batch", KEY, &json!({ "batch": batch }))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// The model once training has ended.
async fn trained(http: &Http, url: &str, id: &Value) -> Value {
    let what = format!("model {id} to finish training");
    poll(&what, Duration::from_millis(50), || async move {
        let (status, model) = http
            .get(&format!("{url}/v1/models/{id}"), Some(ADMIN))
            .await
            .unwrap();
        assert_eq!(status, 200, "{model}");
        (model["status"] != "training").then_some(model)
    })
    .await
}

/// The profile of `user` once its cluster comes from model `model_id`.
async fn clustered(http: &Http, url: &str, user: &str, model_id: &Value) -> Value {
    let what = format!("{user} to be placed by model {model_id}");
    poll(&what, Duration::from_millis(20), || async move {
        let (_, p) = http
            .get(&format!("{url}/v1/profiles/{user}"), Some(ADMIN))
            .await
            .unwrap();
        (p["cluster"]["model_id"] == *model_id).then_some(p)
    })
    .await
}

async fn history(http: &Http, url: &str, user: &str) -> Vec<Value> {
    let (_, h) = http
        .get(&format!("{url}/v1/profiles/{user}/history"), Some(ADMIN))
        .await
        .unwrap();
    h["history"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_model_is_trained_on_the_profiles_and_places_every_customer_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    let models = format!("{url}/v1/models");

    // Bad requests name the field.
    for (body, field) in [
        (json!({"name": "value", "k": 3}), "features"),
        (
            json!({"name": "value", "k": 3, "features": ["computed.frequncy"]}),
            "features[0]",
        ),
        (
            json!({"name": "value", "k": 3, "features": ["computed.first_seen"]}),
            "features[0]",
        ),
        (
            json!({"name": "value", "features": ["computed.frequency"]}),
            "k",
        ),
        (
            json!({"name": "value", "algorithm": "dbscan", "features": ["computed.frequency"]}),
            "algorithm",
        ),
        (json!({"k": 3, "features": ["computed.frequency"]}), "name"),
        (
            json!({"name": "value", "k": 1, "features": ["computed.frequency"]}),
            "k",
        ),
        (
            json!({"name": "value", "k": 5000, "features": ["computed.frequency"]}),
            "k",
        ),
        (
            json!({"name": "value", "k": "auto", "k_max": 5000, "features": ["computed.frequency"]}),
            "k_max",
        ),
        (
            json!({"name": "value", "k": 3, "n_init": 5000, "features": ["computed.frequency"]}),
            "n_init",
        ),
    ] {
        let (status, err) = http.admin("POST", &models, Some(&body)).await.unwrap();
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{body}: {err}");
    }

    for (prefix, purchases, revenue) in GROUPS {
        for i in 0..PER_GROUP {
            buy(
                &http,
                &url,
                &format!("{prefix}{i}"),
                purchases,
                revenue,
                "a",
            )
            .await;
        }
    }
    http.wait_processed(&url).await;

    let spec = json!({
        "name": "value",
        "features": ["computed.frequency", "computed.monetary"],
        "algorithm": "kmeans",
        "k": 3,
        "seed": 7
    });
    let (status, first) = http.admin("POST", &models, Some(&spec)).await.unwrap();
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "training");
    assert_eq!(first["version"], 1);
    let first = trained(&http, &url, &first["id"]).await;
    assert_eq!(first["status"], "ready", "{first}");
    assert_eq!(first["active"], true);
    assert_eq!(first["profiles"], 3 * PER_GROUP);
    let summary = &first["summary"];
    assert_eq!(summary["k"], 3);
    assert_eq!(summary["sizes"], json!([PER_GROUP, PER_GROUP, PER_GROUP]));
    assert!(summary["silhouette"].as_f64().unwrap() > 0.9, "{summary}");
    assert!(
        first.get("model").is_none(),
        "the fitted numbers stay inside"
    );
    // The cluster of the big spenders has their centre and is named by what sets it apart.
    let big = summary["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| {
            c["name"]
                .as_str()
                .unwrap()
                .contains("high computed.monetary")
        })
        .expect("a cluster named for high spending");
    let centre = &summary["centers"][big];
    assert_eq!(centre["computed.frequency"], 12.0, "{centre}");
    assert_eq!(centre["computed.monetary"], 12.0 * 900.0, "{centre}");

    // The back-fill places every stored customer: each group in one cluster of its own.
    let mut seen = Vec::new();
    for (prefix, ..) in GROUPS {
        let mut clusters: Vec<Value> = Vec::new();
        for i in 0..PER_GROUP {
            let p = clustered(&http, &url, &format!("{prefix}{i}"), &first["id"]).await;
            assert_eq!(p["cluster"]["model"], "value");
            assert_eq!(p["clusters"].as_array().unwrap().len(), 1);
            clusters.push(p["cluster"]["cluster"].clone());
        }
        clusters.dedup();
        assert_eq!(clusters.len(), 1, "{prefix}: {clusters:?}");
        assert!(!seen.contains(&clusters[0]), "{prefix} shares a cluster");
        seen.push(clusters[0].clone());
    }
    let entered = history(&http, &url, "small0").await;
    assert_eq!(entered.len(), 1, "{entered:?}");
    assert_eq!(entered[0]["event"], "segment.entered");
    assert_eq!(entered[0]["kind"], "cluster");
    assert_eq!(entered[0]["reason"], "backfill");
    assert_eq!(entered[0]["model_id"], first["id"]);

    // A small customer who starts spending big moves at once: one exit, one entry.
    buy(&http, &url, "small0", 11, 900, "b").await;
    http.wait_processed(&url).await;
    let (_, moved) = http
        .get(&format!("{url}/v1/profiles/small0"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(moved["cluster"]["cluster"], big, "{moved}");
    let events = history(&http, &url, "small0").await;
    assert_eq!(events.len(), 3, "{events:?}");
    let newest: Vec<(&str, &str)> = events[..2]
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        newest,
        [("segment.entered", "event"), ("segment.exited", "event")]
    );
    assert_eq!(events[0]["cluster"], big);

    // A second version with k chosen automatically takes over; the first steps down.
    let auto = json!({"name": "value", "features": ["computed.frequency", "computed.monetary"],
                      "k": "auto", "k_max": 5, "seed": 7});
    let (status, second) = http.admin("POST", &models, Some(&auto)).await.unwrap();
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["version"], 2);
    let second = trained(&http, &url, &second["id"]).await;
    assert_eq!(second["status"], "ready", "{second}");
    assert_eq!(second["summary"]["curves"]["k"], json!([2, 3, 4, 5]));
    let (_, curves) = http
        .get(&format!("{models}/{}/curves", second["id"]), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(curves["curves"]["k"], json!([2, 3, 4, 5]));
    clustered(&http, &url, "mid3", &second["id"]).await;
    let (_, list) = http.get(&models, Some(ADMIN)).await.unwrap();
    let active: Vec<(u64, bool)> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_u64().unwrap(),
                m["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(active, [(1, false), (2, true)]);

    // A tree cut above its root is one cluster: training fails and says why, the model in
    // force stays, and every model still reads back.
    let one = json!({"name": "value", "features": ["computed.frequency"],
                     "algorithm": "hierarchical", "cut_height": 1e9});
    let (status, third) = http.admin("POST", &models, Some(&one)).await.unwrap();
    assert_eq!(status, 202, "{third}");
    let third = trained(&http, &url, &third["id"]).await;
    assert_eq!(third["status"], "failed", "{third}");
    assert!(
        third["error"].as_str().unwrap().contains("single cluster"),
        "{third}"
    );
    let (status, list) = http.get(&models, Some(ADMIN)).await.unwrap();
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["models"].as_array().unwrap().len(), 3);
    assert_eq!(list["models"][1]["active"], true);

    // Rolling back to version 1 puts it in force again.
    let (status, back) = http
        .admin("POST", &format!("{models}/{}/activate", first["id"]), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{back}");
    clustered(&http, &url, "mid3", &first["id"]).await;
    for unknown in ["999", "abc"] {
        let (status, err) = http
            .get(&format!("{models}/{unknown}"), Some(ADMIN))
            .await
            .unwrap();
        assert_eq!(status, 404, "{unknown}: {err}");
        assert_eq!(err["error"]["code"], "not_found", "{unknown}: {err}");
    }
}
