//! `telepath-api`: the api service as its own process.

use std::sync::Arc;

use anyhow::Context;
use telepath_shared::bus::DEFAULT_INBOUND_CAPACITY;
use telepath_shared::bus::redis::RedisBus;
use telepath_shared::config::{ApiConfig, Common, Env};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    telepath_shared::config::runtime()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let telemetry = telepath_shared::telemetry::init("api");
    let common = Common::from_source(&Env, false)?;
    let config = ApiConfig::from_source(&Env, common, false)?;
    let redis_url = config
        .common
        .redis_url
        .clone()
        .context("REDIS_URL must be set for telepath-api")?;
    // Inbound: presence changes, persisted to the users table.
    let (bus, inbound) = RedisBus::connect(&redis_url, DEFAULT_INBOUND_CAPACITY)
        .await
        .context("connecting to Redis")?;
    let listener = tokio::net::TcpListener::bind(config.common.listen)
        .await
        .context("binding TELEPATH_LISTEN")?;
    let state = telepath_api::ApiState::build(
        config,
        Arc::new(bus),
        inbound,
        telepath_shared::telemetry::registry("api"),
    )
    .await?;
    tracing::info!(addr = %listener.local_addr()?, "api listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_shared::telemetry::shutdown_on_signal(
        shutdown.clone(),
    ));
    telepath_api::run(listener, state, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
