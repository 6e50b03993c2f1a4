//! `persona serve`: opens the data folder, starts every stage and serves HTTP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use persona_api::ApiState;
use persona_collector::StageCheck;
use persona_collector::{CollectorConfig, CollectorState, LogMetrics, Metrics};
use persona_log::EventLog;
use persona_rules::SegmentRegistry;
use persona_store::{EmbeddedStore, ProfileStore};
use persona_store_postgres::PostgresStore;
use persona_store_redis::{CacheCounts, RedisCache};
use persona_stream::{CONSUMER, Processor, ProcessorMetrics, ProcessorStatus, Wakeup};
use persona_webhooks::{WebhookMetrics, Webhooks};
use serde_json::json;

use crate::cli::ServeArgs;
use crate::keys;
use crate::say::stdout_line;
use crate::settings::{Settings, StoreBackend};

/// Profiles are reported stale when the processor's newest applied event is older than
/// this while more records wait.
const STALE_AFTER_SECONDS: f64 = 5.0;

/// How often closed log segments are checked against the retention policy.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args)?;
    crate::http_server::reserve_open_files(settings.http.max_connections);
    let data_dir = settings.data_dir.clone();
    if data_dir.exists() && !data_dir.is_dir() {
        anyhow::bail!(
            "data folder {} is not a folder; --data-dir names the folder persona keeps its data in",
            data_dir.display()
        );
    }
    // Synced into its parent: the secrets and stores in it must outlive a power cut.
    persona_core::durable::create_private_dir_all(&data_dir)
        .with_context(|| format!("cannot create data folder {}", data_dir.display()))?;

    let processor_config = settings
        .processor
        .clone()
        .validate()
        .context("invalid processor settings")?;
    let defaults = CollectorConfig::default();
    let mut collector = CollectorConfig {
        write_keys: settings.write_keys.clone(),
        max_message_bytes: settings
            .collector
            .max_message_bytes
            .unwrap_or(defaults.max_message_bytes),
        max_batch_bytes: settings
            .collector
            .max_batch_bytes
            .unwrap_or(defaults.max_batch_bytes),
        max_inflight_bytes: settings
            .collector
            .max_inflight_bytes
            .unwrap_or(defaults.max_inflight_bytes),
        trusted_proxies: settings.trusted_proxies.clone(),
    };
    // Checked in full before any key is generated, as everything else that can fail is.
    if collector.write_keys.is_empty() {
        collector.check_limits()
    } else {
        collector.clone().validate().map(drop)
    }
    .context("invalid collector settings")?;
    // Bound before any key is generated: a start that fails on a taken port must not
    // print a generated key that the next start, finding it saved, prints no more. Bound
    // before the stores open, so that a slow start answers (see `answer_while_starting`).
    let listener = crate::http_server::bind(settings.listen)
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let starting = crate::http_server::answer_while_starting(
        listener,
        persona_collector::starting_router(),
        settings.http,
    );
    let mut metrics = Metrics::new();
    let processor_metrics = ProcessorMetrics::new();
    processor_metrics.register(metrics.registry_mut());
    let webhook_metrics = WebhookMetrics::default();
    webhook_metrics.register(metrics.registry_mut());
    let lake_metrics = persona_lake::LakeMetrics::default();
    lake_metrics.register(metrics.registry_mut());
    let job_metrics = persona_jobs::JobMetrics::default();
    job_metrics.register(metrics.registry_mut());
    let cache_counts = CacheCounts::default();
    let kafka_metrics = persona_source_kafka::KafkaMetrics::default();
    if settings.kafka.is_some() {
        kafka_metrics.register(metrics.registry_mut());
    }
    if let StoreBackend::Postgres(_, Some(_)) = &settings.store {
        cache_counts.register(metrics.registry_mut());
    }
    let metrics = Arc::new(metrics);
    let wakeup = Wakeup::default();
    let log_dir = data_dir.join("log");
    let (log, recovery) = EventLog::open(
        &log_dir,
        settings.log.clone(),
        Arc::new((LogMetrics(metrics.clone()), wakeup.clone())),
    )
    .with_context(|| format!("cannot open the event log in {}", log_dir.display()))?;
    if recovery.dropped_anything() {
        stdout_line(format_args!(
            "recovered the event log: kept {} records of the last segment, cut {} bytes of a torn write ({}), saved in {}",
            recovery.kept_records,
            recovery.dropped_bytes,
            recovery.reason.as_deref().unwrap_or("unknown"),
            recovery
                .quarantined
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
        ));
    }
    let log = Arc::new(log);

    let store = open_store(&settings.store, &data_dir, &cache_counts)?;
    warm_store_cache(store.clone());
    log.register_consumer(CONSUMER)?;
    let status = Arc::new(ProcessorStatus::default());
    let models = persona_api::load_models(&*store).context("cannot read the stored models")?;
    let segments = Arc::new(persona_rules::SegmentRegistry::from_stored(
        store
            .segments()
            .context("cannot read the stored segments")?,
        &models,
    ));
    if let Some(fit) = persona_api::load_rfm(&*store).context("cannot read the RFM edges")? {
        segments.set_rfm(fit);
    }
    let webhooks = Webhooks::start(store.clone(), settings.webhooks.clone(), webhook_metrics)
        .map_err(anyhow::Error::msg)
        .context("cannot start the webhooks")?;
    let rfm_refit = processor_config.rfm_refit;
    let processor = Processor::new(
        store.clone(),
        log.reader()?,
        processor_config,
        status.clone(),
        processor_metrics,
    )
    .context("cannot start the processor")?
    .with_segments(segments.clone());
    // Dropped at the end of `run`: stops the processor after its batch in progress.
    let _processor = persona_stream::spawn(processor, log.clone(), wakeup)
        .context("cannot start the processor thread")?;
    let remote_lake = match &settings.lake.location {
        persona_lake::LakeLocation::Remote(remote) => Some(remote),
        _ => None,
    };
    let lake_dir = match &settings.lake.location {
        persona_lake::LakeLocation::Folder(folder) => folder.clone(),
        _ => data_dir.join("lake"),
    };
    let lake =
        persona_lake::LakeStorage::open(remote_lake, lake_dir, data_dir.join("lake-staging"))
            .context("cannot open the lake")?;
    // Dropped at the end of `run` too: the lake writer flushes what it has gathered.
    let _lake = if settings.lake.enabled {
        Some(
            persona_lake::spawn(
                log.clone(),
                lake.clone(),
                settings.lake.clone(),
                lake_metrics,
            )
            .context("cannot start the lake writer")?,
        )
    } else {
        // Retention must not keep the log for a lake that is no longer written.
        log.consumers().unregister(persona_lake::CONSUMER)?;
        None
    };
    // Dropped at the end of `run`, before the log: the batch in hand is stored (or left
    // uncommitted) and the stored offsets are committed.
    let _kafka = match settings.kafka.clone() {
        Some(config) => Some(
            persona_source_kafka::spawn(
                config,
                log.clone(),
                collector.max_message_bytes,
                kafka_metrics,
                tokio::runtime::Handle::current(),
            )
            .context("cannot start the Kafka source")?,
        ),
        None => None,
    };
    let gate = persona_lake::LakeGate::default();
    let warehouse = Arc::new(
        persona_warehouse::Warehouse::open(
            lake.clone(),
            store.clone(),
            settings.sql.clone(),
            gate.clone(),
        )
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot open the SQL warehouse")?,
    );
    // Dropped before the lake writer: a job in progress finishes first.
    let (jobs, _scheduler) = persona_jobs::Jobs::start(
        crate::maintenance::jobs(&settings, log.clone(), lake, gate, warehouse.clone()),
        job_metrics,
    )
    .context("cannot start the job scheduler")?;

    // Generated only under the log's lock (two servers started on one folder at once would
    // otherwise each print a key of their own and leave one of them in the file), and only
    // once every other part of the start has succeeded: a key printed by a start that then
    // fails is saved, and the next start, finding it, prints it no more.
    if collector.write_keys.is_empty() {
        collector
            .write_keys
            .push(secret(&data_dir, "write_key", "write key")?);
    }
    let first_write_key = collector.write_keys[0].clone();
    let admin_token = match settings.admin_token.clone() {
        Some(t) => t,
        None => secret(&data_dir, "admin_token", "admin token")?,
    };

    let collector = collector.validate().context("invalid collector settings")?;
    let check = Arc::new(ProcessorCheck {
        status: status.clone(),
        log: log.clone(),
    });
    let collector_state =
        CollectorState::new(log.clone(), collector, metrics).with_stage(check.clone());
    let rfm = rfm_loop(store.clone(), segments.clone(), rfm_refit);
    let api = persona_api::router(ApiState {
        store,
        log_dir: log_dir.clone(),
        admin_token: admin_token.into(),
        stale: Arc::new(move || check.stale()),
        segments,
        models_lock: Arc::default(),
        segments_lock: Arc::default(),
        webhooks,
        warnings: Arc::default(),
        warehouse,
        jobs,
    });
    let app = persona_collector::router_with(
        collector_state.clone(),
        api.merge(crate::openapi::router())
            .merge(crate::dashboard::router()),
    );
    let stopping = collector_state.clone();
    let app = persona_collector::Front::new(collector_state, app);

    let (shutdown, force) = shutdown_signals()?;
    let shutdown = async move {
        shutdown.await;
        stopping.begin_stop();
    };
    let listening = starting.ready().await;
    let addr = listening.local_addr()?;
    // Tests and scripts read this line to find the port when listening on port 0.
    stdout_line(format_args!("persona listening on http://{addr}"));
    tracing::info!(%addr, data_dir = %data_dir.display(), next_offset = log.next_offset(), "serving");

    tokio::spawn(retention_loop(log.clone()));
    tokio::spawn(rfm);
    if settings.demo {
        tokio::spawn(crate::simulate::demo(
            format!("http://{addr}"),
            first_write_key,
        ));
    }

    crate::http_server::serve(listening, app, settings.http, shutdown, force).await;
    tracing::info!("stopped; every acknowledged event is on disk");
    Ok(())
}

