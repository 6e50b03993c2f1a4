//! Differential test: a seeded simulated stream through the live processor (in small
//! micro-batches, so state crosses many commits) against a plain batch recomputation of the
//! same events, profile by profile and field by field.

mod common;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{all_profiles, append, process, store};
use persona_core::time::parse_timestamp;
use persona_simulate::Period;
use persona_stream::StreamConfig;
use serde_json::{Map, Value, json};

const GAP_MS: i64 = 30 * 60 * 1000;
const DAY_MS: i64 = 86_400_000;

/// Union-find over identity keys.
#[derive(Default)]
struct Identities {
    parent: HashMap<String, String>,
}

impl Identities {
    fn find(&mut self, k: &str) -> String {
        let p = self
            .parent
            .entry(k.to_owned())
            .or_insert_with(|| k.to_owned())
            .clone();
        if p == k {
            return p;
        }
        let root = self.find(&p);
        self.parent.insert(k.to_owned(), root.clone());
        root
    }

    fn union(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(ra, rb);
        }
    }
}

fn ms(m: &Value, field: &str) -> i64 {
    parse_timestamp(m[field].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

fn time(ms: i64) -> Value {
    serde_json::to_value(DateTime::<Utc>::from_timestamp_millis(ms).unwrap()).unwrap()
}

fn deep_merge(base: &mut Map<String, Value>, incoming: &Map<String, Value>) {
    for (k, v) in incoming {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(i)) => deep_merge(b, i),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The straightforward computation: group by identity, sort by time, count.
fn batch_profile(mut events: Vec<Value>, as_of: i64) -> Value {
    events.sort_by_key(|m| ms(m, "timestamp"));
    let times: Vec<i64> = events.iter().map(|m| ms(m, "timestamp")).collect();
    let name = |m: &Value| m["event"].as_str().unwrap_or_default().to_owned();
    let is_track =
        |m: &Value, names: &[&str]| m["type"] == "track" && names.contains(&name(m).as_str());
    let purchases: Vec<(i64, f64)> = events
        .iter()
        .filter(|m| is_track(m, &["Order Completed"]))
        .map(|m| {
            let p = &m["properties"];
            (
                ms(m, "timestamp"),
                p["revenue"].as_f64().or(p["total"].as_f64()).unwrap_or(0.0),
            )
        })
        .collect();
    let mut by_name = BTreeMap::<String, u64>::new();
    let mut categories = BTreeMap::<String, u64>::new();
    let mut activity = Vec::new();
    let mut traits = Map::new();
    let (mut pages, mut screens) = (0u64, 0u64);
    for m in &events {
        let t = ms(m, "timestamp");
        match m["type"].as_str().unwrap() {
            "track" => {
                *by_name.entry(name(m)).or_default() += 1;
                if !is_track(m, &["Email Opened", "Email Clicked", "Email Link Clicked"]) {
                    activity.push(t);
                }
            }
            kind @ ("page" | "screen") => {
                if kind == "page" {
                    pages += 1
                } else {
                    screens += 1
                }
                let cat = m["category"]
                    .as_str()
                    .or(m["properties"]["category"].as_str());
                if let Some(c) = cat {
                    *categories.entry(c.to_owned()).or_default() += 1;
                }
                activity.push(t);
            }
            "identify" => {
                if let Some(t) = m["traits"].as_object() {
                    deep_merge(&mut traits, t);
                }
            }
            _ => {}
        }
    }
    activity.sort();
    let mut sessions: Vec<(i64, i64)> = Vec::new();
    for t in activity {
        match sessions.last_mut() {
            Some((_, end)) if t - *end <= GAP_MS => *end = t,
            _ => sessions.push((t, t)),
        }
    }
    let on_site: f64 = sessions.iter().map(|(s, e)| (e - s) as f64 / 1000.0).sum();
    let count = |names: &[&str]| events.iter().filter(|m| is_track(m, names)).count() as u64;
    let (opens, clicks) = (
        count(&["Email Opened"]),
        count(&["Email Clicked", "Email Link Clicked"]),
    );
    let monetary: f64 = purchases.iter().map(|p| p.1).sum();
    let today = as_of.div_euclid(DAY_MS);
    let within = |t: i64, days: i64| t.div_euclid(DAY_MS) > today - days;
    let events_in = |days| times.iter().filter(|&&t| within(t, days)).count() as u64;
    let purchases_in = |days| purchases.iter().filter(|p| within(p.0, days)).count() as u64;
    let revenue_in = |days| {
        purchases
            .iter()
            .filter(|p| within(p.0, days))
            .map(|p| p.1)
            .sum::<f64>()
    };
    let first_purchase = purchases.iter().map(|p| p.0).min();
    let last_purchase = purchases.iter().map(|p| p.0).max();
    let days_to = |t: Option<i64>| t.map(|t| (as_of - t).div_euclid(DAY_MS));
    let n = purchases.len() as u64;
    json!({
        "traits": traits,
        "computed": {
            "event_count": events.len(),
            "first_seen": time(times[0]),
            "last_seen": time(*times.last().unwrap()),
            "days_since_last_seen": days_to(times.last().copied()),
            "recency_days": days_to(last_purchase),
            "frequency": n,
            "monetary": monetary,
            "avg_order_value": (n > 0).then(|| monetary / n as f64),
            "first_purchase": first_purchase.map(time),
            "last_purchase": last_purchase.map(time),
            "events": by_name,
            "page_views": pages,
            "screen_views": screens,
            "page_categories": categories,
            "sessions": sessions.len(),
            "time_on_site_seconds": on_site,
            "avg_session_seconds": (!sessions.is_empty()).then(|| on_site / sessions.len() as f64),
            "email_opens": opens,
            "email_clicks": clicks,
            "click_through_rate": (opens > 0).then(|| clicks as f64 / opens as f64),
            "app_sessions": count(&["Application Opened"]),
            "events_7d": events_in(7),
            "events_30d": events_in(30),
            "events_90d": events_in(90),
            "purchases_30d": purchases_in(30),
            "purchases_90d": purchases_in(90),
            "revenue_30d": revenue_in(30),
            "revenue_90d": revenue_in(90),
        }
    })
}

/// Equal, with floats compared to a relative 1e-9.
fn assert_same(path: &str, live: &Value, batch: &Value) {
    match (live, batch) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                "{path}: live {a} batch {b}"
            );
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys: Vec<_> = a.keys().chain(b.keys()).collect();
            for k in keys {
                assert_same(
                    &format!("{path}.{k}"),
                    &a[k],
                    b.get(k).unwrap_or(&Value::Null),
                );
            }
        }
        _ => assert_eq!(live, batch, "{path}"),
    }
}

