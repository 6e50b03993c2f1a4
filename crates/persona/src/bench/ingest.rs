//! `persona bench ingest`: drives a real `persona serve` over loopback and, in the same run,
//! a no-op axum handler as the ceiling of what this machine's HTTP stack can do.

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use super::cpu::{IdleShare, MachineTimes, PerRequest, ThreadTimes};
use super::rounds::{AtConnections, Tally, alone_rate, plot};
use super::scrape::{Histogram, metrics_page};
use super::{Conn, Phase, Req, Server, WRITE_KEY, task_load};
use crate::cli::{BenchIngestArgs, NoopServerArgs};
/// Distinct request bodies cycled through, so no two consecutive requests are identical.
const BODIES: usize = 512;

#[derive(Debug, Serialize)]
struct Report {
    phases: Vec<Phase>,
    /// At the first connection count: the median of the rounds' ratios, and each round's.
    single_vs_noop_ratio: f64,
    single_vs_noop_rounds: Vec<f64>,
    /// The max-load rounds at each connection count, in the order given.
    by_connections: Vec<AtConnections>,
    /// With more than one connection count: persona's best median rate over the no-op
    /// handler's best, each at whichever count gave it.
    best_vs_best_ratio: Option<f64>,
    /// With `--collector-alone` too: the collector and log alone at their best count over
    /// the no-op handler's best.
    #[serde(skip_serializing_if = "Option::is_none")]
    collector_alone_best_vs_best_ratio: Option<f64>,
    /// Events the processor had yet to apply when the last max-load round ended.
    processor_behind_after_max_load: u64,
    /// How long it then took to catch up, before the paced phase started.
    processor_caught_up_seconds: f64,
    paced_server_side: ServerSide,
}

/// The max-load single-event phase of one connection count, as each server is put through it.
struct MaxLoad<'a> {
    singles: &'a [Req],
    connections: usize,
    duration: Duration,
}

impl MaxLoad<'_> {
    /// `server`'s phase, named `name`, with the CPU its process used meanwhile and the
    /// share of the machine left idle.
    async fn run(
        &self,
        server: &Server,
        cpu: &mut PerRequest,
        idle: &mut IdleShare,
        name: String,
    ) -> anyhow::Result<Phase> {
        let before = ThreadTimes::read(server.child.id());
        let machine = MachineTimes::read();
        let phase = task_load(
            server.addr,
            self.singles,
            self.connections,
            self.duration,
            None,
            1,
        )
        .await?;
        idle.add(machine, MachineTimes::read());
        cpu.add(
            ThreadTimes::read(server.child.id()).since(&before),
            phase.requests,
        );
        Ok(phase.named(&name))
    }
}

/// The events the processor of the server at `addr` has yet to apply, from `/readyz`
/// (its body carries them whatever the status).
async fn processor_lag(addr: std::net::SocketAddr) -> anyhow::Result<u64> {
    let (_, body) = Conn::open(addr)
        .await?
        .exchange(&Req::Get("/readyz".into()))
        .await?;
    let ready: serde_json::Value = serde_json::from_slice(&body)?;
    ready["processor"]["lag_records"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("/readyz gave no processor lag: {ready}"))
}

/// Waits for the processor to apply everything logged; returns how far behind it was and
/// the seconds it took.
async fn processor_catch_up(addr: std::net::SocketAddr) -> anyhow::Result<(u64, f64)> {
    let started = std::time::Instant::now();
    let behind = processor_lag(addr).await?;
    let mut lag = behind;
    while lag > 0 {
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("the processor is still {lag} events behind after two minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        lag = processor_lag(addr).await?;
    }
    Ok((behind, started.elapsed().as_secs_f64()))
}

/// What the server's own histograms saw of the paced phase: a slow answer that the server
/// timed as fast was slow in the load generator or the kernel, not in persona.
#[derive(Debug, Serialize)]
struct ServerSide {
    /// `/v1/track` requests, timed from routing to the response.
    requests: u64,
    /// Upper bound of the histogram bucket holding the 99th percentile.
    request_p99_at_most_ms: f64,
    requests_over_10ms: u64,
    fsyncs: u64,
    fsync_p99_at_most_ms: f64,
    fsyncs_over_10ms: u64,
    #[serde(skip)]
    histograms: (Histogram, Histogram),
}

impl ServerSide {
    async fn read(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let page = metrics_page(addr).await?;
        let requests = Histogram::parse(
            &page,
            "persona_http_request_duration_seconds",
            &[r#"path="/v1/track""#],
        );
        let fsyncs = Histogram::parse(&page, "persona_log_fsync_duration_seconds", &[]);
        Ok(Self::of(requests, fsyncs))
    }

    fn of(requests: Histogram, fsyncs: Histogram) -> Self {
        ServerSide {
            requests: requests.count(),
            request_p99_at_most_ms: requests.quantile_bound_ms(0.99),
            requests_over_10ms: requests.above(0.01),
            fsyncs: fsyncs.count(),
            fsync_p99_at_most_ms: fsyncs.quantile_bound_ms(0.99),
            fsyncs_over_10ms: fsyncs.above(0.01),
            histograms: (requests, fsyncs),
        }
    }

    fn since(&self, earlier: &ServerSide) -> Self {
        Self::of(
            self.histograms.0.since(&earlier.histograms.0),
            self.histograms.1.since(&earlier.histograms.1),
        )
    }
}

impl std::fmt::Display for ServerSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "paced phase as persona timed it: {} requests, p99 at most {:.2} ms, {} over 10 ms; \
             {} fsyncs, p99 at most {:.2} ms, {} over 10 ms",
            self.requests,
            self.request_p99_at_most_ms,
            self.requests_over_10ms,
            self.fsyncs,
            self.fsync_p99_at_most_ms,
            self.fsyncs_over_10ms
        )
    }
}

