//! telepath-api: the REST API and the owner of the SQLite database.
//!
//! Persist, then publish: a room message gets its `seq` in the same
//! transaction as its insert (see [`writer`]), and only committed messages
//! are acknowledged and published to `room:{id}`, through an outbox that
//! never makes a reply wait for Redis (`outbox.rs`). Gateways reach the
//! durable operations through the `/internal/` routes.
//!
//! It does not hold WebSocket connections (the gateway does) or presence
//! state (the presence service does).

mod admin;
mod announcements;
mod auth;
mod config;
mod connections;
mod db;
mod dms;
mod internal;
mod limits;
mod live;
mod login;
mod manage;
mod marks;
mod metrics;
mod notifications;
mod openapi;
mod ops;
mod outbox;
mod presence;
mod presence_events;
mod profiles;
mod retention;
mod revoke;
mod rooms;
mod secret;
pub mod server_api;
mod store;
mod tickets;
mod web;
mod webhooks;
pub mod writer;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use prometheus::Registry;
use telepath_shared::auth::{JwtKeys, RevocationList};
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::config::Common;
use telepath_shared::http::client::InternalClient;
use telepath_shared::http::observe::HttpMetrics;
use telepath_shared::http::serve::serve_surfaces;
use telepath_shared::http::{ApiError, method_not_allowed, not_found};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use config::{ApiConfig, Cli};
pub use metrics::ApiMetrics;

/// Everything a request handler needs; cheap to clone. Its parts are
/// reached through accessors, each naming one handle.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    common: Common,
    config: ApiConfig,
    /// The service-to-service token `/internal/` routes require.
    internal_token: String,
    keys: JwtKeys,
    /// The database: readers, the single writer, the checkpointer.
    db: db::Pools,
    writer: writer::WriterHandle,
    /// What the api publishes after its commits.
    outboxes: outbox::Outboxes,
    bus: Arc<dyn Bus>,
    presence: presence::PresenceClient,
    registry: Registry,
    /// Users whose older tokens are refused.
    revocations: Arc<RevocationList>,
    /// Users who may have a pending room invitation (see `manage::invites::Invitees`).
    invitees: manage::invites::Invitees,
    /// The per-address limits on logins and room creation.
    limits: limits::Limits,
    tickets: tickets::Tickets,
    senders: server_api::Senders,
    /// The announcements that have not expired.
    announcements: announcements::Active,
    /// The unread counts kept in Redis for gateways.
    unread: notifications::UnreadSync,
    /// The connect marks in Redis.
    marks: marks::Marks,
    /// The webhooks: endpoints, their queues and workers.
    webhooks: webhooks::Webhooks,
}

impl ApiState {
    /// Opens (and migrates) the database, starts the writer task.
    /// Presence changes arriving on `inbound` (after it subscribes to them)
    /// are persisted to the users table.
    /// Presence is called over HTTP at `TELEPATH_PRESENCE_URL`.
    pub async fn build(
        common: Common,
        config: ApiConfig,
        bus: Arc<dyn Bus>,
        inbound: Inbound,
        registry: Registry,
    ) -> anyhow::Result<ApiState> {
        let presence =
            InternalClient::new("presence", &common.presence_url, &common.internal_token());
        Self::build_with(common, config, bus, inbound, registry, presence).await
    }

