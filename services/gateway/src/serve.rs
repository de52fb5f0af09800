//! Serving the gateway: HTTP/1.1 through the shared accept loop
//! (`telepath_shared::http::serve`: an upgraded connection comes back as
//! its `TcpStream`, see `connect.rs`), and the drain on shutdown: stop accepting, close every session with 1012, let
//! the reporters send what the sessions queued last.

use axum::Router;
use telepath_shared::http::serve::{Surface, serve_gracefully};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::GatewayState;

/// Serves [`router`](crate::router) on `listener` until `shutdown` is cancelled, then drains.
pub async fn run(
    listener: TcpListener,
    internal: Option<TcpListener>,
    state: GatewayState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let internal = internal.map(|l| (l, crate::internal_router(state.clone())));
    serve_app(
        listener,
        crate::router(state.clone()),
        internal,
        state,
        shutdown,
    )
    .await
}

/// Serves `app` (which must contain [`routes`](crate::routes) of `state`) and drains the
/// gateway on shutdown, all within `TELEPATH_DRAIN_SECS`:
///
/// 1. stop accepting (the listener closes, so the load balancer's checks
///    fail and new clients go to other nodes);
/// 2. every session says `bye` (restart) and closes with 1012;
/// 3. the reporters send what the sessions queued last, so presence drops
///    this node's connections at once instead of after their expiry.
///
/// `internal`, when given, is served beside it until `shutdown` (no drain:
/// it holds no sessions).
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    internal: Option<Surface>,
    state: GatewayState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let internal = internal.map(|(listener, app)| {
        let policy = state.common().http_policy();
        let drain = state.common().drain();
        tokio::spawn(serve_gracefully(
            listener,
            app,
            policy,
            shutdown.clone(),
            drain,
        ))
    });
    let drain = state.clone();
    let signal = async move {
        shutdown.cancelled().await;
        drain.drain();
    };
    let drain_for = state.common().drain();
    let policy = state.common().http_policy();
    let served =
        telepath_shared::http::serve::serve(listener, app, policy, signal, drain_for).await;
    let deadline = tokio::time::Instant::now() + drain_for;
    tracing::info!(
        connections = state.metrics().connections.get(),
        "draining: closing every connection with 1012"
    );
    let sessions = state.sessions();
    sessions.close();
    if tokio::time::timeout_at(deadline, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open at the drain deadline");
    }
    for (name, task) in state.take_reporters() {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::warn!(
                reporter = name,
                "a reporter did not finish by the drain deadline"
            );
        }
    }
    tracing::info!("drained");
    if let Some(task) = internal {
        let _ = task.await;
    }
    served
}
