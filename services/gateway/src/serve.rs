//! Serving the gateway: HTTP/1.1 straight on hyper (so an upgraded
//! connection comes back as its `TcpStream`, see `connect.rs`), and the
//! drain on shutdown: stop accepting, close every session with 1012, let
//! the reporters send what the sessions queued last.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::GatewayState;

/// Serves [`router`](crate::router) on `listener` until `shutdown` is cancelled, then drains.
pub async fn run(
    listener: TcpListener,
    state: GatewayState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_app(listener, crate::router(state.clone()), state, shutdown).await
}

/// Serves `app` over HTTP/1.1 until `signal`, then stops accepting and
/// lets the requests in flight finish. Hyper's HTTP/1 connection is used
/// directly (not through a protocol-detecting wrapper) so an upgraded
/// connection can be taken back as the plain `TcpStream` (see
/// `connect.rs`): the WebSocket then holds no HTTP read buffer and no
/// boxed or locked IO layers.
async fn serve_http1(
    listener: TcpListener,
    app: Router,
    signal: impl std::future::Future<Output = ()>,
    drain: std::time::Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};

    // Each connection task finishes its request in flight once this is
    // cancelled (keep-alive ends); the tracker waits for them.
    let stopping = CancellationToken::new();
    let conns = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10));
    tokio::pin!(signal);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        // Frames go out as they are written: with Nagle's algorithm a write
        // made while earlier data is unacknowledged would wait for the
        // client's (possibly delayed) ack. Batching is the writer's job.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                // A Router is always ready: no poll_ready needed.
                let mut app = app.clone();
                tower::Service::call(&mut app, req.map(axum::body::Body::new))
            });
        let conn = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stopping = stopping.clone();
        conns.spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stopping.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.cancel();
    conns.close();
    if tokio::time::timeout(drain, conns.wait()).await.is_err() {
        tracing::warn!("http requests still in flight at the drain deadline");
    }
    Ok(())
}

/// Serves `app` (which must contain [`routes`](crate::routes) of `state`) and drains the
/// gateway on shutdown, all within `TELEPATH_DRAIN_SECS`:
///
/// 1. stop accepting (the listener closes, so the load balancer's checks
///    fail and new clients go to other nodes);
/// 2. every session says `bye` (restart) and closes with 1012;
/// 3. the reporters send what the sessions queued last, so presence drops
///    this node's connections at once instead of after their expiry.
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    state: GatewayState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let drain = state.clone();
    let signal = async move {
        shutdown.cancelled().await;
        drain.drain();
    };
    let drain_for = state.common().drain();
    let served = serve_http1(listener, app, signal, drain_for).await;
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
    for task in state.take_reporters() {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::warn!("a reporter did not finish by the drain deadline");
        }
    }
    tracing::info!("drained");
    served
}
