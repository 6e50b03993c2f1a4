//! A webhook's definition as stored, and the checks of what a caller may set.

use hyper::Uri;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The document kind webhooks are stored under.
pub const KIND: &str = "webhook";

/// The events a webhook can subscribe to: what the segment engine writes to the outbox.
pub const EVENTS: [&str; 2] = ["segment.entered", "segment.exited"];

const MAX_URL_CHARS: usize = 2048;
const MAX_SECRET_CHARS: usize = 256;

/// A webhook as stored. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDef {
    pub id: u64,
    pub url: String,
    /// Which of [`EVENTS`] it receives.
    pub events: Vec<String>,
    /// The rule segments whose events it receives; empty for every segment and cluster.
    #[serde(default)]
    pub segments: Vec<u64>,
    /// The key of each delivery's HMAC signature.
    pub secret: String,
    /// Whether deliveries are being made.
    pub active: bool,
    /// Why persona turned it off, when it did (every attempt failed for too long).
    #[serde(default)]
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Random, fixed at creation. Delivery ids are derived from it and the outbox entry,
    /// so that a retry, or a redelivery after a restart, carries the id of the first
    /// attempt (receivers deduplicate by it), and no other webhook or installation ever
    /// sends that id.
    pub salt: Uuid,
}

impl WebhookDef {
    /// Whether it receives an event named `event` about rule segment `segment` (`None`
    /// for a cluster).
    pub fn wants(&self, event: &str, segment: Option<u64>) -> bool {
        self.events.iter().any(|e| e == event)
            && (self.segments.is_empty() || segment.is_some_and(|s| self.segments.contains(&s)))
    }

    /// The `X-Persona-Delivery` id of outbox entry `sequence`.
    pub fn delivery_id(&self, sequence: u64) -> Uuid {
        Uuid::new_v5(&self.salt, &sequence.to_be_bytes())
    }

    /// The name of its position in the outbox (the last entry delivered or passed over).
    pub fn cursor_name(id: u64) -> String {
        format!("webhook:{id}")
    }
}

/// Checks a delivery URL: absolute, `http` or `https`, with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("is not a URL ({e}), got {url:?}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("must start with http:// or https://, got {url:?}")),
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(format!("must name a host, got {url:?}"));
    };
    if authority.as_str().contains('@') {
        // It would be neither sent (no Authorization header is made from it) nor kept
        // secret (URLs are shown by the API and in log lines).
        return Err(
            "must not hold a user name or password; authenticate deliveries by their signature"
                .into(),
        );
    }
    // Text after the host is a port; `port_u16` is `None` for one that is no u16.
    let port_given = authority.as_str().len() > authority.host().len();
    let bad_port = port_given && authority.port_u16().is_none_or(|n| n == 0);
    if bad_port {
        return Err(format!("has a port that is not 1 to 65535, got {url:?}"));
    }
    if url.contains('#') {
        return Err("must not have a #fragment (it is never sent)".into());
    }
    Ok(())
}

/// Checks a list of event names; the error names the position of the first bad one.
pub fn check_events(events: &[String]) -> Result<(), (Option<usize>, String)> {
    if events.is_empty() {
        return Err((
            None,
            format!("must name at least one of {}", EVENTS.join(", ")),
        ));
    }
    for (i, e) in events.iter().enumerate() {
        if !EVENTS.contains(&e.as_str()) {
            return Err((
                Some(i),
                format!("must be one of {}, got {e:?}", EVENTS.join(", ")),
            ));
        }
        if events[..i].contains(e) {
            return Err((Some(i), format!("{e:?} is named twice")));
        }
    }
    Ok(())
}

/// Checks a signing secret chosen by the caller.
pub fn check_secret(secret: &str) -> Result<(), String> {
    let n = secret.chars().count();
    if !(8..=MAX_SECRET_CHARS).contains(&n) {
        return Err(format!("must be 8 to {MAX_SECRET_CHARS} characters"));
    }
    if secret.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if secret.trim() != secret {
        return Err("must not begin or end with a space (a copying slip)".into());
    }
    Ok(())
}

/// A new random signing secret: `whsec_` and 32 hexadecimal digits (128 bits).
pub fn new_secret() -> String {
    format!("whsec_{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://hooks.example.com/persona?x=1").is_ok());
        assert!(
            check_url("ftp://example.com/")
                .unwrap_err()
                .contains("http://")
        );
        assert!(check_url("/relative").unwrap_err().contains("http://"));
        assert!(check_url("http://").is_err());
        assert!(check_url("not a url").unwrap_err().contains("not a URL"));
        assert!(
            check_url("http://user:pw@example.com/")
                .unwrap_err()
                .contains("password")
        );
        assert!(
            check_url("http://example.com:99999/")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            check_url("http://example.com:0/")
                .unwrap_err()
                .contains("port")
        );
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("http://[::1]/x").is_ok());
        assert!(
            check_url("http://example.com/x#part")
                .unwrap_err()
                .contains("fragment")
        );
    }

    #[test]
    fn events_are_checked_by_position() {
        let v = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_events(&v(&["segment.entered", "segment.exited"])).is_ok());
        assert_eq!(check_events(&v(&[])).unwrap_err().0, None);
        assert_eq!(
            check_events(&v(&["segment.entered", "segment.left"]))
                .unwrap_err()
                .0,
            Some(1)
        );
        let (at, why) = check_events(&v(&["segment.exited", "segment.exited"])).unwrap_err();
        assert_eq!((at, why.contains("twice")), (Some(1), true));
    }

    #[test]
    fn delivery_ids_are_stable_per_entry_and_distinct_across_webhooks() {
        let def = |salt| WebhookDef {
            id: 1,
            url: "http://x/".into(),
            events: vec![EVENTS[0].into()],
            segments: vec![4],
            secret: new_secret(),
            active: true,
            disabled_reason: None,
            created_at: 0,
            updated_at: 0,
            salt,
        };
        let (a, b) = (def(Uuid::new_v4()), def(Uuid::new_v4()));
        assert!(a.wants("segment.entered", Some(4)));
        assert!(!a.wants("segment.entered", Some(5)), "another segment");
        assert!(!a.wants("segment.entered", None), "a cluster");
        assert!(!a.wants("segment.exited", Some(4)), "another event");
        assert_eq!(a.delivery_id(7), a.delivery_id(7));
        assert_ne!(a.delivery_id(7), a.delivery_id(8));
        assert_ne!(a.delivery_id(7), b.delivery_id(7));
        assert!(a.secret.starts_with("whsec_") && a.secret.len() == 38);
        assert!(check_secret(&a.secret).is_ok());
        assert!(check_secret("short").is_err());
        assert!(check_secret("        ").is_err());
        assert!(check_secret(" padded secret").is_err());
    }
}
