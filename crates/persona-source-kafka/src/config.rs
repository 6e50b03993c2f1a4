//! The `[sources.kafka]` settings.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How the Kafka source reads, as written in the TOML file. Setting `brokers` turns it on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// The brokers to start from, `host:port[,host:port...]`.
    pub brokers: Option<String>,
    /// Topics of Segment-spec messages, one JSON message per record.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The consumer group [default "persona"]; one server per group, as each server keeps
    /// its own log and profiles.
    pub group: Option<String>,
    /// Where records that are not valid messages go, with the reason in a header
    /// [default: nowhere; they are counted and logged, and skipped].
    pub dead_letter_topic: Option<String>,
    /// Most records appended to the event log at once [default 5,000].
    pub max_batch: Option<usize>,
    /// Further librdkafka settings for the consumer and the dead-letter producer
    /// (`security.protocol` = `ssl` or `sasl_ssl`, `ssl.ca.location`, `sasl.*`,
    /// `session.timeout.ms`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The settings checked.
#[derive(Debug, Clone)]
pub struct ValidKafkaSource {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    pub dead_letter_topic: Option<String>,
    pub max_batch: usize,
    pub options: BTreeMap<String, String>,
}

/// Settings the source sets itself: its promise that a record's offset is committed only
/// once the record is durable in the event log (or in the dead-letter topic) depends on them.
const OWN_SETTINGS: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

impl KafkaSourceConfig {
    /// `None` when no brokers are set (the source is off); an error names the setting.
    pub fn validate(&self) -> Result<Option<ValidKafkaSource>, String> {
        let Some(brokers) = &self.brokers else {
            if !self.topics.is_empty() || self.dead_letter_topic.is_some() {
                return Err(
                    "sources.kafka.brokers is missing: name the brokers to read the \
                            topics from, e.g. \"kafka-1:9092,kafka-2:9092\""
                        .into(),
                );
            }
            return Ok(None);
        };
        if brokers.trim().is_empty() {
            return Err("sources.kafka.brokers is empty".into());
        }
        if self.topics.is_empty() {
            return Err("sources.kafka.topics is empty: name at least one topic to read".into());
        }
        for topic in &self.topics {
            check_topic("sources.kafka.topics", topic)?;
        }
        if let Some(dead) = &self.dead_letter_topic {
            check_topic("sources.kafka.dead_letter_topic", dead)?;
            if self.topics.contains(dead) {
                return Err(format!(
                    "sources.kafka.dead_letter_topic {dead:?} is also a topic read: rejected \
                     records would be read again"
                ));
            }
        }
        let group = self.group.clone().unwrap_or_else(|| "persona".into());
        if group.trim().is_empty() {
            return Err("sources.kafka.group is empty".into());
        }
        let max_batch = match self.max_batch {
            None => 5_000,
            Some(n) if (1..=100_000).contains(&n) => n,
            Some(n) => {
                return Err(format!(
                    "sources.kafka.max_batch must be from 1 to 100000, not {n}"
                ));
            }
        };
        if let Some(key) = self
            .options
            .keys()
            .find(|k| OWN_SETTINGS.contains(&k.as_str()))
        {
            return Err(format!(
                "sources.kafka.options cannot set {key:?}: the source sets it itself (brokers \
                 and group have settings of their own; offsets are committed only once records \
                 are stored)"
            ));
        }
        Ok(Some(ValidKafkaSource {
            brokers: brokers.clone(),
            topics: self.topics.clone(),
            group,
            dead_letter_topic: self.dead_letter_topic.clone(),
            max_batch,
            options: with_system_authorities(self.options.clone()),
        }))
    }
}

/// Over TLS without authorities named, the system's: librdkafka's OpenSSL is built into
/// persona, and its own default folder for them is not where any system keeps them.
/// `probe` has librdkafka look in the usual places.
fn with_system_authorities(mut options: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let tls = options
        .get("security.protocol")
        .is_some_and(|p| p.eq_ignore_ascii_case("ssl") || p.eq_ignore_ascii_case("sasl_ssl"));
    let named = ["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"]
        .iter()
        .any(|k| options.contains_key(*k));
    if tls && !named {
        options.insert("ssl.ca.location".into(), "probe".into());
    }
    options
}

/// Kafka's own rule for topic names.
fn check_topic(setting: &str, topic: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
        return Err(format!(
            "{setting}: {topic:?} is not a topic name (1 to 249 characters, not . or ..)"
        ));
    }
    if let Some(c) = topic.chars().find(|c| !legal(*c)) {
        return Err(format!(
            "{setting}: {topic:?} is not a topic name ({c:?} is not allowed: use letters, \
             digits, '.', '_' or '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_without_named_authorities_uses_the_systems() {
        let mut c = config(&["events"]);
        c.options
            .insert("security.protocol".into(), "SASL_SSL".into());
        let valid = c.validate().unwrap().unwrap();
        assert_eq!(valid.options["ssl.ca.location"], "probe");
        c.options.insert("ssl.ca.location".into(), "/ca.pem".into());
        let valid = c.validate().unwrap().unwrap();
        assert_eq!(valid.options["ssl.ca.location"], "/ca.pem");
        let plain = config(&["events"]).validate().unwrap().unwrap();
        assert!(!plain.options.contains_key("ssl.ca.location"));
    }

    fn config(topics: &[&str]) -> KafkaSourceConfig {
        KafkaSourceConfig {
            brokers: Some("127.0.0.1:9092".into()),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn off_without_brokers_and_defaults_otherwise() {
        assert!(KafkaSourceConfig::default().validate().unwrap().is_none());
        let valid = config(&["events"]).validate().unwrap().unwrap();
        assert_eq!(valid.group, "persona");
        assert_eq!(valid.max_batch, 5_000);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |c: KafkaSourceConfig| c.validate().unwrap_err();
        assert!(err(config(&[])).contains("sources.kafka.topics is empty"));
        assert!(err(config(&["a b"])).contains("' ' is not allowed"));
        let mut c = config(&["events"]);
        c.dead_letter_topic = Some("events".into());
        assert!(err(c).contains("also a topic read"));
        let mut c = config(&["events"]);
        c.options.insert("enable.auto.commit".into(), "true".into());
        assert!(err(c).contains("cannot set \"enable.auto.commit\""));
        let mut c = config(&["events"]);
        c.max_batch = Some(0);
        assert!(err(c).contains("max_batch must be from 1"));
        let c = KafkaSourceConfig {
            topics: vec!["events".into()],
            ..Default::default()
        };
        assert!(err(c).contains("sources.kafka.brokers is missing"));
    }
}
