//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::ErrorEnvelope;

use crate::ApiState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Live")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database and the bus answer.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready", body = ErrorEnvelope)))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    state.ready().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus metrics in the text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Metrics", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Response {
    telepath_shared::telemetry::render(state.registry())
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    crate::public_openapi()
        .to_json()
        .expect("the OpenAPI document serialises")
});

/// The document of the api's internal routes, rendered once.
static INTERNAL_DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    crate::internal_openapi()
        .to_json()
        .expect("the OpenAPI document serialises")
});

/// The document of the api's internal routes, on its internal listener.
pub(crate) async fn internal_openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        INTERNAL_DOCUMENT.as_str(),
    )
        .into_response()
}

/// This OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The AsyncAPI 3.0 document of the WebSocket protocol (`docs/asyncapi.json`,
/// checked against the protocol's types by `telepath/tests/telepath/asyncapi.rs`).
#[utoipa::path(get, path = "/asyncapi.json", tag = "ops", responses((status = 200, description = "The AsyncAPI 3.0 document of the WebSocket protocol", content_type = "application/json")))]
pub(crate) async fn asyncapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/asyncapi.json"),
    )
        .into_response()
}
