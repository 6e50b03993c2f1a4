//! The webhook stage: delivers the segment engine's `segment.entered` and
//! `segment.exited` events from the store's outbox to subscribers' URLs.
//!
//! Each webhook (`POST /v1/webhooks`) is a document in the profile store with its own
//! cursor in the outbox, as every stage downstream of the event log has its own offset, and
//! its own worker on the runtime. Deliveries are JSON POSTs signed with the webhook's
//! secret (`X-Persona-Signature: t=…,v1=<hex HMAC-SHA256 of "t.body">`), sent in outbox
//! order, one at a time, and tried again with the same `X-Persona-Delivery` id until the
//! receiver answers 2xx: at least once, in order, with an id to deduplicate by. A webhook
//! failing for `give_up_after_hours` is turned off with the reason, keeping its cursor.

mod client;
mod config;
mod def;
mod deliver;
mod progress;
mod registry;
mod signature;

pub use config::{ValidWebhookConfig, WebhookConfig};
pub use def::{EVENTS, WebhookDef, check_events, check_secret, check_url, new_secret};
pub use progress::{DeliveryStatus, LastError, WebhookMetrics};
pub use registry::{PingResult, WebhookChange, WebhookView, Webhooks};
pub use signature::sign;
