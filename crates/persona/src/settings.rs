//! `serve` settings: defaults, then the TOML file, then flags and environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use persona_collector::CollectorConfig;
use persona_collector::client_ip::{default_trusted_proxies, parse_network};
use persona_jobs::Schedule;
use persona_lake::{LakeConfig, ValidLakeConfig};
use persona_log::{LogConfig, RetentionPolicy};
use persona_source_kafka::{KafkaSourceConfig, ValidKafkaSource};
use persona_store_postgres::PostgresConfig;
use persona_store_redis::RedisConfig;
use persona_stream::StreamConfig;
use persona_warehouse::WarehouseLimits;
use persona_webhooks::{ValidWebhookConfig, WebhookConfig};
use serde::Deserialize;

use crate::cli::{ServeArgs, default_data_dir};
use crate::http_server::ConnectionLimits;

/// The TOML file's shape. Every field is optional; see `docs/config.example.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    /// An address and port, or a host name and port (see [`listen_address`]).
    pub listen: Option<String>,
    /// Accepted write keys; the first is used by `--demo`.
    #[serde(default)]
    pub write_keys: Vec<String>,
    pub admin_token: Option<String>,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub collector: CollectorSection,
    #[serde(default)]
    pub http: HttpSection,
    /// Noise rules and business definitions of the processor.
    #[serde(default)]
    pub processor: StreamConfig,
    /// How webhook deliveries are attempted.
    #[serde(default)]
    pub webhooks: WebhookConfig,
    /// How the event lake is written.
    #[serde(default)]
    pub lake: LakeConfig,
    /// Limits on SQL queries.
    #[serde(default)]
    pub sql: SqlSection,
    /// When the scheduled jobs run.
    #[serde(default)]
    pub jobs: JobsSection,
    /// Where profiles are kept.
    #[serde(default)]
    pub store: StoreSection,
    /// Where events come from besides HTTP.
    #[serde(default)]
    pub sources: SourcesSection,
}

/// Sources of events besides the HTTP collector.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// Segment messages in Kafka topics.
    #[serde(default)]
    pub kafka: KafkaSourceConfig,
}

/// Where profiles, segments and models are kept: the data folder (the default), or a
/// schema of a PostgreSQL database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// "embedded" [default] or "postgres".
    pub backend: Option<String>,
    /// The PostgreSQL connection string or URL; `PERSONA_STORE_URL` in the environment
    /// replaces it, to keep a password out of the file.
    pub url: Option<String>,
    /// The schema holding the tables [default "persona"], created when missing.
    pub schema: Option<String>,
    /// Connections for reads [default 4]; writes have one of their own.
    pub read_connections: Option<usize>,
    /// A Redis to serve profile lookups from, in front of PostgreSQL (`redis://host:6379`,
    /// or `rediss://host:6380` for TLS).
    pub cache_url: Option<String>,
    /// Certificate authorities (PEM) for a `rediss://` cache, in place of the system's.
    pub cache_ca_file: Option<PathBuf>,
    /// How long the cache keeps an entry after it was last written [default 3600].
    pub cache_ttl_seconds: Option<u64>,
}

/// Where profiles are kept, checked.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// `profiles/` in the data folder.
    Embedded,
    /// A PostgreSQL schema, with a Redis cache in front when configured.
    Postgres(PostgresConfig, Option<RedisConfig>),
}

