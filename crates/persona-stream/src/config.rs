//! Business rules of the processor: what is noise, what counts as a purchase, and so on.

use ipnet::IpNet;
use serde::Deserialize;

/// The `[processor]` section of the configuration file. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Events whose `context.userAgent` contains any of these (case-insensitive) are dropped.
    pub bot_user_agents: Vec<String>,
    /// Events sent with these write keys are dropped (test and staging sources).
    pub test_write_keys: Vec<String>,
    /// Events whose `context.ip` is in these networks (CIDR) are dropped (office traffic).
    pub internal_networks: Vec<String>,
    /// How many recent `messageId`s are remembered to drop retried duplicates.
    pub dedupe_window: usize,
    /// Track event names that are purchases; revenue from `properties.revenue`, else `total`.
    pub purchase_events: Vec<String>,
    pub email_open_events: Vec<String>,
    pub email_click_events: Vec<String>,
    /// Track event names that start an app session.
    pub app_open_events: Vec<String>,
    /// Inactivity that ends a session, in minutes.
    pub session_gap_minutes: u32,
    /// Most records applied in one store commit.
    pub batch_records: usize,
    /// Recently active profiles kept decoded between batches, so a customer's session does
    /// not re-read and re-decode the profile for every batch.
    pub profile_cache: usize,
    /// Identities (user and anonymous ids) kept resolved between batches: about 80 bytes
    /// each, and a store read saved for every event of a known customer.
    pub identity_cache: usize,
    /// How often segments whose rules read time-relative fields (`recency_days`, the
    /// rolling windows) are evaluated again over every profile, in seconds.
    pub segment_sweep_seconds: u64,
    /// How often the RFM quintile edges are fitted again over every purchasing customer,
    /// in hours (`POST /v1/rfm` fits them at any time).
    pub rfm_refit_hours: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        let list = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        StreamConfig {
            bot_user_agents: list(&[
                "bot",
                "crawler",
                "spider",
                "slurp",
                "headlesschrome",
                "phantomjs",
                "lighthouse",
                "facebookexternalhit",
                "preview",
            ]),
            test_write_keys: Vec::new(),
            internal_networks: Vec::new(),
            dedupe_window: 500_000,
            purchase_events: list(&["Order Completed"]),
            email_open_events: list(&["Email Opened"]),
            // Segment's spec names the click "Email Link Clicked"; many senders shorten it.
            email_click_events: list(&["Email Link Clicked", "Email Clicked"]),
            app_open_events: list(&["Application Opened"]),
            session_gap_minutes: 30,
            batch_records: 16384,
            profile_cache: 50_000,
            identity_cache: 1_000_000,
            segment_sweep_seconds: 60,
            rfm_refit_hours: 24,
        }
    }
}

/// A configuration rule was broken.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("processor.internal_networks: {0:?} is not a network in CIDR form (e.g. 10.0.0.0/8)")]
    Network(String),
    #[error("processor.{0} must be at least 1")]
    Zero(&'static str),
}

/// A checked configuration, ready for the processor.
#[derive(Debug, Clone)]
pub struct ValidStreamConfig {
    pub(crate) bot_patterns: Vec<String>,
    pub(crate) test_write_keys: Vec<String>,
    pub(crate) internal_networks: Vec<IpNet>,
    pub(crate) dedupe_window: usize,
    pub(crate) purchase_events: Vec<String>,
    pub(crate) email_open_events: Vec<String>,
    pub(crate) email_click_events: Vec<String>,
    pub(crate) app_open_events: Vec<String>,
    pub(crate) session_gap_ms: i64,
    pub(crate) batch_records: usize,
    pub(crate) profile_cache: usize,
    pub(crate) identity_cache: usize,
    pub(crate) segment_sweep: std::time::Duration,
    pub rfm_refit: std::time::Duration,
}

impl StreamConfig {
    pub fn validate(self) -> Result<ValidStreamConfig, ConfigError> {
        let internal_networks = self
            .internal_networks
            .iter()
            .map(|n| {
                n.parse::<IpNet>()
                    .map_err(|_| ConfigError::Network(n.clone()))
            })
            .collect::<Result<_, _>>()?;
        if self.session_gap_minutes == 0 {
            return Err(ConfigError::Zero("session_gap_minutes"));
        }
        if self.batch_records == 0 {
            return Err(ConfigError::Zero("batch_records"));
        }
        if self.segment_sweep_seconds == 0 {
            return Err(ConfigError::Zero("segment_sweep_seconds"));
        }
        if self.rfm_refit_hours == 0 {
            return Err(ConfigError::Zero("rfm_refit_hours"));
        }
        Ok(ValidStreamConfig {
            bot_patterns: self
                .bot_user_agents
                .iter()
                .map(|p| p.to_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            test_write_keys: self.test_write_keys,
            internal_networks,
            dedupe_window: self.dedupe_window,
            purchase_events: self.purchase_events,
            email_open_events: self.email_open_events,
            email_click_events: self.email_click_events,
            app_open_events: self.app_open_events,
            session_gap_ms: i64::from(self.session_gap_minutes) * 60_000,
            batch_records: self.batch_records,
            profile_cache: self.profile_cache,
            identity_cache: self.identity_cache,
            segment_sweep: std::time::Duration::from_secs(self.segment_sweep_seconds),
            rfm_refit: std::time::Duration::from_secs(self.rfm_refit_hours * 3600),
        })
    }
}

impl Default for ValidStreamConfig {
    fn default() -> Self {
        StreamConfig::default()
            .validate()
            .expect("the defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_network_is_named() {
        let c = StreamConfig {
            internal_networks: vec!["10.0.0.0/8".into(), "office".into()],
            ..StreamConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("\"office\""), "{e}");
    }
}
