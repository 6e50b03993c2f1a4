//! The `persona` commands end to end: serve's start-up and recovery, log stats, simulate
//! and import, and the ingestion benchmark's sweep of connection counts.

mod common;

use std::fs::OpenOptions;
use std::process::{Command, Stdio};

use common::{ADMIN, Http, KEY, Server, log_stats, logged, logged_text, run};
use serde_json::json;

#[tokio::test]
async fn start_recovers_a_torn_tail_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let http = Http::default();
    let mut server = Server::start(dir.path());
    for i in 0..20 {
        let (status, _) = http
            .post(
                &server.url(),
                "/v1/track",
                KEY,
                &json!({"userId": "u", "event": format!("e{i}")}),
            )
            .await
            .unwrap();
        assert!(status.is_success());
    }
    http.wait_processed(&server.url()).await;
    server.stop();
    assert_eq!(log_stats(dir.path())["records"], 20);

    // Cut the last record in half, as a crash mid-write would leave it.
    let segment = dir.path().join("log").join(format!("{:020}.log", 0));
    let len = persona_log::written_len(&segment).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let verify = run(&["log", "verify", "--data-dir", data_dir]);
    assert!(!verify.status.success());
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        said.contains("is damaged") && said.contains("torn write"),
        "{said}"
    );

    let mut server = Server::start(dir.path());
    let printed = server.printed();
    assert!(
        printed.contains("recovered the event log: kept 19 records"),
        "{printed}"
    );
    assert!(printed.contains("incomplete record"), "{printed}");
    // Another customer's event takes the offset (and the byte position) of the record cut
    // off, which the first customer's profile had already counted.
    let (status, _) = http
        .post(
            &server.url(),
            "/v1/track",
            KEY,
            &json!({"userId": "v", "event": "after"}),
        )
        .await
        .unwrap();
    assert!(status.is_success());
    http.wait_processed(&server.url()).await;
    let (_, v) = http
        .get(
            &format!("{}/v1/profiles/v/events", server.url()),
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(v["events"][0]["event"], "after", "{v}");
    let (_, u) = http
        .get(
            &format!("{}/v1/profiles/u/events?limit=100", server.url()),
            Some(ADMIN),
        )
        .await
        .unwrap();
    let names: Vec<&str> = u["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"after"),
        "u's history shows v's event: {names:?}"
    );
    assert_eq!(names.len(), 19, "{names:?}");
    server.stop();

    let stats = log_stats(dir.path());
    assert_eq!(stats["records"], 20);
    assert_eq!(stats["next_offset"], 20);
    let events: Vec<_> = logged(dir.path())
        .iter()
        .map(|m| m["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events[18], "e18");
    assert_eq!(events[19], "after");
    let verify = run(&["log", "verify", "--data-dir", data_dir]);
    assert!(verify.status.success(), "{verify:?}");
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["checked_records"], 20, "{report}");
    assert!(report.get("problem").is_none(), "{report}");
}

#[tokio::test]
async fn keys_are_generated_once_and_env_vars_configure_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &[], &[]);
    let printed = server.printed();
    assert!(printed.contains("generated write key"), "{printed}");
    assert!(printed.contains("generated admin token"), "{printed}");
    let key = std::fs::read_to_string(dir.path().join("write_key")).unwrap();
    assert!(printed.contains(&key));
    let http = Http::default();
    let body = json!({"userId": "u", "event": "x"});
    assert!(
        http.post(&server.url(), "/v1/track", &key, &body)
            .await
            .unwrap()
            .0
            .is_success()
    );
    server.stop();

    let mut server = Server::start_with(dir.path(), &[], &[]);
    assert!(
        !server.printed().contains("generated"),
        "keys are printed only when generated"
    );
    server.stop();

    let mut server = Server::start_with(dir.path(), &[], &[("PERSONA_WRITE_KEY", "from-env")]);
    let (status, _) = http
        .post(&server.url(), "/v1/track", "from-env", &body)
        .await
        .unwrap();
    assert!(status.is_success());
    server.stop();
}