    /// [`build`](Self::build), calling presence through `presence` (the
    /// all-in-one calls it in process).
    pub async fn build_with(
        common: Common,
        config: ApiConfig,
        bus: Arc<dyn Bus>,
        inbound: Inbound,
        registry: Registry,
        presence: InternalClient,
    ) -> anyhow::Result<ApiState> {
        let db = db::open(&config.database_url, config.db_max_bytes).await?;
        let write = &db.write;
        dms::spawn_cleanup(write.clone());
        retention::spawn(
            write.clone(),
            config.connection_log_days,
            config.retention_days,
            std::time::Duration::from_millis(config.retention_every_ms),
        );
        let metrics = ApiMetrics::new(&registry);
        let outboxes = outbox::Outboxes::new(bus.clone(), &metrics.outboxes);
        let redis = common.redis_url.as_deref().and_then(|url| {
            telepath_shared::bus::redis::pool(url)
                .inspect_err(
                    |e| tracing::warn!(error = %e, "no Redis pool for limits and unread counts"),
                )
                .ok()
        });
        let unread = notifications::UnreadSync::spawn(db.read.clone(), redis.clone());
        let marks = marks::Marks::spawn(redis.clone());
        let batch = usize::from(config.commit_batch);
        let webhooks =
            webhooks::Webhooks::start(db.read.clone(), write.clone(), &config, metrics.clone())
                .await?;
        presence_events::spawn(bus.clone(), inbound, write.clone(), webhooks.clone());
        let writer = writer::spawn(
            write.clone(),
            outboxes.rooms.clone(),
            unread.clone(),
            webhooks.clone(),
            metrics,
            batch,
        );
        let keys = common.jwt_keys().map_err(anyhow::Error::msg)?;
        let internal_token = common.internal_token();
        let presence = presence::PresenceClient::new(presence);
        let revocations = Arc::new(RevocationList::new());
        revocations.load(&revoke::load(&db.read).await?);
        let invitees = manage::invites::Invitees::load(&db.read).await?;
        let limits = limits::Limits::new(&config, common.user_rate_per_s, redis.clone());
        let tickets = tickets::Tickets::new(redis);
        let announcements = {
            let mut conn = db.read.acquire().await?;
            announcements::Active::load(&mut conn).await?
        };
        Ok(ApiState {
            inner: Arc::new(Inner {
                common,
                config,
                internal_token,
                keys,
                db,
                writer,
                outboxes,
                bus,
                presence,
                registry,
                revocations,
                invitees,
                limits,
                tickets,
                senders: server_api::Senders::default(),
                announcements,
                unread,
                marks,
                webhooks,
            }),
        })
    }

    /// Ok when the database answers (and the bus is connected).
    pub async fn ready(&self) -> Result<(), ApiError> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.db.read)
            .await
            .map_err(|_| ApiError::unavailable("database unreachable"))?;
        if !self.inner.bus.is_healthy() {
            return Err(ApiError::unavailable("bus unreachable"));
        }
        Ok(())
    }

    /// The unread counts kept in Redis: tell it whose changed.
    pub(crate) fn unread(&self) -> &notifications::UnreadSync {
        &self.inner.unread
    }

    /// The connect marks (what lets gateways skip the offline read).
    pub(crate) fn marks(&self) -> &marks::Marks {
        &self.inner.marks
    }

    /// The active announcements.
    pub(crate) fn announcements(&self) -> &announcements::Active {
        &self.inner.announcements
    }

    /// The webhooks.
    pub(crate) fn webhooks(&self) -> &webhooks::Webhooks {
        &self.inner.webhooks
    }

    /// The per-address limits.
    pub(crate) fn limits(&self) -> &limits::Limits {
        &self.inner.limits
    }

    pub(crate) fn tickets(&self) -> &tickets::Tickets {
        &self.inner.tickets
    }

    pub(crate) fn senders(&self) -> &server_api::Senders {
        &self.inner.senders
    }

    /// Runs the retention cleanup once as of `now` (what the api does every
    /// minute): messages past their room's retention or
    /// `TELEPATH_RETENTION_DAYS`, and old connection-log rows. Returns the
    /// messages deleted.
    pub async fn prune_at(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64, ApiError> {
        let pool = &self.inner.db.write;
        let days = self.inner.config.connection_log_days;
        if days > 0 {
            retention::connection_logs(pool, days, now)
                .await
                .map_err(crate::store::db_err)?;
        }
        retention::messages(pool, self.inner.config.retention_days, now)
            .await
            .map_err(crate::store::db_err)
    }

    /// The metrics registry this state registered in.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The settings the api shares with the other services.
    pub(crate) fn common(&self) -> &Common {
        &self.inner.common
    }

    /// The api's own settings.
    pub(crate) fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The token `/internal/` routes require.
    pub(crate) fn internal_token(&self) -> &str {
        &self.inner.internal_token
    }

    /// The keys user tokens are signed and verified with.
    pub(crate) fn keys(&self) -> &JwtKeys {
        &self.inner.keys
    }

    /// The database's pools.
    pub(crate) fn db(&self) -> &db::Pools {
        &self.inner.db
    }

    /// The single writer of room messages.
    pub(crate) fn writer(&self) -> &writer::WriterHandle {
        &self.inner.writer
    }

    /// The outboxes, for what the api publishes after a commit.
    pub(crate) fn outboxes(&self) -> &outbox::Outboxes {
        &self.inner.outboxes
    }

    /// The bus, for what must reach it before the reply (admin broadcasts
    /// and disconnects).
    pub(crate) fn bus(&self) -> &dyn Bus {
        self.inner.bus.as_ref()
    }

    /// The revoked users, for every token check.
    pub(crate) fn revocations(&self) -> &RevocationList {
        &self.inner.revocations
    }

    /// Who may have a pending room invitation.
    pub(crate) fn invitees(&self) -> &manage::invites::Invitees {
        &self.inner.invitees
    }

    /// The same list, for another part of the same process to check tokens
    /// against (the all-in-one's presence).
    pub fn shared_revocations(&self) -> Arc<RevocationList> {
        self.inner.revocations.clone()
    }

    /// Presence's query routes.
    pub(crate) fn presence(&self) -> &presence::PresenceClient {
        &self.inner.presence
    }

    /// The end of a graceful shutdown, once no request is in flight: the
    /// writer commits and answers what it holds, the database is closed
    /// (which checkpoints its WAL), then the outboxes publish what they
    /// hold, for at most `TELEPATH_DRAIN_SECS`.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.webhooks.close().await;
        self.inner.db.close().await;
        self.inner.outboxes.close(self.common().drain()).await;
        tracing::info!("api closed: writer flushed, database closed, outboxes flushed");
    }
}

