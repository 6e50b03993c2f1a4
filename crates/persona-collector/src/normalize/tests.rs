use super::*;
use serde_json::json;

fn env() -> Envelope {
    Envelope {
        received_at: parse_timestamp("2024-05-01T12:00:00Z").unwrap(),
        correct_skew: true,
        ..Default::default()
    }
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn track_is_normalised_as_segment_does() {
    let msg = json!({"userId": 42, "event": "Order Completed", "properties": {"revenue": 10},
                     "timestamp": "2024-05-01T11:00:00Z", "sentAt": "2024-05-01T11:05:00Z",
                     "context": {"library": {"name": "analytics-python"}}});
    let n = normalize_value(msg, Some(MessageType::Track), 0, &env()).unwrap();
    let b = &n.to_value();
    assert_eq!(b["type"], "track");
    assert_eq!(b["userId"], "42");
    assert_eq!(b["receivedAt"], "2024-05-01T12:00:00.000Z");
    // The client clock was 5 minutes ahead of when the server received the call... the
    // event happened 5 minutes before sentAt, so 5 minutes before receivedAt.
    assert_eq!(b["timestamp"], "2024-05-01T11:55:00.000Z");
    assert_eq!(b["originalTimestamp"], "2024-05-01T11:00:00.000Z");
    assert_eq!(b["context"]["library"]["name"], "analytics-python");
    assert!(uuid::Uuid::parse_str(b["messageId"].as_str().unwrap()).is_ok());
}

#[test]
fn backfills_keep_their_own_timestamps() {
    let mut e = env();
    e.correct_skew = false;
    let msg = json!({"anonymousId": "a", "event": "x", "timestamp": "2020-01-01T00:00:00Z",
                     "sentAt": "2024-05-01T11:05:00Z"});
    let n = normalize_value(msg, Some(MessageType::Track), 0, &e).unwrap();
    assert_eq!(n.to_value()["timestamp"], "2020-01-01T00:00:00.000Z");
}

#[test]
fn without_a_timestamp_the_receive_time_is_used() {
    let n = normalize_value(
        json!({"userId": "u"}),
        Some(MessageType::Identify),
        0,
        &env(),
    )
    .unwrap();
    assert_eq!(n.to_value()["timestamp"], n.to_value()["receivedAt"]);
    assert!(n.to_value().get("originalTimestamp").is_none());
}

#[test]
fn every_problem_is_named_by_field() {
    let msg = json!({"event": 5, "properties": [1], "timestamp": "soon", "userId": {"a": 1}});
    let errs = normalize_value(msg, Some(MessageType::Track), 3, &env()).unwrap_err();
    let f = fields(&errs);
    for want in ["userId", "event", "properties", "timestamp"] {
        assert!(f.contains(&want), "{want} missing from {errs:?}");
    }
    assert!(errs.iter().all(|e| e.index == Some(3)));
}

#[test]
fn identity_and_required_fields_are_checked_per_type() {
    let e = env();
    let errs = normalize_value(json!({"event": "x"}), Some(MessageType::Track), 0, &e).unwrap_err();
    assert_eq!(fields(&errs), ["userId"]);
    assert!(errs[0].reason.contains("anonymousId"));
    let errs =
        normalize_value(json!({"userId": "u"}), Some(MessageType::Track), 0, &e).unwrap_err();
    assert_eq!(fields(&errs), ["event"]);
    let errs =
        normalize_value(json!({"userId": "u"}), Some(MessageType::Group), 0, &e).unwrap_err();
    assert_eq!(fields(&errs), ["groupId"]);
    let errs =
        normalize_value(json!({"userId": "u"}), Some(MessageType::Alias), 0, &e).unwrap_err();
    assert_eq!(fields(&errs), ["previousId"]);
    assert!(
        normalize_value(
            json!({"userId": "", "anonymousId": "a"}),
            Some(MessageType::Page),
            0,
            &e
        )
        .is_ok()
    );
}

#[test]
fn a_null_event_is_dropped_except_where_track_needs_one() {
    let e = env();
    for kind in [
        MessageType::Page,
        MessageType::Identify,
        MessageType::Screen,
    ] {
        let n = normalize_value(json!({"userId": "u", "event": null}), Some(kind), 0, &e)
            .unwrap_or_else(|errs| panic!("{kind} with a null event refused: {errs:?}"));
        assert!(
            n.to_value().get("event").is_none(),
            "{kind} kept a null event"
        );
    }
    let errs = normalize_value(
        json!({"userId": "u", "event": null}),
        Some(MessageType::Track),
        0,
        &e,
    )
    .unwrap_err();
    assert_eq!(fields(&errs), ["event"]);
    assert!(errs[0].reason.contains("null"), "{errs:?}");
}

#[test]
fn batch_items_need_a_known_type() {
    let e = env();
    let errs = normalize_value(json!({"userId": "u"}), None, 1, &e).unwrap_err();
    assert_eq!(fields(&errs), ["type"]);
    let errs =
        normalize_value(json!({"userId": "u", "type": "purchase"}), None, 1, &e).unwrap_err();
    assert!(errs[0].reason.contains("purchase"));
    let n = normalize_value(
        json!({"userId": "u", "type": "screen", "name": "Home"}),
        None,
        1,
        &e,
    )
    .unwrap();
    assert_eq!(n.kind, MessageType::Screen);
}

#[test]
fn batch_context_fills_in_and_ip_is_added() {
    let mut e = env();
    let batch_context = br#"{"library": {"name": "batchlib"}, "locale": "de-DE"}"#;
    e.context = Some(Object::parse(batch_context).unwrap().into_owned());
    e.client_ip = Some("10.0.0.7".into());
    e.write_key = Some("wk".into());
    let msg = json!({"userId": "u", "context": {"locale": "en-US"}, "writeKey": "other"});
    let n = normalize_value(msg, Some(MessageType::Identify), 0, &e).unwrap();
    assert_eq!(n.to_value()["context"]["locale"], "en-US");
    assert_eq!(n.to_value()["context"]["library"]["name"], "batchlib");
    assert_eq!(n.to_value()["context"]["ip"], "10.0.0.7");
    assert_eq!(n.to_value()["writeKey"], "wk");
}

#[test]
fn a_backend_sdk_gets_no_ip_from_the_request() {
    let mut e = env();
    e.client_ip = Some("10.0.0.7".into());
    let msg = json!({"userId": "u", "context": {"library": {"name": "analytics-python"}}});
    let n = normalize_value(msg, Some(MessageType::Identify), 0, &e).unwrap();
    assert!(
        n.to_value()["context"].get("ip").is_none(),
        "{}",
        n.to_value()
    );
    // Its own `context.ip` (the customer's, passed on by the backend) is kept.
    let msg = json!({"userId": "u", "context": {"ip": "203.0.113.1",
                     "library": {"name": "analytics-go"}}});
    let n = normalize_value(msg, Some(MessageType::Identify), 0, &e).unwrap();
    assert_eq!(n.to_value()["context"]["ip"], "203.0.113.1");
}

#[test]
fn a_message_id_that_is_given_is_kept() {
    let n = normalize_value(
        json!({"userId": "u", "messageId": "m-1"}),
        Some(MessageType::Page),
        0,
        &env(),
    )
    .unwrap();
    assert_eq!(n.to_value()["messageId"], "m-1");
}

#[test]
fn identify_traits_sent_in_context_as_rudderstack_does_are_copied() {
    let msg = json!({"userId": "u", "context": {"traits": {"plan": "pro"}}});
    let n = normalize_value(msg, Some(MessageType::Identify), 0, &env()).unwrap();
    assert_eq!(n.to_value()["traits"]["plan"], "pro");
    assert_eq!(n.to_value()["context"]["traits"]["plan"], "pro");
    let msg =
        json!({"userId": "u", "traits": {"plan": "free"}, "context": {"traits": {"plan": "pro"}}});
    let n = normalize_value(msg, Some(MessageType::Identify), 0, &env()).unwrap();
    assert_eq!(n.to_value()["traits"]["plan"], "free");
    // An empty `traits` hides nothing.
    let msg = json!({"userId": "u", "traits": {}, "context": {"traits": {"plan": "pro"}}});
    let n = normalize_value(msg, Some(MessageType::Identify), 0, &env()).unwrap();
    assert_eq!(n.to_value()["traits"]["plan"], "pro");
}

#[test]
fn nested_values_are_stored_as_sent() {
    let text = br#"{"userId": 7, "event": "Order Completed",
        "properties": {"total": 1.50, "note": "caf\u00e9", "items": [ {"sku": "a"} ]},
        "context": {"ip": "192.0.2.1", "library": {"name": "x"}}}"#;
    let raw = Object::parse(text).unwrap();
    let mut e = env();
    e.client_ip = Some("10.0.0.7".into());
    let n = normalize(raw, Some(MessageType::Track), 0, &e).unwrap();
    let stored = String::from_utf8(n.to_bytes()).unwrap();
    // Neither reformatted nor re-escaped, and the context (which has an ip) untouched.
    assert!(
        stored.contains(
            r#""properties":{"total": 1.50, "note": "caf\u00e9", "items": [ {"sku": "a"} ]}"#
        ),
        "{stored}"
    );
    assert!(
        stored.contains(r#""context":{"ip": "192.0.2.1", "library": {"name": "x"}}"#),
        "{stored}"
    );
    assert!(stored.contains(r#""userId":"7""#), "{stored}");
    let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(v["properties"]["note"], "café");
    assert_eq!(v["type"], "track");
}

#[test]
fn identify_traits_come_from_the_batch_context_too() {
    let mut e = env();
    e.context = Some(
        Object::parse(br#"{"traits": {"plan": "team"}}"#)
            .unwrap()
            .into_owned(),
    );
    let n = normalize_value(json!({"userId": "u"}), Some(MessageType::Identify), 0, &e).unwrap();
    assert_eq!(n.to_value()["traits"]["plan"], "team");
}