#[test]
fn live_profiles_equal_a_batch_recomputation() {
    // Odd-sized small batches, so profiles are written and re-read across many commits.
    check(StreamConfig {
        batch_records: 97,
        ..StreamConfig::default()
    });
}

#[test]
fn a_cache_smaller_than_the_customers_changes_nothing() {
    check(StreamConfig {
        batch_records: 97,
        profile_cache: 16,
        ..StreamConfig::default()
    });
}

fn check(config: StreamConfig) {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let period = Period {
        start,
        end: start + Duration::days(120),
    };
    let (_, lines) = persona_simulate::generate(7, 300, period, || {});
    let messages: Vec<Value> = lines
        .iter()
        .map(|(_, l)| serde_json::from_str(l).unwrap())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append(&log, &messages);
    let s = store(dir.path());
    process(&log, &s, config);

    // The batch side: union-find over ids, then each group's events.
    let mut ids = Identities::default();
    for m in &messages {
        if let (Some(u), Some(a)) = (m["userId"].as_str(), m["anonymousId"].as_str()) {
            ids.union(&format!("a:{a}"), &format!("u:{u}"));
        }
    }
    let mut groups: HashMap<String, Vec<Value>> = HashMap::new();
    for m in &messages {
        let key = match m["userId"].as_str() {
            Some(u) => format!("u:{u}"),
            None => format!("a:{}", m["anonymousId"].as_str().unwrap()),
        };
        groups.entry(ids.find(&key)).or_default().push(m.clone());
    }
    let as_of = messages.iter().map(|m| ms(m, "timestamp")).max().unwrap() + DAY_MS / 2;

    let live = all_profiles(&s);
    assert_eq!(live.len(), groups.len(), "number of profiles");
    let identified = live.iter().filter(|p| p.user_id.is_some()).count();
    assert!(
        identified > 50 && identified < live.len(),
        "a mix of known and anonymous: {identified}"
    );
    let mut by_root: HashMap<String, &persona_core::profile::Profile> = HashMap::new();
    for p in &live {
        let key = match &p.user_id {
            Some(u) => format!("u:{u}"),
            None => format!("a:{}", p.anonymous_ids[0]),
        };
        by_root.insert(ids.find(&key), p);
    }
    for (root, events) in groups {
        let p = by_root
            .get(&root)
            .unwrap_or_else(|| panic!("no live profile for {root}"));
        let mut anon: Vec<String> = events
            .iter()
            .filter_map(|m| m["anonymousId"].as_str().map(str::to_owned))
            .collect();
        anon.sort();
        anon.dedup();
        assert_eq!(p.anonymous_ids, anon, "{root}: anonymous ids");
        let view =
            serde_json::to_value(p.view(DateTime::from_timestamp_millis(as_of).unwrap())).unwrap();
        let batch = batch_profile(events, as_of);
        assert_same(&format!("{root}.traits"), &view["traits"], &batch["traits"]);
        assert_same(
            &format!("{root}.computed"),
            &view["computed"],
            &batch["computed"],
        );
    }
}
