//! The web console: static HTML, CSS and JavaScript from `ui/`, embedded in the binary at
//! build time (no Node toolchain needed). Unknown paths under `/` that are not APIs get the
//! console's `index.html`, so deep links like `/services/orders` work.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../ui/"]
#[exclude = "tests/*"]
#[exclude = "node_modules/*"]
struct Assets;

/// Whether the request is a browser navigation (which wants the console page, whatever
/// the path) rather than an API call.
pub fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers.get("sec-fetch-mode").is_some_and(|v| v == "navigate")
        || headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.starts_with("text/html"))
}

/// Paths of APIs (served or not): never answered with the console's HTML.
const API_PREFIXES: &[&str] =
    &["api/", "v1/", "consul/", "jaeger/", "zipkin/", "loki/", "prometheus/", "elasticsearch/", "otlp/"];

/// Serves an asset, or `index.html` for client-side routes (any path that is not an
/// embedded file and not an API).
pub async fn serve(method: axum::http::Method, uri: Uri, headers: axum::http::HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    // Only a browser's GET or HEAD of a console route gets the console: a shipper's POST to
    // an API this node does not serve must not look like a success.
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return crate::error::ApiError::not_found(format!("no {method} endpoint at /{path}")).into_response();
    }
    let api = API_PREFIXES.iter().any(|p| path.starts_with(p)) || path == "_bulk";
    if api || (path.starts_with("config/") && !wants_html(&headers)) {
        return crate::error::ApiError::not_found("no such API endpoint").into_response();
    }
    let (file, name) = match Assets::get(path).filter(|_| !path.is_empty()) {
        Some(f) => (f, path),
        None => match Assets::get("index.html") {
            Some(f) => (f, "index.html"),
            None => return (StatusCode::NOT_FOUND, "console assets missing").into_response(),
        },
    };
    let mime = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut r = (StatusCode::OK, file.data.into_owned()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'",
        ),
    );
    r
}
