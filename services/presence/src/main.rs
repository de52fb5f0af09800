//! `telepath-presence`: the presence service as its own process. All the work
//! is in the library; this reads config, connects the Redis bus presence
//! publishes on (`REDIS_URL` is required here), binds and runs until a signal.

use std::sync::Arc;

use anyhow::Context;
use telepath_presence::{PresenceState, run};
use telepath_shared::bus::redis::RedisBus;
use telepath_shared::config::{Common, Env, PresenceConfig};
use telepath_shared::telemetry;
use tokio_util::sync::CancellationToken;

/// Presence subscribes to nothing; its inbound queue stays empty.
const INBOUND_CAPACITY: usize = 16;

fn main() -> anyhow::Result<()> {
    telepath_shared::config::runtime()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let telemetry = telemetry::init("presence");
    let common = Common::from_source(&Env, false).context("configuration")?;
    let config = PresenceConfig::from_source(&Env, common).context("configuration")?;
    let url = config
        .common
        .redis_url
        .clone()
        .context("REDIS_URL is required")?;
    let (bus, _inbound) = RedisBus::connect(&url, INBOUND_CAPACITY)
        .await
        .context("connect the redis bus")?;
    let listen = config.common.listen;
    let state =
        PresenceState::build(config, Arc::new(bus), telemetry::registry("presence")).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(telemetry::shutdown_on_signal(shutdown.clone()));
    run(listener, state, shutdown).await.context("serve")?;
    telemetry.shutdown();
    Ok(())
}
