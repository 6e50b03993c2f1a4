//! `persona bench profiles`: the live-profile targets of the brief, measured together.
//!
//! 1. Builds a log of synthetic customers (events interleaved across customers, as live
//!    traffic is, so every micro-batch touches thousands of distinct profiles) and replays it
//!    through the processor: events per second.
//! 2. Store size per profile.
//! 3. `GET /v1/profiles/{key}` at a fixed rate over random customers, beside
//!    `redis-benchmark` GET over as many keys of the same size on the same machine.
//! 4. Freshness: from a collector's 200 to the profile showing the event, under background
//!    ingest load.
//! 5. The RSS of `persona serve` holding all of it.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use persona_collector::normalize::{Envelope, normalize_value};
use persona_log::{EventLog, LogConfig, LogReader};
use persona_rules::SegmentRegistry;
use persona_store::{EmbeddedStore, ProfileStore};
use persona_stream::{Processor, ProcessorMetrics, ProcessorStatus, StreamConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{Conn, Phase, Req, Server, WRITE_KEY, open_loop};
use crate::cli::BenchProfilesArgs;
use crate::client::progress_bar;

#[derive(Debug, Serialize)]
pub(super) struct Replay {
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    profiles: u64,
    /// Replay of simulated customer traffic (sessions: a customer's events come together).
    replay_simulated: Replay,
    /// Replay of the synthetic log behind the read phase: every event of a batch belongs to
    /// a different customer, the worst case for the store.
    replay: Option<Replay>,
    store_bytes: u64,
    store_bytes_per_profile: u64,
    reads: Phase,
    noop_reads: Phase,
    redis_get: Option<RedisGet>,
    p99_ratio_persona_vs_redis: Option<f64>,
    freshness: Freshness,
    ingest_load: Phase,
    serve_rss_bytes: Option<u64>,
}

pub async fn profiles(args: BenchProfilesArgs) -> anyhow::Result<()> {
    let simulated = {
        let dir = tempfile::tempdir()?;
        build_simulated_log(&dir.path().join("log"), args.simulated_customers).await?;
        replay(dir.path(), None).await?
    };
    eprintln!(
        "replay of simulated traffic: {} events in {:.1} s = {:.0} events/s",
        simulated.events, simulated.seconds, simulated.events_per_sec
    );
    let temp;
    let data = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let store_path = data.join("profiles");
    let replay = if store_path.exists() {
        eprintln!("reusing the profiles in {}", data.display());
        None
    } else {
        let log_dir = data.join("log");
        if !log_dir.exists() || persona_log::LogStats::read(&log_dir)?.records == 0 {
            build_log(&log_dir, args.profiles, args.events_per_profile).await?;
        }
        Some(replay(&data, None).await?)
    };
    if args.replay_only {
        if let Some(r) = &replay {
            println!(
                "processor replay, synthetic worst case: {} events in {:.1} s = {:.0} events/s",
                r.events, r.seconds, r.events_per_sec
            );
        }
        return Ok(());
    }
    let (profiles, store_bytes) = {
        let store = EmbeddedStore::open(&store_path)?;
        (store.count()?, store.disk_bytes()?)
    };
    let per_profile = store_bytes.checked_div(profiles).unwrap_or(0);
    if let Some(r) = &replay {
        eprintln!(
            "replay: {} events in {:.1} s = {:.0} events/s; store {} bytes, {per_profile} per profile",
            r.events, r.seconds, r.events_per_sec, store_bytes
        );
    }

    let exe = std::env::current_exe()?;
    let mut noop = Server::start(Command::new(&exe).args(["bench", "noop-server"]))?;
    let duration = Duration::from_secs_f64(args.seconds);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // The synthetic customers (a reused folder may also hold earlier runs' probes).
    let customers = profiles.min(args.profiles as u64).max(1);
    let reads: Vec<Req> = (0..20_000)
        .map(|_| {
            Req::Get(format!(
                "/v1/profiles/user_id:bench-{}",
                rng.random_range(0..customers)
            ))
        })
        .collect();
    let noop_reads = open_loop(
        noop.addr,
        &reads,
        args.connections as usize,
        duration,
        args.read_rate,
        1,
    )
    .await?
    .named(&format!(
        "no-op axum GET at {:.0}/s (the HTTP floor)",
        args.read_rate
    ));
    noop.stop();
    // Started only now, so that its start-up (opening the store, warming the store's cache)
    // does not share the cores with the no-op handler's measurement.
    let mut server = Server::serve(&data, &[])?;
    // Warm the connections a little, as a running site would have, and give the start-up
    // time to finish.
    open_loop(
        server.addr,
        &reads,
        args.connections as usize,
        Duration::from_secs(3),
        args.read_rate,
        1,
    )
    .await?;
    let reads = open_loop(
        server.addr,
        &reads,
        args.connections as usize,
        duration,
        args.read_rate,
        1,
    )
    .await?
    .named(&format!(
        "persona GET /v1/profiles/{{key}} at {:.0}/s",
        args.read_rate
    ));

    let redis_get = match redis_get(&args, profiles, per_profile as usize) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("redis-benchmark not measured: {e:#}");
            None
        }
    };
    let (freshness, ingest_load) = freshness(&server, &args, duration).await?;
    let rss = rss_bytes(server.child.id());
    server.stop();

    let report = Report {
        profiles,
        replay_simulated: simulated,
        replay,
        store_bytes,
        store_bytes_per_profile: per_profile,
        p99_ratio_persona_vs_redis: redis_get.as_ref().map(|r| reads.p99_ms / r.p99_ms),
        reads,
        noop_reads,
        redis_get,
        freshness,
        ingest_load,
        serve_rss_bytes: rss,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("profiles: {}", r.profiles);
    let s = &r.replay_simulated;
    println!(
        "processor replay, simulated traffic: {} events in {:.1} s = {:.0} events/s",
        s.events, s.seconds, s.events_per_sec
    );
    if let Some(replay) = &r.replay {
        println!(
            "processor replay, synthetic worst case (each event of a batch a different customer): {} events in {:.1} s = {:.0} events/s",
            replay.events, replay.seconds, replay.events_per_sec
        );
    }
    println!(
        "store: {} bytes, {} bytes per profile",
        r.store_bytes, r.store_bytes_per_profile
    );
    println!(
        "{:<52} {:>10} {:>8} {:>8} {:>8} {:>6}",
        "reads", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for p in [&r.reads, &r.noop_reads] {
        println!(
            "{:<52} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>6}",
            p.name, p.requests_per_sec, p.p50_ms, p.p99_ms, p.max_ms, p.errors
        );
    }
    if let Some(g) = &r.redis_get {
        println!(
            "{:<52} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>6}",
            format!("redis-benchmark GET, {} clients, unpaced", g.clients),
            g.requests_per_sec,
            g.p50_ms,
            g.p99_ms,
            g.max_ms,
            0
        );
    }
    if let Some(ratio) = r.p99_ratio_persona_vs_redis {
        println!("p99 read latency, persona vs redis: {ratio:.2}");
    }
    println!(
        "p99 read latency, persona vs the no-op HTTP handler: {:.2}",
        r.reads.p99_ms / r.noop_reads.p99_ms
    );
    println!(
        "freshness (200 from the collector to the profile showing the event) under {:.0} events/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} probes ({} not seen)",
        r.ingest_load.events_per_sec,
        r.freshness.p50_ms,
        r.freshness.p99_ms,
        r.freshness.max_ms,
        r.freshness.probes,
        r.freshness.timed_out
    );
    if let Some(rss) = r.serve_rss_bytes {
        println!(
            "persona serve RSS: {:.0} MiB",
            rss as f64 / (1 << 20) as f64
        );
    }
}

const COUNTRIES: [&str; 3] = ["DE", "FR", "US"];

/// Writes `profiles` × `events` synthetic events, interleaved across customers.
pub(super) async fn build_log(dir: &Path, profiles: usize, events: usize) -> anyhow::Result<()> {
    let (log, _) = EventLog::open(dir, LogConfig::default(), Arc::new(()))?;
    let bar = progress_bar((profiles * events) as u64, "writing the log");
    let mut pending = Vec::with_capacity(10_000);
    for m in synthetic_messages(profiles, events) {
        let mut m = m;
        let o = m.as_object_mut().expect("object");
        // As the collector would have stored them.
        o.insert("receivedAt".into(), o["timestamp"].clone());
        o.insert("writeKey".into(), WRITE_KEY.into());
        pending.push(serde_json::to_vec(&m)?);
        if pending.len() == pending.capacity() {
            bar.inc(pending.len() as u64);
            log.append(std::mem::take(&mut pending)).await?;
            pending.reserve(10_000);
        }
    }
    bar.inc(pending.len() as u64);
    log.append(pending).await?;
    bar.finish_and_clear();
    Ok(())
}

/// `profiles` × `events` Segment messages as a sender would send them, interleaved across
/// customers: a page view, an identify, then product views with every third event a
/// purchase.
pub(super) fn synthetic_messages(
    profiles: usize,
    events: usize,
) -> impl Iterator<Item = serde_json::Value> {
    let start = Utc
        .with_ymd_and_hms(2026, 9, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    (0..events).flat_map(move |round| {
        (0..profiles).map(move |i| {
            let at = start + (round as i64) * 86_400_000 + (i as i64 % 86_400) * 1000;
            let ts = persona_core::time::format_timestamp(
                chrono::DateTime::from_timestamp_millis(at).expect("in range"),
            );
            let (user, anon) = (format!("bench-{i}"), format!("anon-{i}"));
            let mut m = match round {
                0 => {
                    json!({"type": "page", "anonymousId": anon, "name": "Home", "category": "home",
                            "properties": {"path": "/", "category": "home"}})
                }
                1 => json!({"type": "identify", "anonymousId": anon, "userId": user,
                            "traits": {"email": format!("{user}@example.com"), "country": COUNTRIES[i % 3], "plan": "free"}}),
                r if r % 3 == 0 => {
                    json!({"type": "track", "userId": user, "event": "Order Completed",
                            "properties": {"order_id": format!("o-{i}-{r}"), "revenue": 20.0 + (i % 100) as f64, "currency": "USD"}})
                }
                _ => json!({"type": "track", "userId": user, "event": "Product Viewed",
                            "properties": {"product_id": format!("sku-{}", i % 500), "price": 19.99, "category": "shirts"}}),
            };
            let o = m.as_object_mut().expect("object");
            o.insert("messageId".into(), format!("m-{round}-{i}").into());
            o.insert("timestamp".into(), ts.into());
            o.insert(
                "context".into(),
                json!({"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 Chrome/126.0"}),
            );
            m
        })
    })
}

/// Writes the simulator's traffic for `customers` over 90 days, validated as `import` does.
pub(super) async fn build_simulated_log(dir: &Path, customers: usize) -> anyhow::Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let period = persona_simulate::Period {
        start,
        end: start + chrono::Duration::days(90),
    };
    let bar = progress_bar(customers as u64, "simulating");
    let (_, lines) = persona_simulate::generate(42, customers, period, || bar.inc(1));
    bar.finish_and_clear();
    let (log, _) = EventLog::open(dir, LogConfig::default(), Arc::new(()))?;
    let envelope = Envelope {
        received_at: Utc::now(),
        write_key: Some(WRITE_KEY.into()),
        ..Envelope::default()
    };
    for chunk in lines.chunks(10_000) {
        let mut payloads = Vec::with_capacity(chunk.len());
        for (n, (_, line)) in chunk.iter().enumerate() {
            let m = normalize_value(serde_json::from_str(line)?, None, n, &envelope)
                .map_err(|e| anyhow::anyhow!("simulated message rejected: {e:?}"))?;
            payloads.push(m.bytes);
        }
        log.append(payloads).await?;
    }
    Ok(())
}

/// Runs a fresh processor over the whole log, as a restart with an empty store would,
/// evaluating the segments and models of `registry` when given.
pub(super) async fn replay(
    data: &Path,
    registry: Option<Arc<SegmentRegistry>>,
) -> anyhow::Result<Replay> {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let store = Arc::new(EmbeddedStore::open(data.join("profiles"))?);
        let replay = replay_into(store.clone(), &data.join("log"), registry)?;
        // Settle the store as a long-running server's would be, before it is read.
        store.compact()?;
        Ok(replay)
    })
    .await?
}

