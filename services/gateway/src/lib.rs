//! telepath-gateway: terminates WebSockets and fans events out through the bus.
//!
//! Stateless: it keeps only this node's connections and the channels they
//! are in (the [`hub`]). Durable operations go to the api, connection
//! reports to presence ([`upstream`]). `GET /connect` ([`connect`])
//! authenticates the JWT before the upgrade; each connection then runs as a
//! [`session`], reachable through its [`handle`]; the [`relay`] hands what
//! arrives on the bus to the hub. [`serve`] runs the HTTP/1.1 server and
//! the drain.

mod budget;
mod config;
mod connect;
mod handle;
mod hub;
mod metrics;
mod relay;
mod serve;
mod session;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus::Registry;
use telepath_shared::auth::{JwtKeys, RevocationList};
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::config::Common;
use telepath_shared::http::client::InternalClient;
use telepath_shared::http::observe::HttpMetrics;
use telepath_shared::http::{ApiError, method_not_allowed, not_found};
use telepath_shared::protocol::{
    BROADCAST_CHANNEL, NODES_CHANNEL, PRESENCE_CHANNEL, USERS_CHANNEL, node_channel,
};
use telepath_shared::rate::{Limiter, Rate};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Cli, GatewayConfig};
pub use metrics::GatewayMetrics;
pub use serve::{run, serve_app};

/// Everything a gateway's handlers and sessions share; cheap to clone (one
/// pointer, which every connection holds). Its parts are reached through
/// accessors, each naming one handle.
#[derive(Clone)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

struct Inner {
    common: Common,
    config: GatewayConfig,
    keys: JwtKeys,
    /// Users whose older tokens are refused (from the api, then the bus).
    revocations: Arc<RevocationList>,
    hub: Arc<hub::Hub>,
    bus: Arc<dyn Bus>,
    api: upstream::ApiClient,
    replays: upstream::Replays,
    sends: upstream::SendPipe,
    presence: upstream::PresenceReporter,
    logs: upstream::LogReporter,
    acks: upstream::AckReporter,
    admitter: upstream::Admitter,
    /// The connect marks: whether a connect may skip the offline read.
    marks: upstream::Marks,
    unread: upstream::UnreadCounter,
    offline: upstream::OfflineReader,
    budget: budget::UserBudget,
    connects: Limiter,
    metrics: GatewayMetrics,
    registry: Registry,
    /// Cancelled when the gateway drains: sessions say `bye` (restart) and close 1012.
    shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them.
    sessions: TaskTracker,
    /// Whether this node's subscription still delivers (its own probes).
    probe: Arc<relay::Probe>,
    /// The reporters' tasks, by name: shutdown waits for them to send what
    /// is queued.
    reporters: std::sync::Mutex<Vec<(&'static str, tokio::task::JoinHandle<()>)>>,
    next_conn: AtomicU64,
}

impl GatewayState {
    /// Builds a gateway on `bus`, relaying what arrives on `inbound` to
    /// local connections; its metrics go to `registry`.
    /// The api and presence are called over HTTP at `TELEPATH_API_URL` and
    /// `TELEPATH_PRESENCE_URL`.
    pub fn build(
        common: Common,
        config: GatewayConfig,
        bus: Arc<dyn Bus>,
        inbound: Inbound,
        registry: Registry,
    ) -> GatewayState {
        let token = common.internal_token();
        let api = InternalClient::new("api", &config.api_url, &token);
        let presence = InternalClient::new("presence", &common.presence_url, &token);
        Self::build_with(common, config, bus, inbound, registry, api, presence)
    }

