//! The read-time shape of a profile, with time-relative values computed against `as_of`.
//!
//! A view borrows the profile's ids, traits and name counts rather than copying them: the
//! segment stage builds one for every profile a back-fill goes over, and most of what it
//! would copy is never read.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{DAY_MS, Profile, Traits};

/// A profile as the API shows it (the API adds `rfm`, `segments`, `cluster`, `stale`).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileView<'a> {
    pub user_id: Option<Cow<'a, str>>,
    pub aliases: Cow<'a, [String]>,
    pub anonymous_ids: Cow<'a, [String]>,
    pub traits: TraitValues<'a>,
    pub computed: ComputedView<'a>,
    pub as_of: DateTime<Utc>,
}

/// The value of each trait, by name: the stored traits without their write times, or
/// values given as they are.
#[derive(Debug, Clone)]
pub enum TraitValues<'a> {
    Stored(&'a Traits),
    Given(Map<String, Value>),
}

impl TraitValues<'_> {
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            TraitValues::Stored(t) => t.get(name).map(|t| &t.value),
            TraitValues::Given(m) => m.get(name),
        }
    }
}

impl From<Map<String, Value>> for TraitValues<'_> {
    fn from(values: Map<String, Value>) -> Self {
        TraitValues::Given(values)
    }
}

impl Serialize for TraitValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TraitValues::Stored(t) => s.collect_map(t.iter().map(|(k, t)| (k, &t.value))),
            TraitValues::Given(m) => m.serialize(s),
        }
    }
}

/// Every computed feature. Time-relative ones (`recency_days`, `days_since_last_seen`, the
/// rolling windows) are relative to `as_of`; the others count all history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComputedView<'a> {
    pub event_count: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub days_since_last_seen: Option<i64>,
    /// Whole days from the last purchase to `as_of`.
    pub recency_days: Option<i64>,
    /// Number of purchases.
    pub frequency: u64,
    /// Summed purchase revenue.
    pub monetary: f64,
    pub avg_order_value: Option<f64>,
    pub first_purchase: Option<DateTime<Utc>>,
    pub last_purchase: Option<DateTime<Utc>>,
    pub events: Cow<'a, BTreeMap<String, u64>>,
    pub page_views: u64,
    pub screen_views: u64,
    pub page_categories: Cow<'a, BTreeMap<String, u64>>,
    pub sessions: u64,
    pub time_on_site_seconds: f64,
    pub avg_session_seconds: Option<f64>,
    pub email_opens: u64,
    pub email_clicks: u64,
    /// Email clicks per open.
    pub click_through_rate: Option<f64>,
    pub app_sessions: u64,
    pub events_7d: u64,
    pub events_30d: u64,
    pub events_90d: u64,
    pub purchases_30d: u64,
    pub purchases_90d: u64,
    pub revenue_30d: f64,
    pub revenue_90d: f64,
}

fn time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

fn days_between(from: Option<i64>, to: i64) -> Option<i64> {
    from.map(|t| (to - t).div_euclid(DAY_MS).max(0))
}

fn money(micros: i64) -> f64 {
    micros as f64 / 1e6
}

impl Profile {
    /// The profile as of `as_of`.
    pub fn view(&self, as_of: DateTime<Utc>) -> ProfileView<'_> {
        let now = as_of.timestamp_millis();
        let a = &self.activity;
        let sessions = a.sessions.count();
        let on_site = a.sessions.total_ms() as f64 / 1000.0;
        let (w7, w30, w90) = (a.window(now, 7), a.window(now, 30), a.window(now, 90));
        ProfileView {
            user_id: self.user_id.as_deref().map(Cow::Borrowed),
            aliases: Cow::Borrowed(&self.aliases),
            anonymous_ids: Cow::Borrowed(&self.anonymous_ids),
            traits: TraitValues::Stored(&self.traits),
            computed: ComputedView {
                event_count: a.event_count,
                first_seen: time(a.first_seen),
                last_seen: time(a.last_seen),
                days_since_last_seen: days_between(a.last_seen, now),
                recency_days: days_between(a.last_purchase, now),
                frequency: a.purchases,
                monetary: money(a.revenue_micros),
                avg_order_value: (a.purchases > 0)
                    .then(|| money(a.revenue_micros) / a.purchases as f64),
                first_purchase: time(a.first_purchase),
                last_purchase: time(a.last_purchase),
                events: Cow::Borrowed(&a.events),
                page_views: a.page_views,
                screen_views: a.screen_views,
                page_categories: Cow::Borrowed(&a.page_categories),
                sessions,
                time_on_site_seconds: on_site,
                avg_session_seconds: (sessions > 0).then(|| on_site / sessions as f64),
                email_opens: a.email_opens,
                email_clicks: a.email_clicks,
                click_through_rate: (a.email_opens > 0)
                    .then(|| a.email_clicks as f64 / a.email_opens as f64),
                app_sessions: a.app_opens,
                events_7d: w7.events.into(),
                events_30d: w30.events.into(),
                events_90d: w90.events.into(),
                purchases_30d: w30.purchases.into(),
                purchases_90d: w90.purchases.into(),
                revenue_30d: money(w30.revenue_micros),
                revenue_90d: money(w90.revenue_micros),
            },
            as_of,
        }
    }
}
