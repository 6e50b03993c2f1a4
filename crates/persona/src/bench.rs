//! `persona bench ingest`: drives a real `persona serve` over loopback and, in the same run,
//! a no-op axum handler as the ceiling of what this machine's HTTP stack can do.
//!
//! Both servers run as child processes of this command, so the load generator's CPU use is
//! the same for both and the ratio between them is fair.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;

use crate::cli::{BenchIngestArgs, NoopServerArgs};

const WRITE_KEY: &str = "bench-write-key";
/// Distinct request bodies cycled through, so no two consecutive requests are identical.
const BODIES: usize = 512;

/// One measured phase.
#[derive(Debug, Serialize)]
struct Phase {
    name: String,
    connections: usize,
    requests: usize,
    errors: usize,
    seconds: f64,
    requests_per_sec: f64,
    events_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    phases: Vec<Phase>,
    single_vs_noop_ratio: f64,
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
    let duration = Duration::from_secs_f64(args.seconds);
    eprintln!(
        "bench ingest: {}s per phase; persona at {}, no-op axum at {}; data in {}",
        args.seconds,
        persona.addr,
        noop.addr,
        data.path().display()
    );

    let singles = bodies(1);
    let batches = bodies(args.batch_size);
    let mut phases = Vec::new();
    let warm = Duration::from_secs(1);
    closed_loop(
        noop.addr,
        "/v1/track",
        &singles,
        args.single_connections,
        warm,
        1,
    )
    .await?;
    let noop_single = closed_loop(
        noop.addr,
        "/v1/track",
        &singles,
        args.single_connections,
        duration,
        1,
    )
    .await?;
    let noop_single = noop_single.named("no-op axum, single events");
    closed_loop(
        persona.addr,
        "/v1/track",
        &singles,
        args.single_connections,
        warm,
        1,
    )
    .await?;
    let single = closed_loop(
        persona.addr,
        "/v1/track",
        &singles,
        args.single_connections,
        duration,
        1,
    )
    .await?
    .named("persona, single events, max load");
    // Latency is judged at half of the load persona sustains, as capacity planning would.
    let half = single.requests_per_sec / 2.0;
    let paced = open_loop(
        persona.addr,
        &singles,
        args.single_connections,
        duration,
        half,
    )
    .await?
    .named(&format!(
        "persona, single events paced at {half:.0}/s (half its max)"
    ));
    let batch = closed_loop(
        persona.addr,
        "/v1/batch",
        &batches,
        args.batch_connections,
        duration,
        args.batch_size,
    )
    .await?
    .named(&format!("persona, batches of {}", args.batch_size));
    let ratio = single.requests_per_sec / noop_single.requests_per_sec;
    phases.extend([noop_single, single, paced, batch]);

    persona.stop();
    noop.stop();
    let stats = persona_log::LogStats::read(data.path().join("log"))?;

    println!(
        "{:<58} {:>6} {:>10} {:>11} {:>8} {:>8} {:>8} {:>6}",
        "phase", "conns", "req/s", "events/s", "p50 ms", "p90 ms", "p99 ms", "errors"
    );
    for p in &phases {
        println!(
            "{:<58} {:>6} {:>10.0} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>6}",
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
    println!(
        "single-event requests/s, persona vs no-op handler: {:.2}",
        ratio
    );
    println!(
        "log after the run: {} records durable in {} segments, {} bytes",
        stats.records, stats.segments, stats.bytes
    );
    let report = Report {
        phases,
        single_vs_noop_ratio: ratio,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// `bench noop-server`: answers every ingestion call with success after reading the body.
pub async fn noop_server(args: NoopServerArgs) -> anyhow::Result<()> {
    async fn ok(_body: Bytes) -> axum::Json<serde_json::Value> {
        axum::Json(json!({"success": true}))
    }
    let app = Router::new()
        .route("/v1/track", post(ok))
        .route("/v1/batch", post(ok));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("persona listening on http://{}", listener.local_addr()?);
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|t| {
        let _ = t.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// A child server process, stopped on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(cmd: &mut Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                bail!("server exited before listening");
            };
            if let Some(rest) = line?.strip_prefix("persona listening on http://") {
                break rest.parse().context("listening address")?;
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, addr })
    }

    fn stop(&mut self) {
        // SIGTERM, so the server shuts down the way it does in production.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bodies(batch: usize) -> Vec<Bytes> {
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
            Bytes::from(body.to_string())
        })
        .collect()
}

#[derive(Default)]
struct Samples {
    latencies_us: Vec<u32>,
    errors: usize,
}

impl Samples {
    /// Records one answer: its latency counted from `from` when it was a success.
    fn record(&mut self, from: Instant, answer: anyhow::Result<bool>) {
        match answer {
            Ok(true) => self.latencies_us.push(from.elapsed().as_micros() as u32),
            _ => self.errors += 1,
        }
    }
}

/// `connections` clients each send the next request as soon as the last is answered.
async fn closed_loop(
    addr: SocketAddr,
    path: &'static str,
    bodies: &[Bytes],
    connections: usize,
    duration: Duration,
    events_per_request: usize,
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let bodies = bodies.to_vec();
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut s = Samples::default();
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                s.record(t, conn.post(path, bodies[i % bodies.len()].clone()).await);
                i += connections;
            }
            anyhow::Ok(s)
        });
    }
    collect(tasks, started, connections, events_per_request).await
}

/// Requests at a fixed total `rate`, spread over `connections`; latency counts from when
/// each request was due, so a stall is not hidden by sending less (coordinated omission).
async fn open_loop(
    addr: SocketAddr,
    bodies: &[Bytes],
    connections: usize,
    duration: Duration,
    rate: f64,
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let bodies = bodies.to_vec();
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut s = Samples::default();
            let offset = interval.mul_f64(w as f64 / connections as f64);
            let mut due = started + offset;
            let mut i = w;
            let mut previous_done = started;
            while due < started + duration {
                tokio::time::sleep_until(due.into()).await;
                // Late because the server held the previous request: count from when this one
                // was due. Late only by the timer's millisecond granularity: count from now.
                let from = if previous_done > due {
                    due
                } else {
                    Instant::now()
                };
                let answer = conn.post("/v1/track", bodies[i % bodies.len()].clone());
                s.record(from, answer.await);
                previous_done = Instant::now();
                due += interval;
                i += connections;
            }
            anyhow::Ok(s)
        });
    }
    collect(tasks, started, connections, 1).await
}

async fn collect(
    mut tasks: tokio::task::JoinSet<anyhow::Result<Samples>>,
    started: Instant,
    connections: usize,
    events_per_request: usize,
) -> anyhow::Result<Phase> {
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let s = done??;
        all.extend(s.latencies_us);
        errors += s.errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |q: f64| {
        if all.is_empty() {
            0.0
        } else {
            all[((all.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
        }
    };
    Ok(Phase {
        name: String::new(),
        connections,
        requests: all.len(),
        errors,
        seconds,
        requests_per_sec: all.len() as f64 / seconds,
        events_per_sec: (all.len() * events_per_request) as f64 / seconds,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    })
}

impl Phase {
    fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    auth: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        use base64::Engine;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"))
        );
        Ok(Conn { sender, auth })
    }

    /// Whether the server answered 2xx.
    async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<bool> {
        self.sender.ready().await?;
        let req = Request::post(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::AUTHORIZATION, &self.auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await?;
        Ok(ok)
    }
}
