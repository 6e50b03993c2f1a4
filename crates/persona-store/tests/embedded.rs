//! The embedded store keeps what a change set says, atomically, across reopening: the
//! checks every store passes (`persona_store::conformance`), and the embedded store's own.

use std::path::Path;

use persona_store::conformance::profile;
use persona_store::{ChangeSet, EmbeddedStore, IdentityKey, ProfileStore, StoreError};

fn opener(path: &Path) -> impl Fn() -> Result<EmbeddedStore, StoreError> + '_ {
    move || EmbeddedStore::open(path)
}

persona_store::conformance_tests!(|_name| tempfile::tempdir().unwrap(), |dir| opener(
    &dir.path().join("profiles")
));

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
