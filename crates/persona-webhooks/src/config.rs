//! The `[webhooks]` settings of `serve`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How deliveries are attempted, as written in the TOML file. Every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Seconds one delivery attempt may take, connecting included [default 10].
    pub timeout_seconds: f64,
    /// Longest wait between two attempts at one delivery, in seconds [default 600]. The
    /// waits double from one second up to it.
    pub max_backoff_seconds: f64,
    /// Hours a webhook may keep failing before persona disables it [default 72]. Its
    /// position is kept: turned on again, it goes on with the entry that failed.
    pub give_up_after_hours: f64,
    /// A PEM file of CA certificates to trust for `https` URLs besides the system's (a
    /// private CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout_seconds: 10.0,
            max_backoff_seconds: 600.0,
            give_up_after_hours: 72.0,
            ca_file: None,
        }
    }
}

/// The settings checked, as durations.
#[derive(Debug, Clone)]
pub struct ValidWebhookConfig {
    pub timeout: Duration,
    pub max_backoff: Duration,
    pub give_up_after: Duration,
    pub ca_file: Option<PathBuf>,
}

impl WebhookConfig {
    /// Checks every field; an error names the field and the reason.
    pub fn validate(self) -> Result<ValidWebhookConfig, String> {
        let seconds = |field: &str, value: f64| {
            if value.is_finite() && value > 0.0 && value <= 1e9 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(format!(
                    "webhooks.{field} must be a positive number, got {value}"
                ))
            }
        };
        Ok(ValidWebhookConfig {
            timeout: seconds("timeout_seconds", self.timeout_seconds)?,
            max_backoff: seconds("max_backoff_seconds", self.max_backoff_seconds)?,
            give_up_after: seconds("give_up_after_hours", self.give_up_after_hours)?
                .saturating_mul(3600),
            ca_file: self.ca_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let ok = WebhookConfig::default().validate().unwrap();
        assert_eq!(ok.give_up_after, Duration::from_secs(72 * 3600));
        let bad = WebhookConfig {
            timeout_seconds: 0.0,
            ..WebhookConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "webhooks.timeout_seconds must be a positive number, got 0"
        );
        let bad = WebhookConfig {
            give_up_after_hours: f64::NAN,
            ..WebhookConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("give_up_after_hours"));
    }
}