/// A start that fails on a taken port or on bad settings generates no key (the next start,
/// finding one saved, would never print it); a new data folder is its owner's alone; a
/// hang-up drains like a stop; and a second stop signal does not wait for a client that
/// stalls in the middle of a request.
#[tokio::test]
async fn serve_starts_and_stops_as_an_operator_expects() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("generated"));
    assert!(!data.join("write_key").exists() && !data.join("admin_token").exists());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    let config = dir.path().join("persona.toml");
    std::fs::write(&config, "[collector]\nmax_message_bytes = 0\n").unwrap();
    let out = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid collector settings"));
    assert!(!data.join("write_key").exists() && !data.join("admin_token").exists());

    let mut server = Server::start_with(&data, &[], &[]);
    assert!(server.printed().contains("generated write key"));
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(&mut stalled, b"GET /heal").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = server.pid().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Still draining: the stalled client holds it open.
    assert!(server.try_wait().is_none());
    let asked = std::time::Instant::now();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(server.wait().success());
    // Without the second signal it would wait for the client up to the drain deadline.
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
}

/// With `http.drain_delay_seconds`, a stopping server fails `/readyz` at once but goes on
/// taking and acknowledging events, on new connections too, until the delay has passed, as a
/// load balancer needs to take it out of rotation without refused connections.
#[tokio::test]
async fn a_drain_delay_keeps_taking_events_while_readyz_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("persona.toml");
    std::fs::write(&config, "[http]\ndrain_delay_seconds = 3\n").unwrap();
    let mut server = Server::start_configured(&dir.path().join("data"), &config);
    let http = Http::default();
    let (status, _) = http
        .get(&format!("{}/readyz", server.url()), None)
        .await
        .unwrap();
    assert_eq!(status, 200);

    let asked = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    let readyz = format!("{}/readyz", server.url());
    let every = std::time::Duration::from_millis(20);
    let body = common::poll("readyz to fail", every, || async {
        let (status, body) = http.get(&readyz, None).await.ok()?;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["problems"], json!(["shutting down"]));
    // A fresh client, so a new connection: the listener is still open.
    let (status, _) = Http::default()
        .post(
            &server.url(),
            "/v1/track",
            KEY,
            &json!({"userId": "u", "event": "late"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(server.wait().success());
    assert!(
        asked.elapsed() >= std::time::Duration::from_secs(3),
        "stopped after {:?}, before the drain delay",
        asked.elapsed()
    );
    let events = logged(&dir.path().join("data"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "late");

    // A second signal cuts the delay short.
    std::fs::write(&config, "[http]\ndrain_delay_seconds = 60\n").unwrap();
    let mut server = Server::start_configured(&dir.path().join("data"), &config);
    let pid = server.pid().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let readyz = format!("{}/readyz", server.url());
    common::poll("readyz to fail", every, || async {
        let (status, _) = http.get(&readyz, None).await.ok()?;
        (status == 503).then_some(())
    })
    .await;
    let asked = std::time::Instant::now();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(server.wait().success());
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
}

/// Every setting of `serve` from the environment alone, as a container would pass them;
/// and the data folder `./persona-data` when none is given.
#[tokio::test]
async fn serve_takes_every_setting_from_persona_env_vars() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let mut command = common::bin();
    command
        .arg("serve")
        .current_dir(dir.path())
        .env("PERSONA_DATA_DIR", &data)
        .env("PERSONA_LISTEN", "127.0.0.1:0")
        .env("PERSONA_WRITE_KEY", "env-key")
        .env("PERSONA_ADMIN_TOKEN", "env-token");
    let mut server = Server::spawn(command);
    assert!(
        !server.printed().contains("generated"),
        "{}",
        server.printed()
    );
    let http = Http::default();
    let body = json!({"userId": "u", "event": "x"});
    let (status, _) = http
        .post(&server.url(), "/v1/track", "env-key", &body)
        .await
        .unwrap();
    assert!(status.is_success(), "{status}");
    let segments = format!("{}/v1/segments", server.url());
    let (status, _) = http.get(&segments, Some("env-token")).await.unwrap();
    assert!(status.is_success(), "{status}");
    let (status, _) = http.get(&segments, Some("other")).await.unwrap();
    assert_eq!(status.as_u16(), 401);
    server.stop();
    assert_eq!(log_stats(&data)["records"], 1);
    assert!(!dir.path().join("persona-data").exists());

    let mut command = common::bin();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--write-key", KEY])
        .current_dir(dir.path());
    let mut server = Server::spawn(command);
    server.stop();
    assert!(dir.path().join("persona-data").join("log").is_dir());
}

/// `persona log stats` on a running server's data folder: every field the issue names, and
/// the live processor listed with its committed offset.
#[tokio::test]
async fn log_stats_lists_the_processor_with_its_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let http = Http::default();
    for i in 0..5 {
        let body = json!({"userId": format!("u{i}"), "event": "x"});
        let (status, _) = http
            .post(&server.url(), "/v1/track", KEY, &body)
            .await
            .unwrap();
        assert!(status.is_success());
    }
    http.wait_processed(&server.url()).await;
    // Read while the server runs: the log's lock does not stop a reader.
    let stats = log_stats(dir.path());
    for field in [
        "records",
        "segments",
        "bytes",
        "first_offset",
        "next_offset",
    ] {
        assert!(stats[field].is_u64(), "{field} missing in {stats}");
    }
    assert_eq!(
        (stats["records"].as_u64(), stats["next_offset"].as_u64()),
        (Some(5), Some(5))
    );
    let processor = &stats["consumers"]["processor"];
    let committed = processor["committed_offset"].as_u64().expect("a number");
    assert!(committed <= 5, "{stats}");
    assert_eq!(processor["lag"].as_u64(), Some(5 - committed), "{stats}");
    assert!(stats.get("last_segment_problem").is_none(), "{stats}");
    // With no more traffic, the processor still tells the log once the store has the
    // five on disk (its journal is synced every 100 ms): the log's start-up then knows
    // damage to them for what it is.
    common::poll_blocking(
        "processed_offset 5",
        std::time::Duration::from_millis(50),
        || {
            let stats = log_stats(dir.path());
            (stats["consumers"]["processor"]["processed_offset"] == 5).then_some(())
        },
    );
    server.stop();

    // Damage to one of them is refused at start, not cut as a torn write, although the
    // processor's committed offset (behind its dedupe window) is 0.
    let seg = dir.path().join("log/00000000000000000000.log");
    let pristine = std::fs::read(&seg).unwrap();
    let mut damaged = pristine.clone();
    damaged[300] ^= 0x40;
    std::fs::write(&seg, &damaged).unwrap();
    let mut refused = common::bin()
        .args(["serve", "--data-dir", dir.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--write-key", KEY])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::poll_blocking(
        "the refused start to end",
        std::time::Duration::from_millis(50),
        || refused.try_wait().unwrap(),
    );
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("damage is to acknowledged records"), "{err}");
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        damaged,
        "the segment was changed"
    );
    std::fs::write(&seg, &pristine).unwrap();

    // Damage inside the second record: the records before it are counted, and the stats
    // say where the rest stopped being readable.
    let seg = dir.path().join("log/00000000000000000000.log");
    let mut f = OpenOptions::new().write(true).open(&seg).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(300)).unwrap();
    std::io::Write::write_all(&mut f, b"XXXX").unwrap();
    let out = run(&["log", "stats", "--data-dir", dir.path().to_str().unwrap()]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["records"], 1, "{stats}");
    let problem = stats["last_segment_problem"].as_str().unwrap_or_default();
    assert!(problem.starts_with("00000000000000000000.log: "), "{stats}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("torn or damaged tail"));

    let missing = dir.path().join("nothing-here");
    let out = run(&["log", "stats", "--data-dir", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the folder does not exist"), "{err}");
}

#[test]
fn serve_names_a_data_folder_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, "").unwrap();
    let out = run(&[
        "serve",
        "--data-dir",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--write-key",
        KEY,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not a folder"), "{err}");
}

#[test]
fn a_bad_config_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("persona.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nwrite_keys = [\"k\"]\n[log]\nsegment_byte = 5\n",
    )
    .unwrap();
    let out = run(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("persona.toml") && err.contains("segment_byte"),
        "{err}"
    );
}

#[test]
fn simulate_is_reproducible_and_writes_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let sim = |seed: &str, out: &str| {
        let o = run(&[
            "simulate",
            "--customers",
            "60",
            "--days",
            "30",
            "--seed",
            seed,
            "--end",
            "2026-11-01T00:00:00Z",
            "--out",
            &p(out),
            "--truth",
            &p(&format!("{out}.csv")),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(p(out)).unwrap()
    };
    let a = sim("7", "a.jsonl");
    assert_eq!(a, sim("7", "b.jsonl"), "same seed, same events");
    assert_ne!(a, sim("8", "c.jsonl"));

    let truth = std::fs::read_to_string(p("a.jsonl.csv")).unwrap();
    assert_eq!(truth.lines().count(), 61);
    let personas: std::collections::HashSet<_> = truth
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    assert!(personas.len() >= 4, "{personas:?}");

    let lines: Vec<serde_json::Value> = a
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let times: Vec<&str> = lines
        .iter()
        .map(|m| m["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ordered by time");
    let orders: Vec<_> = lines
        .iter()
        .filter(|m| m["event"] == "Order Completed")
        .collect();
    assert!(!orders.is_empty());
    assert!(
        orders
            .iter()
            .all(|o| o["properties"]["revenue"].as_f64().unwrap() > 0.0 && o["userId"].is_string())
    );
    for kind in ["identify", "page", "screen", "track"] {
        assert!(lines.iter().any(|m| m["type"] == kind), "no {kind}");
    }
    assert!(lines.iter().any(|m| m["event"] == "Email Link Clicked"));
}

#[test]
fn simulate_refuses_bad_arguments_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.jsonl");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["--customers", "10", "--days", "5"],
            &["--out", "--target"],
        ),
        (
            &["--customers", "4000000000", "--days", "1", "--out", out],
            &["--customers", "GiB in memory"],
        ),
        (
            &["--customers", "0", "--days", "5", "--out", out],
            &["--customers"],
        ),
        (
            &["--customers", "10", "--days", "0", "--out", out],
            &["--days"],
        ),
        (
            &["--customers", "10", "--days", "4000000000", "--out", out],
            &["--days"],
        ),
        (
            &[
                "--customers",
                "10",
                "--days",
                "5",
                "--target",
                "http://127.0.0.1:9",
            ],
            &["--write-key"],
        ),
    ];
    for (args, named) in cases {
        let o = run(&[&["simulate"][..], args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        for n in named {
            assert!(err.contains(n), "{args:?}: {err}");
        }
    }
    assert!(!std::path::Path::new(out).exists(), "nothing written");

    // A run that fails leaves no ground truth behind for events that were never sent.
    let truth = dir.path().join("truth.csv");
    let o = run(&[
        "simulate",
        "--customers",
        "3",
        "--days",
        "2",
        "--target",
        "http://127.0.0.1:9",
        "--write-key",
        "k",
        "--truth",
        truth.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("sending to http://127.0.0.1:9 stopped after 0 messages"),
        "{err}"
    );
    assert!(err.contains("repeat the command with --end "), "{err}");
    // The cause before the advice.
    assert!(
        err.find("stopped after") < err.find("to send the same messages again"),
        "{err}"
    );
    assert!(!truth.exists());

    // A truth path that cannot be made leaves an existing output file as it was.
    let kept = dir.path().join("kept.jsonl");
    std::fs::write(&kept, "earlier run\n").unwrap();
    let into_kept = |truth: &str| {
        let out = kept.to_str().unwrap();
        let args = [
            "--customers",
            "3",
            "--days",
            "2",
            "--out",
            out,
            "--truth",
            truth,
        ];
        run(&[&["simulate"][..], &args].concat())
    };
    let o = into_kept("/nonexistent/t.csv");
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "earlier run\n");
    let o = into_kept(kept.to_str().unwrap());
    assert!(String::from_utf8_lossy(&o.stderr).contains("the same file"));
}

#[test]
fn simulate_writes_to_standard_output() {
    let o = run(&["simulate", "--customers", "3", "--days", "5", "--out", "-"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.lines().count() > 3, "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON message a line");
    }
}

/// What a data engineer feeds `import` besides plain JSONL: gzip, standard input, a file
/// saved with a byte-order mark, a folder by mistake, a line holding a whole batch body.
#[test]
fn import_reads_gzip_and_standard_input_and_names_what_it_cannot_read() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let msg = |i: usize| json!({"type": "track", "userId": format!("u{i}"), "event": "e"});
    let text = format!(
        "\u{FEFF}{}\n{}\n{}\n",
        msg(1),
        json!({"batch": [msg(2)]}),
        msg(3)
    );
    let gz = dir.path().join("in.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = run(&[
        "import",
        gz.to_str().unwrap(),
        "--data-dir",
        data,
        "--max-rejects",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("imported 2 messages"), "{err}");
    assert!(err.contains("line 2: is a batch body"), "{err}");
    assert!(
        err.contains("has no event log yet; a new one is made"),
        "{err}"
    );

    // A gzip file damaged in the middle: nothing of it is imported (gzip would only notice
    // at its end, after handing over altered lines).
    let mut damaged = std::fs::read(&gz).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    let bad = dir.path().join("bad.jsonl.gz");
    std::fs::write(&bad, damaged).unwrap();
    let out = run(&["import", bad.to_str().unwrap(), "--data-dir", data]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is not a whole gzip file") && err.contains("nothing was imported"),
        "{err}"
    );

    // One huge line (a JSON array export, say) is skipped without being held, and named.
    let array = dir.path().join("array.json");
    let items: Vec<_> = (0..30_000).map(msg).collect();
    std::fs::write(&array, serde_json::to_string(&items).unwrap()).unwrap();
    let out = run(&["import", array.to_str().unwrap(), "--data-dir", data]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("line 1: is ") && err.contains("not JSON lines"),
        "{err}"
    );

    let from_stdin = |input: Vec<u8>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_persona"))
            .args(["import", "-", "--data-dir", data])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = from_stdin(format!("{}\n", msg(4)).into_bytes());
    assert!(ok, "{err}");
    // Gzip on standard input is checked whole before anything is imported, as a file is.
    let damaged = std::fs::read(&bad).unwrap();
    let (ok, err) = from_stdin(damaged);
    assert!(!ok && err.contains("nothing was imported"), "{err}");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(format!("{}\n", msg(5)).as_bytes()).unwrap();
    let (ok, err) = from_stdin(enc.finish().unwrap());
    assert!(ok && err.contains("imported 1 messages"), "{err}");
    let users: Vec<_> = logged(std::path::Path::new(data))
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users, ["u1", "u3", "u4", "u5"]);

    let out = run(&["import", dir.path().to_str().unwrap(), "--data-dir", data]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is a folder, not a file of JSON lines"),
        "{err}"
    );

    // A wrong file name fails before a new data folder is made for it.
    let fresh = dir.path().join("fresh");
    let missing = dir.path().join("missing.jsonl");
    let out = run(&[
        "import",
        missing.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(!fresh.exists(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn import_backfills_with_original_timestamps_and_reports_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    let lines = [
        json!({"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 12.5},
               "timestamp": "1997-01-01T00:00:00Z", "sentAt": "1997-01-01T00:00:05Z", "messageId": "m1"}).to_string(),
        "{broken".to_string(),
        // Half an emoji (JSON.stringify of a string cut inside one) is kept as U+FFFD.
        r#"{"type": "identify", "userId": "u1", "traits": {"country": "DE", "name": "Jo \ud83d"}, "timestamp": "1997-01-02T00:00:00Z"}"#.to_string(),
        String::new(),
        json!({"type": "track", "userId": "u1"}).to_string(),
    ];
    let mut text = lines.join("\n").into_bytes();
    // A Latin-1 byte and Python's NaN, on a line ended as on Windows (the `\r` is JSON
    // whitespace): repaired, not refused.
    text.extend_from_slice(
        b"\n{\"type\": \"track\", \"userId\": \"u1\", \"event\": \"Caf\xe9\", \"properties\": \
          {\"price\": NaN}, \"timestamp\": \"1997-01-03T00:00:00Z\"}\r\n",
    );
    std::fs::write(&file, text).unwrap();
    let data = dir.path().join("data");
    let out = run(&[
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    // Rejects fail the command (so a script notices), after the valid lines are in.
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("imported 3 messages") && err.contains("rejected 2"),
        "{err}"
    );
    assert!(err.contains("more than --max-rejects 0"), "{err}");
    assert!(err.contains("line 2: not JSON"), "{err}");
    assert!(err.contains("line 5: `event`"), "{err}");

    let logged = logged(&data);
    assert_eq!(logged.len(), 3);
    assert_eq!(logged[2]["event"], "Caf\u{FFFD}");
    assert_eq!(logged[2]["properties"], json!({"price": null}));
    assert_eq!(logged[0]["messageId"], "m1");
    assert_eq!(logged[0]["timestamp"], "1997-01-01T00:00:00.000Z");
    assert_eq!(logged[1]["timestamp"], "1997-01-02T00:00:00.000Z");
    assert_eq!(logged[1]["traits"]["name"], "Jo \u{FFFD}");
}

/// Through a server, rejects are named by their line in the file (not their place in one
/// HTTP batch), a message too large for any batch is a reject rather than the end of the
/// import, and a second run gives the messages without an id the same ids as the first.
#[tokio::test]
async fn an_import_through_a_server_names_rejects_by_line_and_repeats_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    let huge = "x".repeat(600 * 1024);
    let lines = [
        json!({"type": "track", "userId": "u1", "event": "A", "timestamp": "2026-01-01T00:00:00Z",
               "sentAt": "2026-01-01T00:00:01Z"}),
        json!({"type": "track", "userId": "u2", "event": "B", "timestamp": "2026-01-01T00:00:00Z"}),
        json!({"type": "track", "userId": "u3"}),
        json!({"type": "track", "userId": "u4", "event": "C", "properties": {"blob": huge}}),
        json!({"type": "page", "anonymousId": "a5", "name": "Home", "messageId": "own-id"}),
    ];
    let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
    std::fs::write(&file, text.join("\n")).unwrap();

    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let url = server.url();
    let f = file.to_str().unwrap();
    let import = [
        "import",
        f,
        "--target",
        &url,
        "--write-key",
        KEY,
        "--batch-size",
        "2",
        "--max-rejects",
        "2",
    ];
    for _ in 0..2 {
        let o = run(&import);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains("imported 3 messages") && err.contains("rejected 2"),
            "{err}"
        );
        assert!(err.contains("line 3: `event`"), "{err}");
        // Measured before sending, as a direct import measures it.
        assert!(err.contains("line 4: message is"), "{err}");
        // In line order, though batches are answered in parallel.
        assert!(err.find("line 3:") < err.find("line 4:"), "{err}");
    }
    server.stop();

    let ids: Vec<String> = logged(&data)
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    let (first, second) = ids.split_at(3);
    let (mut first, mut second) = (first.to_vec(), second.to_vec());
    first.sort();
    second.sort();
    assert_eq!(
        first, second,
        "the second run must repeat the first run's ids"
    );
    assert!(first.contains(&"own-id".to_string()));
    assert_eq!(
        first.iter().collect::<std::collections::HashSet<_>>().len(),
        3
    );

    // Straight into a stopped server's log, the same lines get the same ids: a retry in
    // the other mode is still recognised as a copy.
    let direct = dir.path().join("direct");
    let o = run(&[
        "import",
        f,
        "--data-dir",
        direct.to_str().unwrap(),
        "--max-rejects",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut direct_ids: Vec<String> = logged(&direct)
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    direct_ids.sort();
    assert_eq!(direct_ids, first);
}

/// An import stores each message as the HTTP collector stores one sent to it: its keys in
/// the order sent, its nested objects as written and its numbers with every digit, past 64
/// bits too, whether it goes straight into the log or through a server. So a customer
/// whose id is a large number has one id, however their events came in.
#[test]
fn an_import_keeps_messages_as_sent_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    let big = "123456789012345678901234567";
    std::fs::write(
        &file,
        format!(
            r#"{{"type":"track","userId":{big},"event":"Big","properties":{{"b":1,"a":2,"id":{big},"price":1.10}},"timestamp":"2026-01-01T00:00:00Z","messageId":"m1"}}"#
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let direct = dir.path().join("direct");
    let o = run(&["import", f, "--data-dir", direct.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let served = dir.path().join("served");
    let mut server = Server::start(&served);
    let o = run(&["import", f, "--target", &server.url(), "--write-key", KEY]);
    server.stop();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let records = [logged_text(&direct), logged_text(&served)].concat();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert!(record.contains(&format!(r#""userId":"{big}""#)), "{record}");
        assert!(
            record.contains(&format!(
                r#""properties":{{"b":1,"a":2,"id":{big},"price":1.10}}"#
            )),
            "{record}"
        );
        // The message's own keys first, in the order sent.
        assert!(
            record.starts_with(r#"{"type":"track","userId":"#),
            "{record}"
        );
    }
}

/// `persona log stats | head -1`: a reader that stops early ends the output, as it does
/// for any Unix tool, without a panic or a failed command.
#[test]
fn log_stats_piped_into_a_reader_that_stops_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, r#"{"type":"track","userId":"u1","event":"A"}"#).unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let o = run(&["import", file.to_str().unwrap(), "--data-dir", data]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut child = common::bin()
        .args(["log", "stats", "--data-dir", data])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the command has started writing: its first write finds no reader.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn simulate_and_import_send_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim.jsonl");
    let f = file.to_str().unwrap();
    let common = [
        "--customers",
        "40",
        "--days",
        "20",
        "--seed",
        "3",
        "--end",
        "2026-11-01T00:00:00Z",
    ];
    let o = run(&[&["simulate"][..], &common, &["--out", f]].concat());
    assert!(o.status.success());
    let expected = std::fs::read_to_string(&file).unwrap().lines().count();

    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let url = server.url();
    let o = run(&[
        &["simulate"][..],
        &common,
        &["--target", &url, "--write-key", KEY],
    ]
    .concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["import", f, "--target", &url, "--write-key", KEY]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The log is locked by the server, so a direct import is refused with a hint.
    let o = run(&["import", f, "--data-dir", data.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--target"));
    server.stop();

    let stats = log_stats(&data);
    assert_eq!(stats["records"], 2 * expected as u64);
    // Sent live or imported, the simulated history keeps its own timestamps (no sentAt, so
    // no skew correction). Batches go in parallel, so match records by messageId.
    let want: std::collections::HashMap<String, String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            let ts =
                chrono::DateTime::parse_from_rfc3339(m["timestamp"].as_str().unwrap()).unwrap();
            (
                m["messageId"].as_str().unwrap().to_string(),
                ts.to_rfc3339(),
            )
        })
        .collect();
    for m in logged(&data) {
        let ts = chrono::DateTime::parse_from_rfc3339(m["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(want[m["messageId"].as_str().unwrap()], ts.to_rfc3339());
    }
}

#[tokio::test]
async fn the_example_config_file_works() {
    let dir = tempfile::tempdir().unwrap();
    // Read at run time: a test binary reused from a build in another checkout must not
    // point into that checkout.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let example = format!("{manifest}/../../docs/config.example.toml");
    let mut server = Server::start_with(dir.path(), &["--config", &example], &[]);
    let body = json!({"userId": "u", "event": "x"});
    let http = Http::default();
    let (status, _) = http
        .post(&server.url(), "/v1/track", "my-app-write-key", &body)
        .await
        .unwrap();
    assert!(status.is_success());
    let (status, _) = http
        .post(&server.url(), "/v1/track", "not-configured", &body)
        .await
        .unwrap();
    assert_eq!(status, 401);
    server.stop();
}

/// `persona bench ingest` with a list of connection counts runs the max-load rounds at each,
/// compares each server at its best count, and draws the rates as a chart, as the README's
/// Speed section shows them; `--collector-alone` adds the collector and the log without the
/// processor as a third server. Timings are not judged here, only that every part is measured.
#[test]
fn bench_ingest_sweeps_connection_counts_and_draws_them_with_the_collector_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (json, svg) = (dir.path().join("bench.json"), dir.path().join("bench.svg"));
    let out = run(&[
        "bench",
        "ingest",
        "--seconds",
        "0.3",
        "--rounds",
        "1",
        "--single-connections",
        "4,8",
        "--batch-connections",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--collector-alone",
    ]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "at 4 connections, persona vs no-op handler",
        "at 8 connections, persona vs no-op handler",
        "each server at its best connection count",
        "at 8 connections, collector and log alone vs no-op handler",
        "the collector and log alone at their best",
    ] {
        assert!(printed.contains(line), "no {line:?} in:\n{printed}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let counts: Vec<u64> = report["by_connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|at| {
            for rate in ["noop_requests_per_sec", "persona_requests_per_sec", "ratio"] {
                assert!(at[rate].as_f64().unwrap() > 0.0, "{rate} in {at}");
            }
            let alone = &at["collector_alone"];
            assert!(alone["requests_per_sec"].as_f64().unwrap() > 0.0, "{at}");
            assert_eq!(alone["rounds"].as_array().unwrap().len(), 1, "{at}");
            at["connections"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(counts, [4, 8]);
    assert!(report["best_vs_best_ratio"].as_f64().unwrap() > 0.0);
    assert!(
        report["collector_alone_best_vs_best_ratio"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        report["single_vs_noop_ratio"],
        report["by_connections"][0]["ratio"]
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "{chart}");
    assert_eq!(chart.matches("<polyline").count(), 3, "one line a server");
    assert_eq!(
        chart.matches("<circle").count(),
        6,
        "one point a server and count"
    );
    assert!(chart.contains("collector and log alone"), "{chart}");

    let zero = run(&["bench", "ingest", "--single-connections", "64,0"]);
    assert!(!zero.status.success());
    assert!(
        String::from_utf8_lossy(&zero.stderr).contains("--single-connections"),
        "{}",
        String::from_utf8_lossy(&zero.stderr)
    );
}

/// `persona bench webhooks` subscribes local receivers, back-fills a segment every customer
/// is in, and reports when every receiver has taken every entry. Timings are not judged.
#[test]
fn bench_webhooks_counts_every_delivery_to_every_receiver() {
    let out = run(&["bench", "webhooks", "--customers", "150", "--webhooks", "2"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("150 deliveries to each of 2 webhook(s)"),
        "{printed}"
    );
    let zero = run(&["bench", "webhooks", "--webhooks", "0"]);
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--webhooks"));
}
