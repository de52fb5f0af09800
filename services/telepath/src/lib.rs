//! telepath: the all-in-one node. The gateway, api and presence in one
//! process, their public routes on one port.
//!
//! Without `REDIS_URL` it runs on the in-memory bus and presence store, with
//! no outside services at all; with `REDIS_URL` set it uses Redis for both,
//! so an all-in-one node can join a cluster of separate services. The
//! gateway calls the api's and presence's internal routes in process (the
//! same handlers, through their routers, with no socket): they are served
//! on no port at all, and `/metrics` moves to `TELEPATH_INTERNAL_LISTEN`
//! with `TELEPATH_METRICS_INTERNAL`.

pub mod backup;
pub mod cli;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus::Registry;
use telepath_api::ApiConfig;
use telepath_api::ApiState;
use telepath_gateway::GatewayConfig;
use telepath_gateway::GatewayState;
use telepath_presence::PresenceConfig;
use telepath_presence::PresenceState;
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::bus::redis::RedisBus;
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::config::Common;
use telepath_shared::http::client::InternalClient;
use telepath_shared::http::observe::HttpMetrics;
use telepath_shared::http::{ApiError, method_not_allowed, not_found};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The settings of all three services of one all-in-one node (what they
/// share once, then each one's own); [`cli::Cli`] reads them.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub gateway: GatewayConfig,
    #[command(flatten)]
    pub api: ApiConfig,
    #[command(flatten)]
    pub presence: PresenceConfig,
}

impl Config {
    /// Every setting at its default, with `secret`, SQLite at
    /// `database_url` and dev login on (tests).
    pub fn for_tests(secret: &str, database_url: &str) -> Config {
        Config {
            common: Common::for_tests(secret),
            gateway: GatewayConfig::for_tests("http://127.0.0.1:9"),
            api: ApiConfig::for_tests(database_url),
            presence: PresenceConfig::for_tests(),
        }
    }
}

/// The three services of a running node.
#[derive(Clone)]
pub struct Node {
    pub api: ApiState,
    pub gateway: GatewayState,
    pub presence: PresenceState,
    registry: Registry,
    http: HttpMetrics,
}

/// Builds the node.
pub async fn build(config: Config) -> anyhow::Result<Node> {
    config.common.jwt_keys().map_err(anyhow::Error::msg)?;
    let registry = telepath_shared::telemetry::registry("telepath");
    let http = HttpMetrics::new(&registry);
    // Each service is its own node on the bus, as in a split deployment.
    let broker = MemoryBroker::new();
    let redis_url = config.common.redis_url.clone();
    // Every node's inbound queue is bounded like the gateway's.
    let (capacity, bytes) = (config.gateway.inbound_queue, config.gateway.inbound_bytes);
    let connect = || async {
        let node: (Arc<dyn Bus>, Inbound) = match &redis_url {
            Some(url) => {
                let (bus, inbound) = RedisBus::connect_bounded(url, capacity, bytes)
                    .await
                    .context("connecting to Redis")?;
                (Arc::new(bus), inbound)
            }
            None => {
                let (bus, inbound) = broker.connect_bounded(capacity, bytes);
                (Arc::new(bus), inbound)
            }
        };
        anyhow::Ok(node)
    };
    let (api_bus, api_inbound) = connect().await?;
    let (presence_bus, _) = connect().await?;
    let (gateway_bus, gateway_inbound) = connect().await?;
    let Config {
        common,
        gateway,
        api,
        presence,
    } = config;
    let token = common.internal_token();
    // Presence calls nobody; the api calls presence; the gateway both.
    let presence =
        PresenceState::build(common.clone(), presence, presence_bus, registry.clone()).await?;
    let presence_routes = telepath_presence::internal_routes(presence.clone())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let presence_client = InternalClient::local("presence", http.layer(presence_routes), &token);
    let api = ApiState::build_with(
        common.clone(),
        api,
        api_bus,
        api_inbound,
        registry.clone(),
        presence_client.clone(),
    )
    .await?;
    presence.check_revocations(api.shared_revocations());
    let api_routes = telepath_api::internal_routes(api.clone())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let api_client = InternalClient::local("api", http.layer(api_routes), &token);
    let gateway = GatewayState::build_with(
        common,
        gateway,
        gateway_bus,
        gateway_inbound,
        registry.clone(),
        api_client,
        presence_client,
    );
    Ok(Node {
        api,
        gateway,
        presence,
        registry,
        http,
    })
}

/// Every public route of the node, with one `/healthz`, `/readyz` and
/// `/metrics` (unless `TELEPATH_METRICS_INTERNAL`), and request metrics.
pub fn router(node: Node) -> Router {
    let mut ops = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz));
    if !node.gateway.common().metrics_internal {
        ops = ops.route("/metrics", get(metrics));
    }
    let router = ops
        .with_state(node.clone())
        .merge(telepath_api::routes(node.api))
        .merge(telepath_presence::routes(node.presence))
        .merge(telepath_gateway::routes(node.gateway.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let router = node.http.layer(router);
    // Outermost: a CORS preflight is answered before routing.
    match node.gateway.common().allowed_origins.cors() {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// What the node's internal listener (`TELEPATH_INTERNAL_LISTEN`) serves:
/// `/healthz`, and `/metrics` with `TELEPATH_METRICS_INTERNAL`. The internal
/// routes are called in process and served nowhere.
pub fn internal_router(node: Node) -> Router {
    let mut ops = Router::new().route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    if node.gateway.common().metrics_internal {
        ops = ops.route("/metrics", get(metrics));
    }
    ops.with_state(node)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn metrics(State(n): State<Node>) -> axum::response::Response {
    telepath_shared::telemetry::render(&n.registry)
}

async fn readyz(State(node): State<Node>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    node.api.ready().await?;
    node.presence.ready().await?;
    node.gateway.ready()?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

/// Serves the node on `listener` (and [`internal_router`] on `internal`)
/// until `shutdown`, then drains the gateway and flushes the api's writer.
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    node: Node,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    telepath_presence::spawn_sweeper(&node.presence, shutdown.clone());
    let gateway = node.gateway.clone();
    let api = node.api.clone();
    let internal = internal.map(|l| (l, internal_router(node.clone())));
    let served =
        telepath_gateway::serve_app(listener, router(node), internal, gateway, shutdown).await;
    api.close().await;
    served
}
