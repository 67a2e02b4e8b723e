//! The operator console (`/`): a page and three files, built into the binary so it serves
//! without a CDN or a build step. The console reads only the public `/v1` API; these routes
//! only hand it its own files.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("console/index.html");
const APP: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");
const ICON: &str = include_str!("console/icon.svg");

/// Nothing but the console's own files and the API on this origin: a message that smuggles
/// markup into a name still cannot load or run anything.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Served by the binary: a new release must be seen at once, an old page never mixed in.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `/` and the files under `/console/`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file(INDEX, "text/html; charset=utf-8") }))
        .route("/console/app.js", get(|| async { file(APP, "text/javascript; charset=utf-8") }))
        .route("/console/style.css", get(|| async { file(STYLE, "text/css; charset=utf-8") }))
        .route("/console/icon.svg", get(|| async { file(ICON, "image/svg+xml") }))
}
