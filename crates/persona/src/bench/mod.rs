//! `persona bench`: measurements of a real `persona serve` over loopback, each beside a
//! reference measured in the same run, reported as a ratio.
//!
//! Servers run as child processes of this command, so the load generator's CPU use is the
//! same for persona and for the reference.

pub mod cluster;
pub mod ingest;
pub mod profiles;
pub mod segments;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;

pub const WRITE_KEY: &str = "bench-write-key";
pub const ADMIN_TOKEN: &str = "bench-admin-token";

/// One measured phase.
#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: String,
    connections: usize,
    requests: usize,
    errors: usize,
    seconds: f64,
    pub requests_per_sec: f64,
    events_per_sec: f64,
    pub p50_ms: f64,
    p90_ms: f64,
    pub p99_ms: f64,
    max_ms: f64,
}

/// A child server process, stopped on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(cmd: &mut Command) -> anyhow::Result<Self> {
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

    pub fn stop(&mut self) {
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

/// One request of a load, cycled through by the load loops.
#[derive(Clone)]
pub enum Req {
    /// A POST with the write key.
    Post(&'static str, Bytes),
    /// A GET with the admin token.
    Get(String),
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
pub async fn closed_loop(
    addr: SocketAddr,
    requests: &[Req],
    connections: usize,
    duration: Duration,
    events_per_request: usize,
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let requests = requests.to_vec();
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut s = Samples::default();
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                s.record(t, conn.send(&requests[i % requests.len()]).await);
                i += connections;
            }
            anyhow::Ok(s)
        });
    }
    collect(tasks, started, connections, events_per_request).await
}

/// Requests at a fixed total `rate`, spread over `connections`; latency counts from when
/// each request was due, so a stall is not hidden by sending less (coordinated omission).
pub async fn open_loop(
    addr: SocketAddr,
    requests: &[Req],
    connections: usize,
    duration: Duration,
    rate: f64,
    events_per_request: usize,
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections {
        let requests = requests.to_vec();
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
                let answer = conn.send(&requests[i % requests.len()]).await;
                s.record(from, answer);
                previous_done = Instant::now();
                due += interval;
                i += connections;
            }
            anyhow::Ok(s)
        });
    }
    collect(tasks, started, connections, events_per_request).await
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
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    auth: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
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
    pub async fn send(&mut self, req: &Req) -> anyhow::Result<bool> {
        self.sender.ready().await?;
        let req = match req {
            Req::Post(path, body) => Request::post(*path)
                .header(header::HOST, "127.0.0.1")
                .header(header::AUTHORIZATION, &self.auth)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))?,
            Req::Get(path) => Request::get(path.as_str())
                .header(header::HOST, "127.0.0.1")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .body(Full::new(Bytes::new()))?,
        };
        let resp = self.sender.send_request(req).await?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await?;
        Ok(ok)
    }
}
