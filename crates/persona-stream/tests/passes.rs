//! Segment passes over the stored profiles, through a real log and store: a back-fill
//! finds every member whether the processor has the profile cached or not, skips the ids
//! merges left empty, and leaves the cached copies agreeing with the store, so later events
//! move memberships exactly once.

mod common;

use std::sync::Arc;

use common::{all_profiles, append, store};
use persona_log::LogReader;
use persona_rules::SegmentRegistry;
use persona_store::{ProfileStore, SegmentDef};
use persona_stream::{Processor, ProcessorMetrics, ProcessorStatus, StreamConfig};
use serde_json::{Value, json};

const CUSTOMERS: usize = 300;
const SEGMENT: u64 = 1;

fn at(second: usize) -> String {
    format!(
        "2024-05-01T10:{:02}:{:02}.000Z",
        second / 60 % 60,
        second % 60
    )
}

fn order(user: &str, n: usize, second: usize) -> Value {
    json!({"type": "track", "userId": user, "event": "Order Completed",
           "properties": {"revenue": 10}, "timestamp": at(second),
           "messageId": format!("{user}-order-{n}")})
}

/// Customer `i` buys `i % 4` times; every third browses on a second device first, whose
/// anonymous profile is merged away when they sign in there (an empty id in the store).
fn history() -> Vec<Value> {
    let mut messages = Vec::new();
    for i in 0..CUSTOMERS {
        let user = format!("c{i}");
        messages.push(
            json!({"type": "identify", "userId": user, "timestamp": at(i),
                             "messageId": format!("{user}-id")}),
        );
        if i % 3 == 0 {
            let device = format!("d{i}");
            messages.push(
                json!({"type": "page", "anonymousId": device, "timestamp": at(i),
                                 "messageId": format!("{device}-page")}),
            );
            messages.push(
                json!({"type": "identify", "userId": user, "anonymousId": device,
                                 "timestamp": at(i + 1), "messageId": format!("{device}-id")}),
            );
        }
        for n in 0..i % 4 {
            messages.push(order(&user, n, i + 2));
        }
    }
    messages
}

fn entries(store: &dyn ProfileStore) -> Vec<(u64, String)> {
    store
        .outbox(None, 100_000)
        .unwrap()
        .into_iter()
        .map(|(_, body)| serde_json::from_slice::<Value>(&body).unwrap())
        .filter(|e| e["event"] == "segment.entered")
        .map(|e| {
            (
                e["profile_id"].as_u64().unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_backfill_finds_every_member_cached_or_stored_and_later_events_move_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, &history());
    let store = store(dir.path());
    // A small cache: the last batches' customers are cached, the others only stored.
    let config = StreamConfig {
        batch_records: 50,
        profile_cache: 40,
        ..StreamConfig::default()
    };
    let registry = Arc::new(SegmentRegistry::default());
    let mut processor = Processor::new(
        store.clone(),
        LogReader::open_dir(&log).unwrap(),
        config.validate().unwrap(),
        Arc::new(ProcessorStatus::default()),
        ProcessorMetrics::new(),
    )
    .unwrap()
    .with_segments(registry.clone());
    processor.run_to_end().unwrap();
    let profiles = all_profiles(&store);
    assert_eq!(profiles.len(), CUSTOMERS, "merged-away profiles are gone");
    assert!(
        store.next_id().unwrap() > CUSTOMERS as u64 + 1,
        "merges left ids unused"
    );

    registry.replace_segments(vec![SegmentDef {
        id: SEGMENT,
        name: "repeat buyers".into(),
        rule: "computed.frequency >= 2".into(),
        created_at: 0,
        updated_at: 0,
        version: 1,
    }]);
    processor.run_to_end().unwrap();
    let repeat = |p: &persona_core::profile::Profile| p.activity.purchases >= 2;
    let want = profiles.iter().filter(|p| repeat(p)).count();
    assert_eq!(want, CUSTOMERS / 2, "customers with 2 or 3 orders");
    assert_eq!(store.member_count(SEGMENT).unwrap(), want as u64);
    for p in all_profiles(&store) {
        assert_eq!(p.segments.contains(&SEGMENT), repeat(&p), "{:?}", p.user_id);
    }
    let backfilled = entries(&*store);
    assert_eq!(backfilled.len(), want);
    assert!(backfilled.iter().all(|(_, reason)| reason == "backfill"));

    // The last customer (cached) and the first (stored only) buy again: members already,
    // no new entry. Customer 1 buys once more and crosses the threshold: one entry.
    let last = format!("c{}", CUSTOMERS - 1);
    append(
        &log,
        &[
            order(&last, 10, 5000),
            order("c2", 10, 5000),
            order("c1", 10, 5000),
        ],
    );
    processor.run_to_end().unwrap();
    let after = entries(&*store);
    assert_eq!(after.len(), want + 1, "{:?}", &after[want..]);
    assert_eq!(after[want].1, "event");
    assert_eq!(store.member_count(SEGMENT).unwrap(), want as u64 + 1);
}
