//! The webhooks in force: created, changed and deleted through the API, stored as
//! documents, each active one with its worker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use persona_store::{ProfileStore, StoreError};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::client;
use crate::config::ValidWebhookConfig;
use crate::def::{KIND, WebhookDef};
use crate::deliver::{Shared, Worker, attempt};
use crate::progress::{DeliveryStatus, Progress, WebhookMetrics};

/// A webhook with how its deliveries are going.
#[derive(Debug, Clone)]
pub struct WebhookView {
    pub def: WebhookDef,
    pub delivery: DeliveryStatus,
}

/// What a change may set; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub segments: Option<Vec<u64>>,
    pub secret: Option<String>,
    pub active: Option<bool>,
}

/// The answer to a test delivery (`POST /v1/webhooks/{id}/ping`).
#[derive(Debug, Serialize)]
pub struct PingResult {
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    pub status: Option<u16>,
    pub duration_ms: f64,
    pub error: Option<String>,
}

struct Entry {
    def: WebhookDef,
    progress: Arc<Progress>,
    worker: Option<AbortHandle>,
}

/// Every stored webhook and its worker.
pub struct Webhooks {
    shared: Arc<Shared>,
    /// Held only for map reads and changes, never across a disk write, so that the API's
    /// reads do not wait for another request's sync.
    entries: Mutex<BTreeMap<u64, Entry>>,
    /// One change at a time, from reading the definition to putting it in the map: held
    /// across the store's synced writes.
    writer: Mutex<()>,
    runtime: Handle,
    me: Weak<Webhooks>,
}

fn encode(def: &WebhookDef) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(def).map_err(|e| StoreError::Backend(e.to_string()))
}

impl Webhooks {
    /// Reads the stored webhooks and starts a worker for each active one, on the current
    /// tokio runtime. Fails on an unreadable webhook or a bad `ca_file`.
    pub fn start(
        store: Arc<dyn ProfileStore>,
        config: ValidWebhookConfig,
        metrics: WebhookMetrics,
    ) -> Result<Arc<Webhooks>, String> {
        let client = client::build(config.timeout, config.ca_file.as_deref())?;
        let mut entries = BTreeMap::new();
        for (id, bytes) in store.documents(KIND).map_err(|e| e.to_string())? {
            let def: WebhookDef = serde_json::from_slice(&bytes)
                .map_err(|e| format!("stored webhook {id} cannot be read: {e}"))?;
            // Shown from the start, for a webhook that is off (and has no worker) too.
            let cursor = store
                .cursor(&WebhookDef::cursor_name(id))
                .map_err(|e| e.to_string())?;
            let progress = Arc::new(Progress::default());
            progress.update(|s| s.cursor = cursor.unwrap_or(0));
            entries.insert(
                id,
                Entry {
                    def,
                    progress,
                    worker: None,
                },
            );
        }
        let webhooks = Arc::new_cyclic(|me| Webhooks {
            shared: Arc::new(Shared {
                store,
                client,
                config,
                metrics,
            }),
            entries: Mutex::new(entries),
            writer: Mutex::new(()),
            runtime: Handle::current(),
            me: me.clone(),
        });
        for entry in webhooks.lock().values_mut() {
            webhooks.spawn(entry);
        }
        Ok(webhooks)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic under it is a bug already logged, and the map is left whole.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn one_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The definition in force.
    fn def(&self, id: u64) -> Option<WebhookDef> {
        self.lock().get(&id).map(|e| e.def.clone())
    }

    /// Starts the entry's worker if it is active (stopping any it had).
    fn spawn(&self, entry: &mut Entry) {
        if let Some(old) = entry.worker.take() {
            old.abort();
        }
        if !entry.def.active {
            return;
        }
        let worker = Worker {
            def: entry.def.clone(),
            shared: self.shared.clone(),
            progress: entry.progress.clone(),
            registry: self.me.clone(),
        };
        entry.worker = Some(self.runtime.spawn(worker.run()).abort_handle());
    }

    fn view(&self, entry: &Entry, outbox_end: u64) -> WebhookView {
        let mut delivery = entry.progress.read();
        delivery.behind = outbox_end.saturating_sub(1).saturating_sub(delivery.cursor);
        if !entry.def.active {
            delivery.state = "disabled";
            delivery.next_attempt_at = None;
        } else if delivery.state != "retrying" {
            // The worker's own word lags its page; nothing behind is idle.
            delivery.state = if delivery.behind == 0 {
                "idle"
            } else {
                "delivering"
            };
        }
        WebhookView {
            def: entry.def.clone(),
            delivery,
        }
    }

    /// Every webhook, by id.
    pub fn list(&self) -> Result<Vec<WebhookView>, StoreError> {
        let end = self.shared.store.outbox_end()?;
        Ok(self.lock().values().map(|e| self.view(e, end)).collect())
    }

    pub fn get(&self, id: u64) -> Result<Option<WebhookView>, StoreError> {
        let end = self.shared.store.outbox_end()?;
        Ok(self.lock().get(&id).map(|e| self.view(e, end)))
    }

    /// Stores a new webhook, which receives the entries written from now on once
    /// `active`. Blocks on the disk.
    pub fn create(
        &self,
        url: String,
        events: Vec<String>,
        segments: Vec<u64>,
        secret: String,
        active: bool,
    ) -> Result<WebhookDef, StoreError> {
        let store = &self.shared.store;
        let _one = self.one_writer();
        let id = store.next_document_id(KIND)?;
        let cursor = store.outbox_end()? - 1;
        // Before the definition, whose durable write syncs it too.
        store.set_cursor(&WebhookDef::cursor_name(id), Some(cursor))?;
        let now = Utc::now().timestamp_millis();
        let def = WebhookDef {
            id,
            url,
            events,
            segments,
            secret,
            active,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            salt: Uuid::new_v4(),
        };
        store.put_document(KIND, id, &encode(&def)?)?;
        let progress = Arc::new(Progress::default());
        progress.update(|s| s.cursor = cursor);
        let mut entries = self.lock();
        let entry = entries.entry(id).or_insert(Entry {
            def: def.clone(),
            progress,
            worker: None,
        });
        self.spawn(entry);
        Ok(def)
    }

    /// Changes a webhook; `None` when there is none with that id. Turning it on again
    /// clears why it was off, and it goes on from its cursor. Blocks on the disk.
    pub fn update(&self, id: u64, change: WebhookChange) -> Result<Option<WebhookDef>, StoreError> {
        let _one = self.one_writer();
        let Some(old) = self.def(id) else {
            return Ok(None);
        };
        let mut def = old.clone();
        if let Some(url) = change.url {
            def.url = url;
        }
        if let Some(events) = change.events {
            def.events = events;
        }
        if let Some(segments) = change.segments {
            def.segments = segments;
        }
        if let Some(secret) = change.secret {
            def.secret = secret;
        }
        if let Some(active) = change.active {
            def.active = active;
            if active {
                def.disabled_reason = None;
            }
        }
        // An active webhook whose worker has stopped (its giving up could not be stored)
        // is started again by any change, this one included.
        let stopped = def.active
            && self
                .lock()
                .get(&id)
                .is_some_and(|e| e.worker.as_ref().is_none_or(AbortHandle::is_finished));
        if def == old && !stopped {
            return Ok(Some(def));
        }
        if def != old {
            def.updated_at = Utc::now().timestamp_millis();
            self.shared.store.put_document(KIND, id, &encode(&def)?)?;
        }
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.def = def.clone();
            entry.progress.update(|s| {
                s.failing_since = None;
                s.next_attempt_at = None;
            });
            self.spawn(entry);
        }
        Ok(Some(def))
    }

