//! Helpers: write messages into a real log as the collector would, run the processor.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use persona_collector::normalize::{Envelope, normalize_value};
use persona_core::profile::Profile;
use persona_log::{EventLog, LogConfig, LogReader};
use persona_store::{EmbeddedStore, IdentityKey, ProfileStore};
use persona_stream::{Processor, ProcessorMetrics, ProcessorStatus, StreamConfig};
use serde_json::Value;

/// Validates and normalises `messages` as `persona import` does and appends them.
pub fn append(log_dir: &Path, messages: &[Value]) {
    let envelope = Envelope {
        received_at: Utc::now(),
        write_key: Some("live".into()),
        ..Default::default()
    };
    let payloads: Vec<Vec<u8>> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let n = normalize_value(m.clone(), None, i, &envelope).expect("valid test message");
            n.bytes
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (log, _) = EventLog::open(log_dir, LogConfig::default(), Arc::new(())).unwrap();
    for chunk in payloads.chunks(1000) {
        rt.block_on(log.append(chunk.to_vec())).unwrap();
    }
}

/// Runs a fresh processor over everything in the log; returns its metrics.
pub fn process(
    log_dir: &Path,
    store: &Arc<EmbeddedStore>,
    config: StreamConfig,
) -> ProcessorMetrics {
    let metrics = ProcessorMetrics::new();
    let mut p = Processor::new(
        store.clone(),
        LogReader::open_dir(log_dir).unwrap(),
        config.validate().unwrap(),
        Arc::new(ProcessorStatus::default()),
        metrics.clone(),
    )
    .unwrap();
    p.run_to_end().unwrap();
    metrics
}

pub fn store(dir: &Path) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir.join("profiles")).unwrap())
}

pub fn profile(store: &EmbeddedStore, key: &str) -> Option<Profile> {
    store
        .lookup(&IdentityKey::parse(key))
        .unwrap()
        .map(|(_, p)| p)
}

/// Every stored profile.
pub fn all_profiles(store: &EmbeddedStore) -> Vec<Profile> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan(after, 1000).unwrap();
        let Some((last, _)) = page.last() else {
            return out;
        };
        after = Some(*last);
        out.extend(page.into_iter().map(|(_, p)| p));
    }
}
