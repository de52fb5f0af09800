//! The presence HTTP routes:
//!
//! - gateways' reports: `POST /internal/presence/reports` (a batch of
//!   `PresenceReport`s applied in order) and `/heartbeat` (every live
//!   connection of a node with its whole state, which presence converges to);
//! - the api's queries: `GET /internal/presence/users/{user_id}/connections`
//!   and `GET /internal/presence/summary` (shapes in `query.rs`);
//! - the users' `GET /presence/online`.
//!
//! Internal routes check `X-Telepath-Internal` in a route layer, before the
//! body or path is read, then check the bounds in `report.rs`. Report
//! handlers apply to the store, publish the changes it returns on the bus
//! (`events.rs`), then answer 204. Health, readiness, metrics and the
//! fallback are not here (see `router` in `lib.rs`), so the all-in-one
//! binary can merge these routes with the other services'.

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use telepath_shared::auth::{Claims, bearer};
use telepath_shared::http::{ApiError, JsonBody, check_internal};
use telepath_shared::protocol::{
    AdmitRequest, AdmitResult, HeartbeatReport, OnlineUsers, PresenceReport, PresenceReports,
};

use crate::query::{sort_users, sorted_connections};
use crate::report::{
    MAX_HEARTBEAT_BYTES, MAX_REPORTS_BYTES, check_heartbeat, check_reports, check_user_id,
};
use crate::state::PresenceState;
use telepath_shared::protocol::{PresenceSummary, UserConnections};

/// The public presence route only (`/presence/online`): no `/healthz`,
/// `/readyz`, `/metrics` or fallback.
pub fn routes(state: PresenceState) -> Router {
    Router::new()
        .route("/presence/online", get(online))
        .with_state(state)
}

