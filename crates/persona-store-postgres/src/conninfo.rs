//! The TLS settings of a connection string, read as libpq reads them.
//!
//! tokio-postgres parses a connection string itself but knows only `sslmode=disable`,
//! `prefer` and `require`, and refuses `verify-ca`, `verify-full` and `sslrootcert`: the
//! settings a managed database's instructions give. So they are taken out here, the rest
//! goes on to tokio-postgres, and the mode is set on its config in code (`require` for
//! either `verify-` mode). Both forms are read: URLs (`postgres://…?sslmode=verify-full`)
//! and `key=value` strings (`host=db sslmode=verify-full`). Messages about them never show
//! a value: it may be a password.

use std::path::PathBuf;

/// How much TLS a connection asks for, with libpq's names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default).
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS with a certificate signed by a trusted authority.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

/// Which certificate authorities a connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// None named: the system's when a certificate is checked.
    Unset,
    /// `sslrootcert=system`: the system's.
    System,
    /// The PEM file `sslrootcert` names.
    File(PathBuf),
}

/// The TLS settings of one connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    pub(crate) roots: RootCerts,
}

impl TlsSettings {
    /// Whether the server's certificate is checked: always in the `verify-` modes, and, as
    /// libpq does, in `require` and `prefer` when an authority was named.
    pub(crate) fn checks_chain(&self) -> bool {
        match self.mode {
            SslMode::Disable => false,
            SslMode::Prefer | SslMode::Require => self.roots != RootCerts::Unset,
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }
}

/// Settings of libpq's that persona cannot honour: refused rather than ignored, since a
/// user who sets them expects them to be in force.
const UNSUPPORTED: [&str; 5] = ["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

/// `conninfo` without its TLS settings, which are returned beside it.
pub(crate) fn split_tls(conninfo: &str) -> Result<(String, TlsSettings), String> {
    let query = url_query_start(conninfo);
    let pairs = match query {
        Some(Some(at)) => url_pairs(&conninfo[at + 1..])?,
        Some(None) => Vec::new(),
        None => keyword_pairs(conninfo)?,
    };
    let mut mode = None;
    let mut roots = RootCerts::Unset;
    let mut kept = Vec::new();
    for pair in pairs {
        match pair.key.as_str() {
            "" => return Err("a setting has no name before its '='".into()),
            "sslmode" => {
                mode = Some(match pair.value.as_str() {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    // libpq's "allow" tries plain first, which tokio-postgres cannot do.
                    other => {
                        return Err(format!(
                            "sslmode {other:?} is not one of disable, prefer, require, \
                             verify-ca, verify-full"
                        ));
                    }
                })
            }
            "sslrootcert" => {
                roots = match pair.value.as_str() {
                    "" => return Err("sslrootcert is empty: name a PEM file, or \"system\"".into()),
                    "system" => RootCerts::System,
                    path => RootCerts::File(PathBuf::from(path)),
                }
            }
            key if UNSUPPORTED.contains(&key) => {
                return Err(format!(
                    "{key} is not supported: persona connects over TLS without a client \
                     certificate or revocation lists"
                ));
            }
            _ => kept.push(pair.raw),
        }
    }
    // As libpq 16: the system's authorities call for the full check, and only that.
    let mode = match (mode, &roots) {
        (None, RootCerts::System) => SslMode::VerifyFull,
        (Some(mode), RootCerts::System) if mode != SslMode::VerifyFull => {
            return Err("sslrootcert=system needs sslmode=verify-full (or no sslmode)".into());
        }
        // Any public authority vouches for some certificate, of some name: without the name
        // checked, only an authority of the user's own means anything.
        (Some(SslMode::VerifyCa), RootCerts::Unset) => {
            return Err(
                "sslmode=verify-ca needs sslrootcert=FILE naming the authority; \
                 with the system's authorities, use sslmode=verify-full"
                    .into(),
            );
        }
        (mode, _) => mode.unwrap_or(SslMode::Prefer),
    };
    let rest = match query {
        Some(Some(at)) if kept.is_empty() => conninfo[..at].to_string(),
        Some(Some(at)) => format!("{}?{}", &conninfo[..at], kept.join("&")),
        Some(None) => conninfo.to_string(),
        None => kept.join(" "),
    };
    Ok((rest, TlsSettings { mode, roots }))
}

/// For a URL, where its query string starts (`None` without one); `None` for a
/// `key=value` string. As tokio-postgres reads a URL: user and password run to the first
/// `@`, and the query starts at the first `?` after them.
fn url_query_start(conninfo: &str) -> Option<Option<usize>> {
    let scheme = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|scheme| conninfo.starts_with(scheme))?;
    let after_credentials = conninfo[scheme.len()..]
        .find('@')
        .map_or(scheme.len(), |at| scheme.len() + at + 1);
    Some(
        conninfo[after_credentials..]
            .find('?')
            .map(|at| after_credentials + at),
    )
}

/// One `key=value` setting: its key and value decoded, and its text as written.
struct Pair {
    key: String,
    value: String,
    raw: String,
}

/// The settings of a URL's query string, percent-decoded.
fn url_pairs(query: &str) -> Result<Vec<Pair>, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            // Not shown: it may be a password.
            .map_err(|_| {
                "a setting in the query string is not UTF-8 once percent-decoded".to_string()
            })
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .enumerate()
        .map(|(n, raw)| {
            let (key, value) = raw
                .split_once('=')
                .ok_or_else(|| format!("setting {} of the query string has no '='", n + 1))?;
            Ok(Pair {
                key: decode(key)?,
                value: decode(value)?,
                raw: raw.to_string(),
            })
        })
        .collect()
}

