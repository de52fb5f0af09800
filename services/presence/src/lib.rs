//! telepath-presence: who is online, away, busy or typing, kept from
//! gateways' ordered reports and heartbeats, with expiry so no ghost stays
//! online, and every change announced once on the bus. Heartbeats carry each
//! live connection's whole state and presence converges to it, so a lost
//! report, or a store that lost its data, is repaired by the next one.
//!
//! - [`store`]: the [`store::PresenceStore`] trait and its state machine,
//!   with memory and Redis implementations; it returns [`change::Change`]s.
//! - `events`: publishes changes through an outbox that retries while
//!   Redis is away — `PresenceBroadcast` JSON on the `presence` channel
//!   (with the user's choice record, which gateways repeat in their
//!   heartbeats), `typing` frames on `room:{id}`.
//! - [`PresenceState`]: the shared state; [`routes`]/[`router`] serve it over
//!   HTTP: gateways' `POST /internal/presence/{reports,heartbeat}`,
//!   the api's `GET /internal/presence/users/{user_id}/connections`
//!   ([`UserConnections`]) and `GET /internal/presence/summary`
//!   ([`PresenceSummary`]), and the users' `GET /presence/online`.
//! - `sweeper`: expires connections whose heartbeats stopped, announces users
//!   whose grace period ended and expires typing indicators; [`spawn_sweeper`]
//!   starts it beside a state.
//!
//! Not here: delivering events to clients (gateways) and persisting status
//! and last_online (the api); both consume the `presence` channel.

pub mod change;
mod clock;
mod config;
mod events;
mod metrics;
mod query;
mod report;
mod route;
mod state;
pub mod store;
mod sweeper;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use telepath_shared::http::observe::HttpMetrics;
use telepath_shared::http::{method_not_allowed, not_found};
use telepath_shared::telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, PresenceConfig};
pub use report::{
    MAX_FIELD_BYTES, MAX_HEARTBEAT_CONNS, MAX_REPORTS, check_heartbeat, check_reports,
};
pub use route::{internal_routes, routes};
pub use state::PresenceState;

pub mod revocations;
pub use telepath_shared::protocol::{PresenceSummary, UserConnections};

/// Where presence serves its internal routes when `TELEPATH_INTERNAL_LISTEN` is unset.
pub const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:9082";

/// [`routes`] plus `GET /healthz`, `GET /readyz`, `GET /metrics` (unless
/// `TELEPATH_METRICS_INTERNAL`) and the JSON 404 fallback, with request metrics.
pub fn router(state: PresenceState, http: &HttpMetrics) -> Router {
    let mut ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if !state.metrics_internal() {
        ops = ops.route("/metrics", get(metrics_text));
    }
    http.layer(
        routes(state.clone())
            .merge(ops.with_state(state))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed),
    )
}

/// What the internal listener serves: [`internal_routes`], `/healthz`,
/// `/metrics` with `TELEPATH_METRICS_INTERNAL`, and the JSON 404.
pub fn internal_router(state: PresenceState, http: &HttpMetrics) -> Router {
    let mut ops = Router::new().route("/healthz", get(healthz));
    if state.metrics_internal() {
        ops = ops.route("/metrics", get(metrics_text));
    }
    http.layer(
        internal_routes(state.clone())
            .merge(ops.with_state(state))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed),
    )
}

/// Serves [`router`] on `listener` and [`internal_router`] on `internal`,
/// with the sweeper, until `shutdown` is cancelled; then publishes the
/// events still queued ([`PresenceState::close`]).
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    state: PresenceState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "presence listening");
    }
    spawn_sweeper(&state, shutdown.clone());
    let drain = state.drain();
    let policy = state.http_policy();
    let http = HttpMetrics::new(state.registry());
    let public = (listener, router(state.clone(), &http));
    let internal = internal.map(|l| (l, internal_router(state.clone(), &http)));
    let served =
        telepath_shared::http::serve::serve_surfaces(public, internal, policy, shutdown, drain)
            .await;
    state.close().await;
    served
}

/// Starts the sweeper on `state` (it stops when `shutdown` is cancelled).
pub fn spawn_sweeper(state: &PresenceState, shutdown: CancellationToken) {
    tokio::spawn(sweeper::run(state.clone(), shutdown));
}

/// `GET /healthz`: the process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the store answers, else 503 `unavailable`.
async fn readyz(State(state): State<PresenceState>) -> Response {
    match state.ready().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /metrics`: the registry in the Prometheus text format.
async fn metrics_text(State(state): State<PresenceState>) -> Response {
    telemetry::render(state.registry())
}
