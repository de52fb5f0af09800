//! `telepath-gateway`: one gateway node as its own process (`--help` lists
//! every setting).

use std::sync::Arc;

use anyhow::Context;
use clap::CommandFactory;
use telepath_gateway::{Cli, GatewayState};
use telepath_shared::bus::redis::RedisBus;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cli: Cli = telepath_shared::config::parse_process(Cli::command());
    telepath_shared::config::runtime(cli.common.worker_threads)?.block_on(serve(cli))
}

async fn serve(Cli { common, gateway }: Cli) -> anyhow::Result<()> {
    let telemetry = telepath_shared::telemetry::init("gateway", common.log_format, &common.node_id);
    common
        .check_secret("telepath-gateway")
        .map_err(anyhow::Error::msg)?;
    common.jwt_keys().map_err(anyhow::Error::msg)?;
    let redis_url = common
        .redis_url
        .clone()
        .context("REDIS_URL must be set for telepath-gateway")?;
    let (bus, inbound) =
        RedisBus::connect_bounded(&redis_url, gateway.inbound_queue, gateway.inbound_bytes)
            .await
            .context("connecting to Redis")?;
    let listener =
        telepath_shared::http::serve::bind(common.listen).context("binding TELEPATH_LISTEN")?;
    let internal = match common.internal_listen {
        Some(addr) => Some(telepath_shared::http::serve::bind_internal(addr)?),
        None if common.metrics_internal => {
            anyhow::bail!("TELEPATH_METRICS_INTERNAL needs TELEPATH_INTERNAL_LISTEN")
        }
        None => None,
    };
    tracing::info!(addr = %listener.local_addr()?, node = %common.node_id, "gateway listening");
    let registry = telepath_shared::telemetry::registry("gateway");
    let state = GatewayState::build(common, gateway, Arc::new(bus), inbound, registry);
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_shared::telemetry::shutdown_on_signal(
        shutdown.clone(),
    ));
    telepath_gateway::run(listener, internal, state, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
