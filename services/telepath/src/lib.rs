//! telepath: the all-in-one node. The gateway, api and presence routers on
//! one port in one process.
//!
//! Without `REDIS_URL` it runs on the in-memory bus and presence store, with
//! no outside services at all; with `REDIS_URL` set it uses Redis for both,
//! so an all-in-one node can join a cluster of separate services. The
//! gateway reaches the api and presence over HTTP on its own port, the same
//! path a split deployment takes.

pub mod backup;
pub mod cli;

use std::net::SocketAddr;
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
use telepath_shared::http::observe::HttpMetrics;
use telepath_shared::http::{ApiError, not_found};
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
}

/// The loopback URL a process listening on `addr` can call itself on.
fn self_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!("http://{host}:{}", addr.port())
}

/// Builds the node for a listener bound at `addr`.
pub async fn build(mut config: Config, addr: SocketAddr) -> anyhow::Result<Node> {
    let registry = telepath_shared::telemetry::registry("telepath");
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
    // The gateway calls the api and presence, and the api presence, on this very port.
    config.gateway.api_url = self_url(addr);
    config.common.presence_url = self_url(addr);
    let Config {
        common,
        gateway,
        api,
        presence,
    } = config;
    let api = ApiState::build(common.clone(), api, api_bus, api_inbound, registry.clone()).await?;
    let presence =
        PresenceState::build(common.clone(), presence, presence_bus, registry.clone()).await?;
    let gateway = GatewayState::build(
        common,
        gateway,
        gateway_bus,
        gateway_inbound,
        registry.clone(),
    );
    Ok(Node {
        api,
        gateway,
        presence,
        registry,
    })
}

/// Every route of the node, with one `/healthz`, `/readyz` and `/metrics`,
/// and request metrics (call once per node).
pub fn router(node: Node) -> Router {
    let http = HttpMetrics::new(&node.registry);
    let router =
        Router::new()
            .route(
                "/healthz",
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/readyz", get(readyz))
            .route(
                "/metrics",
                get(|State(n): State<Node>| async move {
                    telepath_shared::telemetry::render(&n.registry)
                }),
            )
            .with_state(node.clone())
            .merge(telepath_api::routes(node.api))
            .merge(telepath_presence::routes(node.presence))
            .merge(telepath_gateway::routes(node.gateway))
            .fallback(not_found);
    http.layer(router)
}

async fn readyz(State(node): State<Node>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    node.api.ready().await?;
    node.presence.ready().await?;
    node.gateway.ready()?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

/// Serves the node on `listener` until `shutdown`, then drains the gateway
/// and flushes the api's writer.
pub async fn run(
    listener: TcpListener,
    node: Node,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    telepath_presence::spawn_sweeper(&node.presence, shutdown.clone());
    let gateway = node.gateway.clone();
    let api = node.api.clone();
    let served = telepath_gateway::serve_app(listener, router(node), gateway, shutdown).await;
    api.close().await;
    served
}
