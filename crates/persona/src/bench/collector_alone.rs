//! `bench collector-server`: persona's collector and event log alone, as `persona serve`
//! runs them (the same accept loop, front, router, validation and group-committed
//! `fdatasync` before each answer), without the processor, the profile store or the API.
//!
//! `bench ingest --collector-alone` measures it beside the whole server, so that a run
//! tells the ingestion path's cost from that of the live processing sharing its cores.

use std::sync::Arc;

use anyhow::Context;
use persona_collector::{CollectorConfig, CollectorState, LogMetrics, Metrics};
use persona_log::{EventLog, LogConfig};
use tokio::net::TcpListener;

use super::WRITE_KEY;
use crate::cli::CollectorServerArgs;
use crate::http_server::{ConnectionLimits, answer_while_starting, serve};

pub async fn collector_server(args: CollectorServerArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let log_dir = args.data_dir.join("log");
    let (log, _) = EventLog::open(
        &log_dir,
        LogConfig::default(),
        Arc::new(LogMetrics(metrics.clone())),
    )
    .with_context(|| format!("cannot open the event log in {}", log_dir.display()))?;
    let config = CollectorConfig {
        write_keys: vec![WRITE_KEY.into()],
        ..Default::default()
    }
    .validate()?;
    let state = CollectorState::new(Arc::new(log), config, metrics);
    let app = persona_collector::Front::new(state.clone(), persona_collector::router(state));
    let limits = ConnectionLimits::default();
    crate::http_server::reserve_open_files(limits.max_connections);
    let listener = TcpListener::bind(args.listen).await?;
    let listening = answer_while_starting(listener, persona_collector::starting_router(), limits)
        .ready()
        .await;
    println!("persona listening on http://{}", listening.local_addr()?);
    let never = std::future::pending::<()>;
    serve(listening, app, limits, never(), never()).await;
    Ok(())
}