fn secret(data_dir: &std::path::Path, file: &str, what: &str) -> anyhow::Result<String> {
    let (value, generated) = keys::load_or_generate(data_dir, file)?;
    if generated {
        stdout_line(format_args!(
            "generated {what} (saved in {}): {value}",
            data_dir.join(file).display()
        ));
    } else {
        tracing::info!(file = %data_dir.join(file).display(), "using the saved {what}");
    }
    Ok(value)
}

/// The profile store the settings name.
fn open_store(
    backend: &StoreBackend,
    data_dir: &std::path::Path,
    cache_counts: &CacheCounts,
) -> anyhow::Result<Arc<dyn ProfileStore>> {
    Ok(match backend {
        StoreBackend::Embedded => {
            let path = data_dir.join("profiles");
            Arc::new(
                EmbeddedStore::open(&path)
                    .with_context(|| format!("cannot open the profile store {}", path.display()))?,
            )
        }
        StoreBackend::Postgres(config, cache) => {
            let store = PostgresStore::open(config).with_context(|| {
                format!("cannot open the profile store in {}", config.describe())
            })?;
            tracing::info!(store = %config.describe(), "profiles are kept in PostgreSQL");
            match cache {
                None => Arc::new(store),
                Some(cache) => Arc::new(
                    RedisCache::new(Arc::new(store), cache, cache_counts.clone())
                        .context("store.cache_url")?,
                ),
            }
        }
    })
}

