//! What every [`ProfileStore`] must do, as checks a store's own tests call with a way to
//! open it (again, on the same data, for the checks that reopen it). The embedded store,
//! the PostgreSQL store and the Redis cache run the same checks, so the stream stage and
//! the API can rely on the trait alone. Each check panics, naming what differed, when the
//! store falls short. [`conformance_tests!`](crate::conformance_tests) makes one test of
//! each.

use persona_core::profile::{Profile, codec};

use crate::{ChangeSet, EventRef, IdentityKey, ProfileStore, StoreError};

/// Opens the store under test; a second call opens the same data again (after the first
/// store is dropped).
pub type Open<'a, S> = &'a dyn Fn() -> Result<S, StoreError>;

/// An encoded profile of `user` with `events` events.
pub fn profile(user: &str, events: u64) -> Vec<u8> {
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

/// Profiles, identities, the event index, a merge and the offsets are stored by change
/// sets and read back after reopening; a second open while the first is live is refused.
pub fn change_sets_are_stored_and_survive_reopening<S: ProfileStore>(open: Open<'_, S>) {
    {
        let store = open().unwrap();
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
                // Times out of order and one before 1970: the index orders by time.
                events: vec![(1, event(10, 0)), (2, event(-5, 1)), (1, event(30, 2))],
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
        assert!(
            matches!(open(), Err(StoreError::Locked(_))),
            "a second open of a store in use must be refused"
        );
    }
    let store = open().unwrap();
    assert_eq!(store.offset("processor").unwrap(), Some(4));
    // What is stored at open is what a crash would leave.
    assert_eq!(store.durable_offset("processor").unwrap(), Some(4));
    assert_eq!(store.next_id().unwrap(), 3);
    assert_eq!(store.count().unwrap(), 1);
    let (id, p) = store
        .lookup(&IdentityKey::Anonymous("anon"))
        .unwrap()
        .unwrap();
    assert_eq!((id, p.activity.event_count), (1, 3));
    assert_eq!(store.get(1).unwrap().unwrap().activity.event_count, 3);
    assert!(store.get(2).unwrap().is_none(), "merged away");
    assert_eq!(store.resolve(&IdentityKey::parse("u1")).unwrap(), Some(1));
    assert_eq!(store.resolve(&IdentityKey::parse("nobody")).unwrap(), None);
    assert!(
        store
            .lookup(&IdentityKey::parse("nobody"))
            .unwrap()
            .is_none()
    );
    let recent = store.recent_events(1, 10).unwrap();
    assert_eq!(
        recent.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [2, 0, 1],
        "newest event time first, moved events included"
    );
    assert_eq!(recent[2], event(-5, 1), "time, offset and position kept");
    assert_eq!(store.recent_events(1, 1).unwrap().len(), 1);
    assert!(store.recent_events(2, 10).unwrap().is_empty());
    let mut many = store
        .resolve_many(&["u:u1".into(), "a:anon".into(), "u:nobody".into()])
        .unwrap();
    many.sort();
    assert_eq!(many, [("a:anon".to_string(), 1), ("u:u1".to_string(), 1)]);
    let profiles = store.get_many(&[1, 2]).unwrap();
    assert_eq!(profiles.len(), 1, "the merged-away profile is gone");
    assert_eq!(profiles[0].1.activity.event_count, 3);
    let all = store.scan(None, 10).unwrap();
    assert_eq!(all.len(), 1);
    assert!(store.scan(Some(1), 10).unwrap().is_empty());
    assert!(store.scan(Some(u64::MAX), 10).unwrap().is_empty());
}

/// Change sets merged with [`ChangeSet::absorb`] may name a profile, an identity or a
/// membership twice: the last write wins, and member counts move by every change.
pub fn the_last_write_of_a_change_set_wins<S: ProfileStore>(open: Open<'_, S>) {
    let store = open().unwrap();
    let mut first = ChangeSet {
        profiles: vec![(1, profile("u1", 1)), (2, profile("u2", 1))],
        created: 2,
        links: vec![("u:u1".into(), 1), ("u:x".into(), 1)],
        events: vec![(1, event(10, 0))],
        memberships: vec![(5, 1, true), (5, 2, true)],
        ..ChangeSet::default()
    };
    let mut second = ChangeSet {
        profiles: vec![(1, profile("u1", 2))],
        links: vec![("u:x".into(), 2)],
        events: vec![EventRef {
            position: 7,
            ..event(10, 0)
        }]
        .into_iter()
        .map(|e| (1, e))
        .collect(),
        memberships: vec![(5, 2, false)],
        ..ChangeSet::default()
    };
    first.absorb(&mut second);
    first.next_id = 3;
    store.apply(&first).unwrap();
    assert_eq!(store.get(1).unwrap().unwrap().activity.event_count, 2);
    assert_eq!(store.resolve(&IdentityKey::parse("x")).unwrap(), Some(2));
    assert_eq!(store.recent_events(1, 10).unwrap()[0].position, 7);
    assert_eq!(store.members(5, None, 10).unwrap(), [1]);
    assert_eq!(store.member_count(5).unwrap(), 1);
    assert_eq!(store.count().unwrap(), 2);
    // Pages of a scan and of a range visit follow id order.
    let profiles: Vec<_> = (3..=20u64)
        .map(|id| (id, profile(&format!("u{id}"), id)))
        .collect();
    store
        .apply(&ChangeSet {
            created: profiles.len() as u64,
            profiles,
            next_id: 21,
            ..ChangeSet::default()
        })
        .unwrap();
    assert_eq!(store.count().unwrap(), 20);
    let page = store.scan_encoded(Some(4), 3).unwrap();
    assert_eq!(page.iter().map(|p| p.0).collect::<Vec<_>>(), [5, 6, 7]);
    let mut seen = Vec::new();
    store
        .visit_encoded(8, 12, &mut |id, bytes| {
            seen.push((id, codec::decode(bytes).unwrap().activity.event_count));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, [(8, 8), (9, 9), (10, 10), (11, 11), (12, 12)]);
    let mut paged = 0;
    crate::for_each_page(&store, 6, |page| {
        paged += page.len();
        Ok::<_, StoreError>(())
    })
    .unwrap();
    assert_eq!(paged, 20);
}

/// Merges chain (c into b, then b into a, in one change set): events already indexed and
/// events of the same change set all end up under the surviving profile.
pub fn merged_profiles_take_their_events_along_a_chain<S: ProfileStore>(open: Open<'_, S>) {
    let store = open().unwrap();
    store
        .apply(&ChangeSet {
            profiles: (1..=3)
                .map(|id| (id, profile(&format!("u{id}"), 1)))
                .collect(),
            created: 3,
            events: vec![(1, event(1, 0)), (2, event(2, 1)), (3, event(3, 2))],
            next_id: 4,
            ..ChangeSet::default()
        })
        .unwrap();
    store
        .apply(&ChangeSet {
            profiles: vec![(1, profile("u1", 5))],
            removed: vec![2, 3],
            // An event of a profile merged away in this very change set.
            events: vec![(3, event(4, 3))],
            moved_events: vec![(3, 2), (2, 1)],
            next_id: 4,
            ..ChangeSet::default()
        })
        .unwrap();
    let offsets: Vec<u64> = store
        .recent_events(1, 10)
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(offsets, [3, 2, 1, 0]);
    assert!(store.recent_events(2, 10).unwrap().is_empty());
    assert!(store.recent_events(3, 10).unwrap().is_empty());
    assert_eq!(store.count().unwrap(), 1);
}

/// A deleted segment's count starts again from nothing if its id is used by a change set
/// after the deletion (a change set in flight when the segment went).
pub fn a_deleted_segments_count_starts_again<S: ProfileStore>(open: Open<'_, S>) {
    let store = open().unwrap();
    let seg = store.create_segment("s", "true", 1).unwrap();
    let join = |profile: u64| ChangeSet {
        memberships: vec![(seg.id, profile, true)],
        next_id: 10,
        ..ChangeSet::default()
    };
    store.apply(&join(1)).unwrap();
    store.apply(&join(2)).unwrap();
    assert_eq!(store.member_count(seg.id).unwrap(), 2);
    store.delete_segment(seg.id, &[]).unwrap();
    assert_eq!(store.member_count(seg.id).unwrap(), 0);
    store.apply(&join(3)).unwrap();
    assert_eq!(store.member_count(seg.id).unwrap(), 1);
    assert_eq!(store.members(seg.id, None, 10).unwrap(), [3]);
}

/// Segments, their members and counts, the outbox and each profile's history are kept
/// across reopening; deleting a segment numbers its exits after everything before.
pub fn segments_members_and_the_outbox_are_kept_and_survive_reopening<S: ProfileStore>(
    open: Open<'_, S>,
) {
    {
        let store = open().unwrap();
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
        renamed.updated_at = 5_000;
        store.update_segment(&renamed).unwrap();
    }
    let store = open().unwrap();
    let defs = store.segments().unwrap();
    assert_eq!(defs.len(), 2);
    assert_eq!(
        (
            defs[0].name.as_str(),
            defs[0].version,
            defs[0].created_at,
            defs[0].updated_at
        ),
        ("top spenders", 2, 1_000, 5_000)
    );
    assert_eq!(defs[1].rule, "computed.recency_days <= 30");
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
    assert_eq!(store.outbox(None, 2).unwrap().len(), 2);
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
    assert_eq!(store.segments().unwrap().len(), 1);
    assert_eq!(
        store.outbox_end().unwrap(),
        5,
        "the exit is numbered after the others"
    );
    let history = store.history(7, 10).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0],
        b"{\"event\":\"segment.exited\"}".to_vec(),
        "newest first"
    );
    assert_eq!(store.member_count(1).unwrap(), 0);
    assert_eq!(store.create_segment("again", "true", 3_000).unwrap().id, 3);
}

