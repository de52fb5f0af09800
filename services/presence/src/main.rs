//! `telepath-presence`: the presence service as its own process. All the work
//! is in the library; this reads config, binds and runs until a signal.

use anyhow::Context;
use telepath_presence::{PresenceState, run};
use telepath_shared::config::{Common, Env, PresenceConfig};
use telepath_shared::telemetry;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("presence");
    let common = Common::from_source(&Env, false).context("configuration")?;
    let config = PresenceConfig::from_source(&Env, common).context("configuration")?;
    let listen = config.common.listen;
    let state = PresenceState::build(config, prometheus::Registry::new()).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(listener, state, shutdown).await.context("serve")
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