/// Presence's `/internal/` routes: served on the internal listener
/// (`TELEPATH_INTERNAL_LISTEN`), or called in process by the all-in-one.
pub fn internal_routes(state: PresenceState) -> Router {
    Router::new()
        .route(
            "/internal/presence/reports",
            post(reports).layer(DefaultBodyLimit::max(MAX_REPORTS_BYTES)),
        )
        .route(
            "/internal/presence/heartbeat",
            post(heartbeat).layer(DefaultBodyLimit::max(MAX_HEARTBEAT_BYTES)),
        )
        .route(
            "/internal/presence/users/{user_id}/connections",
            get(user_connections),
        )
        .route("/internal/presence/summary", get(summary))
        .route(
            "/internal/presence/admit",
            post(admit).layer(DefaultBodyLimit::max(MAX_ADMIT_BYTES)),
        )
        // Applies to the routes above only, so it must stay after them.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_internal,
        ))
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
async fn authenticate(state: &PresenceState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(ApiError::unauthorized)?;
    let claims = state
        .keys()
        .verify(token)
        .await
        .map_err(|e| ApiError::unauthorized_because(&e))?;
    if let Some(revocations) = state.revocations() {
        if !revocations
            .loaded_within(std::time::Duration::from_secs(2))
            .await
        {
            return Err(ApiError::unavailable("the revocations are not read yet"));
        }
        if revocations.is_revoked(&claims) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(claims)
}

/// Applies `reports` received at `now_ms` and publishes what they changed.
async fn apply(
    state: &PresenceState,
    reports: &[PresenceReport],
    now_ms: i64,
) -> Result<StatusCode, ApiError> {
    let result = state.store().apply(reports, now_ms).await;
    let changes = state.announce(result, |changes| changes)?;
    tracing::debug!(
        reports = reports.len(),
        changes = changes.len(),
        "reports applied"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /internal/presence/reports`: what happened on a gateway, in order.
#[tracing::instrument(skip_all, fields(node = %batch.node, reports = batch.reports.len()))]
async fn reports(
    State(state): State<PresenceState>,
    JsonBody(batch): JsonBody<PresenceReports>,
) -> Result<StatusCode, ApiError> {
    let now = state.now_ms();
    check_reports(&batch)?;
    apply(&state, &batch.reports, now).await
}

/// `POST /internal/presence/heartbeat`: every live connection of one node
/// with its whole state (rooms, idle flag, the user's latest choice).
/// Presence converges to it: connections it lost (say, Redis restarted
/// empty) are registered again, known ones take the listed rooms and idle
/// flag, a choice newer than the recorded one is taken, and each user whose
/// effective status changed is announced once. So a report lost on the way
/// is repaired by the next heartbeat.
#[tracing::instrument(skip_all, fields(node = %report.node, conns = report.conns.len()))]
async fn heartbeat(
    State(state): State<PresenceState>,
    JsonBody(report): JsonBody<HeartbeatReport>,
) -> Result<StatusCode, ApiError> {
    let now = state.now_ms();
    check_heartbeat(&report)?;
    state.metrics().heartbeats.inc();
    let result = state.store().heartbeat(&report, now).await;
    state.announce(result, |changes| changes)?;
    tracing::debug!("heartbeat stored");
    Ok(StatusCode::NO_CONTENT)
}

/// Most connections one admission request may ask for.
const MAX_ADMIT: usize = 1000;
/// Largest admission body, bytes.
const MAX_ADMIT_BYTES: usize = 1024 * 1024;

/// `POST /internal/presence/admit`: a gateway asks, before a new
/// connection's `welcome`, whether its user may have one more connection
/// (`max`, `TELEPATH_MAX_CONNS_PER_USER`) across every gateway. Counted in
/// the store atomically, so two gateways cannot both admit the one over.
#[tracing::instrument(skip_all, fields(conns = request.conns.len()))]
async fn admit(
    State(state): State<PresenceState>,
    JsonBody(request): JsonBody<AdmitRequest>,
) -> Result<Json<AdmitResult>, ApiError> {
    if request.max == 0 {
        return Err(ApiError::bad_request("max must be at least 1"));
    }
    if request.conns.is_empty() || request.conns.len() > MAX_ADMIT {
        return Err(ApiError::bad_request(format!(
            "conns: 1..={MAX_ADMIT} connections"
        )));
    }
    for (i, c) in request.conns.iter().enumerate() {
        crate::report::check_conn_id(&c.conn_id)
            .and_then(|()| check_user_id(&c.user_id))
            .map_err(|e| ApiError::bad_request(format!("conns[{i}]: {}", e.message)))?;
    }
    let admitted = state
        .store()
        .admit(&request.conns, request.max, state.now_ms())
        .await?;
    Ok(Json(AdmitResult { admitted }))
}

/// `GET /presence/online`: users with a live connection, sorted by name,
/// each with their announced status and text.
#[tracing::instrument(skip_all)]
async fn online(
    State(state): State<PresenceState>,
    headers: HeaderMap,
) -> Result<Json<OnlineUsers>, ApiError> {
    authenticate(&state, &headers).await?;
    let mut users = state.store().online(state.now_ms()).await?;
    sort_users(&mut users);
    Ok(Json(OnlineUsers { users }))
}

/// `GET /internal/presence/users/{user_id}/connections`: where one user is
/// connected, so the api can tell those gateways to disconnect them.
#[tracing::instrument(skip_all, fields(user_id))]
async fn user_connections(
    State(state): State<PresenceState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserConnections>, ApiError> {
    // A path that is not UTF-8 once decoded is a 400 in our error shape.
    let Path(user_id) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_user_id(&user_id)?;
    tracing::Span::current().record("user_id", user_id.as_str());
    let connections = state.store().connections(&user_id, state.now_ms()).await?;
    Ok(Json(sorted_connections(connections)))
}

/// `GET /internal/presence/summary`: totals, connections per node and the
/// online users, all counted from the same connections so they agree.
#[tracing::instrument(skip_all)]
async fn summary(State(state): State<PresenceState>) -> Result<Json<PresenceSummary>, ApiError> {
    let summary = state.store().summary(state.now_ms()).await?;
    Ok(Json(PresenceSummary::from(summary)))
}
