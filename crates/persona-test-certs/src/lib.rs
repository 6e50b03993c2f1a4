//! Certificates for persona's TLS tests (PostgreSQL, Redis, Kafka), made with the openssl
//! command (`scripts/test` makes sure it is installed), as an operator would make them.
//! A dev-dependency only: nothing in a build of persona uses it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate file and its private key's file, both PEM.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed server certificate in `dir` (`NAME.pem`, `NAME-key.pem`) with the
/// subject `CN=NAME` and `subject_alt_name` (`DNS:localhost`, `IP:127.0.0.1`): a server's
/// certificate, not an authority's, which is what TLS clients accept as a server's even
/// when it is also the one authority they trust.
pub fn self_signed(dir: &Path, name: &str, subject_alt_name: &str) -> SelfSigned {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName={subject_alt_name}")])
        // openssl's default for `req -x509` is an authority's certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command runs (scripts/test installs it)");
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    SelfSigned { cert, key }
}
