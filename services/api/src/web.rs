//! The demo web app and the TypeScript SDK, embedded in the binary.
//!
//! `services/web/app` is served at `/` (its `index.html`) and under
//! `/app/`, the SDK's compiled ES modules (`services/web/sdk/dist`) under
//! `/sdk/` (both folders are flat: one path segment names a file). The files are compiled into the binary (debug builds too), so the
//! all-in-one and the api serve the same bytes wherever they run; behind the
//! load balancer they are the api's routes like any other.
//!
//! Lookups are exact matches in the embedded table: a path that is not a
//! file there (`..`, an absolute path, a directory) is a JSON 404. Every
//! file has a strong `ETag` (its SHA-256), answered with 304 on
//! `If-None-Match`; `index.html` is revalidated on every load so a new
//! release is picked up, the other files may be cached for an hour.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::{EmbeddedFile, RustEmbed};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::ErrorEnvelope;

#[derive(RustEmbed)]
#[folder = "../web/app"]
#[exclude = "*.md"]
struct App;

#[derive(RustEmbed)]
#[folder = "../web/sdk/dist"]
struct Sdk;

/// Swagger UI (vendored from swagger-ui-dist) over `/openapi.json`.
#[derive(RustEmbed)]
#[folder = "../web/docs"]
#[exclude = "*.md"]
struct Docs;

/// Scripts, styles and the WebSocket only from this origin; no inline
/// script, no frames, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The demo app's start page.
#[utoipa::path(get, path = "/", tag = "ops",
    responses((status = 200, description = "The demo web app", content_type = "text/html"),
              (status = 304, description = "Not modified (If-None-Match)")))]
pub(crate) async fn index(headers: HeaderMap) -> Response {
    match App::get("index.html") {
        Some(file) => serve("index.html", file, &headers, "no-cache"),
        None => ApiError::not_found("no such route").into_response(),
    }
}

/// A file of the demo app (`services/web/app`).
#[utoipa::path(get, path = "/app/{file}", tag = "ops",
    params(("file" = String, Path, description = "File name, e.g. app.js")),
    responses((status = 200, description = "The file (JavaScript, CSS, SVG ...)", content_type = "application/octet-stream"),
              (status = 304, description = "Not modified (If-None-Match)"),
              (status = 404, description = "No such file", body = ErrorEnvelope)))]
pub(crate) async fn app_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    lookup(App::get(&file), &file, &headers)
}

/// An ES module of the TypeScript SDK (`services/web/sdk/dist`).
#[utoipa::path(get, path = "/sdk/{file}", tag = "ops",
    params(("file" = String, Path, description = "Module file name, e.g. index.js")),
    responses((status = 200, description = "The module or its type declarations", content_type = "text/javascript"),
              (status = 304, description = "Not modified (If-None-Match)"),
              (status = 404, description = "No such file", body = ErrorEnvelope)))]
pub(crate) async fn sdk_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    lookup(Sdk::get(&file), &file, &headers)
}

/// Swagger UI: the REST API's reference, read from `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "ops", operation_id = "api_docs",
    responses((status = 200, description = "Swagger UI over /openapi.json", content_type = "text/html"),
              (status = 304, description = "Not modified (If-None-Match)")))]
pub(crate) async fn docs_index(headers: HeaderMap) -> Response {
    match Docs::get("index.html") {
        Some(file) => serve("index.html", file, &headers, "no-cache"),
        None => ApiError::not_found("no such route").into_response(),
    }
}

/// A file of Swagger UI (`services/web/docs`).
#[utoipa::path(get, path = "/docs/{file}", tag = "ops", operation_id = "api_docs_file",
    params(("file" = String, Path, description = "File name, e.g. swagger-ui-bundle.js")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"),
              (status = 304, description = "Not modified (If-None-Match)"),
              (status = 404, description = "No such file", body = ErrorEnvelope)))]
pub(crate) async fn docs_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    lookup(Docs::get(&file), &file, &headers)
}

fn lookup(file: Option<EmbeddedFile>, name: &str, headers: &HeaderMap) -> Response {
    match file {
        Some(file) => serve(name, file, headers, "public, max-age=3600, must-revalidate"),
        None => ApiError::not_found("no such file").into_response(),
    }
}

fn serve(name: &str, file: EmbeddedFile, headers: &HeaderMap, cache: &'static str) -> Response {
    let etag = etag(&file);
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = file.data.into_owned().into_response();
        r.headers_mut().insert(CONTENT_TYPE, content_type(name));
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

fn etag(file: &EmbeddedFile) -> String {
    let hash = file.metadata.sha256_hash();
    let mut tag = String::with_capacity(2 + 32);
    tag.push('"');
    for byte in &hash[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    tag
}

fn content_type(name: &str) -> HeaderValue {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    HeaderValue::from_static(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "ts" => "text/plain; charset=utf-8",
        "tgz" => "application/gzip",
        _ => "application/octet-stream",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_and_the_sdk_are_embedded() {
        assert!(App::get("index.html").is_some());
        assert!(App::get("app.js").is_some());
        assert!(Sdk::get("index.js").is_some());
        assert!(App::get("../Cargo.toml").is_none());
        assert!(Sdk::get("/etc/passwd").is_none());
        assert!(Docs::get("index.html").is_some());
        assert!(Docs::get("swagger-ui-bundle.js").is_some());
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(content_type("telepath-sdk.tgz"), "application/gzip");
        assert!(
            Sdk::get("telepath-sdk.tgz").is_some(),
            "the SDK package is embedded"
        );
    }
}
