//! A customer profile: who the customer is (ids, traits) and what they did (activity).
//!
//! The state here is what the stream stage folds events into and the store keeps; the
//! [`ProfileView`] is what the API returns, with time-relative values computed against an
//! `as_of` instant at read time, so a profile never needs rewriting just because time passed.

mod activity;
pub mod codec;
mod days;
mod sessions;
mod traits;
mod view;

use serde::{Deserialize, Serialize};

pub use activity::{
    Activity, DAY_MS, DayCounts, EmailAction, MAX_NAMES, OTHER, Observation, ObservedKind,
    WINDOW_DAYS, day_of, to_micros,
};
pub use sessions::{MAX_KEPT_SESSIONS, Sessions};
pub use traits::{Trait, Traits, set_all, set_trait};
pub use view::{ComputedView, ProfileView, TraitValues};

/// The default inactivity gap that ends a session: 30 minutes, as Google Analytics and
/// Segment's session tooling use.
pub const DEFAULT_SESSION_GAP_MS: i64 = 30 * 60 * 1000;

/// One customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// The known user id, once the customer identified.
    pub user_id: Option<String>,
    /// Other user ids merged into this profile by alias calls.
    pub aliases: Vec<String>,
    /// Every anonymous id linked to this profile, sorted.
    pub anonymous_ids: Vec<String>,
    pub traits: Traits,
    pub activity: Activity,
    /// The rule segments the customer is in, by id, ascending: kept by the segment stage,
    /// which compares them with a fresh evaluation to find entries and exits.
    pub segments: Vec<u64>,
    /// The customer's cluster in each active cluster model, as (model id, cluster), by
    /// model id: kept by the segment stage like `segments`.
    pub clusters: Vec<(u64, u32)>,
}

impl Profile {
    /// Links an anonymous id, keeping the list sorted and free of duplicates.
    pub fn add_anonymous_id(&mut self, id: &str) {
        if let Err(at) = self.anonymous_ids.binary_search_by(|a| a.as_str().cmp(id)) {
            self.anonymous_ids.insert(at, id.to_owned());
        }
    }

    /// Adds a user id merged in by alias.
    pub fn add_alias(&mut self, id: &str) {
        if self.user_id.as_deref() != Some(id) && !self.aliases.iter().any(|a| a == id) {
            self.aliases.push(id.to_owned());
            self.aliases.sort();
        }
    }

    /// Merges `other` (a profile found to be the same customer) into this one. Counters
    /// add up, ids are united, traits keep the newest write of each.
    pub fn merge(&mut self, other: &Profile, session_gap: i64) {
        match (&self.user_id, &other.user_id) {
            (None, Some(id)) => self.user_id = Some(id.clone()),
            (Some(_), Some(id)) => self.add_alias(id),
            _ => {}
        }
        for a in &other.aliases {
            self.add_alias(a);
        }
        for a in &other.anonymous_ids {
            self.add_anonymous_id(a);
        }
        for (name, t) in &other.traits {
            set_trait(&mut self.traits, name, &t.value, t.at);
        }
        self.activity.merge(&other.activity, session_gap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn observation(kind: u8, at: i64, n: u8) -> Observation<'static> {
        const NAMES: [&str; 3] = ["Product Viewed", "Order Completed", "Email Opened"];
        let kind = match kind % 4 {
            0 => ObservedKind::View {
                screen: n.is_multiple_of(2),
                category: ["shoes", "hats"].get(n as usize % 3).copied(),
            },
            1 => ObservedKind::Track {
                name: NAMES[n as usize % 3],
                purchase: (n % 3 == 1).then_some(f64::from(n) * 1.37),
                email: (n % 3 == 2).then_some(EmailAction::Opened),
                app_open: false,
            },
            2 => ObservedKind::Track {
                name: "Application Opened",
                purchase: None,
                email: None,
                app_open: true,
            },
            _ => ObservedKind::Other,
        };
        Observation { at, kind }
    }

    fn fold(events: &[(u8, i64, u8)]) -> Activity {
        let mut a = Activity::default();
        for &(k, at, n) in events {
            a.observe(&observation(k, at, n), DEFAULT_SESSION_GAP_MS);
        }
        a
    }

    fn event() -> impl Strategy<Value = (u8, i64, u8)> {
        (0u8..4, 0i64..200 * DAY_MS, 0u8..30)
    }

    proptest! {
        /// Counters do not depend on arrival order, nor on how a history is split between
        /// an anonymous and a known profile before they merge, nor on merge order.
        #[test]
        fn activity_is_order_and_merge_independent(
            events in prop::collection::vec(event(), 0..80),
            cut in 0usize..80,
            seed in any::<u64>(),
        ) {
            let whole = fold(&events);
            let mut shuffled = events.clone();
            // A seeded Fisher-Yates shuffle.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(&fold(&shuffled), &whole);

            let cut = cut.min(events.len());
            let (left, right) = (fold(&events[..cut]), fold(&events[cut..]));
            let mut lr = left.clone();
            lr.merge(&right, DEFAULT_SESSION_GAP_MS);
            let mut rl = right.clone();
            rl.merge(&left, DEFAULT_SESSION_GAP_MS);
            prop_assert_eq!(&lr, &whole);
            prop_assert_eq!(&rl, &whole);
        }

        #[test]
        fn codec_round_trips(events in prop::collection::vec(event(), 0..40)) {
            let mut p = Profile { user_id: Some("u1".into()), ..Profile::default() };
            p.add_anonymous_id("b");
            p.add_anonymous_id("a");
            p.add_anonymous_id("b");
            set_trait(&mut p.traits, "email", &serde_json::json!("x@example.com"), 5);
            p.activity = fold(&events);
            let back = codec::decode(&codec::encode(&p)).unwrap();
            prop_assert_eq!(back, p);
        }
    }

    #[test]
    fn merge_unites_ids_and_keeps_the_known_user() {
        let mut known = Profile {
            user_id: Some("u1".into()),
            ..Profile::default()
        };
        let mut anon = Profile::default();
        anon.add_anonymous_id("anon-1");
        known.merge(&anon, DEFAULT_SESSION_GAP_MS);
        assert_eq!(known.user_id.as_deref(), Some("u1"));
        assert_eq!(known.anonymous_ids, ["anon-1"]);
        let other = Profile {
            user_id: Some("u0".into()),
            ..Profile::default()
        };
        known.merge(&other, DEFAULT_SESSION_GAP_MS);
        assert_eq!(known.aliases, ["u0"]);
    }

    #[test]
    fn rolling_windows_count_by_event_time() {
        let mut a = Activity::default();
        let now = 1_000 * DAY_MS;
        for days_ago in [0, 3, 10, 40, 95] {
            a.observe(
                &observation(3, now - days_ago * DAY_MS, 0),
                DEFAULT_SESSION_GAP_MS,
            );
        }
        assert_eq!(a.window(now, 7).events, 2);
        assert_eq!(a.window(now, 30).events, 3);
        assert_eq!(
            a.window(now, 90).events,
            4,
            "95 days ago is outside every window"
        );
        assert_eq!(a.event_count, 5);
    }
}
