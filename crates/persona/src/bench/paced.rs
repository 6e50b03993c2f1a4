//! Paced (open-loop) load: requests at a fixed rate, latency counted from when each was due.
//!
//! Two ways, for two kinds of load:
//!
//! - [`open_loop`], for latency at a few connections: each connection is an OS thread with
//!   a blocking socket that sleeps until its next request is due. An async client measured
//!   the load generator as much as the server: tokio's timers tick in milliseconds and every
//!   answer passes through the runtime's other threads, so on the 2-core VM a handler that
//!   does nothing showed a p99 of 1.4 ms at 5,000 requests/s; threads woken by the kernel's
//!   high-resolution timers and blocked in `read` until the answer arrives measured the same
//!   handler at 0.06-0.17 ms.
//! - [`super::task_load`] with a rate, for many connections: tasks on the runtime. Sixty-four threads
//!   waking 25,000 times a second on two cores queue for the CPU behind each other and the
//!   server (p99 of 80 ms, all of it the load generator's), while tasks multiplex the
//!   connections on the runtime's two threads; their latencies are overstated by up to about
//!   a millisecond.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{ADMIN_TOKEN, Phase, Req, Samples, WRITE_KEY};

/// `rate` requests a second in all, spread evenly over `connections`; latency counts from
/// when each request was due whenever the server still held the previous one then, so a
/// stall is not hidden by sending less (coordinated omission).
pub async fn open_loop(
    addr: SocketAddr,
    requests: &[Req],
    connections: usize,
    duration: Duration,
    rate: f64,
    events_per_request: usize,
) -> anyhow::Result<Phase> {
    // Shared by the connection threads, not copied for each.
    let requests: Arc<[Vec<u8>]> = requests.iter().map(raw_request).collect();
    tokio::task::spawn_blocking(move || {
        let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
        // The schedule starts once every thread runs and has its connection: starting and
        // connecting 64 threads on a busy machine takes tens of milliseconds, which would
        // otherwise count as the server's latency for the first requests due.
        let start = Arc::new(Start {
            ready: Barrier::new(connections),
            at: OnceLock::new(),
        });
        let threads: Vec<_> = (0..connections)
            .map(|w| {
                let requests = Arc::clone(&requests);
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    let conn = BlockingConn::open(addr);
                    start.ready.wait();
                    let started = *start.at.get_or_init(|| Instant::now() + START_MARGIN);
                    let first = started + interval.mul_f64(w as f64 / connections as f64);
                    let sends = (w..)
                        .step_by(connections)
                        .map(|i| requests[i % requests.len()].as_slice());
                    paced_connection(conn?, sends, first, interval, started + duration)
                })
            })
            .collect();
        let mut all = Samples::default();
        for t in threads {
            all.absorb(
                t.join()
                    .map_err(|_| anyhow::anyhow!("a load thread panicked"))??,
            );
        }
        let started = *start.at.get().expect("set once the threads were ready");
        Ok(all.phase(started, connections, events_per_request))
    })
    .await?
}

/// When the paced threads begin: once all are ready, a little later than the first of them
/// wakes, so that the others are awake too before their first request is due.
struct Start {
    ready: Barrier,
    at: OnceLock<Instant>,
}

const START_MARGIN: Duration = Duration::from_millis(20);

/// One connection sending `sends` in turn, the first at `first`, then every `interval`.
fn paced_connection<'a>(
    mut conn: BlockingConn,
    mut sends: impl Iterator<Item = &'a [u8]>,
    first: Instant,
    interval: Duration,
    end: Instant,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    let mut due = first;
    let mut previous_done = first;
    while due < end {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let request = sends.next().expect("cycles without end");
        samples.record(count_from(previous_done, due), conn.exchange(request));
        previous_done = Instant::now();
        due += interval;
    }
    Ok(samples)
}

/// Where a request's latency counts from. Late because the server still held the previous
/// request when this one was due: from when it was due. Late only by the timer's slack:
/// from now, when it is sent.
pub(super) fn count_from(previous_done: Instant, due: Instant) -> Instant {
    if previous_done > due {
        due
    } else {
        Instant::now()
    }
}

/// The request as it goes on the wire, with the write key or the admin token.
fn raw_request(req: &Req) -> Vec<u8> {
    use base64::Engine;
    match req {
        Req::Post(path, body) => {
            let key = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"));
            let mut raw = format!(
                "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Basic {key}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(body);
            raw
        }
        Req::Get(path) => format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
        )
        .into_bytes(),
    }
}

/// A keep-alive HTTP/1.1 connection over a blocking socket, reading answers that carry a
/// `content-length` (every answer of persona's and of the no-op server's does).
struct BlockingConn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl BlockingConn {
    fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        Ok(BlockingConn {
            tcp,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    /// Sends one request and reads its answer whole; whether it was a 2xx.
    fn exchange(&mut self, request: &[u8]) -> anyhow::Result<bool> {
        self.tcp.write_all(request)?;
        self.buf.clear();
        let mut chunk = [0u8; 16 << 10];
        loop {
            let n = self.tcp.read(&mut chunk)?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some((head_len, body_len, ok)) = parse_head(&self.buf)?
                && self.buf.len() >= head_len + body_len
            {
                return Ok(ok);
            }
        }
    }
}

/// The head's length, the body's length and whether the status is 2xx, once the head is
/// complete.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(usize, usize, bool)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let ok = status.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
    let mut body_len = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            body_len = Some(value.trim().parse().context("bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked answers are not read by the paced load");
        }
    }
    let body_len = body_len.context("an answer without content-length")?;
    Ok(Some((end + 4, body_len, ok)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_answer_head() {
        let body = b"{\"success\":true}";
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 16\r\n\r\n";
        let answer = [&head[..], body].concat();
        assert_eq!(parse_head(&answer).unwrap(), Some((head.len(), 16, true)));
        assert_eq!(
            parse_head(&answer[..30]).unwrap(),
            None,
            "head not complete"
        );
        let refused = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(
            parse_head(refused).unwrap(),
            Some((refused.len(), 2, false))
        );
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).is_err());
    }
}
