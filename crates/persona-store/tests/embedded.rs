//! The embedded store keeps what a change set says, atomically, across reopening.

use persona_core::profile::{Profile, codec};
use persona_store::{ChangeSet, EmbeddedStore, EventRef, IdentityKey, ProfileStore, StoreError};

fn profile(user: &str, events: u64) -> Vec<u8> {
    let mut p = Profile {
        user_id: Some(user.into()),
        ..Profile::default()
    };
    p.activity.event_count = events;
    codec::encode(&p)
}

fn event(at: i64, offset: u64) -> EventRef {
    EventRef {
        at,
        offset,
        position: offset * 100,
    }
}

#[test]
fn change_sets_are_stored_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.next_id().unwrap(), 1);
        assert_eq!(store.offset("processor").unwrap(), None);
        store
            .apply(&ChangeSet {
                profiles: vec![
                    (1, profile("u1", 2)),
                    (2, codec::encode(&Profile::default())),
                ],
                created: 2,
                links: vec![("u:u1".into(), 1), ("a:anon".into(), 2)],
                events: vec![(1, event(10, 0)), (2, event(5, 1)), (1, event(30, 2))],
                next_id: 3,
                offsets: vec![("processor".into(), 3)],
                ..ChangeSet::default()
            })
            .unwrap();
        // The anonymous profile merges into the known one.
        store
            .apply(&ChangeSet {
                profiles: vec![(1, profile("u1", 3))],
                removed: vec![2],
                links: vec![("a:anon".into(), 1)],
                moved_events: vec![(2, 1)],
                next_id: 3,
                offsets: vec![("processor".into(), 4)],
                ..ChangeSet::default()
            })
            .unwrap();
        assert!(matches!(
            EmbeddedStore::open(&path),
            Err(StoreError::Locked(_))
        ));
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.offset("processor").unwrap(), Some(4));
    // Synced at open, so what is stored is what a crash would leave.
    assert_eq!(store.durable_offset("processor").unwrap(), Some(4));
    assert_eq!(store.next_id().unwrap(), 3);
    assert_eq!(store.count().unwrap(), 1);
    let (id, p) = store
        .lookup(&IdentityKey::Anonymous("anon"))
        .unwrap()
        .unwrap();
    assert_eq!((id, p.activity.event_count), (1, 3));
    assert_eq!(store.resolve(&IdentityKey::parse("u1")).unwrap(), Some(1));
    assert_eq!(store.resolve(&IdentityKey::parse("nobody")).unwrap(), None);
    let recent: Vec<u64> = store
        .recent_events(1, 10)
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(
        recent,
        [2, 0, 1],
        "newest event time first, moved events included"
    );
    assert_eq!(store.recent_events(1, 1).unwrap().len(), 1);
    assert!(store.recent_events(2, 10).unwrap().is_empty());
    let all = store.scan(None, 10).unwrap();
    assert_eq!(all.len(), 1);
    assert!(store.scan(Some(1), 10).unwrap().is_empty());
}

#[test]
fn the_durable_offset_follows_the_background_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("profiles")).unwrap();
    assert_eq!(store.durable_offset("processor").unwrap(), None);
    store
        .apply(&ChangeSet {
            next_id: 1,
            offsets: vec![("processor".into(), 10)],
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(store.offset("processor").unwrap(), Some(10));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.durable_offset("processor").unwrap() != Some(10) {
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
