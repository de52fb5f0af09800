//! The presence HTTP routes: gateways' reports under `/internal/presence/`
//! and the users' `GET /presence/online`.
//!
//! Internal routes check `X-Telepath-Internal` in a route layer, before the
//! body is read, then check the bounds in `report.rs`. Health, readiness,
//! metrics and the fallback are not here (see `router` in `lib.rs`), so the
//! all-in-one binary can merge these routes with the other services'.

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use telepath_shared::auth::{Claims, bearer};
use telepath_shared::http::{ApiError, JsonBody, check_internal};
use telepath_shared::protocol::{ConnReport, DisconnectReport, HeartbeatReport, OnlineUsers};

use crate::report::{MAX_HEARTBEAT_BYTES, check_conn, check_disconnect, check_heartbeat};
use crate::state::PresenceState;

/// Largest connect or disconnect body, bytes.
const MAX_REPORT_BYTES: usize = 16 * 1024;

/// The presence routes only: no `/healthz`, `/readyz`, `/metrics` or fallback.
pub fn routes(state: PresenceState) -> Router {
    let internal = Router::new()
        .route(
            "/internal/presence/connect",
            post(connect).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route(
            "/internal/presence/disconnect",
            post(disconnect).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route(
            "/internal/presence/heartbeat",
            post(heartbeat).layer(DefaultBodyLimit::max(MAX_HEARTBEAT_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_internal,
        ));
    Router::new()
        .route("/presence/online", get(online))
        .merge(internal)
        .with_state(state)
}

/// Refuses internal requests without the deployment's internal token (401).
async fn require_internal(
    State(state): State<PresenceState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_internal(request.headers(), state.internal_token())?;
    Ok(next.run(request).await)
}

/// The verified claims of the request's bearer token, or 401.
fn authenticate(state: &PresenceState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(ApiError::unauthorized)?;
    state.keys().verify(token).map_err(|e| {
        tracing::debug!(error = %e, "token refused");
        ApiError::unauthorized()
    })
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `POST /internal/presence/connect`: a gateway accepted a connection.
#[tracing::instrument(skip_all, fields(conn_id = %report.conn_id, node = %report.node))]
async fn connect(
    State(state): State<PresenceState>,
    JsonBody(report): JsonBody<ConnReport>,
) -> Result<StatusCode, ApiError> {
    check_conn(&report)?;
    state.store().connect(&report, now_ms()).await?;
    tracing::debug!("connection registered");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /internal/presence/disconnect`: a connection ended.
#[tracing::instrument(skip_all, fields(conn_id = %report.conn_id))]
async fn disconnect(
    State(state): State<PresenceState>,
    JsonBody(report): JsonBody<DisconnectReport>,
) -> Result<StatusCode, ApiError> {
    check_disconnect(&report)?;
    state
        .store()
        .disconnect(&report.conn_id, &report.user_id)
        .await?;
    tracing::debug!("connection removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /internal/presence/heartbeat`: every live connection of one node;
/// connections the store lost (say, Redis restarted) are registered again.
#[tracing::instrument(skip_all, fields(node = %report.node, conns = report.conns.len()))]
async fn heartbeat(
    State(state): State<PresenceState>,
    JsonBody(report): JsonBody<HeartbeatReport>,
) -> Result<StatusCode, ApiError> {
    check_heartbeat(&report)?;
    state.store().heartbeat(&report, now_ms()).await?;
    state.metrics().heartbeats.inc();
    tracing::debug!("heartbeat stored");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /presence/online`: users with a live connection, sorted by name.
#[tracing::instrument(skip_all)]
async fn online(
    State(state): State<PresenceState>,
    headers: HeaderMap,
) -> Result<Json<OnlineUsers>, ApiError> {
    authenticate(&state, &headers)?;
    let mut users = state.store().online(now_ms()).await?;
    users.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(Json(OnlineUsers { users }))
}
