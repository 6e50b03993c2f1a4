//! `persona bench store`: the profile store on PostgreSQL, bare and with the Redis cache in
//! front, beside the embedded store, on the same synthetic log, in one run: the processor's
//! replay into each (events per second), then profile lookups from several threads at once
//! (lookups per second, p50 and p99). The embedded store is the reference; the ratios say
//! what moving profiles to database servers costs on the same machine.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use persona_store::{EmbeddedStore, IdentityKey, ProfileStore};
use persona_store_postgres::{PostgresConfig, PostgresStore};
use persona_store_redis::{CacheCounts, RedisCache, RedisConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::profiles::{Replay, build_log, replay_into};
use crate::cli::BenchStoreArgs;

#[derive(Debug, Serialize)]
struct Lookups {
    threads: usize,
    lookups: usize,
    misses: usize,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Debug, Serialize)]
struct Side {
    replay: Replay,
    lookups: Lookups,
}

#[derive(Debug, Serialize)]
struct Report {
    profiles: usize,
    events: u64,
    embedded: Side,
    postgres: Side,
    postgres_redis: Side,
    postgres_at: String,
    redis_at: String,
    /// PostgreSQL's rate over the embedded store's: replay, then lookups; then the same
    /// with the Redis cache in front.
    replay_ratio: f64,
    lookup_ratio: f64,
    cached_replay_ratio: f64,
    cached_lookup_ratio: f64,
}

pub async fn store(args: BenchStoreArgs) -> anyhow::Result<()> {
    // The schema is dropped before and after: never one that could hold real profiles.
    persona_store_postgres::check_schema_name(&args.schema)
        .map_err(|e| anyhow::anyhow!("--schema: {e}"))?;
    if !args.schema.starts_with("persona_bench") {
        anyhow::bail!(
            "--schema must start with persona_bench: the bench drops it before and after the run"
        );
    }
    let dir = tempfile::tempdir()?;
    let log_dir = dir.path().join("log");
    build_log(&log_dir, args.profiles, args.events_per_profile).await?;
    let config = PostgresConfig {
        url: args.postgres.clone(),
        schema: args.schema.clone(),
        read_connections: args.threads,
    };
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<Report> {
        let embedded: Arc<dyn ProfileStore> =
            Arc::new(EmbeddedStore::open(dir.path().join("profiles"))?);
        let embedded = measure("embedded", embedded, &log_dir, &args)?;
        drop_schema(&config)?;
        let postgres: Arc<dyn ProfileStore> = Arc::new(
            PostgresStore::open(&config)
                .with_context(|| format!("cannot open {}", config.describe()))?,
        );
        let postgres = measure("PostgreSQL", postgres, &log_dir, &args)?;
        drop_schema(&config)?;
        let cache = RedisConfig {
            url: args.redis.clone(),
            ca_file: None,
            ttl: Duration::from_secs(600),
            namespace: format!("{}:{}", args.schema, std::process::id()),
        };
        let store = PostgresStore::open(&config)
            .with_context(|| format!("cannot open {}", config.describe()))?;
        let counts = CacheCounts::default();
        let cached: Arc<dyn ProfileStore> =
            Arc::new(RedisCache::new(Arc::new(store), &cache, counts.clone())?);
        let postgres_redis = measure("PostgreSQL with Redis", cached, &log_dir, &args)?;
        drop_schema(&config)?;
        if counts.errors.get() > 0 {
            anyhow::bail!(
                "{} Redis calls failed at {}: the cached figures would be the store's",
                counts.errors.get(),
                args.redis
            );
        }
        let rate = |side: &Side| (side.replay.events_per_sec, side.lookups.per_sec);
        let (e, p, c) = (rate(&embedded), rate(&postgres), rate(&postgres_redis));
        Ok(Report {
            profiles: args.profiles,
            events: embedded.replay.events,
            replay_ratio: p.0 / e.0,
            lookup_ratio: p.1 / e.1,
            cached_replay_ratio: c.0 / e.0,
            cached_lookup_ratio: c.1 / e.1,
            embedded,
            postgres,
            postgres_redis,
            postgres_at: config.describe(),
            redis_at: args.redis.clone(),
        })
    })
    .await??;
    print_report(&report);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn measure(
    name: &str,
    store: Arc<dyn ProfileStore>,
    log_dir: &Path,
    args: &BenchStoreArgs,
) -> anyhow::Result<Side> {
    eprintln!("{name}: replaying the log");
    let replay = replay_into(store.clone(), log_dir, None)?;
    eprintln!(
        "{name}: {} events in {:.1} s = {:.0} events/s; looking profiles up",
        replay.events, replay.seconds, replay.events_per_sec
    );
    let lookups = lookups(
        &store,
        args.profiles,
        args.threads,
        Duration::from_secs_f64(args.seconds),
    )?;
    Ok(Side { replay, lookups })
}

/// Looks random customers up from `threads` threads for `duration`.
fn lookups(
    store: &Arc<dyn ProfileStore>,
    customers: usize,
    threads: usize,
    duration: Duration,
) -> anyhow::Result<Lookups> {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || -> anyhow::Result<(Vec<u32>, usize)> {
                let mut rng = ChaCha8Rng::seed_from_u64(t as u64);
                let (mut took, mut misses) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("bench-{}", rng.random_range(0..customers.max(1)));
                    let started = Instant::now();
                    let found = store.lookup(&IdentityKey::User(&key))?;
                    took.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    misses += usize::from(found.is_none());
                }
                Ok((took, misses))
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let (mut took, mut misses) = (Vec::new(), 0);
    for w in workers {
        let (t, m) = w.join().expect("lookup thread")?;
        took.extend(t);
        misses += m;
    }
    let seconds = started.elapsed().as_secs_f64();
    took.sort_unstable();
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .map_or(0.0, |&v| v as f64)
    };
    Ok(Lookups {
        threads,
        lookups: took.len(),
        misses,
        per_sec: took.len() as f64 / seconds,
        p50_us: at(0.50),
        p99_us: at(0.99),
    })
}

/// Removes the bench's schema, so each run starts empty and leaves nothing behind.
fn drop_schema(config: &PostgresConfig) -> anyhow::Result<()> {
    let connection = config.connection().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = connection
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", config.describe()))?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", config.schema))
            .await?;
        Ok(())
    })
}

fn print_report(r: &Report) {
    println!(
        "profile store: {} customers, {} events replayed; PostgreSQL at {}, Redis at {}",
        r.profiles, r.events, r.postgres_at, r.redis_at
    );
    println!("| | embedded | PostgreSQL | ratio | PostgreSQL + Redis | ratio |");
    println!("|---|---|---|---|---|---|");
    let (e, p, c) = (&r.embedded, &r.postgres, &r.postgres_redis);
    println!(
        "| replay, events/s | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} |",
        e.replay.events_per_sec,
        p.replay.events_per_sec,
        r.replay_ratio,
        c.replay.events_per_sec,
        r.cached_replay_ratio
    );
    println!(
        "| lookups/s ({} threads) | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} |",
        e.lookups.threads,
        e.lookups.per_sec,
        p.lookups.per_sec,
        r.lookup_ratio,
        c.lookups.per_sec,
        r.cached_lookup_ratio
    );
    let latency = |s: &Side| format!("{:.0} / {:.0}", s.lookups.p50_us, s.lookups.p99_us);
    println!(
        "| lookup p50 / p99, µs | {} | {} | | {} | |",
        latency(e),
        latency(p),
        latency(c)
    );
}
