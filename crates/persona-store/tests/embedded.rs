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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.durable_offset("processor").unwrap() != Some(10) {
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn segments_members_and_the_outbox_are_kept_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        let big = store
            .create_segment("big spenders", "computed.monetary > 200", 1_000)
            .unwrap();
        let recent = store
            .create_segment("recent", "computed.recency_days <= 30", 2_000)
            .unwrap();
        assert_eq!((big.id, recent.id, big.version), (1, 2, 1));
        let entered = |p: u64, s: u64| {
            format!(r#"{{"event":"segment.entered","profile":{p},"segment":{s}}}"#)
        };
        store
            .apply(&ChangeSet {
                memberships: vec![(1, 7, true), (1, 3, true), (2, 3, true), (1, 9, true)],
                outbox: vec![
                    (7, entered(7, 1).into_bytes()),
                    (3, entered(3, 1).into_bytes()),
                ],
                next_id: 10,
                ..ChangeSet::default()
            })
            .unwrap();
        store
            .apply(&ChangeSet {
                memberships: vec![(1, 9, false)],
                outbox: vec![(9, b"{\"event\":\"segment.exited\"}".to_vec())],
                next_id: 10,
                ..ChangeSet::default()
            })
            .unwrap();
        let mut renamed = big.clone();
        renamed.name = "top spenders".into();
        renamed.version = 2;
        store.update_segment(&renamed).unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    let defs = store.segments().unwrap();
    assert_eq!(defs.len(), 2);
    assert_eq!(
        (defs[0].name.as_str(), defs[0].version),
        ("top spenders", 2)
    );
    // Members in profile order, paged by the last one seen.
    assert_eq!(store.members(1, None, 10).unwrap(), [3, 7]);
    assert_eq!(store.members(1, Some(3), 10).unwrap(), [7]);
    assert_eq!(store.members(1, None, 1).unwrap(), [3]);
    assert_eq!(store.members(2, None, 10).unwrap(), [3]);
    assert_eq!(
        (
            store.member_count(1).unwrap(),
            store.member_count(2).unwrap()
        ),
        (2, 1)
    );
    // The outbox keeps order and numbers; each profile has its own history.
    let outbox = store.outbox(None, 10).unwrap();
    assert_eq!(outbox.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(store.outbox(Some(2), 10).unwrap().len(), 1);
    assert_eq!(store.outbox_end().unwrap(), 4);
    assert_eq!(
        store.history(9, 10).unwrap(),
        [b"{\"event\":\"segment.exited\"}".to_vec()]
    );
    assert_eq!(store.history(3, 10).unwrap().len(), 1);
    // Deleting a segment takes its members and count with it; ids are not reused.
    store
        .delete_segment(1, &[(7, b"{\"event\":\"segment.exited\"}".to_vec())])
        .unwrap();
    assert!(store.members(1, None, 10).unwrap().is_empty());
    assert_eq!(
        store.outbox_end().unwrap(),
        5,
        "the exit is numbered after the others"
    );
    assert_eq!(store.history(7, 10).unwrap().len(), 2);
    assert_eq!(store.member_count(1).unwrap(), 0);
    assert_eq!(store.create_segment("again", "true", 3_000).unwrap().id, 3);
}

#[test]
fn documents_are_kept_by_kind_and_id_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        let first = store.next_document_id("model").unwrap();
        let second = store.next_document_id("model").unwrap();
        assert_eq!((first, second), (1, 2));
        // Each kind counts on its own; a kind that starts with another's name is apart.
        assert_eq!(store.next_document_id("models").unwrap(), 1);
        store.put_document("model", first, b"one").unwrap();
        store.put_document("model", second, b"two").unwrap();
        store.put_document("models", 1, b"other kind").unwrap();
        store
            .put_document("model", first, b"one, retrained")
            .unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(
        store.documents("model").unwrap(),
        [(1, b"one, retrained".to_vec()), (2, b"two".to_vec())]
    );
    assert_eq!(store.documents("models").unwrap().len(), 1);
    assert!(store.documents("rfm").unwrap().is_empty());
    assert_eq!(store.next_document_id("model").unwrap(), 3);
}

#[test]
fn warming_the_cache_reads_every_identity_and_profile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles");
    let profiles: Vec<_> = (1..=50u64)
        .map(|id| (id, profile(&format!("u{id}"), id)))
        .collect();
    let links: Vec<_> = (1..=50u64).map(|id| (format!("u:u{id}"), id)).collect();
    let expected: usize = profiles.iter().map(|(_, p)| 8 + p.len()).sum::<usize>()
        + links.iter().map(|(k, _)| k.len() + 8).sum::<usize>();
    {
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.warm_cache().unwrap(), 0, "nothing stored yet");
        store
            .apply(&ChangeSet {
                profiles,
                created: 50,
                links,
                next_id: 51,
                ..ChangeSet::default()
            })
            .unwrap();
    }
    // Reopened, as `serve` warms a store it has just opened.
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.warm_cache().unwrap(), expected as u64);
    assert_eq!(
        store
            .lookup(&IdentityKey::parse("user_id:u7"))
            .unwrap()
            .unwrap()
            .1
            .activity
            .event_count,
        7
    );
}

#[test]
fn cursors_and_deleted_documents_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store.outbox_end().unwrap(),
            1,
            "an empty outbox starts at 1"
        );
        assert_eq!(store.cursor("webhook:1").unwrap(), None);
        store.set_cursor("webhook:1", Some(41)).unwrap();
        store.set_cursor("webhook:2", Some(7)).unwrap();
        store.set_cursor("webhook:2", None).unwrap();
        store.put_document("webhook", 1, b"one").unwrap();
        store.put_document("webhook", 2, b"two").unwrap();
        store.put_document("model", 1, b"a model").unwrap();
        store.delete_document("webhook", 1).unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.cursor("webhook:1").unwrap(), Some(41));
    assert_eq!(store.cursor("webhook:2").unwrap(), None);
    assert_eq!(store.documents("webhook").unwrap(), [(2, b"two".to_vec())]);
    assert_eq!(
        store.documents("model").unwrap().len(),
        1,
        "another kind is untouched"
    );
}
