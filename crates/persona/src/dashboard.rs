//! The dashboard at `/`: one page, its script and its style, built into the binary so that
//! it works offline and matches the server it comes from. The page reads the public
//! `/readyz` and `/metrics`, and with the admin token typed into it, the admin API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Only this server's own files and API; no inline script, no framing by other sites (the
/// page holds the admin token once typed in).
const POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
}

pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                file(
                    "text/html; charset=utf-8",
                    include_str!("dashboard/index.html"),
                )
            }),
        )
        .route(
            "/dashboard.js",
            get(|| async {
                file(
                    "text/javascript; charset=utf-8",
                    include_str!("dashboard/dashboard.js"),
                )
            }),
        )
        .route(
            "/dashboard.css",
            get(|| async {
                file(
                    "text/css; charset=utf-8",
                    include_str!("dashboard/dashboard.css"),
                )
            }),
        )
}
