//! Collector settings: checked once by [`CollectorConfig::validate`] before use.

use std::collections::HashSet;

use ipnet::IpNet;

/// Settings of the ingestion endpoints. Defaults are Segment's limits.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Write keys that may send events. At least one is required.
    pub write_keys: Vec<String>,
    /// Largest single message, in bytes (Segment: 32 KB).
    pub max_message_bytes: usize,
    /// Largest request body, in bytes, after gzip decoding (Segment: 500 KB).
    pub max_batch_bytes: usize,
    /// Bytes of request bodies being read, decoded and validated at once, counted as they
    /// arrive (a gzip body's decoded bytes in place of its compressed ones). Past this a
    /// request waits briefly, then gets 503 with `Retry-After`: memory stays bounded
    /// however many connections send large bodies at once, and a slow sender holds only
    /// what it has sent.
    pub max_inflight_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed when `context.ip` is filled in (see
    /// [`crate::client_ip`]). Default: this machine and the private networks.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            write_keys: Vec::new(),
            max_message_bytes: 32 * 1024,
            max_batch_bytes: 500 * 1024,
            max_inflight_bytes: 64 << 20,
            trusted_proxies: crate::client_ip::default_trusted_proxies(),
        }
    }
}

/// The largest `max_batch_bytes` allowed: far below what one log record may hold.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// A configuration that passed [`CollectorConfig::validate`].
#[derive(Debug, Clone)]
pub struct ValidCollectorConfig {
    pub(crate) write_keys: HashSet<String>,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_inflight_bytes: usize,
    pub(crate) trusted_proxies: Vec<IpNet>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("at least one write key is required")]
    NoWriteKeys,
    #[error("write keys must not be empty or contain ':' (it separates Basic auth fields)")]
    BadWriteKey,
    #[error(
        "max_message_bytes ({message}) must be between 1 and max_batch_bytes ({batch}), which must be at most 16 MiB"
    )]
    BadLimits { message: usize, batch: usize },
    #[error(
        "max_inflight_bytes ({inflight}) must be at least max_batch_bytes ({batch}) and at most 4 GiB"
    )]
    BadInflight { inflight: usize, batch: usize },
}

impl CollectorConfig {
    pub fn validate(self) -> Result<ValidCollectorConfig, ConfigError> {
        if self.write_keys.is_empty() {
            return Err(ConfigError::NoWriteKeys);
        }
        if self
            .write_keys
            .iter()
            .any(|k| k.is_empty() || k.contains(':'))
        {
            return Err(ConfigError::BadWriteKey);
        }
        self.check_limits()?;
        Ok(ValidCollectorConfig {
            write_keys: self.write_keys.into_iter().collect(),
            max_message_bytes: self.max_message_bytes,
            max_batch_bytes: self.max_batch_bytes,
            max_inflight_bytes: self.max_inflight_bytes,
            trusted_proxies: self.trusted_proxies,
        })
    }

    /// The size limits alone, so that a start can refuse bad limits before it generates
    /// the keys that [`validate`](Self::validate) then checks.
    pub fn check_limits(&self) -> Result<(), ConfigError> {
        if self.max_message_bytes == 0
            || self.max_message_bytes > self.max_batch_bytes
            || self.max_batch_bytes > MAX_BATCH_BYTES
        {
            return Err(ConfigError::BadLimits {
                message: self.max_message_bytes,
                batch: self.max_batch_bytes,
            });
        }
        if self.max_inflight_bytes < self.max_batch_bytes
            || self.max_inflight_bytes > u32::MAX as usize
        {
            return Err(ConfigError::BadInflight {
                inflight: self.max_inflight_bytes,
                batch: self.max_batch_bytes,
            });
        }
        Ok(())
    }
}

impl ValidCollectorConfig {
    /// Whether `key` is one of the configured write keys. Compares every key in full so the
    /// time taken does not reveal how much of a guess was right.
    pub(crate) fn accepts(&self, key: &str) -> bool {
        self.write_keys.iter().fold(false, |found, k| {
            found | constant_time_eq(k.as_bytes(), key.as_bytes())
        })
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    pub fn max_batch_bytes(&self) -> usize {
        self.max_batch_bytes
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_rule() {
        assert_eq!(
            CollectorConfig::default().validate().unwrap_err(),
            ConfigError::NoWriteKeys
        );
        let bad = CollectorConfig {
            write_keys: vec!["a:b".into()],
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err(), ConfigError::BadWriteKey);
        let too_small = CollectorConfig {
            write_keys: vec!["k".into()],
            max_inflight_bytes: 1000,
            ..Default::default()
        };
        assert!(matches!(
            too_small.validate().unwrap_err(),
            ConfigError::BadInflight { inflight: 1000, .. }
        ));
        let ok = CollectorConfig {
            write_keys: vec!["k1".into(), "k2".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert!(ok.accepts("k2") && !ok.accepts("k3") && !ok.accepts("k"));
    }
}