/// Reads the profiles into the store's cache on a thread of its own, so the profile API
/// answers from memory soon after a start instead of waiting for the disk on each first
/// read (as PostgreSQL's pg_prewarm does for its buffers).
fn warm_store_cache(store: Arc<dyn ProfileStore>) {
    let warm = move || {
        let started = std::time::Instant::now();
        match store.warm_cache() {
            Ok(bytes) => tracing::info!(
                mib = bytes >> 20,
                seconds = started.elapsed().as_secs_f64(),
                "read the profiles into the store's cache"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read the profiles into the store's cache"),
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("persona-store-warm".into())
        .spawn(warm)
    {
        tracing::warn!(error = %e, "cannot start warming the store's cache");
    }
}

/// Until RFM has been fitted once, a fit is tried this often (there may be no purchase yet).
const RFM_FIRST_FIT_RETRY: Duration = Duration::from_secs(60);

/// Fits the RFM edges again every `every`, and soon after start when there are none.
async fn rfm_loop(store: Arc<dyn ProfileStore>, registry: Arc<SegmentRegistry>, every: Duration) {
    let until_due = |registry: &SegmentRegistry| {
        let fit = registry.rfm()?;
        until_next_fit(fit.fitted_at, every, chrono::Utc::now())
    };
    loop {
        let wait = match registry.rfm() {
            None => RFM_FIRST_FIT_RETRY,
            Some(_) => until_due(&registry).unwrap_or_default(),
        };
        tokio::time::sleep(wait).await;
        // A fit asked for through the API while this one slept moves the schedule: it is
        // not replaced by one made moments later.
        if until_due(&registry).is_some() {
            continue;
        }
        let (store, registry) = (store.clone(), registry.clone());
        let fitted = tokio::task::spawn_blocking(move || {
            persona_api::refit_rfm(&*store, &registry, chrono::Utc::now())
        })
        .await;
        let failure = match fitted {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(error = %failure, "the scheduled RFM fit failed; trying again soon");
        tokio::time::sleep(RFM_FIRST_FIT_RETRY).await;
    }
}

/// How long until the fit made at `fitted_at` is due again; `None` when it is due now.
fn until_next_fit(
    fitted_at: chrono::DateTime<chrono::Utc>,
    every: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let age = (now - fitted_at).to_std().unwrap_or_default();
    Some(every.saturating_sub(age)).filter(|wait| !wait.is_zero())
}

async fn retention_loop(log: Arc<EventLog>) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tick.tick().await;
        let log = log.clone();
        match tokio::task::spawn_blocking(move || log.enforce_retention()).await {
            Ok(Ok(report)) if report.held_for_consumers > 0 => tracing::debug!(
                held = report.held_for_consumers,
                "retention is waiting for consumers to commit"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "log retention failed"),
            // Shutting down: the runtime cancelled a pass that had not started.
            Err(e) if e.is_cancelled() => return,
            Err(e) => tracing::warn!(error = %e, "log retention task panicked"),
        }
    }
}

/// Installs the SIGINT, SIGTERM and SIGHUP handlers at once (so a signal sent right after
/// start-up is not lost). The first future completes on the first of them (stop: finish the
/// requests in flight), the second on the next one (stop now). SIGHUP, sent when the
/// terminal that started the server closes, would otherwise kill it without its drain; the
/// server has no configuration to reload on it. Under `nohup`, which starts it with SIGHUP
/// ignored, it stays ignored.
fn shutdown_signals() -> anyhow::Result<(impl Future<Output = ()>, impl Future<Output = ()>)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = if persona_core::signals::is_ignored(libc::SIGHUP) {
        None
    } else {
        Some(signal(SignalKind::hangup()).context("cannot handle SIGHUP")?)
    };
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let (second_tx, second) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
            Some(_) = hang_up(&mut hup) => {},
        }
        tracing::info!(
            "shutting down: finishing requests in flight (a second signal stops at once)"
        );
        let _ = first_tx.send(());
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
            Some(_) = hang_up(&mut hup) => {},
        }
        let _ = second_tx.send(());
    });
    Ok((
        async move {
            let _ = first.await;
        },
        async move {
            let _ = second.await;
        },
    ))
}