/// Where the api serves its internal routes when `TELEPATH_INTERNAL_LISTEN` is unset.
pub const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:9081";

/// Every public REST route of the api, each with its OpenAPI path.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(login::login))
        .routes(routes!(tickets::issue))
        .routes(routes!(rooms::create, rooms::list))
        .routes(routes!(
            rooms::close,
            manage::settings::get,
            manage::settings::patch
        ))
        .routes(routes!(manage::settings::role))
        .routes(routes!(manage::moderation::kick))
        .routes(routes!(manage::moderation::ban))
        .routes(routes!(manage::moderation::unban))
        .routes(routes!(manage::moderation::bans))
        .routes(routes!(manage::moderation::mute))
        .routes(routes!(manage::moderation::unmute))
        .routes(routes!(manage::audit_log))
        .routes(routes!(manage::invites::create))
        .routes(routes!(manage::invites::list))
        .routes(routes!(manage::invites::accept))
        .routes(routes!(manage::invites::decline))
        .routes(routes!(manage::invites::create_link))
        .routes(routes!(manage::invites::join_by_link))
        .routes(routes!(profiles::me, profiles::patch))
        .routes(routes!(profiles::get))
        .routes(routes!(profiles::search))
        .routes(routes!(rooms::join))
        .routes(routes!(rooms::leave))
        .routes(routes!(rooms::messages, rooms::send))
        .routes(routes!(live::thread))
        .routes(routes!(live::search))
        .routes(routes!(dms::history::list))
        .routes(routes!(rooms::participants))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(announcements::create, announcements::list))
        .routes(routes!(announcements::dismiss))
        .routes(routes!(admin::broadcast))
        .routes(routes!(server_api::admin_create, server_api::admin_list))
        .routes(routes!(server_api::admin_revoke))
        .routes(routes!(server_api::publish))
        .routes(routes!(server_api::publish_batch))
        .routes(routes!(server_api::publish_to_user))
        .routes(routes!(server_api::users_presence))
        .routes(routes!(server_api::room_presence))
        .routes(routes!(server_api::create_room))
        .routes(routes!(server_api::add_members))
        .routes(routes!(server_api::disconnect))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(admin::disconnect))
        .routes(routes!(admin::analytics))
        .routes(routes!(revoke::revoke))
        .routes(routes!(dms::pending))
        .routes(routes!(dms::state_of))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(ops::asyncapi_json))
        .routes(routes!(web::docs_index))
        .routes(routes!(web::docs_file))
        .routes(routes!(web::index))
        .routes(routes!(web::app_file))
        .routes(routes!(web::sdk_file))
}

/// The api's `/internal/` routes (gateways call them), each with its OpenAPI path.
fn internal_api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(
            routes!(connections::report)
                .layer(DefaultBodyLimit::max(connections::MAX_REPORT_BYTES)),
        )
        .routes(routes!(internal::join))
        .routes(routes!(internal::leave))
        .routes(routes!(internal::messages))
        .routes(
            routes!(internal::memberships)
                .layer(DefaultBodyLimit::max(internal::MAX_MEMBERSHIPS_BYTES)),
        )
        .routes(
            routes!(internal::send_batch)
                .layer(DefaultBodyLimit::max(internal::MAX_SEND_BATCH_BYTES)),
        )
        .routes(routes!(dms::ack))
        .routes(routes!(revoke::list))
        .routes(routes!(dms::pending_internal, dms::pending_internal_many))
        .routes(routes!(notifications::unread_internal))
        .routes(routes!(tickets::redeem))
}

