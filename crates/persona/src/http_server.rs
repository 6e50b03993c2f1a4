//! The HTTP accept loop of `persona serve`: a cap on open connections and a deadline for
//! request headers, which `axum::serve` does not offer.
//!
//! The collector faces browsers and the open internet. Without a header deadline a client
//! that opens connections and sends its headers a byte at a time (slowloris) holds each one
//! forever, and idle keep-alive connections are never closed; without a cap, enough of them
//! run the process out of file descriptors and memory. As nginx does with
//! `client_header_timeout` and `worker_connections`: a connection that has not sent a whole
//! request head within the deadline (counted from when the server starts waiting for one,
//! so an idle keep-alive connection too) is closed, and past the cap new connections wait
//! in the kernel's accept queue until one closes. [`reserve_open_files`], called at start,
//! raises the process's open-file limit to fit the cap where the system allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use crate::lingering::Lingering;
use crate::write_deadline::WriteDeadline;

/// Limits on the clients of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, or stay idle between
    /// requests, before it is closed.
    pub header_timeout: Duration,
    /// How long the listener keeps accepting after a stop signal, while `/readyz` says not
    /// ready, so that a load balancer stops sending before connections are refused.
    pub drain_delay: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            // hyper's own default, and half of nginx's `client_header_timeout`.
            header_timeout: Duration::from_secs(30),
            // A stop from a terminal should stop; behind a load balancer set it to the time
            // the balancer takes to notice (Kubernetes: a few seconds).
            drain_delay: Duration::ZERO,
        }
    }
}

/// The longest request head taken, start line included.
const HEAD_BYTES: usize = 64 * 1024;

/// How many connections may wait in the kernel's accept queue (the kernel caps it at
/// `net.core.somaxconn`, 4,096 on current Linux); the standard library asks for 128.
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-long accept queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As the standard library's bind: a restart may take a port still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// How long a stop waits for the requests in flight. A client that stalls mid-request would
/// otherwise hold the stop for the whole request-head deadline; Kubernetes, for one, kills
/// a pod 30 s after asking it to stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes and then
/// [`ConnectionLimits::drain_delay`] has passed, then lets the requests in flight finish
/// (idle connections are closed at once) and returns when every connection is gone, when
/// [`DRAIN_DEADLINE`] has passed, or when `force` completes, whichever is first.
pub async fn serve<S>(
    listening: Listening,
    app: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let Listening {
        listener,
        slots,
        cap,
    } = listening;
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Request heads up to 64 KiB (hyper's default lets each connection buffer about
        // 400 KiB of an unfinished head, gigabytes at the connection cap); larger ones get
        // 431.
        .max_header_size(HEAD_BYTES);
    let (stop_tx, stop_rx) = watch::channel(());
    let mut force = std::pin::pin!(force);
    // Whether a second signal came during the drain delay.
    let forced = {
        let stop_accepting = async {
            shutdown.await;
            if !limits.drain_delay.is_zero() {
                tracing::info!(
                    seconds = limits.drain_delay.as_secs_f64(),
                    "still taking requests while load balancers see /readyz fail"
                );
                tokio::select! {
                    () = tokio::time::sleep(limits.drain_delay) => false,
                    () = force.as_mut() => true,
                }
            } else {
                false
            }
        };
        let mut stop_accepting = std::pin::pin!(stop_accepting);
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                forced = &mut stop_accepting => break forced,
            };
            let (tcp, peer) = tokio::select! {
                accepted = next_connection(&listener) => accepted,
                forced = &mut stop_accepting => break forced,
            };
            let _ = tcp.set_nodelay(true);
            let service = hyper_service(app.clone(), peer);
            let mut stop = stop_rx.clone();
            let http1 = http1.clone();
            tokio::spawn(async move {
                let _slot = slot; // held until the connection ends
                let tcp = WriteDeadline::new(tcp, limits.header_timeout);
                let conn = http1
                    .serve_connection(TokioIo::new(tcp), service)
                    // As `axum::serve`, so that a WebSocket route works when one is added.
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    result = conn.as_mut() => log_connection_end(peer, result),
                    _ = stop.changed() => {
                        conn.as_mut().graceful_shutdown();
                        log_connection_end(peer, conn.await);
                    }
                }
            });
        }
    };
    drop(listener);
    let _ = stop_tx.send(());
    // Every connection holds a slot until it ends: having them all back means none is left.
    let all = u32::try_from(cap).expect("settings cap it at a million");
    // Connections still open when this returns end with the runtime; their requests were
    // not acknowledged, so nothing acknowledged is lost.
    // A second signal during the drain delay has already completed `force`.
    let force = async move {
        if !forced {
            force.await;
        }
    };
    tokio::select! {
        _ = slots.acquire_many(all) => {}
        () = force => tracing::warn!("stopping at once: requests still in flight are dropped"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => tracing::warn!(
            "requests still in flight after {} s are dropped",
            DRAIN_DEADLINE.as_secs()
        ),
    }
}

