//! The `[lake]` settings.

use std::time::Duration;

use serde::Deserialize;

/// How the lake writer batches, as written in the TOML file. Every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Whether to write the lake [default true]. Turned off, the lake's consumer is
    /// removed from the log, so retention no longer waits for it.
    pub enabled: bool,
    /// Longest time an event waits before it is written to the lake, in seconds
    /// [default 30]. Each flush writes one file per partition it touches, so shorter means
    /// fresher SQL and more, smaller files.
    pub flush_seconds: f64,
    /// Events gathered in memory before a flush regardless of the time [default 50,000].
    pub max_rows: usize,
    /// Size up to which compaction merges a partition's files into one, in MiB
    /// [default 128]: large enough that a query opens few files, small enough that a
    /// partition is read in parallel pieces.
    pub compact_target_mib: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            enabled: true,
            flush_seconds: 30.0,
            max_rows: 50_000,
            compact_target_mib: 128,
        }
    }
}

/// The settings checked.
#[derive(Debug, Clone)]
pub struct ValidLakeConfig {
    pub enabled: bool,
    pub flush_interval: Duration,
    pub max_rows: usize,
    pub compact_target_bytes: u64,
}

impl LakeConfig {
    /// Checks every field; an error names the field and the reason.
    pub fn validate(self) -> Result<ValidLakeConfig, String> {
        if !(self.flush_seconds.is_finite()
            && self.flush_seconds > 0.0
            && self.flush_seconds <= 86_400.0)
        {
            return Err(format!(
                "lake.flush_seconds must be more than 0 and at most 86400 (a day), not {}",
                self.flush_seconds
            ));
        }
        if !(1..=10_000_000).contains(&self.max_rows) {
            return Err(format!(
                "lake.max_rows must be from 1 to 10000000, not {}",
                self.max_rows
            ));
        }
        if !(1..=16_384).contains(&self.compact_target_mib) {
            return Err(format!(
                "lake.compact_target_mib must be from 1 to 16384, not {}",
                self.compact_target_mib
            ));
        }
        Ok(ValidLakeConfig {
            enabled: self.enabled,
            flush_interval: Duration::from_secs_f64(self.flush_seconds),
            max_rows: self.max_rows,
            compact_target_bytes: self.compact_target_mib << 20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let ok = LakeConfig::default().validate().unwrap();
        assert_eq!(ok.flush_interval, Duration::from_secs(30));
        let bad = LakeConfig {
            flush_seconds: 0.0,
            ..LakeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("lake.flush_seconds"));
        let bad = LakeConfig {
            max_rows: 0,
            ..LakeConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("lake.max_rows"));
        let bad = LakeConfig {
            compact_target_mib: 0,
            ..LakeConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("lake.compact_target_mib")
        );
    }
}