/// `/healthz`, `/readyz` and `/metrics` of the api as its own process.
fn ops_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

/// The whole OpenAPI document: the api's routes, internal ones included,
/// its ops routes, and the gateway's and presence's routes (what
/// `GET /openapi.json` serves on an internal listener).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().into_openapi();
    doc.merge(internal_api_routes().into_openapi());
    doc.merge(ops_routes().into_openapi());
    openapi::add_common_responses(&mut doc);
    openapi::unique_operation_ids(&mut doc);
    doc
}

/// [`openapi`] without the `/internal/` routes: what the public listener
/// serves at `GET /openapi.json` (internal routes are never served there).
pub fn public_openapi() -> utoipa::openapi::OpenApi {
    let mut doc = openapi();
    doc.paths.paths.retain(|path, _| !is_internal(path));
    // Nothing public uses the internal token, nor is tagged internal.
    if let Some(components) = doc.components.as_mut() {
        components.security_schemes.remove("internal");
    }
    if let Some(tags) = doc.tags.as_mut() {
        tags.retain(|t| t.name != "internal");
    }
    doc
}

/// The api's own `/internal/` routes only (presence's are served by
/// presence): what the api's internal listener serves at `GET /openapi.json`.
pub fn internal_openapi() -> utoipa::openapi::OpenApi {
    let mut doc = openapi();
    doc.paths
        .paths
        .retain(|path, _| is_internal(path) && !path.starts_with("/internal/presence/"));
    doc
}

/// Whether `path` is one of the services' internal routes.
pub fn is_internal(path: &str) -> bool {
    path.starts_with("/internal/")
}

/// The api's public routes, without health and metrics endpoints (for
/// merging into the all-in-one router).
pub fn routes(state: ApiState) -> Router {
    let limit = state.config().max_request_bytes;
    let (router, _) = api_routes().split_for_parts();
    router.layer(DefaultBodyLimit::max(limit)).with_state(state)
}

/// The api's `/internal/` routes: served on the internal listener
/// (`TELEPATH_INTERNAL_LISTEN`), or called in process by the all-in-one.
pub fn internal_routes(state: ApiState) -> Router {
    let limit = state.config().max_request_bytes;
    let (router, _) = internal_api_routes().split_for_parts();
    router.layer(DefaultBodyLimit::max(limit)).with_state(state)
}

/// [`routes`] plus `/healthz`, `/readyz`, `/metrics` (unless
/// `TELEPATH_METRICS_INTERNAL`) and a JSON 404, with request metrics.
pub fn router(state: ApiState, http: &HttpMetrics) -> Router {
    let (ops, _) = ops_routes().split_for_parts();
    let mut ops = ops.with_state(state.clone());
    if state.common().metrics_internal {
        ops = Router::new()
            .route("/healthz", get(ops::healthz))
            .route("/readyz", get(ops::readyz))
            .with_state(state.clone());
    }
    let cors = state.common().allowed_origins.cors();
    let router = http.layer(
        ops.merge(routes(state))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed),
    );
    // Outermost: a CORS preflight is answered before routing.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// What the internal listener serves: [`internal_routes`], `/healthz`, the
/// document of those routes ([`internal_openapi`]) at `/openapi.json`,
/// `/metrics` with `TELEPATH_METRICS_INTERNAL`, and a JSON 404.
pub fn internal_router(state: ApiState, http: &HttpMetrics) -> Router {
    let mut ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(ops::internal_openapi_json));
    if state.common().metrics_internal {
        ops = ops.route("/metrics", get(ops::metrics));
    }
    http.layer(
        ops.with_state(state.clone())
            .merge(internal_routes(state))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed),
    )
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled, then shuts
/// down gracefully within `TELEPATH_DRAIN_SECS`: no new connections, the
/// requests in flight finish (their messages commit and are acknowledged),
/// then [`ApiState::close`] flushes the writer and the outboxes.
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let drain = state.common().drain();
    let policy = state.common().http_policy();
    let http = HttpMetrics::new(state.registry());
    let public = (listener, router(state.clone(), &http));
    let internal = internal.map(|l| (l, internal_router(state.clone(), &http)));
    let served = serve_surfaces(public, internal, policy, shutdown, drain).await;
    if tokio::time::timeout(drain, state.close()).await.is_err() {
        tracing::warn!("the writer and outboxes did not finish within the drain deadline");
    }
    served
}