    /// Deletes a webhook and stops its worker; false when there is none with that id.
    pub fn delete(&self, id: u64) -> Result<bool, StoreError> {
        let _one = self.one_writer();
        if self.def(id).is_none() {
            return Ok(false);
        }
        let store = &self.shared.store;
        store.delete_document(KIND, id)?;
        let removed = self.lock().remove(&id);
        if let Some(worker) = removed.and_then(|mut e| e.worker.take()) {
            worker.abort();
        }
        store.set_cursor(&WebhookDef::cursor_name(id), None)?;
        Ok(true)
    }

    /// Turns a webhook off because its deliveries kept failing, unless it was changed or
    /// deleted since its worker started (`updated_at`); true when it did. Blocks on the
    /// disk.
    pub(crate) fn disable(
        &self,
        id: u64,
        updated_at: i64,
        reason: String,
    ) -> Result<bool, StoreError> {
        let _one = self.one_writer();
        let Some(mut def) = self.def(id).filter(|d| d.updated_at == updated_at) else {
            return Ok(false);
        };
        def.active = false;
        def.disabled_reason = Some(reason);
        def.updated_at = Utc::now().timestamp_millis();
        self.shared.store.put_document(KIND, id, &encode(&def)?)?;
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.def = def;
            entry.worker = None;
        }
        Ok(true)
    }

    /// Sends a `ping` event to a webhook's URL once, signed as deliveries are, and says how
    /// the receiver answered; `None` when there is no webhook with that id. The outbox and
    /// the cursor are not touched.
    pub async fn ping(&self, id: u64) -> Option<PingResult> {
        let def = self.lock().get(&id)?.def.clone();
        let delivery = Uuid::new_v4().to_string();
        let body = serde_json::json!({
            "id": delivery,
            "webhook_id": id,
            "event": "ping",
            "at": Utc::now(),
        });
        let started = Instant::now();
        let result = attempt(
            &self.shared.client,
            &def,
            "ping",
            &delivery,
            Bytes::from(body.to_string()),
            self.shared.config.timeout,
        )
        .await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        Some(match result {
            Ok(answer) => PingResult {
                delivered: answer.status.is_success(),
                status: Some(answer.status.as_u16()),
                duration_ms,
                error: (!answer.status.is_success())
                    .then(|| format!("answered {}: {}", answer.status, answer.text.trim())),
            },
            Err(error) => PingResult {
                delivered: false,
                status: None,
                duration_ms,
                error: Some(error),
            },
        })
    }
}
