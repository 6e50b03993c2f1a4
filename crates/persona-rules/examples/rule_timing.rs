//! Times rule evaluation on one profile: `cargo run --release --example rule_timing`.

use std::time::Instant;

use chrono::Utc;
use persona_core::profile::{ComputedView, ProfileView};
use persona_rules::Rule;

fn main() {
    let profile = ProfileView {
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
        hits += usize::from(rule.matches(std::hint::black_box(&profile)));
    }
    println!(
        "{:.0} ns an evaluation of the issue's four-condition rule ({hits} matches)",
        t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    );
}
