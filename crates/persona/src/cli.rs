//! The command line, as documented in the brief. Every `serve` flag can also be given as
//! an environment variable `PERSONA_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "persona",
    version,
    about = "Self-hosted real-time customer data platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server: ingestion, event log and operational endpoints.
    Serve(ServeArgs),
    /// Generate realistic customer behaviour, to a file or to a running server.
    Simulate(SimulateArgs),
    /// Backfill Segment-spec messages (one JSON object per line) with their own timestamps.
    Import(ImportArgs),
    /// Load CRM attributes (CSV or Parquet, one row per customer) into profile traits.
    ImportProfiles(ImportProfilesArgs),
    /// Export or inspect stored profiles (of a stopped server).
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Segment customers: cluster a feature table (CSV or Parquet) and describe the clusters.
    Cluster(Box<ClusterArgs>),
    /// Rule segments of a running server (its /v1/segments API).
    Segments {
        #[command(flatten)]
        server: AdminArgs,
        #[command(subcommand)]
        command: SegmentsCommand,
    },
    /// Cluster models of a running server (its /v1/models API).
    Models {
        #[command(flatten)]
        server: AdminArgs,
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Webhooks of a running server (its /v1/webhooks API).
    Webhooks {
        #[command(flatten)]
        server: AdminArgs,
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Scheduled jobs of a running server (its /v1/jobs API): list them, or run one now
    /// (exits non-zero when the job fails, for a crontab or an orchestrator such as Airflow).
    Jobs {
        #[command(flatten)]
        server: AdminArgs,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// One read-only SQL statement over a running server's warehouse (its /v1/sql API):
    /// the `events` lake, `profiles`, `segments` and `segment_members`.
    Sql(SqlArgs),
    /// Inspect the event log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Measure persona on this machine.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "PERSONA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for all of persona's data [default: ./persona-data].
    #[arg(long, env = "PERSONA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve HTTP on [default: 127.0.0.1:8080]; a host name such as
    /// localhost:8080 works too; port 0 picks a free port.
    #[arg(long, env = "PERSONA_LISTEN", value_parser = crate::settings::listen_address)]
    pub listen: Option<SocketAddr>,
    /// Write key that SDKs authenticate with (replaces the config file's); generated and
    /// saved when none is set anywhere.
    #[arg(long, env = "PERSONA_WRITE_KEY")]
    pub write_key: Option<String>,
    /// Bearer token for the admin API; generated and saved when unset.
    #[arg(long, env = "PERSONA_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Feed simulated customer traffic into this server (PERSONA_DEMO takes 1/0,
    /// true/false, yes/no, on/off).
    #[arg(long, env = "PERSONA_DEMO", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["out", "target"])))]
pub struct SimulateArgs {
    /// Number of customers.
    #[arg(long)]
    pub customers: usize,
    /// Days of history, ending at --end.
    #[arg(long)]
    pub days: u32,
    /// Seed of the random generator: the same seed gives the same customers, and with the
    /// same --end and --days the same events (message ids included).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// End of the simulated period (RFC 3339) [default: now].
    #[arg(long)]
    pub end: Option<String>,
    /// Send to this server (e.g. http://127.0.0.1:8080).
    #[arg(long, requires = "write_key", conflicts_with = "out")]
    pub target: Option<String>,
    /// Write key for --target.
    #[arg(long, env = "PERSONA_WRITE_KEY")]
    pub write_key: Option<String>,
    /// Write the messages to this JSONL file instead (`-`: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write each customer's true persona to this CSV file.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Messages per HTTP batch (at most 5000).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
}

#[derive(Args)]
pub struct ImportArgs {
    /// JSONL file of Segment-spec messages (each with its `type`), gzipped or not; `-` reads
    /// standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub destination: DestinationArgs,
}

/// Where `import` and `import-profiles` send: a stopped server's log, or a running server.
#[derive(Args)]
pub struct DestinationArgs {
    /// Data folder of a stopped server to write into [default: ./persona-data].
    #[arg(long, env = "PERSONA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Send through a running server's HTTP API instead.
    #[arg(long, requires = "write_key")]
    pub target: Option<String>,
    /// Write key for --target.
    #[arg(long, env = "PERSONA_WRITE_KEY")]
    pub write_key: Option<String>,
    /// Messages per append or HTTP batch (at most 5000).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Rejects allowed before the command exits with a failure (everything valid is
    /// imported either way).
    #[arg(long, default_value_t = 0)]
    pub max_rejects: usize,
}

#[derive(Args)]
pub struct ImportProfilesArgs {
    /// A .csv file with a header row, or a .parquet file.
    pub file: PathBuf,
    /// The column holding the user id; every other column becomes a trait.
    #[arg(long, default_value = "user_id")]
    pub key: String,
    #[command(flatten)]
    pub destination: DestinationArgs,
}

#[derive(Subcommand)]
pub enum ProfilesCommand {
    /// Write every profile as one JSON object per line, as `GET /v1/profiles/{key}` shows it.
    Export(ProfilesExportArgs),
    /// Print the number of profiles, the store's size and the processor's offset as JSON.
    Stats(ProfilesStatsArgs),
}

#[derive(Args)]
pub struct ProfilesExportArgs {
    /// Data folder [default: ./persona-data].
    #[arg(long, env = "PERSONA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output file, `-` for standard output [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute time-relative values as of this RFC 3339 time [default: now].
    #[arg(long)]
    pub as_of: Option<String>,
}

#[derive(Args)]
pub struct ProfilesStatsArgs {
    /// Data folder [default: ./persona-data].
    #[arg(long, env = "PERSONA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ClusterArgs {
    /// A .csv file with a header row, or a .parquet file; one row per customer.
    #[arg(long)]
    pub input: PathBuf,
    /// Feature columns, comma-separated [default: every numeric column]. A text column named
    /// here is one-hot encoded.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Columns to one-hot encode although they hold numbers (a store number, a zip code).
    #[arg(long, value_delimiter = ',')]
    pub categorical: Vec<String>,
    /// How missing values are filled, per column: COLUMN=median|mean|most_frequent|constant:VALUE,
    /// comma-separated [default: median for numbers, the most frequent value for categories].
    #[arg(long, value_delimiter = ',')]
    pub impute: Vec<String>,
    /// Columns to transform with ln(1 + x) before scaling, comma-separated, or `auto` for every
    /// non-negative column whose skewness is above 2 (money and counts, typically).
    #[arg(long, value_delimiter = ',')]
    pub log1p: Vec<String>,
    /// kmeans, minibatch-kmeans, hierarchical or dbscan.
    #[arg(long, default_value = "kmeans")]
    pub algorithm: String,
    /// Linkage of hierarchical clustering: ward, complete, average or single [default: ward].
    #[arg(long)]
    pub linkage: Option<String>,
    /// Number of clusters, or `auto` to try 2..=--k-max and choose (see the JSON's
    /// `curves.rule`); not for dbscan, which finds it.
    #[arg(long)]
    pub k: Option<String>,
    /// K-Means iterations: lloyd (every row every time) or hamerly (distance bounds skip
    /// rows that cannot change cluster; pays with many clusters or features); both give the
    /// same clusters.
    #[arg(long, default_value = "lloyd")]
    pub kmeans_variant: String,
    /// Hierarchical: cut the tree at this merge height instead of at --k clusters.
    #[arg(long, conflicts_with = "k")]
    pub cut_height: Option<f64>,
    /// DBSCAN's neighbourhood radius in scaled units, or `auto` to read it off the knee of
    /// the k-distance curve [default: auto].
    #[arg(long)]
    pub eps: Option<String>,
    /// DBSCAN: rows (itself included) within --eps that make a row a core row
    /// [default: twice the number of features].
    #[arg(long)]
    pub min_samples: Option<usize>,
    /// Largest k tried by `--k auto`.
    #[arg(long, default_value_t = 10)]
    pub k_max: usize,
    /// minmax, zscore, robust or none.
    #[arg(long, default_value = "minmax")]
    pub scale: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// K-Means initialisations; the lowest inertia is kept.
    #[arg(long, default_value_t = 4)]
    pub n_init: usize,
    /// Write `label` per input row, in input order (after the --id column), to this CSV file.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// A column that identifies each row (a customer id): never a feature, and written
    /// beside each label in --output, to join the labels back.
    #[arg(long)]
    pub id: Option<String>,
    /// Write a self-contained HTML page with the curves, sizes, centres and a 2-D view.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the fitted model (preparation, scaling, centres, cluster names) as JSON, to
    /// assign new customers exactly as these rows were.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Print the log's size, offsets and consumers' committed offsets as JSON.
    Stats(LogStatsArgs),
    /// Read every record, checking each one's CRC and offset; print what was found as JSON,
    /// and exit with status 1 when a record does not read. With the server running
    /// (`in_use`), a last record that does not read is looked at again after 200 ms.
    Verify(LogStatsArgs),
}

#[derive(Args)]
pub struct LogStatsArgs {
    /// Data folder [default: ./persona-data].
    #[arg(long, env = "PERSONA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Ingestion throughput and latency of a real `persona serve` over loopback, beside a
    /// no-op axum handler measured in the same run.
    Ingest(BenchIngestArgs),
    /// Live profiles: processor replay throughput, store size, `GET /v1/profiles/{key}`
    /// latency beside `redis-benchmark` GET, freshness under ingest load, and serve's RSS.
    Profiles(BenchProfilesArgs),
    /// K-Means, the elbow sweep and the silhouette beside scikit-learn on the same data.
    Cluster(BenchClusterArgs),
    /// Live segments: back-fill over a big store, live model training beside `persona
    /// cluster`, and the work 100 rule segments and a model add to each event.
    Segments(BenchSegmentsArgs),
    /// Webhooks: signed segment entries delivered to local receivers, deliveries/s.
    Webhooks(BenchWebhooksArgs),
    /// The lake and SQL: the lake's back-fill rate, and queries timed beside DuckDB on the
    /// same Parquet files.
    Sql(BenchSqlArgs),
    /// The profile store on PostgreSQL, bare and behind the Redis cache, beside the embedded
    /// store: the processor's replay into each and profile lookups from several threads.
    Store(BenchStoreArgs),
    /// The Kafka source from a topic into the durable event log, beside a bare consumer
    /// reading the same topic (needs a running broker).
    Kafka(BenchKafkaArgs),
    /// (internal) A server whose handler does nothing: the ceiling for `bench ingest`.
    #[command(hide = true)]
    NoopServer(NoopServerArgs),
    /// (internal) persona's collector and event log alone, without the processor or the
    /// profile store: `bench ingest --collector-alone`.
    #[command(hide = true)]
    CollectorServer(CollectorServerArgs),
}

#[derive(Args)]
pub struct BenchIngestArgs {
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Concurrent connections for the batch phase.
    #[arg(long, default_value_t = 8)]
    pub batch_connections: usize,
    /// Concurrent connections for the single-event phases. A list (`16,64,256`) runs the
    /// max-load rounds at each count and also compares each server at its best count; the
    /// paced phase uses the first.
    #[arg(long, value_delimiter = ',', default_value = "64",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub single_connections: Vec<u32>,
    /// Messages per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Rounds of the single-event phases, no-op and persona taking turns; the ratio is
    /// the median round's.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw each server's single-event rate against its connections as an SVG chart here,
    /// with the target (half the no-op handler's best rate) across it.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also run, in every round, persona's collector and event log alone (durable acks, no
    /// processor or profile store), to tell the ingestion path's share from the live
    /// processing that shares the machine with it.
    #[arg(long)]
    pub collector_alone: bool,
}

#[derive(Args)]
pub struct BenchProfilesArgs {
    /// Customers to build profiles for.
    #[arg(long, default_value_t = 1_000_000)]
    pub profiles: usize,
    /// Events per customer in the replayed log (the second is an identify).
    #[arg(long, default_value_t = 4)]
    pub events_per_profile: usize,
    /// Reuse (or keep) the built data folder here instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seconds each HTTP phase runs.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Profile reads per second in the latency phase.
    #[arg(long, default_value_t = 5000.0)]
    pub read_rate: f64,
    /// Background ingest load in events per second during the freshness phase.
    #[arg(long, default_value_t = 50_000.0)]
    pub load_events_per_sec: f64,
    /// Connections for profile reads (and for redis-benchmark).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Redis to compare with (its database 15 is filled and flushed).
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub redis: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Stop after the processor replays (to profile them, with --data-dir).
    #[arg(long)]
    pub replay_only: bool,
    /// Simulated customers (90 days of traffic) for the realistic replay.
    #[arg(long, default_value_t = 20_000)]
    pub simulated_customers: usize,
}

#[derive(Args)]
pub struct BenchClusterArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 12)]
    pub dims: usize,
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Rows for the exact silhouette (quadratic in rows).
    #[arg(long, default_value_t = 20_000)]
    pub silhouette_rows: usize,
    /// Rows for Ward clustering (quadratic in rows).
    #[arg(long, default_value_t = 20_000)]
    pub ward_rows: usize,
    /// Rows for DBSCAN.
    #[arg(long, default_value_t = 50_000)]
    pub dbscan_rows: usize,
    /// DBSCAN's min_samples [default: twice --dims]; eps is persona's suggestion for it,
    /// and both libraries get the same.
    #[arg(long)]
    pub min_samples: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A Python with numpy and scikit-learn.
    #[arg(long, env = "PERSONA_PYTHON", default_value = "python3")]
    pub python: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchSqlArgs {
    /// Customers simulated over --days (each with dozens of events).
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Runs of each query, after one to warm up; the fastest counts.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The lake's `max_rows` during the back-fill: small values write many small files, as
    /// a server with steady traffic and 30-second flushes does over weeks (the writer reads
    /// the log 4,096 records at a time, so a flush holds at least that many here).
    #[arg(long, default_value_t = 50_000)]
    pub lake_max_rows: usize,
    /// A Python that imports duckdb, the reference [default: $PERSONA_TEST_PYTHON, else
    /// python3].
    #[arg(long)]
    pub python: Option<String>,
    /// Also back-fill a lake in this bucket (`s3://bucket/path`, as `[lake] url`) from the
    /// same log, and time it and the queries over it beside the local lake.
    #[arg(long)]
    pub lake_url: Option<String>,
    /// A setting of that bucket's store, `NAME=VALUE` in object_store's names (as
    /// `[lake.options]`; e.g. `aws_endpoint=http://127.0.0.1:9000`); repeat for more.
    #[arg(long = "lake-option", value_name = "NAME=VALUE")]
    pub lake_options: Vec<String>,
}

#[derive(Args)]
pub struct BenchStoreArgs {
    /// The PostgreSQL server, as a connection string or URL.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// The Redis server for the cached run (its keys expire within ten minutes).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// The schema the bench writes into, dropped before and after the run: its name must
    /// start with persona_bench.
    #[arg(long, default_value = "persona_bench")]
    pub schema: String,
    /// Customers in the synthetic log.
    #[arg(long, default_value_t = 100_000)]
    pub profiles: usize,
    /// Events per customer (the second is an identify).
    #[arg(long, default_value_t = 4)]
    pub events_per_profile: usize,
    /// Threads looking profiles up at once.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Seconds of lookups on each store.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

#[derive(Args)]
pub struct BenchKafkaArgs {
    /// The brokers; the bench creates a topic of its own there.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Partitions of the bench's topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Customers in the synthetic traffic.
    #[arg(long, default_value_t = 50_000)]
    pub profiles: usize,
    /// Messages per customer.
    #[arg(long, default_value_t = 4)]
    pub events_per_profile: usize,
    /// The source's `max_batch`: most records appended to the log at once.
    #[arg(long, default_value_t = 5_000)]
    pub max_batch: usize,
}

#[derive(Args)]
pub struct BenchWebhooksArgs {
    /// Customers, and so segment entries each webhook receives.
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
    /// Webhooks, each with a receiver of its own.
    #[arg(long, default_value_t = 1)]
    pub webhooks: usize,
    /// Seconds to wait for every delivery before failing.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
}

#[derive(Args)]
pub struct BenchSegmentsArgs {
    /// Customers in the store the back-fill and the training run over.
    #[arg(long, default_value_t = 1_000_000)]
    pub profiles: usize,
    /// Customers of simulated traffic replayed with and without segments.
    #[arg(long, default_value_t = 20_000)]
    pub replay_customers: usize,
    /// Measure the back-fills only (no training, no replay).
    #[arg(long)]
    pub backfill_only: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct NoopServerArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

#[derive(Args)]
pub struct CollectorServerArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The event log goes in `log` under this folder.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// The data folder used when none is given.
#[derive(Args)]
pub struct SqlArgs {
    /// The statement, e.g. "SELECT event, count(*) FROM events GROUP BY event"; `-` reads
    /// it from standard input.
    pub query: String,
    /// Most rows to print [default 1000, at most 100000].
    #[arg(long)]
    pub limit: Option<u64>,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    pub format: SqlFormat,
    #[command(flatten)]
    pub server: AdminArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SqlFormat {
    /// Aligned columns, for reading.
    Table,
    /// The API's answer as it is: columns, rows, row_count, truncated.
    Json,
    /// CSV with a header row, for other tools.
    Csv,
}

/// Which running server an admin command talks to, and with which token.
#[derive(Args)]
pub struct AdminArgs {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "PERSONA_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Its admin token [default: the one `serve` saved in --data-dir].
    #[arg(long, global = true, env = "PERSONA_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Where to find the saved admin token when --admin-token is not given.
    #[arg(
        long,
        global = true,
        env = "PERSONA_DATA_DIR",
        default_value = "./persona-data"
    )]
    pub data_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum SegmentsCommand {
    /// Every segment with its member count and warnings.
    List,
    /// One segment.
    Get { id: u64 },
    /// A new segment; its membership is back-filled over every profile.
    Create {
        #[arg(long)]
        name: String,
        /// A SQL boolean expression over profile fields, e.g.
        /// "computed.frequency >= 3 AND traits.country = 'DE'".
        #[arg(long)]
        rule: String,
    },
    /// Renames a segment or changes its rule.
    Update {
        id: u64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        rule: Option<String>,
    },
    /// Deletes a segment with its membership.
    Delete { id: u64 },
    /// A page of a segment's members.
    Members {
        id: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Every job with its schedule, next run and last run.
    List,
    /// Runs a job now and prints its run once it has finished: compact-lake,
    /// snapshot-profiles.
    Run {
        /// The job's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Every webhook with how its deliveries are going.
    List,
    /// One webhook.
    Get { id: u64 },
    /// A new webhook: segment entries and exits from now on are POSTed to the URL, signed.
    Create {
        /// The receiver's URL (the API's `url`; `--url` names the persona server).
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// Events to send, comma-separated [default: segment.entered,segment.exited].
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only these rule segments' events, by id, comma-separated [default: every
        /// segment and cluster].
        #[arg(long, value_delimiter = ',')]
        segments: Vec<u64>,
        /// The signing secret (8 to 256 characters); generated, and printed once, if not
        /// given.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Changes a webhook's URL, events or secret, or turns it off or on again.
    Update {
        id: u64,
        /// The receiver's new URL.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Only these rule segments' events (an empty value for every one again).
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        segments: Option<Vec<u64>>,
        #[arg(long)]
        secret: Option<String>,
        /// Turns it on again (it goes on from the entry where it stopped).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Turns it off (its position is kept).
        #[arg(long)]
        disable: bool,
    },
    /// Deletes a webhook.
    Delete { id: u64 },
    /// Sends a signed `ping` event to a webhook's URL and shows the answer.
    Ping { id: u64 },
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Every model with its status and version.
    List,
    /// One model: metrics, centres, cluster names, training progress.
    Get { id: u64 },
    /// A model's quality curves over k.
    Curves { id: u64 },
    /// Makes a model the active one of its name (e.g. to roll back).
    Activate { id: u64 },
    /// Trains a model on the stored profiles (in the background; `get` shows progress).
    Train(TrainArgs),
}

#[derive(Args)]
pub struct TrainArgs {
    /// The model's name; a new training of a name gets the next version.
    #[arg(long)]
    pub name: String,
    /// Profile fields as rules name them, e.g. computed.frequency,computed.monetary.
    #[arg(long, value_delimiter = ',', required = true)]
    pub features: Vec<String>,
    /// kmeans, minibatch-kmeans or hierarchical [server default: kmeans].
    #[arg(long)]
    pub algorithm: Option<String>,
    /// A number of clusters, or `auto` to choose it.
    #[arg(long)]
    pub k: String,
    /// Seed of the random starts, for a repeatable model [server default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep the model of this name now active in force.
    #[arg(long)]
    pub no_activate: bool,
}

pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./persona-data")
}