    /// [`build`](Self::build), calling the api and presence through the
    /// clients given (the all-in-one calls them in process).
    pub fn build_with(
        common: Common,
        config: GatewayConfig,
        bus: Arc<dyn Bus>,
        inbound: Inbound,
        registry: Registry,
        api_client: InternalClient,
        presence_client: InternalClient,
    ) -> GatewayState {
        let metrics = GatewayMetrics::new(&registry);
        let node = common.node_id.clone();
        let permanent = vec![
            BROADCAST_CHANNEL.to_owned(),
            PRESENCE_CHANNEL.to_owned(),
            NODES_CHANNEL.to_owned(),
            USERS_CHANNEL.to_owned(),
            node_channel(&node),
        ];
        let hub = hub::Hub::new(bus.clone(), metrics.clone(), permanent);
        let shutdown = CancellationToken::new();
        let sessions = TaskTracker::new();
        let api = upstream::ApiClient::new(api_client.clone());
        let sends = upstream::SendPipe::spawn(api.clone(), metrics.clone());
        // With Redis, the per-user count and the rate limits' buckets are
        // kept there directly; otherwise presence is asked and the buckets
        // are this process's.
        let pool = common.redis_url.as_deref().and_then(|url| {
            telepath_shared::bus::redis::pool(url)
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no Redis pool for admissions and rate limits");
                })
                .ok()
        });
        let marks = upstream::Marks::spawn(pool.clone());
        let counter = pool.clone().map_or_else(
            || upstream::AdmitCounter::Presence(presence_client.clone()),
            |pool| {
                let expiry = telepath_shared::bus::admit::presence_expiry_ms(common.heartbeat_ms);
                upstream::AdmitCounter::Redis(pool, expiry)
            },
        );
        let budget = budget::UserBudget::new(
            Rate::with_double_burst(common.user_rate_per_s),
            pool.clone(),
        );
        let connects = Limiter::new(
            "ip_connect",
            Rate::with_double_burst(config.ip_connect_rate_per_s),
            pool,
        );
        let admitter = upstream::Admitter::spawn(counter, config.max_conns_per_user);
        let unread = upstream::UnreadCounter::spawn(api.clone());
        let offline = upstream::OfflineReader::spawn(api.clone());
        let (presence, presence_task) = upstream::PresenceReporter::spawn(
            presence_client,
            hub.clone(),
            node.clone(),
            common.heartbeat(),
            upstream::Drain {
                shutdown: shutdown.clone(),
                sessions: sessions.clone(),
            },
        );
        let (logs, logs_task) = upstream::LogReporter::spawn(api_client, shutdown.clone());
        let (acks, acks_task) = upstream::AckReporter::spawn(api.clone(), shutdown.clone());
        let probe = Arc::new(relay::Probe::new());
        let revocations = Arc::new(RevocationList::new());
        tokio::spawn(relay::load_revocations(
            api.clone(),
            revocations.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(relay::run(
            inbound,
            relay::Relay {
                hub: hub.clone(),
                bus: bus.clone(),
                api: api.clone(),
                presence: presence.clone(),
                metrics: metrics.clone(),
                probe: probe.clone(),
                revocations: revocations.clone(),
                own_channel: node_channel(&node),
            },
        ));
        GatewayState {
            inner: Arc::new(Inner {
                keys: common
                    .jwt_keys()
                    .expect("the TELEPATH_JWT_* settings are checked at start"),
                common,
                config,
                hub,
                bus,
                replays: upstream::Replays::new(api.clone()),
                api,
                sends,
                presence,
                logs,
                acks,
                admitter,
                marks,
                unread,
                offline,
                budget,
                connects,
                metrics,
                registry,
                shutdown,
                sessions,
                probe,
                revocations,
                reporters: std::sync::Mutex::new(vec![
                    ("presence", presence_task),
                    ("connection log", logs_task),
                    ("acks", acks_task),
                ]),
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    /// Ok while the bus connection is up and the node is not draining.
    pub fn ready(&self) -> Result<(), ApiError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ApiError::unavailable("draining"));
        }
        if self.inner.bus.is_healthy() && self.inner.probe.healthy() {
            Ok(())
        } else {
            Err(ApiError::unavailable("bus unavailable"))
        }
    }

    /// Starts draining: sessions get `bye` (restart) and close with 1012.
    pub fn drain(&self) {
        self.inner.shutdown.cancel();
    }

    /// The unread-notification counts for `welcome`.
    pub(crate) fn unread(&self) -> &upstream::UnreadCounter {
        &self.inner.unread
    }

    /// The offline reads of connects, batched.
    pub(crate) fn offline(&self) -> &upstream::OfflineReader {
        &self.inner.offline
    }

    /// The per-user budget of frames.
    pub(crate) fn budget(&self) -> &budget::UserBudget {
        &self.inner.budget
    }

    /// The per-address limit on handshakes.
    pub(crate) fn connects(&self) -> &Limiter {
        &self.inner.connects
    }

    /// The per-user connection cap's admissions.
    pub(crate) fn marks(&self) -> &upstream::Marks {
        &self.inner.marks
    }

    pub(crate) fn admitter(&self) -> &upstream::Admitter {
        &self.inner.admitter
    }

    /// The settings this gateway shares with the other services.
    pub fn common(&self) -> &Common {
        &self.inner.common
    }

    /// The gateway's own settings.
    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The keys user tokens are verified with.
    pub(crate) fn revocations(&self) -> &RevocationList {
        &self.inner.revocations
    }

    pub(crate) fn keys(&self) -> &JwtKeys {
        &self.inner.keys
    }

    /// This node's connections and channels.
    pub(crate) fn hub(&self) -> &hub::Hub {
        &self.inner.hub
    }

    /// The bus, for what a session publishes itself (admin broadcasts).
    pub(crate) fn bus(&self) -> &dyn Bus {
        self.inner.bus.as_ref()
    }

    /// The api's internal routes.
    pub(crate) fn api(&self) -> &upstream::ApiClient {
        &self.inner.api
    }

    /// Join replays, shared per room.
    pub(crate) fn replays(&self) -> &upstream::Replays {
        &self.inner.replays
    }

    /// The ordered pipe of room messages and DMs to the api.
    pub(crate) fn sends(&self) -> &upstream::SendPipe {
        &self.inner.sends
    }

    /// Reports to presence.
    pub(crate) fn presence(&self) -> &upstream::PresenceReporter {
        &self.inner.presence
    }

    /// The connection log.
    pub(crate) fn logs(&self) -> &upstream::LogReporter {
        &self.inner.logs
    }

    /// Clients' acks, on their way to the api.
    pub(crate) fn acks(&self) -> &upstream::AckReporter {
        &self.inner.acks
    }

    /// The registry its metrics are in.
    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The gateway's metrics.
    pub(crate) fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    /// Cancelled when the gateway drains.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Every session task.
    pub(crate) fn sessions(&self) -> &TaskTracker {
        &self.inner.sessions
    }

    /// The reporters' tasks, for the drain to wait on (once).
    pub(crate) fn take_reporters(&self) -> Vec<(&'static str, tokio::task::JoinHandle<()>)> {
        let mut tasks = self
            .inner
            .reporters
            .lock()
            .expect("reporters lock poisoned");
        std::mem::take(&mut *tasks)
    }

    fn next_conn_id(&self) -> handle::ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// The gateway's routes without health and metrics (for the all-in-one router).
pub fn routes(state: GatewayState) -> Router {
    Router::new()
        .route("/connect", get(connect::connect))
        .with_state(state)
}

/// [`routes`] plus `/healthz`, `/readyz`, `/metrics` (unless
/// `TELEPATH_METRICS_INTERNAL`) and a JSON 404, with request metrics (call
/// once per registry).
pub fn router(state: GatewayState) -> Router {
    let http = HttpMetrics::new(state.registry());
    let mut ops = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz));
    if !state.common().metrics_internal {
        ops = ops.route("/metrics", get(metrics));
    }
    let router = ops
        .with_state(state.clone())
        .merge(routes(state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    http.layer(router)
}

/// What a gateway's internal listener (`TELEPATH_INTERNAL_LISTEN`, none by
/// default) serves: `/healthz`, `/metrics` with `TELEPATH_METRICS_INTERNAL`,
/// and a JSON 404. A gateway has no internal routes.
pub fn internal_router(state: GatewayState) -> Router {
    let mut ops = Router::new().route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    if state.common().metrics_internal {
        ops = ops.route("/metrics", get(metrics));
    }
    ops.with_state(state)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn metrics(State(s): State<GatewayState>) -> axum::response::Response {
    telepath_shared::telemetry::render(s.registry())
}

async fn readyz(
    State(state): State<GatewayState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state.ready()?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}
