//! Starting the processor against a log and a store that disagree.

mod common;

use persona_store::ProfileStore;
use persona_stream::StreamConfig;
use serde_json::json;

/// Events `from..to` of one customer, each with its own messageId.
fn events(from: usize, to: usize) -> Vec<serde_json::Value> {
    (from..to)
        .map(|i| json!({"type": "track", "userId": "u", "event": "Tick", "messageId": format!("m{i}")}))
        .collect()
}

/// The log lost its last records after the profiles had applied them (an older copy of the
/// log restored, or a disk that lost synced writes): its next events reuse offsets the store
/// has passed, and must be applied all the same, while the profile keeps the events the log
/// lost.
#[test]
fn a_store_ahead_of_its_log_applies_the_events_that_reuse_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    common::append(&whole, &events(0, 10));
    common::append(&cut, &events(0, 3));
    let store = common::store(dir.path());
    common::process(&whole, &store, StreamConfig::default());
    assert_eq!(store.offset("processor").unwrap(), Some(10));

    // A start on the shorter log goes back to its end, and remembers that.
    common::process(&cut, &store, StreamConfig::default());
    assert_eq!(store.offset("processor").unwrap(), Some(3));
    // Synced at once: what retention may delete follows the rewind, not the old offset.
    assert_eq!(store.durable_offset("processor").unwrap(), Some(3));
    common::append(&cut, &events(10, 20));
    common::process(&cut, &store, StreamConfig::default());
    let profile = common::profile(&store, "user_id:u").unwrap();
    assert_eq!(profile.activity.event_count, 20);
    assert_eq!(store.offset("processor").unwrap(), Some(13));
}
