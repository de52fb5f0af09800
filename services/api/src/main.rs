//! `telepath-api`: the api service as its own process (`--help` lists
//! every setting).

use std::sync::Arc;

use anyhow::Context;
use clap::CommandFactory;
use telepath_api::{ApiState, Cli};
use telepath_shared::bus::DEFAULT_INBOUND_CAPACITY;
use telepath_shared::bus::redis::RedisBus;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cli: Cli = telepath_shared::config::parse_process(Cli::command());
    telepath_shared::config::runtime(cli.common.worker_threads)?.block_on(serve(cli))
}

async fn serve(Cli { common, api }: Cli) -> anyhow::Result<()> {
    let telemetry = telepath_shared::telemetry::init("api", common.log_format, &common.node_id);
    common
        .check_secret("telepath-api")
        .map_err(anyhow::Error::msg)?;
    common.jwt_keys().map_err(anyhow::Error::msg)?;
    let redis_url = common
        .redis_url
        .clone()
        .context("REDIS_URL must be set for telepath-api")?;
    // Inbound: presence changes, persisted to the users table.
    let (bus, inbound) = RedisBus::connect(&redis_url, DEFAULT_INBOUND_CAPACITY)
        .await
        .context("connecting to Redis")?;
    let listener =
        telepath_shared::http::serve::bind(common.listen).context("binding TELEPATH_LISTEN")?;
    let internal_addr = match common.internal_listen {
        Some(addr) => addr,
        None => telepath_api::DEFAULT_INTERNAL_LISTEN.parse()?,
    };
    let internal = telepath_shared::http::serve::bind_internal(internal_addr)?;
    if api.dev_login {
        tracing::warn!(
            "DEV LOGIN IS ON (TELEPATH_DEV_LOGIN): anyone who reaches this api gets a token for \
             any user name (admins only if TELEPATH_DEV_ADMINS names them); never in production"
        );
    }
    let registry = telepath_shared::telemetry::registry("api");
    let state = ApiState::build(common, api, Arc::new(bus), inbound, registry).await?;
    tracing::info!(addr = %listener.local_addr()?, internal = %internal.local_addr()?, "api listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_shared::telemetry::shutdown_on_signal(
        shutdown.clone(),
    ));
    telepath_api::run(listener, Some(internal), state, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
