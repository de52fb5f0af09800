//! `telepath-presence`: the presence service as its own process (`--help`
//! lists every setting). All the work is in the library; this reads the
//! settings, connects the Redis bus presence publishes on (`REDIS_URL` is
//! required here), binds and runs until a signal.

use std::sync::Arc;

use anyhow::Context;
use clap::CommandFactory;
use telepath_presence::{Cli, PresenceState, run};
use telepath_shared::bus::redis::RedisBus;
use telepath_shared::telemetry;
use tokio_util::sync::CancellationToken;

/// Presence subscribes to nothing; its inbound queue stays empty.
const INBOUND_CAPACITY: usize = 16;

fn main() -> anyhow::Result<()> {
    let cli: Cli = telepath_shared::config::parse_process(Cli::command());
    telepath_shared::config::runtime(cli.common.worker_threads)?.block_on(serve(cli))
}

async fn serve(Cli { common, presence }: Cli) -> anyhow::Result<()> {
    let telemetry = telemetry::init("presence", common.log_format, &common.node_id);
    common
        .check_secret("telepath-presence")
        .map_err(anyhow::Error::msg)?;
    common.jwt_keys().map_err(anyhow::Error::msg)?;
    let url = common.redis_url.clone().context("REDIS_URL is required")?;
    let (bus, inbound) = RedisBus::connect(&url, INBOUND_CAPACITY)
        .await
        .context("connect the redis bus")?;
    let bus: Arc<dyn telepath_shared::bus::Bus> = Arc::new(bus);
    let listen = common.listen;
    let internal_addr = match common.internal_listen {
        Some(addr) => addr,
        None => telepath_presence::DEFAULT_INTERNAL_LISTEN.parse()?,
    };
    let registry = telemetry::registry("presence");
    let api = presence.api_url.clone().map(|url| {
        telepath_shared::http::client::InternalClient::new("api", &url, &common.internal_token())
    });
    let state = PresenceState::build(common, presence, bus.clone(), registry).await?;
    // Revoked tokens are refused too when presence knows the api.
    if let Some(api) = api {
        let list = Arc::new(telepath_shared::auth::RevocationList::new());
        state.check_revocations(list.clone());
        tokio::spawn(telepath_presence::revocations::follow(
            list, api, bus, inbound,
        ));
    }
    let listener =
        telepath_shared::http::serve::bind(listen).with_context(|| format!("bind {listen}"))?;
    let internal = telepath_shared::http::serve::bind_internal(internal_addr)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(telemetry::shutdown_on_signal(shutdown.clone()));
    run(listener, Some(internal), state, shutdown)
        .await
        .context("serve")?;
    telemetry.shutdown();
    Ok(())
}
