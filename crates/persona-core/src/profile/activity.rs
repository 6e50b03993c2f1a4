//! Behavioural counters of a profile, folded one observation at a time.
//!
//! Every counter here is a commutative fold (sums, minimums, maximums, interval unions,
//! event-time day buckets), so a profile's activity is the same whatever order its events
//! arrive in and however anonymous histories are merged into it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::days::Days;
use super::sessions::Sessions;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
/// Longest rolling window kept in day buckets.
pub const WINDOW_DAYS: i64 = 90;
/// Distinct event names or page categories counted per profile; further ones are counted
/// under [`OTHER`], so a client sending unique names cannot grow a profile without bound.
pub const MAX_NAMES: usize = 200;
/// The bucket for names past [`MAX_NAMES`].
pub const OTHER: &str = "(other)";

/// What the stream stage learned from one event, in the terms the profile counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'a> {
    /// Event time (the corrected `timestamp`) in Unix milliseconds.
    pub at: i64,
    /// What kind of behaviour it was.
    pub kind: ObservedKind<'a>,
}

/// The kinds of behaviour a profile distinguishes.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservedKind<'a> {
    /// A page or screen view, with its category when given.
    View {
        screen: bool,
        category: Option<&'a str>,
    },
    /// A track call; `purchase` carries the revenue of a purchase event.
    Track {
        name: &'a str,
        purchase: Option<f64>,
        email: Option<EmailAction>,
        app_open: bool,
    },
    /// identify, group or alias: counted and seen, but not on-site activity.
    Other,
}

/// Email engagement tracked for the click-through rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailAction {
    Opened,
    Clicked,
}

/// Counts of one UTC day, for rolling windows by event time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DayCounts {
    pub events: u32,
    pub purchases: u32,
    /// Revenue in millionths, as [`Activity::revenue_micros`].
    pub revenue_micros: i64,
}

impl DayCounts {
    pub fn add(&mut self, other: &DayCounts) {
        self.events += other.events;
        self.purchases += other.purchases;
        self.revenue_micros = self.revenue_micros.saturating_add(other.revenue_micros);
    }
}

/// The behavioural state of one profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Activity {
    pub event_count: u64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Track calls by event name.
    pub events: BTreeMap<String, u64>,
    pub page_views: u64,
    pub screen_views: u64,
    /// Page and screen views by category.
    pub page_categories: BTreeMap<String, u64>,
    pub sessions: Sessions,
    pub purchases: u64,
    /// Summed purchase revenue in millionths of the currency unit: integer sums are exact
    /// and so do not depend on the order events arrive in, as float sums would.
    pub revenue_micros: i64,
    pub first_purchase: Option<i64>,
    pub last_purchase: Option<i64>,
    pub email_opens: u64,
    pub email_clicks: u64,
    pub app_opens: u64,
    /// Day (days since the Unix epoch, UTC) → counts, for the last [`WINDOW_DAYS`] days up to
    /// the latest event seen.
    pub days: Days,
}

/// Largest revenue of one purchase taken as given; larger values (a sender's unit
/// mistake, or garbage) are capped so that sums cannot overflow.
pub const MAX_REVENUE: f64 = 1e12;

/// Converts revenue to exact millionths, capped at ±[`MAX_REVENUE`].
pub fn to_micros(revenue: f64) -> i64 {
    (revenue.clamp(-MAX_REVENUE, MAX_REVENUE) * 1e6).round() as i64
}

/// The UTC day of a Unix-millisecond time.
pub fn day_of(at: i64) -> i64 {
    at.div_euclid(DAY_MS)
}

impl Activity {
    /// Folds one observation in. `session_gap` is in milliseconds.
    pub fn observe(&mut self, o: &Observation<'_>, session_gap: i64) {
        self.event_count += 1;
        self.first_seen = Some(self.first_seen.map_or(o.at, |t| t.min(o.at)));
        self.last_seen = Some(self.last_seen.map_or(o.at, |t| t.max(o.at)));
        let mut day = DayCounts {
            events: 1,
            ..DayCounts::default()
        };
        match &o.kind {
            ObservedKind::View { screen, category } => {
                if *screen {
                    self.screen_views += 1;
                } else {
                    self.page_views += 1;
                }
                if let Some(c) = category {
                    bump(&mut self.page_categories, c, 1);
                }
                self.sessions.add(o.at, o.at, session_gap);
            }
            ObservedKind::Track {
                name,
                purchase,
                email,
                app_open,
            } => {
                bump(&mut self.events, name, 1);
                match email {
                    Some(EmailAction::Opened) => self.email_opens += 1,
                    Some(EmailAction::Clicked) => self.email_clicks += 1,
                    // Email engagement happens in a mail client, not on the site or app.
                    None => self.sessions.add(o.at, o.at, session_gap),
                }
                if *app_open {
                    self.app_opens += 1;
                }
                if let Some(revenue) = purchase {
                    let micros = to_micros(*revenue);
                    self.purchases += 1;
                    self.revenue_micros = self.revenue_micros.saturating_add(micros);
                    self.first_purchase = Some(self.first_purchase.map_or(o.at, |t| t.min(o.at)));
                    self.last_purchase = Some(self.last_purchase.map_or(o.at, |t| t.max(o.at)));
                    day.purchases = 1;
                    day.revenue_micros = micros;
                }
            }
            ObservedKind::Other => {}
        }
        self.add_day(day_of(o.at), day);
    }

    /// Adds everything `other` counted, as if its events had been observed here.
    pub fn merge(&mut self, other: &Activity, session_gap: i64) {
        self.event_count += other.event_count;
        self.first_seen = min_opt(self.first_seen, other.first_seen);
        self.last_seen = max_opt(self.last_seen, other.last_seen);
        for (name, n) in &other.events {
            bump(&mut self.events, name, *n);
        }
        self.page_views += other.page_views;
        self.screen_views += other.screen_views;
        for (name, n) in &other.page_categories {
            bump(&mut self.page_categories, name, *n);
        }
        self.sessions.merge(&other.sessions, session_gap);
        self.purchases += other.purchases;
        self.revenue_micros = self.revenue_micros.saturating_add(other.revenue_micros);
        self.first_purchase = min_opt(self.first_purchase, other.first_purchase);
        self.last_purchase = max_opt(self.last_purchase, other.last_purchase);
        self.email_opens += other.email_opens;
        self.email_clicks += other.email_clicks;
        self.app_opens += other.app_opens;
        for (day, counts) in other.days.iter() {
            self.add_day(day, *counts);
        }
    }

    /// Adds to a day bucket, keeping only the [`WINDOW_DAYS`] days up to the latest event.
    /// The cut-off depends only on the latest day seen, so the buckets kept are the same in
    /// any arrival order.
    fn add_day(&mut self, day: i64, counts: DayCounts) {
        let latest = self.last_seen.map_or(day, day_of).max(day);
        let oldest_kept = latest - WINDOW_DAYS + 1;
        if day < oldest_kept {
            return;
        }
        self.days.add(day, counts);
        self.days.keep_from(oldest_kept);
    }

    /// Sums the day buckets in the `days` days ending with `as_of`'s day.
    pub fn window(&self, as_of: i64, days: i64) -> DayCounts {
        let last = day_of(as_of);
        self.days.sum(last - days + 1, last)
    }
}

fn bump(map: &mut BTreeMap<String, u64>, name: &str, n: u64) {
    if let Some(count) = map.get_mut(name) {
        *count += n;
    } else if map.len() < MAX_NAMES || name == OTHER {
        map.insert(name.to_owned(), n);
    } else {
        *map.entry(OTHER.to_owned()).or_default() += n;
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