/// Runs a fresh processor over the log in `log_dir` into `store`, on the calling thread.
pub(super) fn replay_into(
    store: Arc<dyn ProfileStore>,
    log_dir: &Path,
    registry: Option<Arc<SegmentRegistry>>,
) -> anyhow::Result<Replay> {
    let reader = LogReader::open_dir(log_dir)?;
    let config = StreamConfig::default().validate()?;
    let mut p = Processor::new(
        store,
        reader,
        config,
        Arc::new(ProcessorStatus::default()),
        ProcessorMetrics::new(),
    )?;
    if let Some(registry) = registry {
        p = p.with_segments(registry);
    }
    let started = Instant::now();
    let events = p.run_to_end()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Replay {
        events,
        seconds,
        events_per_sec: events as f64 / seconds,
    })
}

#[derive(Debug, Serialize)]
struct RedisGet {
    clients: usize,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Fills redis database 15 with as many values of the profiles' stored size, then runs
/// `redis-benchmark` GET over random keys; the database is flushed afterwards.
fn redis_get(args: &BenchProfilesArgs, keys: u64, value_bytes: usize) -> anyhow::Result<RedisGet> {
    let (host, port) = args
        .redis
        .rsplit_once(':')
        .context("--redis must be HOST:PORT")?;
    let cli = |extra: &[&str]| {
        Command::new("redis-cli")
            .args(["-h", host, "-p", port, "-n", "15"])
            .args(extra)
            .output()
            .context("redis-cli is not installed")
    };
    let pong = cli(&["ping"])?;
    anyhow::ensure!(
        pong.stdout.starts_with(b"PONG"),
        "redis at {} does not answer",
        args.redis
    );
    // redis-benchmark's random keys are `key:` and 12 digits; write exactly those.
    let value = "v".repeat(value_bytes.max(1));
    let mut child = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "-n", "15", "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped"));
        for k in 0..keys {
            let key = format!("key:{k:012}");
            write!(
                stdin,
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )?;
        }
    }
    anyhow::ensure!(child.wait()?.success(), "filling redis failed");
    let requests = ((args.read_rate * args.seconds) as u64)
        .max(10_000)
        .to_string();
    let clients = args.connections.to_string();
    let out = Command::new("redis-benchmark")
        .args([
            "-h", host, "-p", port, "--dbnum", "15", "-t", "get", "--csv",
        ])
        .args([
            "-n",
            &requests,
            "-c",
            &clients,
            "-r",
            &keys.to_string(),
            "-d",
            &value_bytes.to_string(),
        ])
        .output()
        .context("redis-benchmark is not installed")?;
    let _ = cli(&["flushdb"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row = text
        .lines()
        .find(|l| l.starts_with("\"GET\""))
        .with_context(|| format!("unexpected redis-benchmark output: {text}"))?;
    let cells: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|c| c.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    anyhow::ensure!(cells.len() >= 7, "unexpected redis-benchmark row: {row}");
    Ok(RedisGet {
        clients: args.connections as usize,
        requests_per_sec: cells[0],
        p50_ms: cells[3],
        p99_ms: cells[5],
        max_ms: cells[6],
    })
}

#[derive(Debug, Serialize)]
struct Freshness {
    probes: usize,
    timed_out: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Probes freshness every 20 ms while batches of 100 events arrive at the configured rate.
async fn freshness(
    server: &Server,
    args: &BenchProfilesArgs,
    duration: Duration,
) -> anyhow::Result<(Freshness, Phase)> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let batches: Vec<Req> = (0..256)
        .map(|_| {
            let batch: Vec<_> = (0..100)
                .map(|_| {
                    json!({"type": "track", "userId": format!("bench-{}", rng.random_range(0..args.profiles.max(1))),
                           "event": "Product Viewed", "properties": {"product_id": "sku-1", "price": 19.99}})
                })
                .collect();
            Req::Post("/v1/batch", Bytes::from(json!({"batch": batch}).to_string()))
        })
        .collect();
    let load = open_loop(
        server.addr,
        &batches,
        4,
        duration,
        args.load_events_per_sec / 100.0,
        100,
    );
    let addr = server.addr;
    let probe = async move {
        let mut post = Conn::open(addr).await?;
        let mut get = Conn::open(addr).await?;
        let run = Uuid::new_v4();
        let (mut samples, mut timed_out) = (Vec::new(), 0);
        let deadline = Instant::now() + duration;
        let mut k = 0;
        while Instant::now() < deadline {
            k += 1;
            let user = format!("probe-{run}-{k}");
            let body = json!({"userId": user, "event": "Probe"}).to_string();
            if !post
                .send(&Req::Post("/v1/track", Bytes::from(body)))
                .await?
            {
                continue;
            }
            let acked = Instant::now();
            let path = Req::Get(format!("/v1/profiles/{user}"));
            loop {
                if get.send(&path).await? {
                    samples.push(acked.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if acked.elapsed() > Duration::from_secs(5) {
                    timed_out += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok((samples, timed_out))
    };
    let (load, probe) = tokio::join!(load, probe);
    let (mut samples, timed_out) = probe?;
    samples.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        samples
            .get(((samples.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let freshness = Freshness {
        probes: samples.len(),
        timed_out,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    };
    Ok((
        freshness,
        load?.named(&format!(
            "background ingest, batches of 100 at {:.0} events/s",
            args.load_events_per_sec
        )),
    ))
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