/// The next SIGHUP, or never when it is left ignored.
async fn hang_up(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup {
        Some(hup) => hup.recv().await,
        None => std::future::pending().await,
    }
}

/// The processor as `/readyz` and the profile API see it.
struct ProcessorCheck {
    status: Arc<ProcessorStatus>,
    log: Arc<EventLog>,
}

impl ProcessorCheck {
    fn lag(&self) -> (u64, f64) {
        let next = self.log.next_offset();
        let now = chrono::Utc::now().timestamp_millis();
        (
            self.status.lag_records(next),
            self.status.lag_seconds(next, now),
        )
    }

    fn stale(&self) -> bool {
        self.status.failure().is_some() || self.lag().1 > STALE_AFTER_SECONDS
    }
}

impl StageCheck for ProcessorCheck {
    fn name(&self) -> &'static str {
        "processor"
    }

    fn check(&self) -> (serde_json::Value, Vec<String>) {
        let (records, seconds) = self.lag();
        let failure = self.status.failure();
        let figures = json!({
            "applied_offset": self.status.applied(),
            "lag_records": records,
            "lag_seconds": seconds,
            "failure": failure,
        });
        let problems = failure
            .map(|f| format!("processor failing: {f}"))
            .into_iter()
            .collect();
        (figures, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fit_is_due_once_it_is_as_old_as_the_schedule() {
        let now = chrono::Utc::now();
        let day = Duration::from_secs(86_400);
        let ago = |secs| now - chrono::Duration::seconds(secs);
        // A fit asked for through the API a moment ago is not replaced by the schedule.
        assert_eq!(
            until_next_fit(ago(30), day, now),
            Some(day - Duration::from_secs(30))
        );
        assert_eq!(until_next_fit(ago(86_400), day, now), None);
        assert_eq!(until_next_fit(ago(90_000), day, now), None);
        // A clock set back leaves a fit from the future as young as a new one.
        assert_eq!(
            until_next_fit(now + chrono::Duration::hours(1), day, now),
            Some(day)
        );
    }
}