impl StoreSection {
    fn backend(&self, url_from_env: Option<String>) -> anyhow::Result<StoreBackend> {
        match self.backend.as_deref().unwrap_or("embedded") {
            "embedded" => {
                if self.url.is_some()
                    || self.schema.is_some()
                    || self.read_connections.is_some()
                    || self.cache_url.is_some()
                    || self.cache_ttl_seconds.is_some()
                    || self.cache_ca_file.is_some()
                {
                    anyhow::bail!(
                        "store.url, store.schema, store.read_connections and store.cache_* are \
                         for store.backend = \"postgres\"; the embedded store has none"
                    );
                }
                Ok(StoreBackend::Embedded)
            }
            "postgres" => {
                let Some(url) = url_from_env.or_else(|| self.url.clone()) else {
                    anyhow::bail!(
                        "store.url is missing: store.backend = \"postgres\" needs a connection \
                         string, e.g. postgres://persona@localhost/persona (or set \
                         PERSONA_STORE_URL)"
                    );
                };
                let schema = self.schema.clone().unwrap_or_else(|| "persona".into());
                persona_store_postgres::check_schema_name(&schema)
                    .map_err(|e| anyhow::anyhow!("store.schema: {e}"))?;
                let read_connections = match self.read_connections {
                    None => 4,
                    Some(n) if (1..=64).contains(&n) => n,
                    Some(n) => {
                        anyhow::bail!("store.read_connections must be from 1 to 64, not {n}")
                    }
                };
                let config = PostgresConfig {
                    url,
                    schema,
                    read_connections,
                };
                config
                    .connection()
                    .map_err(|e| anyhow::anyhow!("store.url: {e}"))?;
                let cache = match &self.cache_url {
                    None if self.cache_ttl_seconds.is_some() => {
                        anyhow::bail!("store.cache_ttl_seconds needs store.cache_url")
                    }
                    None if self.cache_ca_file.is_some() => {
                        anyhow::bail!("store.cache_ca_file needs store.cache_url")
                    }
                    None => None,
                    Some(url) => Some(RedisConfig {
                        url: url.clone(),
                        ca_file: self.cache_ca_file.clone(),
                        ttl: match self.cache_ttl_seconds {
                            None => Duration::from_secs(3600),
                            Some(s) if (1..=30 * 86_400).contains(&s) => Duration::from_secs(s),
                            Some(s) => anyhow::bail!(
                                "store.cache_ttl_seconds must be from 1 to 2592000 (30 days), not {s}"
                            ),
                        },
                        namespace: format!("persona:{}", config.schema),
                    }),
                };
                Ok(StoreBackend::Postgres(config, cache))
            }
            other => {
                anyhow::bail!("store.backend must be \"embedded\" or \"postgres\", not {other:?}")
            }
        }
    }
}

/// The jobs' schedules: five-field cron expressions in UTC, or "off" for a job that runs
/// only on request (`persona jobs run NAME`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSection {
    /// Merging the lake's small files [default "15 * * * *": hourly, at a quarter past,
    /// once the hour before is complete].
    pub compact_lake: String,
    /// Writing the day's profile snapshot to the lake [default "55 23 * * *": the day's
    /// last state].
    pub snapshot_profiles: String,
}

impl Default for JobsSection {
    fn default() -> Self {
        JobsSection {
            compact_lake: "15 * * * *".into(),
            snapshot_profiles: "55 23 * * *".into(),
        }
    }
}

/// The jobs' schedules, checked.
#[derive(Debug, Clone)]
pub struct JobSchedules {
    pub compact_lake: Option<Schedule>,
    pub snapshot_profiles: Option<Schedule>,
}

