//! `persona bench segments`: the live-segment targets, measured together.
//!
//! 1. Builds a store of synthetic customers with varied behaviour (written straight into
//!    the store, as the processor would have left it).
//! 2. Back-fill: a new segment evaluated over every stored profile by the stream stage,
//!    once for a segment a tenth of the customers enter and once for one all of them enter.
//! 3. Training: the live model (`POST /v1/models`' training on the stored profiles) beside
//!    `persona cluster` on the same features exported to CSV, as a ratio.
//! 4. Work added per event: the simulator's traffic replayed through the processor with no
//!    segment, then with 100 rule segments and the model just trained active.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use persona_core::profile::{EmailAction, Observation, ObservedKind, Profile, codec};
use persona_log::{EventLog, LogConfig, LogReader};
use persona_rules::live::models::{FeatureTable, feature};
use persona_rules::{ModelDoc, ModelStatus, SegmentRegistry};
use persona_segment::pipeline::{NumberOr, TrainSpec};
use persona_store::{ChangeSet, EmbeddedStore, IdentityKey, ProfileStore, SegmentDef};
use persona_stream::{Processor, ProcessorMetrics, ProcessorStatus, StreamConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::profiles::{Replay, build_simulated_log, replay};
use crate::cli::BenchSegmentsArgs;
use crate::client::progress_bar;

/// Profiles written per change set while building the store.
const WRITE_CHUNK: usize = 10_000;
const COUNTRIES: [&str; 5] = ["DE", "FR", "US", "AT", "CH"];
const CATEGORIES: [&str; 5] = ["shoes", "shirts", "bags", "home", "sale"];

#[derive(Debug, Serialize)]
struct Backfill {
    rule: String,
    segments_in_force: usize,
    profiles: u64,
    /// Entries into the segments of this step (each a membership and an event).
    entered: u64,
    seconds: f64,
    profiles_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Training {
    profiles: usize,
    features: usize,
    k: usize,
    live_seconds: f64,
    cluster_command_seconds: f64,
    /// Live training time over `persona cluster`'s: the target is at most 1.5.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct PerEvent {
    plain: Replay,
    with_segments_and_model: Replay,
    segments: usize,
    /// The difference in replay time per event: the target is under 20 µs.
    added_micros_per_event: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    profiles: u64,
    backfill: Vec<Backfill>,
    /// Absent with `--backfill-only`.
    training: Option<Training>,
    per_event: Option<PerEvent>,
}

pub async fn segments(args: BenchSegmentsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_path_buf();
    let (backfill, trained) = {
        let data = data.clone();
        let (profiles, train) = (args.profiles, !args.backfill_only);
        let exe = std::env::current_exe()?;
        tokio::task::spawn_blocking(move || stored_phases(&data, profiles, train.then_some(&*exe)))
            .await??
    };
    let mut report = Report {
        profiles: args.profiles as u64,
        backfill,
        training: None,
        per_event: None,
    };
    if let Some((training, model)) = trained {
        report.training = Some(training);
        report.per_event = Some(per_event(dir.path(), args.replay_customers, model).await?);
    }
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// The simulator's traffic replayed plain, then with 100 rule segments and `model` in force.
async fn per_event(dir: &Path, customers: usize, model: ModelDoc) -> anyhow::Result<PerEvent> {
    let simulated = dir.join("simulated");
    build_simulated_log(&simulated.join("log"), customers).await?;
    let plain = replay(&simulated, None).await?;
    std::fs::remove_dir_all(simulated.join("profiles"))?;
    let registry = Arc::new(SegmentRegistry::default());
    let rules = persona_rules::bench::typical_rules(100);
    registry.replace_segments(definitions(&rules));
    registry.replace_models(&[model]);
    let with = replay(&simulated, Some(registry)).await?;
    Ok(PerEvent {
        added_micros_per_event: (with.seconds - plain.seconds) * 1e6 / plain.events as f64,
        plain,
        with_segments_and_model: with,
        segments: rules.len(),
    })
}

fn definitions(rules: &[String]) -> Vec<SegmentDef> {
    (1..)
        .zip(rules)
        .map(|(id, rule)| SegmentDef {
            id,
            name: format!("segment {id}"),
            rule: rule.clone(),
            created_at: 0,
            updated_at: 0,
            version: 1,
        })
        .collect()
}

/// The back-fills, and the training with the model it made (absent with `--backfill-only`).
type StoredPhases = (Vec<Backfill>, Option<(Training, ModelDoc)>);

/// The phases over the big store: build it, back-fill, and train unless `exe` (for
/// `persona cluster`) is `None`. Returns the trained model too.
fn stored_phases(data: &Path, profiles: usize, exe: Option<&Path>) -> anyhow::Result<StoredPhases> {
    let store = Arc::new(EmbeddedStore::open(data.join("profiles"))?);
    build_store(&*store, profiles)?;
    store.compact()?;
    // A processor over an empty log: all it does is the segment passes.
    let log_dir = data.join("log");
    drop(EventLog::open(
        &log_dir,
        LogConfig::default(),
        Arc::new(()),
    )?);
    let registry = Arc::new(SegmentRegistry::default());
    let mut processor = Processor::new(
        store.clone(),
        LogReader::open_dir(&log_dir)?,
        StreamConfig::default().validate()?,
        Arc::new(ProcessorStatus::default()),
        ProcessorMetrics::new(),
    )?
    .with_segments(registry.clone());
    let mut backfill = Vec::new();
    let mut rules = Vec::new();
    // A segment a fifth of the customers enter, then one all of them enter, then 100 at
    // once, then one more with those 102 in force (only the new one is evaluated).
    let typical = persona_rules::bench::typical_rules(100);
    let steps: [&[String]; 4] = [
        &["computed.monetary > 400".into()],
        &["computed.event_count >= 1".into()],
        &typical,
        &["computed.monetary > 400 AND computed.sessions >= 2".into()],
    ];
    for step in steps {
        rules.extend_from_slice(step);
        registry.replace_segments(definitions(&rules));
        let started = Instant::now();
        processor.run_to_end()?;
        let seconds = started.elapsed().as_secs_f64();
        let b = Backfill {
            rule: match step {
                [one] => one.clone(),
                many => format!("{} segments at once", many.len()),
            },
            segments_in_force: rules.len(),
            profiles: profiles as u64,
            entered: (rules.len() - step.len() + 1..=rules.len())
                .map(|id| store.member_count(id as u64))
                .sum::<Result<u64, _>>()?,
            seconds,
            profiles_per_sec: profiles as f64 / seconds,
        };
        eprintln!(
            "back-fill of `{}` over {} profiles: {} entered in {:.2} s",
            b.rule, b.profiles, b.entered, b.seconds
        );
        backfill.push(b);
    }
    let trained = exe.map(|exe| training(&*store, data, exe)).transpose()?;
    Ok((backfill, trained))
}

/// Writes `n` customers with varied behaviour over the last 120 days into the store.
fn build_store(store: &dyn ProfileStore, n: usize) -> anyhow::Result<()> {
    let bar = progress_bar(n as u64, "building profiles");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let now = Utc::now().timestamp_millis();
    let mut changes = ChangeSet::default();
    for first in (0..n).step_by(WRITE_CHUNK) {
        changes.clear();
        let end = (first + WRITE_CHUNK).min(n);
        for i in first..end {
            let id = i as u64 + 1;
            let user = format!("customer-{i}");
            let p = customer(&mut rng, &user, now);
            changes.profiles.push((id, codec::encode(&p)));
            changes
                .links
                .push((IdentityKey::User(&user).storage_key(), id));
        }
        changes.created = (end - first) as u64;
        changes.next_id = end as u64 + 1;
        store.apply(&changes)?;
        bar.inc((end - first) as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// One customer: a few to a few dozen page views, product views, purchases, emails and
/// app opens at random times.
fn customer(rng: &mut ChaCha8Rng, user: &str, now: i64) -> Profile {
    let mut p = Profile {
        user_id: Some(user.to_owned()),
        ..Profile::default()
    };
    let serde_json::Value::Object(traits) = serde_json::json!({
        "country": COUNTRIES[rng.random_range(0..COUNTRIES.len())],
        "age": rng.random_range(18..80),
    }) else {
        unreachable!("an object")
    };
    persona_core::profile::set_all(&mut p.traits, &traits, now);
    let engagement: f64 = rng.random_range(0.0..1.0);
    let events = 1 + (engagement * engagement * 40.0) as usize;
    let spend = rng.random_range(5.0..300.0);
    for _ in 0..events {
        let at = now - rng.random_range(0..120 * persona_core::profile::DAY_MS);
        let kind = match rng.random_range(0..10) {
            0..=3 => ObservedKind::View {
                screen: false,
                category: Some(CATEGORIES[rng.random_range(0..CATEGORIES.len())]),
            },
            4 | 5 => track("Product Viewed", None, None, false),
            6 => track(
                "Order Completed",
                Some(spend * rng.random_range(0.5..1.5)),
                None,
                false,
            ),
            7 => track("Email Opened", None, Some(EmailAction::Opened), false),
            8 => track(
                "Email Link Clicked",
                None,
                Some(EmailAction::Clicked),
                false,
            ),
            _ => track("Application Opened", None, None, true),
        };
        p.activity.observe(&Observation { at, kind }, 30 * 60_000);
    }
    p
}

fn track(
    name: &str,
    purchase: Option<f64>,
    email: Option<EmailAction>,
    app_open: bool,
) -> ObservedKind<'_> {
    ObservedKind::Track {
        name,
        purchase,
        email,
        app_open,
    }
}

/// The features both trainings use: 20 numeric computed fields.
fn feature_names() -> Vec<String> {
    persona_rules::schema::COMPUTED
        .iter()
        .filter(|f| f.ty == persona_rules::schema::Type::Number)
        .take(20)
        .map(|f| format!("computed.{}", f.name))
        .collect()
}

/// The live training on the store, then `persona cluster` on the same features in a CSV.
fn training(
    store: &dyn ProfileStore,
    data: &Path,
    exe: &Path,
) -> anyhow::Result<(Training, ModelDoc)> {
    let features = feature_names();
    let k = 8;
    let spec = TrainSpec {
        features: features.clone(),
        k: Some(NumberOr::Number(k)),
        ..TrainSpec::default()
    };
    let mut doc = ModelDoc {
        id: 1,
        name: "bench".into(),
        version: 1,
        status: ModelStatus::Training,
        active: true,
        created_at: Utc::now(),
        trained_at: None,
        training_seconds: None,
        profiles: None,
        spec,
        progress: None,
        error: None,
        summary: None,
        model: None,
    };
    let started = Instant::now();
    persona_api::train_on_profiles(store, &mut doc).map_err(anyhow::Error::msg)?;
    let live_seconds = started.elapsed().as_secs_f64();
    doc.status = ModelStatus::Ready;
    eprintln!("live training on the stored profiles: {live_seconds:.2} s");

    let csv = data.join("features.csv");
    let profiles = export_features(store, &features, &csv)?;
    let started = Instant::now();
    let out = Command::new(exe)
        .args(["cluster", "--input"])
        .arg(&csv)
        .args([
            "--features",
            &features.join(","),
            "--k",
            &k.to_string(),
            "--json",
        ])
        .output()
        .context("cannot run persona cluster")?;
    let cluster_command_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "persona cluster failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("persona cluster on the same features: {cluster_command_seconds:.2} s");
    Ok((
        Training {
            profiles,
            features: features.len(),
            k,
            live_seconds,
            cluster_command_seconds,
            ratio: live_seconds / cluster_command_seconds,
        },
        doc,
    ))
}

/// Writes every profile's features as of now to a CSV, as the live training reads them.
fn export_features(
    store: &dyn ProfileStore,
    features: &[String],
    path: &Path,
) -> anyhow::Result<usize> {
    let fields = features
        .iter()
        .map(|f| Ok((f.clone(), feature(f)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut table = FeatureTable::new(fields, &[]);
    let now = Utc::now();
    persona_store::for_each_page(store, WRITE_CHUNK, |page| {
        for (_, p) in page {
            table.push(&p.view(now));
        }
        anyhow::Ok(())
    })?;
    let rows = table.rows();
    let columns = table.finish();
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(features)?;
    let mut record = Vec::with_capacity(columns.len());
    for i in 0..rows {
        record.clear();
        for c in &columns {
            record.push(match &c.values {
                persona_segment::Values::Numeric(v) => {
                    v[i].map_or(String::new(), |x| x.to_string())
                }
                persona_segment::Values::Categorical(v) => v[i].clone().unwrap_or_default(),
            });
        }
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(rows)
}

fn print_report(r: &Report) {
    println!("profiles: {}", r.profiles);
    for b in &r.backfill {
        println!(
            "back-fill of `{}` ({} segments in force): {} profiles in {:.2} s ({:.0} profiles/s), {} entries",
            b.rule, b.segments_in_force, b.profiles, b.seconds, b.profiles_per_sec, b.entered
        );
    }
    if let Some(t) = &r.training {
        println!(
            "model training on {} profiles, {} features, k = {}: live {:.2} s, persona cluster {:.2} s, ratio {:.2}",
            t.profiles, t.features, t.k, t.live_seconds, t.cluster_command_seconds, t.ratio
        );
    }
    let Some(e) = &r.per_event else { return };
    println!(
        "replay of simulated traffic, {} events: {:.0} events/s plain, {:.0} events/s with {} rule segments and the model; work added per event {:.2} µs",
        e.plain.events,
        e.plain.events_per_sec,
        e.with_segments_and_model.events_per_sec,
        e.segments,
        e.added_micros_per_event
    );
}