/// `app` as hyper calls it for a connection from `peer`, which handlers see as axum's
/// `ConnectInfo`.
fn hyper_service<S>(
    app: S,
    peer: SocketAddr,
) -> TowerToHyperService<
    impl Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    TowerToHyperService::new(app.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        // A body a handler refuses before its end is still read, so its sender hears why.
        let (parts, body) = req.into_parts();
        let body = Lingering::new(body, &parts.headers);
        Request::from_parts(parts, Body::new(body))
    }))
}

/// The listener while `serve` opens its stores, answered by
/// [`persona_collector::starting_router`]; [`Starting::ready`] hands it back.
pub struct Starting {
    ready: oneshot::Sender<()>,
    task: JoinHandle<Listening>,
}

/// A listener and the slots of its open connections ([`ConnectionLimits::max_connections`]),
/// shared by the connections made during the start and after it, so that the cap (and the
/// open-file limit reserved for it) holds across the handover.
pub struct Listening {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    /// The slots there are in all.
    cap: usize,
}

impl Listening {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// How long a connection made during the start may take to send its request.
const STARTING_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts answering on `listener` with `app` until [`Starting::ready`]. Every answer closes
/// its connection, so that no client stays on this service once the real one takes over;
/// past `limits.max_connections` at once, new connections are closed unanswered.
pub fn answer_while_starting<S>(listener: TcpListener, app: S, limits: ConnectionLimits) -> Starting
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let (ready, mut until) = oneshot::channel();
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .keep_alive(false)
            .timer(TokioTimer::new())
            .header_read_timeout(STARTING_HEADER_TIMEOUT)
            .max_header_size(HEAD_BYTES);
        loop {
            let (tcp, peer) = tokio::select! {
                biased;
                _ = &mut until => return Listening { listener, slots, cap: limits.max_connections },
                accepted = next_connection(&listener) => accepted,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue; // dropped: closed unanswered
            };
            let tcp = WriteDeadline::new(tcp, STARTING_HEADER_TIMEOUT);
            let conn = http1.serve_connection(TokioIo::new(tcp), hyper_service(app.clone(), peer));
            tokio::spawn(async move {
                let _slot = slot;
                log_connection_end(peer, conn.await);
            });
        }
    });
    Starting { ready, task }
}

impl Starting {
    /// Stops answering and gives the listener back; connections accepted meanwhile finish
    /// their one request, holding their slots until then.
    pub async fn ready(self) -> Listening {
        let _ = self.ready.send(());
        self.task
            .await
            .expect("the start-up accept loop does not panic")
    }
}

/// Files the process needs besides its connections: log segments, the store's tables and
/// journals, the data folder's own.
const FILES_BESIDES_CONNECTIONS: u64 = 1024;

