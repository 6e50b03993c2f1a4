//! Deliveries to an `https` receiver: its certificate is checked, and a private CA is
//! trusted once `ca_file` names it. The CA and the server certificate are made here with
//! the openssl command, as an operator would make them.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use persona_store::EmbeddedStore;
use persona_webhooks::{EVENTS, WebhookConfig, WebhookMetrics, Webhooks};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for localhost signed by it (`server.pem`,
/// `server.key`).
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req", "-x509", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
    ];
    ca.extend(ec);
    ca.extend(["-subj", "/CN=persona test CA"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-keyout", "server.key", "-out", "server.csr"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=localhost"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
}

/// An https server on a free port that answers 200 and records each request's event
/// header; returns its URL.
async fn https_receiver(dir: &Path, got: Arc<Mutex<Vec<String>>>) -> String {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, got) = (acceptor.clone(), got.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: not an error here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let got = got.clone();
                    async move {
                        let event = req.headers()["x-persona-event"]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        req.into_body().collect().await?;
                        got.lock().unwrap().push(event);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://localhost:{port}/hooks")
}

async fn ping_with(ca_file: Option<&Path>, data: &Path, url: &str) -> persona_webhooks::PingResult {
    let store = Arc::new(EmbeddedStore::open(data).unwrap());
    let config = WebhookConfig {
        ca_file: ca_file.map(Path::to_path_buf),
        ..WebhookConfig::default()
    };
    let webhooks =
        Webhooks::start(store, config.validate().unwrap(), WebhookMetrics::default()).unwrap();
    let hook = tokio::task::spawn_blocking({
        let (webhooks, url) = (webhooks.clone(), url.to_owned());
        move || {
            webhooks
                .create(
                    url,
                    vec![EVENTS[0].to_owned()],
                    Vec::new(),
                    "a secret of the test".into(),
                    true,
                )
                .unwrap()
        }
    })
    .await
    .unwrap();
    webhooks.ping(hook.id).await.unwrap()
}

#[tokio::test]
async fn an_https_receiver_is_reached_when_its_ca_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let got = Arc::new(Mutex::new(Vec::new()));
    let url = https_receiver(dir.path(), got.clone()).await;

    // Signed by a CA nobody trusts: refused, and the error says why.
    let refused = ping_with(None, &dir.path().join("store-a"), &url).await;
    assert!(!refused.delivered);
    let error = refused.error.unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(got.lock().unwrap().is_empty());

    // With the CA in `ca_file`: delivered over TLS.
    let ca = dir.path().join("ca.pem");
    let taken = ping_with(Some(&ca), &dir.path().join("store-b"), &url).await;
    assert!(taken.delivered, "{:?}", taken.error);
    assert_eq!(taken.status, Some(200));
    assert_eq!(*got.lock().unwrap(), ["ping"]);
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let config = WebhookConfig {
        ca_file: Some(empty),
        ..WebhookConfig::default()
    };
    let err = Webhooks::start(store, config.validate().unwrap(), WebhookMetrics::default())
        .err()
        .unwrap();
    assert!(
        err.contains("webhooks.ca_file") && err.contains("no certificate"),
        "{err}"
    );
}
