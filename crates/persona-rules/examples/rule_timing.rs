//! Times the segment stage's work for one changed profile: the profile's view, 100 rule
//! segments evaluated on it and the membership diff (`reevaluate`), beside one rule alone:
//! `cargo run --release --example rule_timing`.

use std::time::Instant;

use chrono::Utc;
use persona_core::profile::{ComputedView, Profile, ProfileView};
use persona_rules::live::reevaluate;
use persona_rules::{LiveSegment, Reason, Rule};
use persona_store::{ChangeSet, SegmentDef};

fn main() {
    let view = ProfileView {
        user_id: Some("u1".into()),
        aliases: vec![],
        anonymous_ids: vec![],
        traits: serde_json::json!({"country": "DE"})
            .as_object()
            .unwrap()
            .clone(),
        computed: ComputedView {
            frequency: 4,
            monetary: 250.0,
            recency_days: Some(12),
            ..ComputedView::default()
        },
        as_of: Utc::now(),
    };
    let rule = Rule::compile(
        "computed.frequency >= 3 AND computed.monetary > 200 AND traits.country = 'DE' AND computed.recency_days <= 30",
    )
    .unwrap();
    let n = 1_000_000;
    let t = Instant::now();
    let mut hits = 0;
    for _ in 0..n {
        hits += usize::from(rule.matches(std::hint::black_box(&view)));
    }
    println!(
        "{:.0} ns an evaluation of the issue's four-condition rule ({hits} matches)",
        t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    );

    // 100 segments of the shapes people write, with thresholds spread so some match.
    let shapes = [
        "computed.frequency >= {}",
        "computed.monetary > {} AND traits.country = 'DE'",
        "computed.recency_days <= {} AND computed.frequency >= 2",
        "computed.events.\"Product Viewed\" >= {} OR computed.email_clicks > 0",
        "traits.country IN ('DE', 'AT', 'CH') AND computed.sessions >= {}",
    ];
    let segments: Vec<LiveSegment> = (0..100u64)
        .map(|i| {
            let rule = shapes[i as usize % shapes.len()].replace("{}", &(i * 3).to_string());
            LiveSegment {
                rule: Rule::compile(&rule).unwrap(),
                def: SegmentDef {
                    id: i + 1,
                    name: format!("segment {i}"),
                    rule,
                    created_at: 0,
                    updated_at: 0,
                    version: 1,
                },
            }
        })
        .collect();
    let mut profile = Profile {
        user_id: Some("u1".into()),
        ..Profile::default()
    };
    profile.activity.event_count = 40;
    profile.activity.purchases = 4;
    profile.activity.revenue_micros = 250_000_000;
    let mut changes = ChangeSet::default();
    let rounds = 100_000;
    let t = Instant::now();
    for round in 0..rounds {
        // Alternate two states so memberships move and events are written every time.
        profile.activity.purchases = if round % 2 == 0 { 4 } else { 40 };
        changes.clear();
        reevaluate(
            1,
            &mut profile,
            &segments,
            Utc::now(),
            Reason::Event,
            &mut changes,
        );
    }
    println!(
        "{:.2} µs for one changed profile against 100 segments (view, evaluation, diff; {} membership changes the last time)",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds),
        changes.memberships.len()
    );
}