/// Documents are numbered and kept per kind; a kind named like another's prefix is apart.
pub fn documents_are_kept_by_kind_and_id_across_a_restart<S: ProfileStore>(open: Open<'_, S>) {
    {
        let store = open().unwrap();
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
    let store = open().unwrap();
    assert_eq!(
        store.documents("model").unwrap(),
        [(1, b"one, retrained".to_vec()), (2, b"two".to_vec())]
    );
    assert_eq!(store.documents("models").unwrap().len(), 1);
    assert!(store.documents("rfm").unwrap().is_empty());
    assert_eq!(store.next_document_id("model").unwrap(), 3);
}

/// Named cursors and document deletions are kept across reopening.
pub fn cursors_and_deleted_documents_survive_reopening<S: ProfileStore>(open: Open<'_, S>) {
    {
        let store = open().unwrap();
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
    let store = open().unwrap();
    assert_eq!(store.cursor("webhook:1").unwrap(), Some(41));
    assert_eq!(store.cursor("webhook:2").unwrap(), None);
    assert_eq!(store.documents("webhook").unwrap(), [(2, b"two".to_vec())]);
    assert_eq!(
        store.documents("model").unwrap().len(),
        1,
        "another kind is untouched"
    );
}

/// An applied offset is soon reported durable too (after the store's own sync, or the
/// server's flush of its log), and not before it was applied.
pub fn the_durable_offset_follows_the_applied_one<S: ProfileStore>(open: Open<'_, S>) {
    let store = open().unwrap();
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
        assert!(std::time::Instant::now() < deadline, "never made durable");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One `#[test]` per check above, in the calling test file:
/// `conformance_tests!(|name| fixture, |fixture| opener)`, where `fixture` makes what a
/// test needs kept alive (a folder, a schema), given the check's name, and `opener` is the
/// [`Open`] function made from it.
#[macro_export]
macro_rules! conformance_tests {
    (|$name:ident| $fixture:expr, |$held:ident| $open:expr) => {
        $crate::conformance_tests!(@each ($name, $fixture, $held, $open)
            change_sets_are_stored_and_survive_reopening,
            the_last_write_of_a_change_set_wins,
            merged_profiles_take_their_events_along_a_chain,
            a_deleted_segments_count_starts_again,
            segments_members_and_the_outbox_are_kept_and_survive_reopening,
            documents_are_kept_by_kind_and_id_across_a_restart,
            cursors_and_deleted_documents_survive_reopening,
            the_durable_offset_follows_the_applied_one,
        );
    };
    (@each ($name:ident, $fixture:expr, $held:ident, $open:expr) $($check:ident),* $(,)?) => {$(
        #[test]
        fn $check() {
            let $name = stringify!($check);
            let $held = $fixture;
            $crate::conformance::$check(&$open);
        }
    )*};
}