/// Raises the open-file limit so that the connection cap, not the OS, bounds connections;
/// says so when the system's hard limit is too low for that. Called at start, before the
/// stores open their files and before the address is announced.
pub fn reserve_open_files(max_connections: usize) {
    let wanted = max_connections as u64 + FILES_BESIDES_CONNECTIONS;
    match persona_core::open_files::raise_limit(wanted) {
        Ok(limit) if limit >= wanted => tracing::debug!(limit, "open-file limit"),
        Ok(limit) => tracing::warn!(
            limit,
            max_connections,
            "the open-file limit (ulimit -n) is below http.max_connections plus {FILES_BESIDES_CONNECTIONS}: \
             past it, new connections cannot be accepted; raise the hard limit or lower the cap"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

fn log_connection_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            tracing::debug!(%peer, "closed a connection that sent no request head in time")
        }
        Err(e) => tracing::trace!(%peer, error = %e, "connection ended with an error"),
    }
}

/// The next connection `listener` accepts. Cancel-safe: a connection is either returned or
/// left in the kernel's queue.
async fn next_connection(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => accept_failed(e).await,
        }
    }
}

/// After a failed `accept`: a connection the peer gave up on is skipped; anything else
/// (out of file descriptors, most often) is logged and retried after a pause, rather than
/// in a busy loop.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One request on a fresh connection; the whole answer, read until the server closes.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
            .await
            .expect("an answer, and the connection closed")
            .unwrap();
        answer
    }

    /// While the stores open, a liveness probe is answered and everything else is told to
    /// come back, each on a connection that closes; then the listener is handed back whole.
    #[tokio::test]
    async fn a_starting_server_answers_healthz_and_asks_the_rest_to_retry() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits::default();
        let starting =
            answer_while_starting(listener, persona_collector::starting_router(), limits);

        let health = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.contains(r#"{"status":"starting"}"#), "{health}");
        let body = r#"{"userId":"u","event":"e"}"#;
        let track = exchange(
            addr,
            &format!(
                "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        assert!(track.starts_with("HTTP/1.1 503"), "{track}");
        assert!(track.contains("retry-after: 1"), "{track}");
        assert!(track.contains(r#""code":"starting""#), "{track}");
        let ready = exchange(addr, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        // A large batch sent whole before the answer is read, as the SDKs send, hears the
        // 503 and its `Retry-After` too, not a reset of its connection.
        let pad = "a".repeat(6 << 20);
        let batch = format!(r#"{{"batch":[{{"userId":"u","event":"e","pad":"{pad}"}}]}}"#);
        for _ in 0..3 {
            let request = format!(
                "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{batch}",
                batch.len()
            );
            let answer = exchange(addr, &request).await;
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        }

        let listening = starting.ready().await;
        assert_eq!(listening.local_addr().unwrap(), addr);
        let client = tokio::net::TcpStream::connect(addr);
        let (accepted, connected) = tokio::join!(listening.listener.accept(), client);
        assert!(accepted.is_ok() && connected.is_ok());
    }

    /// A connection made during the start keeps its slot past the handover: with a cap of
    /// one, the server answers nobody else until it closes.
    #[tokio::test]
    async fn a_connection_from_the_start_counts_against_the_cap_after_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 1,
            ..Default::default()
        };
        let starting =
            answer_while_starting(listener, persona_collector::starting_router(), limits);
        // A request head left unfinished: the stand-in holds the connection.
        let mut early = tokio::net::TcpStream::connect(addr).await.unwrap();
        early.write_all(b"GET /heal").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listening = starting.ready().await;
        assert_eq!(
            listening.slots.available_permits(),
            0,
            "the stand-in took it"
        );

        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let (never, never_either) = (std::future::pending(), std::future::pending());
        tokio::spawn(serve(listening, app, limits, never, never_either));
        let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let waiting = tokio::spawn(exchange(addr, request));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "answered past the cap");
        drop(early);
        let answer = waiting.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
