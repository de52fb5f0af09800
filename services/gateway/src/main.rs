//! `telepath-gateway`: one gateway node as its own process.

use std::sync::Arc;

use anyhow::Context;
use telepath_shared::bus::{DEFAULT_INBOUND_CAPACITY, redis::RedisBus};
use telepath_shared::config::{Common, Env, GatewayConfig};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    telepath_shared::config::runtime()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let telemetry = telepath_shared::telemetry::init("gateway");
    let common = Common::from_source(&Env, false)?;
    let config = GatewayConfig::from_source(&Env, common)?;
    let redis_url = config
        .common
        .redis_url
        .clone()
        .context("REDIS_URL must be set for telepath-gateway")?;
    let (bus, inbound) = RedisBus::connect(&redis_url, DEFAULT_INBOUND_CAPACITY)
        .await
        .context("connecting to Redis")?;
    let listener = tokio::net::TcpListener::bind(config.common.listen)
        .await
        .context("binding TELEPATH_LISTEN")?;
    tracing::info!(addr = %listener.local_addr()?, node = %config.common.node_id, "gateway listening");
    let state = telepath_gateway::GatewayState::build(
        config,
        Arc::new(bus),
        inbound,
        telepath_shared::telemetry::registry("gateway"),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_shared::telemetry::shutdown_on_signal(
        shutdown.clone(),
    ));
    telepath_gateway::run(listener, state, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
