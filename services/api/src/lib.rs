//! telepath-api: the REST API and the owner of the SQLite database.
//!
//! Persist, then publish: a room message gets its `seq` in the same
//! transaction as its insert (see [`writer`]), and only committed messages
//! are published to `room:{id}` and acknowledged. Gateways reach the
//! durable operations through the `/internal/` routes.
//!
//! It does not hold WebSocket connections (the gateway does) or presence
//! state (the presence service does).

mod admin;
mod auth;
mod connections;
mod db;
mod internal;
mod login;
mod metrics;
mod presence;
mod rooms;
mod store;
pub mod writer;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use prometheus::Registry;
use sqlx::SqlitePool;
use telepath_shared::auth::JwtKeys;
use telepath_shared::bus::Bus;
use telepath_shared::config::ApiConfig;
use telepath_shared::http::{ApiError, not_found};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use metrics::ApiMetrics;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ApiConfig,
    keys: JwtKeys,
    /// Readers: history pages, room lists. Several connections.
    read: SqlitePool,
    /// The single writer connection (SQLite allows one writer at a time).
    write: SqlitePool,
    writer: writer::WriterHandle,
    bus: Arc<dyn Bus>,
    presence: presence::PresenceClient,
    registry: Registry,
}

impl ApiState {
    /// Opens (and migrates) the database, starts the writer task.
    pub async fn build(
        config: ApiConfig,
        bus: Arc<dyn Bus>,
        registry: Registry,
    ) -> anyhow::Result<ApiState> {
        let (read, write) = db::open(&config.database_url).await?;
        let metrics = ApiMetrics::new(&registry);
        let writer = writer::spawn(write.clone(), bus.clone(), metrics);
        let keys = JwtKeys::new(&config.common.jwt_secret);
        let presence =
            presence::PresenceClient::new(&config.presence_url, &config.common.internal_token);
        Ok(ApiState {
            inner: Arc::new(Inner {
                config,
                keys,
                read,
                write,
                writer,
                bus,
                presence,
                registry,
            }),
        })
    }

    /// Ok when the database answers (and the bus is connected).
    pub async fn ready(&self) -> Result<(), ApiError> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.read)
            .await
            .map_err(|_| ApiError::unavailable("database unreachable"))?;
        if !self.inner.bus.is_healthy() {
            return Err(ApiError::unavailable("bus unreachable"));
        }
        Ok(())
    }

    /// The metrics registry this state registered in.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
}

/// The api's routes, without health and metrics endpoints (for merging into
/// the all-in-one router).
pub fn routes(state: ApiState) -> Router {
    let limit = state.inner.config.max_request_bytes;
    Router::new()
        .route("/auth/login", post(login::login))
        .route("/rooms", post(rooms::create).get(rooms::list))
        .route("/rooms/{id}", axum::routing::delete(rooms::close))
        .route("/rooms/{id}/join", post(rooms::join))
        .route("/rooms/{id}/leave", axum::routing::delete(rooms::leave))
        .route("/rooms/{id}/messages", get(rooms::messages))
        .route("/rooms/{id}/participants", get(rooms::participants))
        .route("/messages/broadcast", post(admin::broadcast))
        .route("/admin/disconnect", post(admin::disconnect))
        .route("/analytics/connections", get(admin::analytics))
        .route("/internal/connections", post(connections::report))
        .route("/internal/rooms/{id}/join", post(internal::join))
        .route("/internal/rooms/{id}/leave", post(internal::leave))
        .route(
            "/internal/rooms/{id}/messages",
            post(internal::send).get(internal::messages),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// [`routes`] plus `/healthz`, `/readyz`, `/metrics` and a JSON 404.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state.clone())
        .merge(routes(state))
        .fallback(not_found)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<ApiState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state.ready().await?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

async fn metrics_handler(State(state): State<ApiState>) -> axum::response::Response {
    telepath_shared::telemetry::render(&state.inner.registry)
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
