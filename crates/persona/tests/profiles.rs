//! Live profiles end to end through the real binary: events in over HTTP, profiles out of
//! the API; CRM attributes from CSV and Parquet; the API's errors.

mod common;

use std::sync::Arc;

use common::{ADMIN, Http, KEY, Server, exported_profiles, run};
use serde_json::json;

#[tokio::test]
async fn a_customer_journey_is_served_as_one_profile() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "laptop", "name": "Shoes", "category": "shoes", "timestamp": "2024-05-01T10:00:00Z"},
        {"type": "identify", "anonymousId": "laptop", "userId": "jane", "traits": {"email": "jane@example.com"}, "timestamp": "2024-05-01T10:01:00Z"},
        {"type": "track", "userId": "jane", "event": "Order Completed", "properties": {"revenue": 80}, "timestamp": "2024-05-01T10:05:00Z"},
        {"type": "screen", "anonymousId": "phone", "name": "Home", "timestamp": "2024-05-03T08:00:00Z"},
        {"type": "alias", "previousId": "phone", "userId": "jane", "timestamp": "2024-05-03T08:01:00Z"},
    ]});
    let (status, _) = http.post(&url, "/v1/batch", KEY, &batch).await.unwrap();
    assert!(status.is_success());
    http.wait_processed(&url).await;

    let profile_url = |key: &str| format!("{url}/v1/profiles/{key}?as_of=2024-05-11T10:05:00Z");
    let (status, jane) = http
        .get(&profile_url("user_id:jane"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(status, 200, "{jane}");
    for key in ["jane", "anonymous_id:laptop", "anonymous_id:phone"] {
        let (_, same) = http.get(&profile_url(key), Some(ADMIN)).await.unwrap();
        assert_eq!(same, jane, "lookup by {key}");
    }
    assert_eq!(jane["user_id"], "jane");
    assert_eq!(jane["anonymous_ids"], json!(["laptop", "phone"]));
    assert_eq!(jane["traits"]["email"], "jane@example.com");
    let c = &jane["computed"];
    assert_eq!(c["event_count"], 5);
    assert_eq!(
        (c["frequency"].clone(), c["monetary"].clone()),
        (json!(1), json!(80.0))
    );
    assert_eq!(c["recency_days"], 10);
    assert_eq!(c["sessions"], 2);
    assert_eq!(c["page_categories"]["shoes"], 1);
    assert_eq!(jane["as_of"], "2024-05-11T10:05:00Z");
    assert_eq!(jane["stale"], false);
    for field in ["rfm", "segments", "cluster"] {
        assert!(
            jane.get(field).is_some(),
            "{field} is part of the interface"
        );
    }

    // Events, newest first, from the per-profile index.
    let (status, events) = http
        .get(
            &format!("{url}/v1/profiles/jane/events?limit=2"),
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let types: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(types, [json!("alias"), json!("screen")]);

    // Errors name what is wrong.
    let (status, body) = http.get(&profile_url("jane"), None).await.unwrap();
    assert_eq!(
        (status.as_u16(), body["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    let (status, _) = http.get(&profile_url("jane"), Some("wrong")).await.unwrap();
    assert_eq!(status, 401);
    let (status, body) = http
        .get(&profile_url("user_id:nobody"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, body) = http
        .get(
            &format!("{url}/v1/profiles/jane?as_of=yesterday"),
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["field"], "as_of");
    let (status, body) = http
        .get(
            &format!("{url}/v1/profiles/jane/events?limit=0"),
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["field"], "limit");

    let (_, ready) = http.get(&format!("{url}/readyz"), None).await.unwrap();
    assert_eq!(ready["processor"]["lag_records"], 0, "{ready}");
    server.stop();
    let exported = exported_profiles(dir.path());
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["computed"]["event_count"], 5);
}

/// A client clock years ahead, with no `sentAt` to correct it by: the profile counts the
/// event at its receipt, and `/events` still lists it with the time that was sent.
#[tokio::test]
async fn an_event_dated_after_its_receipt_counts_at_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    let sent = "9999-12-31T23:59:59.000Z";
    let msg = json!({"userId": "clocky", "event": "Opened", "timestamp": sent});
    let (status, _) = http.post(&url, "/v1/track", KEY, &msg).await.unwrap();
    assert!(status.is_success());
    http.wait_processed(&url).await;
    let (status, profile) = http
        .get(&format!("{url}/v1/profiles/clocky"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(status, 200, "{profile}");
    let last_seen = profile["computed"]["last_seen"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last_seen.as_str() < "2100", "{profile}");
    let (_, events) = http
        .get(&format!("{url}/v1/profiles/clocky/events"), Some(ADMIN))
        .await
        .unwrap();
    let listed = events["events"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{events}");
    assert_eq!(listed[0]["timestamp"], sent);
    assert_eq!(listed[0]["receivedAt"].as_str(), Some(last_seen.as_str()));
    server.stop();
}

fn write_parquet(path: &std::path::Path) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let schema = Arc::new(
        parse_message_type(
            "message crm { required binary user_id (UTF8); optional int32 age; optional binary city (UTF8); }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::default())).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let ids: Vec<ByteArray> = ["p1", "p2"].iter().map(|s| ByteArray::from(*s)).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&ids, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    // p1 is 41; p2's age is null.
    col.typed::<Int32Type>()
        .write_batch(&[41], Some(&[1, 0]), None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let cities = [ByteArray::from("Lyon"), ByteArray::from("Porto")];
    col.typed::<ByteArrayType>()
        .write_batch(&cities, Some(&[1, 1]), None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn crm_attributes_from_csv_and_parquet_reach_profile_traits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let csv = dir.path().join("crm.csv");
    std::fs::write(
        &csv,
        "user_id,age,gender,income_band,vip\nc1,34,f,50-75k,true\n,40,m,,\nc2,,m,25-50k,false\n",
    )
    .unwrap();
    let out = run(&[
        "import-profiles",
        csv.to_str().unwrap(),
        "--key",
        "user_id",
        "--data-dir",
        data.to_str().unwrap(),
        "--max-rejects",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("imported 2 profiles") && err.contains("rejected 1"),
        "{err}"
    );
    assert!(err.contains("row 2: `user_id` is empty"), "{err}");
    let pq = dir.path().join("crm.parquet");
    write_parquet(&pq);
    let out = run(&[
        "import-profiles",
        pq.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "import-profiles",
        csv.to_str().unwrap(),
        "--key",
        "customer",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no column \"customer\"")
            && err.contains("income_band"),
        "{err}"
    );

    // A later event for the customer sees the attributes; the import itself is not activity.
    let mut server = Server::start(&data);
    let (url, http) = (server.url(), Http::default());
    let event = json!({"userId": "c1", "event": "Product Viewed"});
    assert!(
        http.post(&url, "/v1/track", KEY, &event)
            .await
            .unwrap()
            .0
            .is_success()
    );
    http.wait_processed(&url).await;
    let (_, c1) = http
        .get(&format!("{url}/v1/profiles/c1"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(
        c1["traits"],
        json!({"age": 34, "gender": "f", "income_band": "50-75k", "vip": true})
    );
    assert_eq!(c1["computed"]["event_count"], 1);
    let (_, p1) = http
        .get(&format!("{url}/v1/profiles/p1"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(p1["traits"], json!({"age": 41, "city": "Lyon"}));
    assert_eq!(p1["computed"]["event_count"], 0);
    let (_, p2) = http
        .get(&format!("{url}/v1/profiles/p2"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(p2["traits"], json!({"city": "Porto"}));
    server.stop();
}
