//! `persona bench`: measurements of a real `persona serve` over loopback, each beside a
//! reference measured in the same run, reported as a ratio.
//!
//! Servers run as child processes of this command, so the load generator's CPU use is the
//! same for persona and for the reference.

mod api;
mod chart;
pub mod cluster;
pub mod collector_alone;
mod cpu;
pub mod ingest;
pub mod kafka;
mod paced;
pub mod profiles;
mod rounds;
mod scrape;
pub mod segments;
pub mod sql;
mod sql_bucket;
pub mod store;
pub mod webhooks;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;

pub use paced::open_loop;

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
    /// `persona serve` (this binary) on a free loopback port with the bench's keys, on
    /// the data folder `data`, with `extra` arguments.
    pub fn serve(data: &std::path::Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start(
            Command::new(std::env::current_exe()?)
                .args(["serve", "--listen", "127.0.0.1:0", "--write-key", WRITE_KEY])
                .args(["--admin-token", ADMIN_TOKEN, "--data-dir"])
                .arg(data)
                .args(extra)
                .env("PERSONA_LOG", "warn"),
        )
    }

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

    fn absorb(&mut self, other: Samples) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
    }

    /// The phase these samples make, over the time since `started`.
    fn phase(self, started: Instant, connections: usize, events_per_request: usize) -> Phase {
        let Samples {
            latencies_us: mut all,
            errors,
        } = self;
        let seconds = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let pct = |q: f64| {
            if all.is_empty() {
                0.0
            } else {
                all[((all.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
            }
        };
        Phase {
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
        }
    }
}

/// `connections` tasks on the runtime, each with a keep-alive connection. Without a `rate`
/// each sends its next request as soon as the last is answered (closed loop); with one they
/// send `rate` requests a second in all, counted as [`open_loop`] counts them: for many
/// connections, where threads would queue for the CPU (see the `paced` module).
pub async fn task_load(
    addr: SocketAddr,
    requests: &[Req],
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    events_per_request: usize,
) -> anyhow::Result<Phase> {
    // Every connection is open before the clock starts: connecting hundreds of them takes
    // a busy machine tens of milliseconds, which a paced phase would otherwise count as the
    // server's latency for the first requests due, and a max-load phase as its time.
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..connections {
        opening.spawn(Conn::open(addr));
    }
    let mut conns = Vec::with_capacity(connections);
    while let Some(conn) = opening.join_next().await {
        conns.push(conn??);
    }
    let requests: Arc<[Req]> = requests.into();
    let started = Instant::now();
    let end = started + duration;
    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r.max(1.0)));
    let mut tasks = tokio::task::JoinSet::new();
    for (w, mut conn) in conns.into_iter().enumerate() {
        let requests = Arc::clone(&requests);
        tasks.spawn(async move {
            let mut s = Samples::default();
            let mut due = started
                + interval
                    .unwrap_or_default()
                    .mul_f64(w as f64 / connections as f64);
            let mut previous_done = started;
            for i in (w..).step_by(connections) {
                let from = match interval {
                    None if Instant::now() >= end => break,
                    None => Instant::now(),
                    Some(_) if due >= end => break,
                    Some(interval) => {
                        tokio::time::sleep_until(due.into()).await;
                        let from = paced::count_from(previous_done, due);
                        due += interval;
                        from
                    }
                };
                s.record(from, conn.send(&requests[i % requests.len()]).await);
                previous_done = Instant::now();
            }
            anyhow::Ok(s)
        });
    }
    let mut all = Samples::default();
    while let Some(done) = tasks.join_next().await {
        all.absorb(done??);
    }
    Ok(all.phase(started, connections, events_per_request))
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
        Ok(self.exchange(req).await?.0)
    }

    /// The body of `GET path`, which must be answered with 2xx, as text.
    pub async fn get_text(&mut self, path: &str) -> anyhow::Result<String> {
        let (ok, body) = self.exchange(&Req::Get(path.to_string())).await?;
        if !ok {
            bail!("GET {path} was not answered with success");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Whether the server answered 2xx, and the answer's body.
    async fn exchange(&mut self, req: &Req) -> anyhow::Result<(bool, Bytes)> {
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
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((ok, body))
    }
}
