//! Identity resolution, noise filtering and exactly-once replay, through a real log and
//! store.

mod common;

use common::{all_profiles, append, process, profile, store};
use persona_core::profile::Profile;
use persona_stream::{DropReason, StreamConfig};
use serde_json::{Value, json};

fn at(minute: u32) -> String {
    format!("2024-05-01T10:{minute:02}:00.000Z")
}

/// Anonymous browsing on a laptop, sign-up, then the phone's anonymous history aliased in.
fn journey() -> Vec<Value> {
    vec![
        json!({"type": "page", "anonymousId": "laptop", "name": "Home", "category": "home", "timestamp": at(0), "messageId": "m1"}),
        json!({"type": "track", "anonymousId": "laptop", "event": "Product Viewed", "timestamp": at(2), "messageId": "m2"}),
        json!({"type": "identify", "anonymousId": "laptop", "userId": "jane", "traits": {"email": "jane@example.com", "plan": "free"}, "timestamp": at(3), "messageId": "m3"}),
        json!({"type": "track", "userId": "jane", "event": "Order Completed", "properties": {"revenue": 30.5}, "timestamp": at(5), "messageId": "m4"}),
        json!({"type": "screen", "anonymousId": "phone", "name": "Cart", "category": "cart", "timestamp": at(7), "messageId": "m5"}),
        json!({"type": "alias", "previousId": "phone", "userId": "jane", "timestamp": at(9), "messageId": "m6"}),
        json!({"type": "identify", "userId": "jane", "traits": {"plan": "pro"}, "timestamp": at(8), "messageId": "m7"}),
        json!({"type": "track", "anonymousId": "phone", "event": "Order Completed", "properties": {"total": "12.25"}, "timestamp": at(11), "messageId": "m8"}),
    ]
}

fn run(messages: &[Value], config: StreamConfig) -> (Vec<Profile>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("log"), messages);
    let s = store(dir.path());
    process(&dir.path().join("log"), &s, config);
    let all = all_profiles(&s);
    drop(s);
    (all, dir)
}

#[test]
fn anonymous_history_identify_and_alias_make_one_profile() {
    let (all, dir) = run(&journey(), StreamConfig::default());
    assert_eq!(all.len(), 1, "{all:#?}");
    let s = store(dir.path());
    let jane = profile(&s, "user_id:jane").unwrap();
    for key in ["jane", "anonymous_id:laptop", "anonymous_id:phone"] {
        assert_eq!(profile(&s, key).as_ref(), Some(&jane), "lookup by {key}");
    }
    assert_eq!(jane.anonymous_ids, ["laptop", "phone"]);
    let a = &jane.activity;
    assert_eq!(a.event_count, 8);
    assert_eq!((a.purchases, a.revenue_micros), (2, 42_750_000));
    assert_eq!((a.page_views, a.screen_views), (1, 1));
    assert_eq!(a.page_categories.get("cart"), Some(&1));
    // Activity at minutes 0, 2, 5, 7, 11: one session of 11 minutes.
    assert_eq!(
        (a.sessions.count(), a.sessions.total_ms()),
        (1, 11 * 60_000)
    );
    assert_eq!(jane.traits["plan"].value, json!("pro"));
    assert_eq!(jane.traits["email"].value, json!("jane@example.com"));
}

#[test]
fn out_of_order_arrival_gives_the_same_profile() {
    let (in_order, _d1) = run(&journey(), StreamConfig::default());
    let mut reversed = journey();
    reversed.reverse();
    let (backwards, _d2) = run(&reversed, StreamConfig::default());
    assert_eq!(backwards, in_order);
    // Interleaved differently: identify first, then the rest.
    let mut j = journey();
    let identify = j.remove(2);
    j.insert(0, identify);
    let (shuffled, _d3) = run(&j, StreamConfig::default());
    assert_eq!(shuffled, in_order);
}

#[test]
fn noise_and_duplicates_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut msgs = journey();
    msgs.push(json!({"type": "page", "anonymousId": "crawler", "timestamp": at(1), "context": {"userAgent": "Googlebot/2.1"}}));
    msgs.push(json!({"type": "page", "anonymousId": "office", "timestamp": at(1), "context": {"ip": "10.1.2.3"}}));
    msgs.push(journey()[3].clone()); // a retried send: same messageId
    append(&log, &msgs);
    let s = store(dir.path());
    let config = StreamConfig {
        internal_networks: vec!["10.0.0.0/8".into()],
        ..StreamConfig::default()
    };
    let metrics = process(&log, &s, config);
    assert_eq!(metrics.dropped_count(DropReason::Bot), 1);
    assert_eq!(metrics.dropped_count(DropReason::InternalNetwork), 1);
    assert_eq!(metrics.dropped_count(DropReason::Duplicate), 1);
    assert_eq!(all_profiles(&s).len(), 1);
    assert_eq!(profile(&s, "jane").unwrap().activity.event_count, 8);
}

#[test]
fn restarting_between_batches_neither_loses_nor_repeats() {
    let msgs = journey();
    // All at once, with one record per batch.
    let one_by_one = StreamConfig {
        batch_records: 1,
        ..StreamConfig::default()
    };
    let (whole, _d) = run(&msgs, one_by_one.clone());

    // Half, stop, the rest plus a duplicate of an already applied message: the restarted
    // processor resumes at the stored offset with its dedupe window rebuilt.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, &msgs[..4]);
    let s = store(dir.path());
    process(&log, &s, one_by_one.clone());
    drop(s);
    let mut rest = msgs[4..].to_vec();
    rest.push(msgs[1].clone());
    append(&log, &rest);
    let s = store(dir.path());
    let metrics = process(&log, &s, one_by_one);
    assert_eq!(metrics.dropped_count(DropReason::Duplicate), 1);
    assert_eq!(all_profiles(&s), whole);
}

#[test]
fn a_shared_device_does_not_merge_two_customers() {
    let msgs = vec![
        json!({"type": "identify", "anonymousId": "kiosk", "userId": "ann", "timestamp": at(0)}),
        json!({"type": "identify", "anonymousId": "kiosk", "userId": "bob", "timestamp": at(1)}),
        json!({"type": "track", "userId": "bob", "event": "Order Completed", "properties": {"revenue": 5}, "timestamp": at(2)}),
    ];
    let (all, _d) = run(&msgs, StreamConfig::default());
    assert_eq!(all.len(), 2);
    let bob = all
        .iter()
        .find(|p| p.user_id.as_deref() == Some("bob"))
        .unwrap();
    assert_eq!(bob.activity.purchases, 1);
    assert!(bob.anonymous_ids.is_empty());
}
