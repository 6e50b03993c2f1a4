//! The HTTP server's defences against clients that hold connections: a deadline for
//! request heads (slowloris, idle keep-alive) and for answers nobody reads, and a cap on
//! open connections; and refused
//! bodies read to their end, so that their senders hear why. On the real binary over real
//! sockets.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{KEY, Server};

fn start(dir: &Path, http_section: &str) -> Server {
    let config = dir.join("persona.toml");
    std::fs::write(&config, format!("[http]\n{http_section}\n")).unwrap();
    Server::start_configured(&dir.join("data"), &config)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Sends `GET /healthz` on `s`, keeping the connection open.
fn ask_health(s: &mut TcpStream) {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: persona\r\n\r\n")
        .unwrap();
}

/// Reads one response head from `s` (the health answer's body is small and comes with it).
fn read_response(s: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads the answer to a health request sent on `s` and asserts it is 200.
fn assert_answered(s: &mut TcpStream) {
    let answer = read_response(s).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Asks `s` for `/healthz` and asserts the answer is 200, keeping the connection open.
fn assert_served(s: &mut TcpStream) {
    ask_health(s);
    assert_answered(s);
}

/// Reads until the server closes `s`; returns how long after `since` that was.
fn wait_for_close(s: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return since.elapsed(),
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "header_timeout_seconds = 1");

    // A slowloris client: a request line and one header, then nothing. The clock starts
    // before the connection, so a stall in the test can only lengthen what it measures.
    let since = Instant::now();
    let mut slow = connect(server.addr);
    slow.write_all(b"POST /v1/track HTTP/1.1\r\nHost: persona\r\n")
        .unwrap();
    let took = wait_for_close(&mut slow, since);
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before its deadline"
    );

    // A keep-alive connection that goes quiet after one request is closed the same way.
    let mut idle = connect(server.addr);
    assert_served(&mut idle);
    wait_for_close(&mut idle, Instant::now());

    // Clients that keep to the deadline are served as before.
    assert_served(&mut connect(server.addr));
}

/// A client that sends its whole body before it reads the answer, as the SDKs and most HTTP
/// libraries do, hears why a body was refused before its end (413 too large, 401 wrong or
/// malformed key, 404 wrong address) instead of a broken pipe: the server reads the rest and throws it away. Without
/// that, the reset of a connection closed with unread bytes reached the client before the
/// answer in most tries, and an SDK then retried what it should not.
#[test]
fn a_body_refused_before_its_end_is_read_so_its_sender_hears_why() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let pad = "a".repeat(2 << 20);
    let body = format!(
        r#"{{"batch":[{{"type":"track","event":"e","userId":"u","properties":{{"pad":"{pad}"}}}}]}}"#
    );
    let basic = |key: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        format!("Basic {encoded}")
    };
    let refusals = [
        ("/v1/batch", basic(KEY), "HTTP/1.1 413"),
        ("/v1/batch", basic("not-the-key"), "HTTP/1.1 401"),
        ("/v1/batch", "Bearer not-basic".to_string(), "HTTP/1.1 401"),
        ("/v1/batches", basic(KEY), "HTTP/1.1 404"),
    ];
    for (path, auth, want) in refusals {
        for _ in 0..3 {
            let mut s = connect(server.addr);
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: persona\r\nAuthorization: {auth}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body.as_bytes())
                .unwrap_or_else(|e| panic!("sending the body with {auth:?}: {e}"));
            let answer = read_response(&mut s).unwrap();
            assert!(answer.starts_with(want), "{auth:?}: {answer}");
        }
    }

    // A client that asks `Expect: 100-continue` sends nothing until told to: it hears the
    // refusal at once, and is not invited to send the body after all.
    let mut s = connect(server.addr);
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: persona\r\nAuthorization: {}\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        basic(KEY),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let answer = read_response(&mut s).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "max_connections = 2\nheader_timeout_seconds = 600",
    );
    let mut first = connect(server.addr);
    let mut second = connect(server.addr);
    assert_served(&mut first);
    assert_served(&mut second);

    // The third connects (the kernel queues it) but is not served while two are open.
    let mut third = connect(server.addr);
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    ask_health(&mut third);
    let err = read_response(&mut third).expect_err("served past the cap of 2 connections");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );

    // Once one of the two closes, the waiting one is taken and answered.
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_answered(&mut third);
}

/// A client that sends requests and never reads the answers fills the socket's buffers;
/// the server then gives up on it after the deadline instead of holding one of its
/// connection slots for good (here the only one). And a huge request head is refused.
#[test]
fn a_client_that_never_reads_its_answers_is_disconnected_and_a_huge_head_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "max_connections = 1\nheader_timeout_seconds = 1",
    );
    let mut hog = connect(server.addr);
    let requests = b"GET /healthz HTTP/1.1\r\nHost: persona\r\n\r\n".repeat(1000);
    // Writing blocks once the server stops reading; a minute without room is far past its
    // one-second deadline, and means it kept the connection.
    hog.set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let writer = std::thread::spawn(move || {
        loop {
            if let Err(e) = hog.write_all(&requests) {
                return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
            }
        }
    });
    let mut next = connect(server.addr);
    ask_health(&mut next);
    assert_answered(&mut next);
    assert!(
        writer.join().unwrap(),
        "the connection that reads nothing stayed open"
    );
    drop(next);

    // A request head past 64 KiB is refused, not buffered.
    let mut big = connect(server.addr);
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: persona\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(100 * 1024)
    );
    let _ = big.write_all(head.as_bytes());
    let answer = read_response(&mut big).unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// The soft and hard limits on open files of process `pid`, from `/proc`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let value = |i| match line.split_whitespace().nth(i).unwrap() {
        "unlimited" => u64::MAX,
        n => n.parse().unwrap(),
    };
    (value(3), value(4))
}

#[test]
fn a_low_open_file_limit_is_raised_to_fit_the_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    // Started as many systems start services: a soft limit of 256 open files.
    let mut command = std::process::Command::new("bash");
    command
        .arg("-c")
        .arg(r#"ulimit -S -n 256 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_persona"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--write-key",
            KEY,
            "--data-dir",
        ])
        .arg(dir.path())
        .env("PERSONA_LOG", "warn");
    let server = Server::spawn(command);
    let (soft, hard) = open_file_limits(server.pid());
    // The default cap of 10,000 connections plus the files the server keeps open itself.
    assert_eq!(soft, hard.min(11_024));
    assert_served(&mut connect(server.addr));
}

#[test]
fn bad_connection_limits_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (section, field) in [
        ("max_connections = 0", "http.max_connections"),
        ("header_timeout_seconds = -1", "http.header_timeout_seconds"),
        ("drain_delay_seconds = 7200", "http.drain_delay_seconds"),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, format!("[http]\n{section}\n")).unwrap();
        let stderr = common::serve_refuses(&dir.path().join("data"), &config);
        assert!(stderr.contains(field), "{section}: {stderr}");
    }
}
