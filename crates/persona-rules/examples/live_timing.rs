//! Times the segment stage's work for one changed profile, the issue's "work added per
//! event": the profile's view, 100 rule segments and an active K-Means model (k = 8, 20
//! features) evaluated on it, and the entry and exit events (`reevaluate`); beside one rule
//! alone and the model alone: `cargo run --release -p persona-rules --example live_timing`.

use std::time::Instant;

use chrono::Utc;
use persona_core::profile::{ComputedView, Profile, ProfileView};
use persona_rules::live::{ModelDoc, ModelStatus, Scope, reevaluate};
use persona_rules::{Live, LiveModel, LiveSegment, Reason, Rule};
use persona_segment::pipeline::{NumberOr, TrainSpec, train};
use persona_segment::{Column, Values};
use persona_store::{ChangeSet, SegmentDef};
use rand::{Rng, SeedableRng};

fn main() {
    let view = ProfileView {
        user_id: Some("u1".into()),
        aliases: Default::default(),
        anonymous_ids: Default::default(),
        traits: serde_json::json!({"country": "DE"})
            .as_object()
            .unwrap()
            .clone()
            .into(),
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
    let segments: Vec<LiveSegment> = (1..)
        .zip(persona_rules::bench::typical_rules(100))
        .map(|(i, rule)| LiveSegment {
            rule: Rule::compile(&rule).unwrap(),
            def: SegmentDef {
                id: i,
                name: format!("segment {i}"),
                rule,
                created_at: 0,
                updated_at: 0,
                version: 1,
            },
        })
        .collect();
    let model = model_of_20_features();
    let live = Live {
        segments,
        models: vec![model.clone()],
    };
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
            &live,
            Utc::now(),
            Reason::Event,
            &Scope::All,
            &mut changes,
        );
    }
    println!(
        "{:.2} µs for one changed profile against 100 segments and the model (view, evaluation, assignment, diff, events; {} events the last time)",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds),
        changes.outbox.len()
    );
    let t = Instant::now();
    let mut sum = 0;
    for _ in 0..n {
        sum += model.assign(std::hint::black_box(&view)).unwrap_or(0);
    }
    println!(
        "{:.0} ns an assignment by the model alone (cluster sum {sum})",
        t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    );
}

/// A K-Means model with k = 8 on 20 computed features, trained on random customers.
fn model_of_20_features() -> LiveModel {
    let features: Vec<String> = persona_rules::schema::COMPUTED
        .iter()
        .filter(|f| f.ty == persona_rules::schema::Type::Number)
        .take(20)
        .map(|f| format!("computed.{}", f.name))
        .collect();
    assert_eq!(features.len(), 20);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let columns: Vec<Column> = features
        .iter()
        .map(|name| Column {
            name: name.clone(),
            values: Values::Numeric(
                (0..5_000)
                    .map(|_| Some(rng.random_range(0.0..100.0)))
                    .collect(),
            ),
        })
        .collect();
    let spec = TrainSpec {
        features: features.clone(),
        k: Some(NumberOr::Number(8)),
        ..TrainSpec::default()
    };
    let trained = train(&columns, &spec, &mut |_, _| {}).unwrap();
    let doc = ModelDoc {
        id: 1,
        name: "customers".into(),
        version: 1,
        status: ModelStatus::Ready,
        active: true,
        created_at: Utc::now(),
        trained_at: Some(Utc::now()),
        training_seconds: None,
        profiles: Some(5_000),
        model: trained.model(),
        summary: Some(trained.summary),
        spec,
        progress: None,
        error: None,
    };
    LiveModel::from_doc(&doc)
        .unwrap()
        .expect("active and ready")
}
