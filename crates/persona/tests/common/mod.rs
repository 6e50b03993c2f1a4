//! Helpers for end-to-end tests: run the real `persona` binary and talk HTTP to it.
#![allow(dead_code)] // each test file uses a different part

pub mod acked;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub const KEY: &str = "e2e-write-key";
pub const ADMIN: &str = "e2e-admin-token";

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_persona"));
    c.env("PERSONA_LOG", "warn");
    c
}

/// Runs a `persona` command to completion.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("persona runs")
}

/// Runs a `persona` command that must succeed (its stderr shown if not); returns stdout.
pub fn run_ok(args: &[&str]) -> Vec<u8> {
    let out = run(args);
    assert!(
        out.status.success(),
        "persona {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The Python with the test packages (scripts/test sets up its virtualenv).
pub fn python() -> String {
    std::env::var("PERSONA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a Python script (with the test packages) on `args`; returns its standard output,
/// failing the test with its standard error if it fails.
pub fn python_script(script: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(python())
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Starts `persona serve` with the config file `config`, which it must refuse; returns
/// what it printed on standard error.
pub fn serve_refuses(data_dir: &Path, config: &Path) -> String {
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .output()
        .expect("persona runs");
    assert!(
        !out.status.success(),
        "persona serve took {}",
        config.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `persona serve`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Everything it printed on stdout so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server on a free port with the given data folder and write key.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &["--write-key", KEY, "--admin-token", ADMIN], &[])
    }

    /// The same, configured by the file `config`.
    pub fn start_configured(data_dir: &Path, config: &Path) -> Server {
        let config = config.to_str().unwrap();
        let args = [
            "--config",
            config,
            "--write-key",
            KEY,
            "--admin-token",
            ADMIN,
        ];
        Self::start_with(data_dir, &args, &[])
    }

    pub fn start_with(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut command = bin();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(envs.iter().copied());
        Self::spawn(command)
    }

    /// Starts `command`, a `persona serve` (possibly wrapped), and waits for its address.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("persona serve starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server printed its address before exiting")
                .unwrap();
            stdout.lock().unwrap().push(line.clone());
            if let Some(rest) = line.strip_prefix("persona listening on http://") {
                break rest.parse().unwrap();
            }
        };
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            addr,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").arg(&pid).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }

    /// Waits for the server to exit (after a signal sent some other way).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// The exit status, if the server has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn printed(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build(HttpConnector::new());
        Http { client }
    }
}

impl Http {
    /// POSTs JSON with the write key as Basic auth; returns status and parsed body.
    pub async fn post(
        &self,
        base: &str,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
        );
        let req = Request::post(format!("{base}{path}"))
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let resp = self.client.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }
}

impl Http {
    /// Sends `method` with a JSON body (or none) and the admin token as Bearer auth, as the
    /// admin API takes it; returns status and parsed body.
    pub async fn admin(
        &self,
        method: &str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let body = body.map_or_else(String::new, |b| b.to_string());
        self.admin_sent_as(method, url, "Bearer", "application/json", body)
            .await
    }

    /// [`Http::admin`] with the `Authorization` scheme written as `scheme`, a body sent
    /// as it is, and `content_type`, as a hand-written client might send them.
    pub async fn admin_sent_as(
        &self,
        method: &str,
        url: &str,
        scheme: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let req = Request::builder()
            .method(method)
            .uri(url)
            .header(header::AUTHORIZATION, format!("{scheme} {ADMIN}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))?;
        let resp = self.client.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    /// GETs with the admin token (when given) as Bearer auth; returns status and parsed body.
    pub async fn get(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let (status, bytes) = self.get_bytes(url, token).await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    /// A GET whose answer is text, such as `/metrics`.
    pub async fn get_text(&self, url: &str) -> anyhow::Result<String> {
        let (_, bytes) = self.get_bytes(url, None).await?;
        Ok(String::from_utf8(bytes.to_vec())?)
    }

    async fn get_bytes(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut req = Request::get(url);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::new()))?)
            .await?;
        let status = resp.status();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    /// Tracks purchase `n` (revenue 100, its own `messageId`) of `user`, acknowledged.
    pub async fn purchase(&self, base: &str, user: &str, n: u32) {
        let body = serde_json::json!({"userId": user, "event": "Order Completed",
            "messageId": format!("{user}-{n}"), "properties": {"revenue": 100}});
        let (status, answer) = self.post(base, "/v1/track", KEY, &body).await.unwrap();
        assert_eq!(status, 200, "{answer}");
    }

    /// Waits until the processor has applied every record in the log.
    pub async fn wait_processed(&self, base: &str) {
        poll(
            "the processor to catch up",
            Duration::from_millis(20),
            || async move {
                let (_, ready) = self.get(&format!("{base}/readyz"), None).await.unwrap();
                (ready["processor"]["lag_records"] == 0).then_some(())
            },
        )
        .await
    }
}

/// How long a test waits for the server's background work (the processor, back-fills,
/// training) before it fails. Generous, because what is waited for is a debug build on a
/// loaded two-core machine; a test that is merely slow must not read as a broken feature.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Calls `probe` every `every` until it gives `Some`, and returns that; panics naming `what`
/// once [`PATIENCE`] has passed.
pub async fn poll<T, F, Fut>(what: &str, every: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(done) = probe().await {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        tokio::time::sleep(every).await;
    }
}

/// The blocking form of [`poll`], for tests that run commands rather than a runtime.
pub fn poll_blocking<T>(what: &str, every: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(done) = probe() {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        std::thread::sleep(every);
    }
}

/// `persona profiles export` of a stopped server, parsed.
pub fn exported_profiles(data_dir: &Path) -> Vec<serde_json::Value> {
    exported_profiles_as_of(data_dir, None)
}

/// The same, with time-relative fields as of `as_of` (RFC 3339) instead of now.
pub fn exported_profiles_as_of(data_dir: &Path, as_of: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec![
        "profiles",
        "export",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    args.extend(as_of.iter().flat_map(|a| ["--as-of", a]));
    String::from_utf8(run_ok(&args))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every record in the log under `data_dir`, parsed.
pub fn logged(data_dir: &Path) -> Vec<serde_json::Value> {
    logged_text(data_dir)
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

/// Every record in the data folder's log as the text stored, for what a parse would
/// change (key order, digits past 64 bits).
pub fn logged_text(data_dir: &Path) -> Vec<String> {
    let mut reader = persona_log::LogReader::open_dir(data_dir.join("log")).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = reader.read_batch(10_000).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(
            batch
                .iter()
                .map(|r| String::from_utf8(r.payload.to_vec()).unwrap()),
        );
    }
}

/// `persona log stats` parsed.
pub fn log_stats(data_dir: &Path) -> serde_json::Value {
    let out = run(&["log", "stats", "--data-dir", data_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let inner = files_under(&path);
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                out.extend(inner.into_iter().map(|f| format!("{name}/{f}")));
            } else {
                out.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
