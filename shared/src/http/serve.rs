//! The one accept loop every service serves HTTP with (the gateway, the
//! api, presence and the all-in-one): HTTP/1.1 straight on hyper, so a
//! WebSocket upgrade hands back the plain `TcpStream`, with the same policy
//! everywhere against slow or greedy clients:
//!
//! - a request head must arrive within [`HEADER_READ_TIMEOUT`] of the
//!   connection opening or of the previous response (hyper's header read
//!   timer runs whenever it waits for a head), so a slowloris that trickles
//!   headers is cut off, and so is a keep-alive connection left idle;
//! - at most `max_connections` HTTP connections at once (an upgraded
//!   WebSocket no longer counts): past it the loop stops accepting until
//!   one ends, so the kernel's backlog holds the rest;
//! - on shutdown it stops accepting, lets each request in flight finish
//!   (keep-alive ends) and waits for them at most `drain`.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest a client may take to send a whole request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP connections served at once unless configured otherwise.
pub const MAX_CONNECTIONS: u64 = 16_384;

/// The accept loop's limits.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Also the keep-alive idle timeout (see the module's comment).
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS as usize,
        }
    }
}

/// Serves `app` on `listener` with `policy` until `signal` completes, then
/// stops accepting and waits at most `drain` for the requests in flight.
/// Handlers see the peer address (`ConnectInfo<SocketAddr>`); upgrades
/// (WebSockets) get the connection's own `TcpStream` back through
/// `hyper::upgrade::on` and `Upgraded::downcast::<TokioIo<TcpStream>>()`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    policy: Policy,
    signal: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    // Each connection task finishes its request in flight once this is
    // cancelled (keep-alive ends); the tracker waits for them.
    let stopping = CancellationToken::new();
    let conns = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(policy.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(policy.header_read_timeout);
    tokio::pin!(signal);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            _ = &mut signal => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        // Frames and small responses go out as they are written: with
        // Nagle's algorithm a write made while earlier data is
        // unacknowledged would wait for the client's (possibly delayed) ack.
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
            let _slot = slot;
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

/// Serves `app` on `listener` with `policy` until `shutdown` is cancelled,
/// then waits at most `drain` for the requests in flight.
pub async fn serve_gracefully(
    listener: TcpListener,
    app: axum::Router,
    policy: Policy,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    serve(listener, app, policy, shutdown.cancelled_owned(), drain).await
}

/// A listener and what it serves.
pub type Surface = (TcpListener, axum::Router);

/// [`serve_gracefully`] on the public surface and, when there is one, the
/// internal surface (`TELEPATH_INTERNAL_LISTEN`), side by side; both stop
/// on `shutdown`.
pub async fn serve_surfaces(
    public: Surface,
    internal: Option<Surface>,
    policy: Policy,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let (listener, app) = public;
    let public = serve_gracefully(listener, app, policy, shutdown.clone(), drain);
    let internal = async {
        match internal {
            Some((listener, app)) => {
                serve_gracefully(listener, app, policy, shutdown.clone(), drain).await
            }
            None => Ok(()),
        }
    };
    let (public, internal) = tokio::join!(public, internal);
    public.and(internal)
}

/// Connections the kernel queues for the accept loop (capped by
/// `net.core.somaxconn`). `TcpListener::bind` asks for 128, and a reconnect
/// storm (thousands of clients after a gateway restart) overflows that:
/// the kernel drops the SYNs past it and each of those clients waits a
/// second for its retry.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` (address reuse on, as `TcpListener::bind` does) with a
/// listen queue of [`BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Binds `addr` for the internal surface ([`bind`]), naming the setting on
/// failure.
pub fn bind_internal(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("binding TELEPATH_INTERNAL_LISTEN {addr}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of connects larger than `TcpListener::bind`'s queue (128)
    /// all complete while nothing accepts: none of their SYNs is dropped.
    #[tokio::test]
    async fn the_listen_queue_holds_a_reconnect_burst() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..400).map(|_| {
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let done = futures_util::future::join_all(connects).await;
        let open = done.iter().filter(|c| matches!(c, Ok(Ok(_)))).count();
        assert_eq!(open, 400, "connects completed while nothing accepted");
        drop(listener);
    }
}
