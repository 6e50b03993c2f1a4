//! [`Front`]: the ingestion calls answered directly, everything else through the router.
//!
//! Every SDK call is a `POST` to one of a fixed set of paths. Through axum's router each
//! one also went through the route table's boxed services, the CORS layer (which builds a
//! header map of its own per request) and the latency middleware (which allocated the
//! matched path and hashed it into the histogram's labels): about 4-7 µs of a single-event
//! request's 22 µs in the HTTP workers, measured on the 2-core VM, more than parsing and
//! normalising the message. `Front` looks the path up in one table, calls the same handler,
//! and adds the same CORS headers and latency observation itself; preflights, other methods
//! and every other route go to the router unchanged.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use persona_core::MessageType;
use prometheus_client::metrics::histogram::Histogram;
use tower::{Service, ServiceExt};

use crate::ingest;
use crate::metrics::RequestLabels;
use crate::state::CollectorState;

/// The ingestion paths, each with the call type it takes (`None`: a batch). The router and
/// [`Front`] are both built from this list.
pub fn ingest_routes() -> Vec<(String, Option<MessageType>)> {
    let mut routes = Vec::new();
    for kind in MessageType::ALL {
        let name = kind.as_str();
        routes.push((format!("/v1/{name}"), Some(kind)));
        routes.push((format!("/v1/{}", &name[..1]), Some(kind)));
    }
    // analytics.js (analytics-next) in batching mode posts to `/v1/b`; Segment's classic
    // mobile SDKs post their batches to `/v1/import`; RudderStack's JavaScript SDK with
    // `useBeacon` posts to `/beacon/v1/batch`. Same body, same answer.
    for path in ["/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch"] {
        routes.push((path.to_string(), None));
    }
    routes
}

/// What the router's CORS layer ([`crate::cors`]) adds to every response that is not a
/// preflight: any origin may read it, and `Retry-After` is exposed. The `Vary` list is the
/// layer's default. A test holds the two to the same headers.
fn add_cors_headers(headers: &mut HeaderMap) {
    headers.append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
}

/// One ingestion path.
struct Route {
    path: String,
    kind: Option<MessageType>,
    /// The latency histogram of its 200 answers, looked up once instead of per request.
    ok_seconds: OnceLock<Histogram>,
}

impl Route {
    fn observe(&self, state: &CollectorState, status: StatusCode, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        let labels = || RequestLabels {
            path: self.path.clone(),
            status: status.as_u16(),
        };
        if status == StatusCode::OK {
            self.ok_seconds
                .get_or_init(|| {
                    state
                        .metrics
                        .request_seconds
                        .get_or_create(&labels())
                        .clone()
                })
                .observe(seconds);
        } else {
            state
                .metrics
                .request_seconds
                .get_or_create(&labels())
                .observe(seconds);
        }
    }
}

/// The service `persona serve` answers HTTP with: `POST`s to the ingestion paths are handled
/// here, every other request by `rest` (the collector's [`crate::router`] merged with the
/// rest of the application), with the same answers either way.
///
/// One `Arc`: hyper clones the service for every request.
#[derive(Clone)]
pub struct Front(Arc<Parts>);

struct Parts {
    state: CollectorState,
    routes: HashMap<String, Arc<Route>>,
    rest: Router,
}

impl Front {
    pub fn new(state: CollectorState, rest: Router) -> Self {
        let routes = ingest_routes()
            .into_iter()
            .map(|(path, kind)| {
                let route = Route {
                    path: path.clone(),
                    kind,
                    ok_seconds: OnceLock::new(),
                };
                (path, Arc::new(route))
            })
            .collect();
        Front(Arc::new(Parts {
            state,
            routes,
            rest,
        }))
    }

    async fn ingest(state: CollectorState, route: Arc<Route>, req: Request) -> Response {
        let started = Instant::now();
        let mut resp = ingest::ingest(state.clone(), route.kind, req)
            .await
            .into_response();
        route.observe(&state, resp.status(), started);
        add_cors_headers(resp.headers_mut());
        resp
    }
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and a clone of it answers each request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let mut route = self.0.routes.get(req.uri().path()).cloned();
        if route.is_none()
            && let Some(tidy) = tidy_path(req.uri().path())
        {
            route = self.0.routes.get(&tidy).cloned();
            if route.is_some() && req.method() != Method::POST {
                // So that a GET gets the 405 naming POST that the tidy path gets, not a 404.
                set_path(&mut req, &tidy);
            }
        }
        match route {
            Some(route) if req.method() == Method::POST => {
                let state = self.0.state.clone();
                Box::pin(async move { Ok(Self::ingest(state, route, req).await) })
            }
            _ => Box::pin(self.0.rest.clone().oneshot(req)),
        }
    }
}

/// Replaces the request's path, keeping its query.
fn set_path(req: &mut Request, path: &str) {
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    let Ok(path_and_query) = path_and_query.parse() else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// `path` without repeated or trailing slashes, when it has any: an SDK configured with a
/// host that ends in `/` posts to `//v1/batch`, and its retries would all get 404.
fn tidy_path(path: &str) -> Option<String> {
    let trailing = path.len() > 1 && path.ends_with('/');
    if !trailing && !path.contains("//") {
        return None;
    }
    let tidy: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    Some(format!("/{}", tidy.join("/")))
}

#[cfg(test)]
mod tests {
    use super::tidy_path;

    #[test]
    fn repeated_and_trailing_slashes_are_dropped() {
        assert_eq!(tidy_path("//v1/batch").as_deref(), Some("/v1/batch"));
        assert_eq!(tidy_path("/v1//track/").as_deref(), Some("/v1/track"));
        assert_eq!(tidy_path("/v1/track"), None);
        assert_eq!(tidy_path("/"), None);
    }
}
