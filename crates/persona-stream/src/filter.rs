//! Noise rules: events that must not shape a profile.

use std::net::IpAddr;

use crate::config::ValidStreamConfig;
use crate::event::Event;

/// Why an event was dropped; the label of the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Bot,
    TestWriteKey,
    InternalNetwork,
    Duplicate,
    Malformed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Bot => "bot",
            DropReason::TestWriteKey => "test_write_key",
            DropReason::InternalNetwork => "internal_network",
            DropReason::Duplicate => "duplicate",
            DropReason::Malformed => "malformed",
        }
    }
}

/// The configured rule an event breaks, if any (duplicates are checked separately).
pub(crate) fn noise(event: &Event<'_>, config: &ValidStreamConfig) -> Option<DropReason> {
    if let Some(ua) = event.user_agent()
        && !config.bot_patterns.is_empty()
    {
        let ua = ua.to_lowercase();
        if config.bot_patterns.iter().any(|p| ua.contains(p.as_str())) {
            return Some(DropReason::Bot);
        }
    }
    if let Some(key) = event.msg.write_key.as_deref()
        && config.test_write_keys.iter().any(|k| k == key)
    {
        return Some(DropReason::TestWriteKey);
    }
    if !config.internal_networks.is_empty()
        && let Some(ip) = event.ip().and_then(|s| s.parse::<IpAddr>().ok())
        && config.internal_networks.iter().any(|n| n.contains(&ip))
    {
        return Some(DropReason::InternalNetwork);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StreamConfig;

    fn check(context: &str, write_key: &str) -> Option<DropReason> {
        let raw = format!(
            r#"{{"type":"page","anonymousId":"a","timestamp":"2024-05-01T10:00:00.000Z","writeKey":"{write_key}","context":{context}}}"#
        );
        let config = StreamConfig {
            test_write_keys: vec!["staging".into()],
            internal_networks: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            ..StreamConfig::default()
        }
        .validate()
        .unwrap();
        noise(&Event::parse(raw.as_bytes()).unwrap(), &config)
    }

    #[test]
    fn each_rule_drops_what_it_names() {
        let browser = r#"{"userAgent":"Mozilla/5.0 Chrome/126.0","ip":"203.0.113.9"}"#;
        assert_eq!(check(browser, "live"), None);
        assert_eq!(
            check(
                r#"{"userAgent":"Mozilla/5.0 (compatible; Googlebot/2.1)"}"#,
                "live"
            ),
            Some(DropReason::Bot)
        );
        assert_eq!(check(browser, "staging"), Some(DropReason::TestWriteKey));
        assert_eq!(
            check(r#"{"ip":"10.20.30.40"}"#, "live"),
            Some(DropReason::InternalNetwork)
        );
        assert_eq!(
            check(r#"{"ip":"2001:db8::1"}"#, "live"),
            Some(DropReason::InternalNetwork)
        );
        assert_eq!(check(r#"{"ip":"not an ip"}"#, "live"), None);
    }
}