/// The settings of a `key=value` string, as libpq splits it: spaces around `=` allowed, a
/// value in single quotes may hold spaces, and a backslash takes the next character as is.
fn keyword_pairs(conninfo: &str) -> Result<Vec<Pair>, String> {
    let text: Vec<char> = conninfo.chars().collect();
    let mut at = 0;
    let skip_spaces = |at: &mut usize| {
        while *at < text.len() && text[*at].is_whitespace() {
            *at += 1;
        }
    };
    let mut pairs = Vec::new();
    loop {
        skip_spaces(&mut at);
        if at == text.len() {
            return Ok(pairs);
        }
        let start = at;
        while at < text.len() && !text[at].is_whitespace() && text[at] != '=' {
            at += 1;
        }
        let key: String = text[start..at].iter().collect();
        skip_spaces(&mut at);
        if text.get(at) != Some(&'=') {
            // Not named: a password with a space in it gets here.
            return Err(format!(
                "the word at character {} is not a key=value setting (quote values with \
                 spaces in them: key='a b')",
                start + 1
            ));
        }
        at += 1;
        skip_spaces(&mut at);
        let mut value = String::new();
        let quoted = text.get(at) == Some(&'\'');
        if quoted {
            at += 1;
        }
        loop {
            match text.get(at) {
                None if quoted => return Err(format!("the value of {key} has no closing quote")),
                None => break,
                Some('\'') if quoted => {
                    at += 1;
                    break;
                }
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => {
                    let escaped = text
                        .get(at + 1)
                        .ok_or_else(|| format!("the value of {key} ends in a backslash"))?;
                    value.push(*escaped);
                    at += 2;
                }
                Some(c) => {
                    value.push(*c);
                    at += 1;
                }
            }
        }
        pairs.push(Pair {
            key,
            value,
            raw: text[start..at].iter().collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, TlsSettings) {
        split_tls(s).unwrap()
    }

    #[test]
    fn a_url_without_tls_settings_prefers_tls_as_libpq_does() {
        let (rest, tls) = split("postgres://u:p@db:5432/app");
        assert_eq!(rest, "postgres://u:p@db:5432/app");
        assert_eq!(tls.mode, SslMode::Prefer);
        assert!(!tls.checks_chain());
    }

    #[test]
    fn verify_modes_and_root_certs_are_taken_out_of_a_url() {
        let (rest, tls) = split(
            "postgresql://db/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem",
        );
        assert_eq!(rest, "postgresql://db/app?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.roots, RootCerts::File("/etc/ca dir/root.pem".into()));
        assert!(tls.checks_chain());
        let (rest, _) = split("postgres://db/app?sslmode=require");
        assert_eq!(rest, "postgres://db/app");
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let (rest, tls) = split("postgres://u:p?w@db/app?sslmode=disable");
        assert_eq!(rest, "postgres://u:p?w@db/app");
        assert_eq!(tls.mode, SslMode::Disable);
        let (rest, tls) = split("postgres://u:p?w@db/app");
        assert_eq!(rest, "postgres://u:p?w@db/app");
        assert_eq!(tls.mode, SslMode::Prefer);
    }

    #[test]
    fn keyword_strings_keep_their_other_settings_quotes_and_all() {
        let (rest, tls) = split(
            "host=db  user = 'the user' sslmode=verify-ca sslrootcert='/a b/c\\'s.pem' dbname=x",
        );
        assert_eq!(rest, "host=db user = 'the user' dbname=x");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.roots, RootCerts::File("/a b/c's.pem".into()));
        // An empty password last stays last: nothing is written after it.
        let (rest, tls) = split("host=db sslmode=verify-full password=");
        assert_eq!(rest, "host=db password=");
        assert_eq!(tls.mode, SslMode::VerifyFull);
    }

    #[test]
    fn the_systems_authorities_mean_the_full_check_as_in_libpq() {
        let (_, tls) = split("host=db sslrootcert=system");
        assert_eq!(
            (tls.mode, tls.roots),
            (SslMode::VerifyFull, RootCerts::System)
        );
        let e = split_tls("host=db sslmode=require sslrootcert=system").unwrap_err();
        assert!(e.contains("needs sslmode=verify-full"), "{e}");
        let e = split_tls("host=db sslmode=verify-ca").unwrap_err();
        assert!(e.contains("verify-ca needs sslrootcert=FILE"), "{e}");
    }

    #[test]
    fn require_with_a_named_authority_checks_the_chain_as_libpq_does() {
        let (_, tls) = split("host=db sslmode=require sslrootcert=/ca.pem");
        assert!(tls.checks_chain());
        let (_, tls) = split("host=db sslmode=require");
        assert!(!tls.checks_chain());
    }

    #[test]
    fn bad_settings_are_named_and_values_never_shown() {
        let e = split_tls("postgres://db/app?sslmode=verify_full").unwrap_err();
        assert!(e.contains("sslmode \"verify_full\""), "{e}");
        let e = split_tls("host=db sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert is not supported"), "{e}");
        let e = split_tls("host=db sslrootcert=''").unwrap_err();
        assert!(e.contains("sslrootcert is empty"), "{e}");
        let e = split_tls("host=db password='open").unwrap_err();
        assert!(e.contains("password has no closing quote"), "{e}");
        let e = split_tls("host=db password=my secret").unwrap_err();
        assert!(e.contains("character 21") && !e.contains("secret"), "{e}");
        let e = split_tls("postgres://db/app?a=1&secret").unwrap_err();
        assert!(
            e.contains("setting 2 of the query") && !e.contains("secret"),
            "{e}"
        );
        let e = split_tls("host=db =x").unwrap_err();
        assert!(e.contains("no name"), "{e}");
    }
}
