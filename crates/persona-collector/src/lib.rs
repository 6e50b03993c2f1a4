//! The collector: persona's front door for events.
//!
//! It speaks the Segment HTTP Tracking API (so Segment's and RudderStack's SDKs send here
//! unchanged), authenticates write keys, validates and normalises each message as Segment
//! does, and answers `200 {"success":true}` only after the event log has made the messages
//! durable. It also serves `/healthz`, `/readyz` and `/metrics`.
//!
//! It owns no storage: it appends to a [`persona_log::EventLog`] and knows nothing of the
//! stages that consume it.

mod backend;
mod body;
pub mod client_ip;
pub mod config;
pub mod error;
mod exposition;
mod front;
mod ingest;
pub mod metrics;
pub mod normalize;
mod ops;
pub mod repair;
mod salvage;
mod sdk_settings;
pub mod shallow;
mod state;
mod surrogates;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{AllowHeaders, Any, CorsLayer};

pub use config::{CollectorConfig, ConfigError, ValidCollectorConfig};
pub use error::ApiError;
pub use front::{Front, ingest_routes};
pub use metrics::{LogMetrics, Metrics};
pub use ops::starting_router;
pub use state::{CollectorState, StageCheck};

/// The ingestion and operational routes, ready to serve or to call with `oneshot` in tests.
/// `persona serve` puts a [`Front`] before it, which answers the ingestion calls itself.
pub fn router(state: CollectorState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `other` routes merged in (the admin API), all of them answered alike:
/// JSON 404 and 405 errors, the request latency histogram, CORS.
pub fn router_with(state: CollectorState, other: Router) -> Router {
    let mut ingest = Router::new();
    for (path, kind) in front::ingest_routes() {
        let handler =
            move |State(s): State<CollectorState>, req: Request| ingest::ingest(s, kind, req);
        ingest = ingest.route(&path, post(handler));
    }
    // Bodies are read with our own limits (and after gzip decoding) in `body.rs`.
    let ingest = ingest.layer(DefaultBodyLimit::disable());

    let mut sdk_routes = Router::new();
    for path in sdk_settings::RUDDERSTACK_ROUTES {
        sdk_routes = sdk_routes.route(path, get(sdk_settings::rudderstack_source_config));
    }

    Router::new()
        .merge(ingest)
        .merge(sdk_routes)
        .route(sdk_settings::ROUTE, get(sdk_settings::settings))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(state.clone())
        .merge(other)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // After the routes and fallbacks, so that it times every one of them (a 404 as
        // `unmatched`).
        .layer(middleware::from_fn_with_state(state, track_latency))
        // Outermost, so preflight requests are answered before routing.
        .layer(cors())
}

/// Browsers on any origin may send events (analytics.js runs on customers' sites) and read
/// the SDK settings (RudderStack's SDK asks for them with an `Authorization` header, so its
/// GET is preflighted).
///
/// Every request header a preflight asks for is allowed: browser SDKs add their own (the
/// RudderStack JS SDK sends `AnonymousId` besides `Authorization`), and a header missing
/// from a fixed list makes the browser drop every event without telling anyone. Nothing
/// here depends on cookies, so mirroring is safe. `Retry-After` is exposed so that a
/// browser SDK can honour it when the log is overloaded.
pub(crate) fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(86_400))
}

async fn track_latency(State(state): State<CollectorState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    state
        .metrics
        .request_seconds
        .get_or_create(&metrics::RequestLabels {
            path,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn not_found(req: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
    .into_response()
}