impl JobsSection {
    fn schedules(&self) -> anyhow::Result<JobSchedules> {
        Ok(JobSchedules {
            compact_lake: Schedule::parse("jobs.compact_lake", &self.compact_lake)
                .map_err(anyhow::Error::msg)?,
            snapshot_profiles: Schedule::parse("jobs.snapshot_profiles", &self.snapshot_profiles)
                .map_err(anyhow::Error::msg)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSection {
    /// Longest a query may run, in seconds [default 60].
    pub timeout_seconds: Option<f64>,
    /// Memory in MiB that running queries may hold for joins, sorts and aggregations
    /// together [default 2048].
    pub memory_mib: Option<usize>,
    /// Queries that may run at once; more get 429 [default 2].
    pub concurrent_queries: Option<usize>,
}

impl SqlSection {
    fn limits(&self) -> anyhow::Result<WarehouseLimits> {
        let defaults = WarehouseLimits::default();
        let timeout = match self.timeout_seconds {
            None => defaults.timeout,
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                std::time::Duration::from_secs_f64(s)
            }
            Some(s) => {
                anyhow::bail!("sql.timeout_seconds must be more than 0 and at most 86400, not {s}")
            }
        };
        let memory_bytes = match self.memory_mib {
            None => defaults.memory_bytes,
            Some(m) if (16..=1 << 20).contains(&m) => m << 20,
            Some(m) => anyhow::bail!("sql.memory_mib must be from 16 to 1048576, not {m}"),
        };
        let concurrent = match self.concurrent_queries {
            None => defaults.concurrent,
            Some(n) if (1..=64).contains(&n) => n,
            Some(n) => anyhow::bail!("sql.concurrent_queries must be from 1 to 64, not {n}"),
        };
        Ok(WarehouseLimits {
            timeout,
            memory_bytes,
            concurrent,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Bytes per segment file before a new one starts [default 128 MiB].
    pub segment_bytes: Option<u64>,
    /// Keep at most this many bytes of closed segments [default: no limit].
    pub retention_bytes: Option<u64>,
    /// Delete closed segments older than this many hours [default: never].
    pub retention_hours: Option<u64>,
    /// Bytes of appends that may wait for the disk before requests get 503 [default 64 MiB].
    pub max_queue_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// Largest message in bytes [default 32 KB].
    pub max_message_bytes: Option<usize>,
    /// Largest request body in bytes [default 500 KB].
    pub max_batch_bytes: Option<usize>,
    /// Request body bytes read and validated at once before 503 + Retry-After [default 64 MiB].
    pub max_inflight_bytes: Option<usize>,
    /// Proxies whose `X-Forwarded-For` is believed, as networks or addresses [default:
    /// loopback, private, link-local and unique-local networks].
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Connections open at once; more wait to be accepted [default 10,000].
    pub max_connections: Option<usize>,
    /// Seconds a connection may take to send a request's head, or stay idle between
    /// requests, before it is closed [default 30].
    pub header_timeout_seconds: Option<f64>,
    /// Seconds the server keeps taking requests after a stop signal, with `/readyz`
    /// failing, before it closes its listener [default 0].
    pub drain_delay_seconds: Option<f64>,
}

/// Everything `serve` needs, merged.
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub write_keys: Vec<String>,
    pub admin_token: Option<String>,
    pub demo: bool,
    pub log: LogConfig,
    pub collector: CollectorSection,
    /// `collector.trusted_proxies`, read.
    pub trusted_proxies: Vec<IpNet>,
    pub http: ConnectionLimits,
    pub processor: StreamConfig,
    pub webhooks: ValidWebhookConfig,
    pub lake: ValidLakeConfig,
    pub sql: WarehouseLimits,
    pub jobs: JobSchedules,
    pub store: StoreBackend,
    /// The Kafka source, when `sources.kafka.brokers` is set.
    pub kafka: Option<ValidKafkaSource>,
}

impl Settings {
    pub fn load(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // A key given as a flag or in the environment replaces the file's keys, as every
        // other flag does its setting: rotating a leaked key must not leave it working.
        let write_keys = match args.write_key {
            Some(k) => vec![k],
            None => file.write_keys,
        };
        let admin_token = args.admin_token.or(file.admin_token);
        if admin_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            // An empty one (an unset variable in a compose file, say) would lock the admin
            // API for good; a missing one is generated.
            anyhow::bail!(
                "the admin token is empty; give one, or leave PERSONA_ADMIN_TOKEN and \
                 --admin-token unset to have one generated"
            );
        }
        let listen = match args.listen {
            Some(addr) => addr,
            None => match file.listen {
                Some(text) => listen_address(&text).map_err(|e| anyhow::anyhow!("listen: {e}"))?,
                None => "127.0.0.1:8080".parse().expect("valid address"),
            },
        };
        let defaults = LogConfig::default();
        let max_age = match file.log.retention_hours {
            None => None,
            Some(h) => match h.checked_mul(3600) {
                Some(secs) => Some(Duration::from_secs(secs)),
                None => anyhow::bail!(
                    "log.retention_hours must be at most {}, got {h}",
                    u64::MAX / 3600
                ),
            },
        };
        let log = LogConfig {
            segment_bytes: file.log.segment_bytes.unwrap_or(defaults.segment_bytes),
            max_queue_bytes: file.log.max_queue_bytes.unwrap_or(defaults.max_queue_bytes),
            retention: RetentionPolicy {
                max_bytes: file.log.retention_bytes,
                max_age,
            },
            ..defaults
        };
        if log.max_queue_bytes > MAX_QUEUE_BYTES {
            anyhow::bail!(
                "log.max_queue_bytes must be at most {MAX_QUEUE_BYTES} (1 TiB), got {}",
                log.max_queue_bytes
            );
        }
        if log.segment_bytes < MIN_SEGMENT_BYTES {
            anyhow::bail!(
                "log.segment_bytes must be at least {MIN_SEGMENT_BYTES} (1 MiB), got {}",
                log.segment_bytes
            );
        }
        check_queue_fits_a_batch(&log, &file.collector)?;
        let trusted_proxies = match &file.collector.trusted_proxies {
            Some(list) => trusted_proxies(list)?,
            None => default_trusted_proxies(),
        };
        Ok(Settings {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(default_data_dir),
            listen,
            write_keys,
            admin_token,
            demo: args.demo,
            log,
            collector: file.collector,
            trusted_proxies,
            http: connection_limits(&file.http)?,
            processor: file.processor,
            webhooks: file.webhooks.validate().map_err(anyhow::Error::msg)?,
            lake: file.lake.validate().map_err(anyhow::Error::msg)?,
            sql: file.sql.limits()?,
            jobs: file.jobs.schedules()?,
            store: file
                .store
                .backend(std::env::var("PERSONA_STORE_URL").ok())?,
            kafka: file.sources.kafka.validate().map_err(anyhow::Error::msg)?,
        })
    }
}

fn trusted_proxies(list: &[String]) -> anyhow::Result<Vec<IpNet>> {
    list.iter()
        .map(|text| {
            parse_network(text).ok_or_else(|| {
                anyhow::anyhow!(
                    "collector.trusted_proxies: {text:?} is neither an IP address nor a \
                     network such as 10.0.0.0/8"
                )
            })
        })
        .collect()
}

/// The append queue is memory: more than this is a typing error, not a plan.
const MAX_QUEUE_BYTES: usize = 1 << 40;

/// An address to listen on: `IP:port`, `[IPv6]:port`, or `host:port` for a name that
/// resolves here (the first address it resolves to). A bare `:port` is refused with a hint,
/// since it could mean this machine only or every interface.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if text.starts_with(':') {
        return Err(format!(
            "{text:?} has no address: give 127.0.0.1{text} (this machine) or 0.0.0.0{text} \
             (every interface)"
        ));
    }
    use std::net::ToSocketAddrs;
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{text:?} resolves to no address")),
        Err(e) => Err(format!(
            "{text:?} is not an address and port such as 127.0.0.1:8080 ({e})"
        )),
    }
}

/// Smaller segments would mean a file, and a directory sync, every few requests.
const MIN_SEGMENT_BYTES: u64 = 1 << 20;

/// How many times the largest request body the log's append queue must hold. Normalising
/// adds `messageId`, `receivedAt`, `timestamp` and the write key, up to about 200 bytes, to
/// each message, so a batch of tiny messages grows several times over on its way to the log.
const QUEUE_BATCHES: usize = 8;

/// A queue smaller than one normalised batch would answer every large valid batch with 413:
/// refused at start instead.
fn check_queue_fits_a_batch(log: &LogConfig, collector: &CollectorSection) -> anyhow::Result<()> {
    let batch = collector
        .max_batch_bytes
        .unwrap_or(CollectorConfig::default().max_batch_bytes);
    let needed = batch.saturating_mul(QUEUE_BATCHES);
    if log.max_queue_bytes < needed {
        anyhow::bail!(
            "log.max_queue_bytes is {}, less than {QUEUE_BATCHES} times collector.max_batch_bytes \
             ({batch}); a full batch would not fit in the queue once normalised: set it to at \
             least {needed}",
            log.max_queue_bytes
        );
    }
    Ok(())
}

fn connection_limits(http: &HttpSection) -> anyhow::Result<ConnectionLimits> {
    let defaults = ConnectionLimits::default();
    let max_connections = http.max_connections.unwrap_or(defaults.max_connections);
    if !(1..=1_000_000).contains(&max_connections) {
        anyhow::bail!("http.max_connections must be 1 to 1000000, got {max_connections}");
    }
    let header_timeout = match http.header_timeout_seconds {
        None => defaults.header_timeout,
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
        Some(s) => anyhow::bail!(
            "http.header_timeout_seconds must be more than 0 and at most 86400, got {s}"
        ),
    };
    let drain_delay = match http.drain_delay_seconds {
        None => defaults.drain_delay,
        Some(s) if s.is_finite() && (0.0..=3_600.0).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => anyhow::bail!("http.drain_delay_seconds must be 0 to 3600, got {s}"),
    };
    Ok(ConnectionLimits {
        max_connections,
        header_timeout,
        drain_delay,
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_queue_smaller_than_a_normalised_batch_is_refused_naming_both_settings() {
        let defaults = LogConfig::default();
        assert!(check_queue_fits_a_batch(&defaults, &CollectorSection::default()).is_ok());
        let small = LogConfig {
            max_queue_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let err = check_queue_fits_a_batch(&small, &CollectorSection::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("log.max_queue_bytes") && err.contains("collector.max_batch_bytes"),
            "{err}"
        );
        // A smaller body limit makes the same queue large enough.
        let small_batches = CollectorSection {
            max_batch_bytes: Some(64 << 10),
            ..CollectorSection::default()
        };
        assert!(check_queue_fits_a_batch(&small, &small_batches).is_ok());
    }

    fn load(config: &str, args: &[&str]) -> anyhow::Result<Settings> {
        use clap::FromArgMatches;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("persona.toml");
        std::fs::write(&file, config).unwrap();
        let mut argv = vec!["serve", "--config", file.to_str().unwrap()];
        argv.extend_from_slice(args);
        let cmd = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
        let matches = cmd.try_get_matches_from(argv).unwrap();
        Settings::load(ServeArgs::from_arg_matches(&matches).unwrap())
    }

    fn load_error(config: &str, args: &[&str]) -> String {
        load(config, args).err().expect("refused").to_string()
    }

    #[test]
    fn a_write_key_flag_replaces_the_files_keys() {
        let config = "write_keys = [\"old-1\", \"old-2\"]\n";
        assert_eq!(load(config, &[]).unwrap().write_keys, ["old-1", "old-2"]);
        let rotated = load(config, &["--write-key", "new"]).unwrap();
        assert_eq!(rotated.write_keys, ["new"]);
    }

    #[test]
    fn trusted_proxies_default_to_private_networks_and_name_a_bad_entry() {
        let trusts = |s: &Settings, ip: &str| {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            s.trusted_proxies.iter().any(|n| n.contains(&ip))
        };
        let default = load("", &[]).unwrap();
        assert!(trusts(&default, "10.1.2.3") && trusts(&default, "::1"));
        assert!(!trusts(&default, "203.0.113.5"));
        let cdn = load(
            "[collector]\ntrusted_proxies = [\"203.0.113.0/24\", \"198.51.100.7\"]\n",
            &[],
        )
        .unwrap();
        assert!(trusts(&cdn, "203.0.113.5") && trusts(&cdn, "198.51.100.7"));
        assert!(!trusts(&cdn, "10.1.2.3"));
        let none = load("[collector]\ntrusted_proxies = []\n", &[]).unwrap();
        assert!(none.trusted_proxies.is_empty());
        let err = load_error(
            "[collector]\ntrusted_proxies = [\"10.0.0.0/8\", \"lb\"]\n",
            &[],
        );
        assert!(
            err.contains("collector.trusted_proxies") && err.contains("\"lb\""),
            "{err}"
        );
    }

    /// Hours past what seconds in a `u64` hold would wrap around to a short age in a
    /// release build, and retention would delete young segments.
    #[test]
    fn a_retention_age_too_large_to_count_in_seconds_is_refused() {
        let week = load("[log]\nretention_hours = 168\n", &[]).unwrap();
        assert_eq!(
            week.log.retention.max_age,
            Some(Duration::from_secs(168 * 3600))
        );
        let err = load_error("[log]\nretention_hours = 5124095576030432\n", &[]);
        assert!(
            err.contains("log.retention_hours must be at most") && err.contains("5124095576030432"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_admin_token_is_refused_rather_than_locking_the_admin_api() {
        let err = load_error("admin_token = \" \"\n", &[]);
        assert!(err.contains("admin token is empty"), "{err}");
        let err = load_error("", &["--admin-token", ""]);
        assert!(err.contains("admin token is empty"), "{err}");
    }

    #[test]
    fn listen_takes_host_names_and_explains_a_bare_port() {
        assert_eq!(
            listen_address("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(listen_address("localhost:8080").unwrap().ip().is_loopback());
        let err = listen_address(":8080").unwrap_err();
        assert!(err.contains("0.0.0.0:8080"), "{err}");
        assert!(listen_address("no such host:80").is_err());
        let from_file = load("listen = \"localhost:0\"\n", &[]).unwrap();
        assert!(from_file.listen.ip().is_loopback());
        let err = load_error("listen = \":9\"\n", &[]);
        assert!(err.starts_with("listen: "), "{err}");
    }

    #[test]
    fn a_queue_no_machine_could_hold_is_refused() {
        let err = load_error("[log]\nmax_queue_bytes = 4611686018427387904\n", &[]);
        assert!(err.contains("log.max_queue_bytes must be at most"), "{err}");
    }
}