pub async fn ingest(args: BenchIngestArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut persona = Server::start(
        Command::new(&exe)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--write-key",
                WRITE_KEY,
                "--data-dir",
            ])
            .arg(data.path())
            .env("PERSONA_LOG", "warn"),
    )?;
    let mut noop = Server::start(Command::new(&exe).args(["bench", "noop-server"]))?;
    // Its log's folder outlives the server (dropped after it, as declared before it).
    let alone_data = tempfile::tempdir()?;
    let mut alone = if args.collector_alone {
        Some(Server::start(
            Command::new(&exe)
                .args(["bench", "collector-server", "--data-dir"])
                .arg(alone_data.path())
                .env("PERSONA_LOG", "warn"),
        )?)
    } else {
        None
    };
    let duration = Duration::from_secs_f64(args.seconds);
    eprintln!(
        "bench ingest: {}s per phase; persona at {}, no-op axum at {}{}; data in {}",
        args.seconds,
        persona.addr,
        noop.addr,
        alone
            .as_ref()
            .map(|a| format!(", collector and log alone at {}", a.addr))
            .unwrap_or_default(),
        data.path().display()
    );

    let counts: Vec<usize> = args
        .single_connections
        .iter()
        .map(|&c| c as usize)
        .collect();
    let singles = bodies(1);
    let batches = bodies(args.batch_size);
    let mut phases = Vec::new();
    let warm = Duration::from_secs(1);
    for addr in [
        Some(noop.addr),
        Some(persona.addr),
        alone.as_ref().map(|a| a.addr),
    ]
    .into_iter()
    .flatten()
    {
        task_load(addr, &singles, counts[0], warm, None, 1).await?;
    }
    // Each round goes over every connection count in turn, so that the store's growth
    // through the run (its background work rises with it) weighs on every count alike.
    let mut tallies: Vec<Tally> = counts.iter().map(|_| Tally::default()).collect();
    for round in 1..=args.rounds {
        for (&connections, tally) in counts.iter().zip(&mut tallies) {
            let max_load = MaxLoad {
                singles: &singles,
                connections,
                duration,
            };
            let noop_single = max_load
                .run(
                    &noop,
                    &mut tally.cpu.noop,
                    &mut tally.idle.noop,
                    format!("no-op axum, single events, round {round}"),
                )
                .await?;
            // Between the two, so that persona's phase and the next no-op phase follow
            // each other as they do without it (persona's store keeps flushing for a while
            // after its phase).
            let alone_phase = match &alone {
                None => None,
                Some(alone) => {
                    let phase = max_load
                        .run(
                            alone,
                            &mut tally.alone.cpu,
                            &mut tally.alone.idle,
                            format!("collector and log alone, max load, round {round}"),
                        )
                        .await?;
                    tally.alone.add(&noop_single, &phase);
                    Some(phase)
                }
            };
            let single = max_load
                .run(
                    &persona,
                    &mut tally.cpu.persona,
                    &mut tally.idle.persona,
                    format!("persona, single events, max load, round {round}"),
                )
                .await?;
            tally.add(&noop_single, &single);
            phases.push(noop_single);
            phases.extend(alone_phase);
            phases.push(single);
        }
    }
    let by_connections: Vec<AtConnections> = counts
        .iter()
        .zip(tallies)
        .map(|(&connections, tally)| tally.finish(connections))
        .collect();
    let first = &by_connections[0];
    // A burst that saturates the machine may leave the processor behind; the paced phase
    // starts once it has caught up, so it measures half load and not a backlog.
    let (behind, caught_up) = processor_catch_up(persona.addr).await?;
    // Latency is judged at half of the load persona sustains, as capacity planning would.
    let half = first.persona_requests_per_sec / 2.0;
    let before = ServerSide::read(persona.addr).await?;
    let paced_at = |addr| task_load(addr, &singles, first.connections, duration, Some(half), 1);
    let paced = paced_at(persona.addr).await?.named(&format!(
        "persona, single events paced at {half:.0}/s (half its max at {} conns)",
        first.connections
    ));
    let paced_server_side = ServerSide::read(persona.addr).await?.since(&before);
    // The same schedule against the no-op handler: what the load generator, sharing the two
    // cores, adds to every answer's time by itself.
    let noop_paced = paced_at(noop.addr).await?.named(&format!(
        "no-op axum, single events paced at the same rate ({} conns)",
        first.connections
    ));
    let batch = task_load(
        persona.addr,
        &batches,
        args.batch_connections,
        duration,
        None,
        args.batch_size,
    )
    .await?
    .named(&format!("persona, batches of {}", args.batch_size));
    phases.extend([paced, noop_paced, batch]);

    persona.stop();
    noop.stop();
    if let Some(alone) = &mut alone {
        alone.stop();
    }
    let stats = persona_log::LogStats::read(data.path().join("log"))?;

    println!(
        "{:<68} {:>6} {:>10} {:>11} {:>8} {:>8} {:>8} {:>6}",
        "phase", "conns", "req/s", "events/s", "p50 ms", "p90 ms", "p99 ms", "errors"
    );
    for p in &phases {
        println!(
            "{:<68} {:>6} {:>10.0} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>6}",
            p.name,
            p.connections,
            p.requests_per_sec,
            p.events_per_sec,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.errors
        );
    }
    for at in &by_connections {
        println!("{at}");
    }
    let best_vs_best_ratio = (by_connections.len() > 1).then(|| {
        let best = |rate: fn(&AtConnections) -> f64| {
            by_connections
                .iter()
                .max_by(|a, b| rate(a).total_cmp(&rate(b)))
                .expect("at least one count")
        };
        let (p, n) = (
            best(|a| a.persona_requests_per_sec),
            best(|a| a.noop_requests_per_sec),
        );
        let ratio = p.persona_requests_per_sec / n.noop_requests_per_sec;
        println!(
            "each server at its best connection count: persona {:.0} req/s at {}, no-op {:.0} req/s at {}: {ratio:.2}",
            p.persona_requests_per_sec, p.connections, n.noop_requests_per_sec, n.connections
        );
        let alone_ratio = alone.is_some().then(|| {
            let a = best(alone_rate);
            let ratio = alone_rate(a) / n.noop_requests_per_sec;
            println!(
                "the collector and log alone at their best: {:.0} req/s at {}: {ratio:.2} of the no-op's best",
                alone_rate(a),
                a.connections,
            );
            ratio
        });
        (ratio, alone_ratio)
    });
    println!(
        "the processor ended the max-load rounds {behind} events behind and caught up in {caught_up:.1} s"
    );
    println!("{paced_server_side}");
    println!(
        "log after the run: {} records durable in {} segments, {} bytes",
        stats.records, stats.segments, stats.bytes
    );
    if let Some(path) = &args.plot {
        std::fs::write(path, plot(&by_connections))?;
        println!("chart written to {}", path.display());
    }
    let report = Report {
        phases,
        single_vs_noop_ratio: by_connections[0].ratio,
        single_vs_noop_rounds: by_connections[0].rounds.clone(),
        by_connections,
        best_vs_best_ratio: best_vs_best_ratio.map(|(persona, _)| persona),
        collector_alone_best_vs_best_ratio: best_vs_best_ratio.and_then(|(_, alone)| alone),
        processor_behind_after_max_load: behind,
        processor_caught_up_seconds: caught_up,
        paced_server_side,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// `bench noop-server`: answers every ingestion call with success after reading the body,
/// and every profile read with the same small profile, built without any lookup.
pub async fn noop_server(args: NoopServerArgs) -> anyhow::Result<()> {
    async fn ok(_body: Bytes) -> axum::Json<serde_json::Value> {
        axum::Json(json!({"success": true}))
    }
    async fn profile(
        axum::extract::Path(key): axum::extract::Path<String>,
    ) -> axum::Json<serde_json::Value> {
        axum::Json(
            json!({"user_id": key, "anonymous_ids": [], "traits": {"plan": "free"},
            "computed": {"event_count": 4, "frequency": 1, "monetary": 20.0},
            "rfm": null, "segments": [], "cluster": null, "stale": false}),
        )
    }
    let app = Router::new()
        .route("/v1/track", post(ok))
        .route("/v1/batch", post(ok))
        .route("/v1/profiles/{key}", axum::routing::get(profile));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("persona listening on http://{}", listener.local_addr()?);
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|t| {
        let _ = t.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

fn bodies(batch: usize) -> Vec<Req> {
    (0..BODIES)
        .map(|i| {
            let msg = |j: usize| {
                json!({
                    "type": "track", "userId": format!("user-{}", (i * 7 + j) % 10_000),
                    "event": "Product Viewed",
                    "properties": {"product_id": format!("sku-{j}"), "price": 19.99, "category": "shirts"},
                    "context": {"library": {"name": "persona-bench"}, "ip": "203.0.113.9"},
                    "timestamp": "2026-11-28T10:00:00.000Z",
                })
            };
            let body = if batch == 1 {
                msg(0)
            } else {
                json!({"batch": (0..batch).map(msg).collect::<Vec<_>>()})
            };
            let path = if batch == 1 { "/v1/track" } else { "/v1/batch" };
            Req::Post(path, Bytes::from(body.to_string()))
        })
        .collect()
}
