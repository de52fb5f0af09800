//! telepath-gateway: terminates WebSockets and fans events out through the bus.
//!
//! Stateless: it keeps only this node's connections and their channel
//! memberships (the [`hub`]). Durable operations go to the api, connection
//! reports to presence. `GET /connect` authenticates the JWT before the
//! upgrade; each connection then runs as a [`session`].

mod connect;
mod hub;
mod metrics;
mod relay;
mod session;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus::Registry;
use telepath_shared::auth::JwtKeys;
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::config::GatewayConfig;
use telepath_shared::http::observe::HttpMetrics;
use telepath_shared::http::{ApiError, not_found};
use telepath_shared::protocol::{BROADCAST_CHANNEL, PRESENCE_CHANNEL, node_channel};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use metrics::GatewayMetrics;

/// Everything a gateway's handlers and sessions share; cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

struct Inner {
    config: GatewayConfig,
    keys: JwtKeys,
    hub: Arc<hub::Hub>,
    bus: Arc<dyn Bus>,
    api: upstream::ApiClient,
    /// Room messages to the api, in order and in batches.
    sends: upstream::SendPipe,
    presence: upstream::PresenceReporter,
    logs: upstream::LogReporter,
    acks: upstream::AckReporter,
    metrics: GatewayMetrics,
    registry: Registry,
    /// Cancelled when the gateway drains: sessions say `bye` (restart) and close 1012.
    shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them.
    sessions: TaskTracker,
    /// Whether this node's subscription still delivers (its own probes).
    probe: Arc<relay::Probe>,
    /// The reporters' tasks: shutdown waits for them to send what is queued.
    reporters: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    next_conn: AtomicU64,
}

impl GatewayState {
    /// Builds a gateway on `bus`, dispatching what arrives on `inbound` to local connections.
    pub fn build(
        config: GatewayConfig,
        bus: Arc<dyn Bus>,
        inbound: Inbound,
        registry: Registry,
    ) -> GatewayState {
        let metrics = GatewayMetrics::new(&registry);
        let node = config.common.node_id.clone();
        let hub = hub::Hub::new(
            bus.clone(),
            metrics.clone(),
            vec![
                BROADCAST_CHANNEL.to_owned(),
                PRESENCE_CHANNEL.to_owned(),
                node_channel(&node),
            ],
        );
        let shutdown = CancellationToken::new();
        let token = &config.common.internal_token;
        let api = upstream::ApiClient::new(&config.api_url, token);
        let api_for_relay = api.clone();
        let sends = upstream::SendPipe::spawn(api.clone(), metrics.clone());
        let (presence, presence_task) = upstream::PresenceReporter::spawn(
            &config.presence_url,
            token,
            node,
            config.heartbeat(),
            shutdown.clone(),
        );
        let (logs, logs_task) =
            upstream::LogReporter::spawn(&config.api_url, token, shutdown.clone());
        let (acks, acks_task) = upstream::AckReporter::spawn(api.clone(), shutdown.clone());
        let keys = JwtKeys::new(&config.common.jwt_secret);
        let inner = Inner {
            config,
            keys,
            hub: hub.clone(),
            bus: bus.clone(),
            api,
            sends,
            presence,
            logs,
            acks,
            metrics: metrics.clone(),
            registry,
            shutdown,
            sessions: TaskTracker::new(),
            reporters: std::sync::Mutex::new(vec![presence_task, logs_task, acks_task]),
            next_conn: AtomicU64::new(1),
            probe: Arc::new(relay::Probe::new()),
        };
        let own_channel = node_channel(&inner.config.common.node_id);
        let probe = inner.probe.clone();
        tokio::spawn(relay::run(
            inbound,
            hub,
            bus,
            api_for_relay,
            metrics,
            probe,
            own_channel,
        ));
        GatewayState {
            inner: Arc::new(inner),
        }
    }

    /// Ok while the bus connection is up and the node is not draining.
    pub fn ready(&self) -> Result<(), ApiError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ApiError::unavailable("draining"));
        }
        if self.inner.bus.is_healthy() && self.inner.probe.healthy() {
            Ok(())
        } else {
            Err(ApiError::unavailable("bus unavailable"))
        }
    }

    /// Starts draining: sessions get `bye` (restart) and close with 1012.
    pub fn drain(&self) {
        self.inner.shutdown.cancel();
    }

    fn next_conn_id(&self) -> hub::ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// The gateway's routes without health and metrics (for the all-in-one router).
pub fn routes(state: GatewayState) -> Router {
    Router::new()
        .route("/connect", get(connect::connect))
        .with_state(state)
}

/// [`routes`] plus `/healthz`, `/readyz`, `/metrics` and a JSON 404, with
/// request metrics (call once per registry).
pub fn router(state: GatewayState) -> Router {
    let http = HttpMetrics::new(&state.inner.registry);
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(s): State<GatewayState>| async move {
                telepath_shared::telemetry::render(&s.inner.registry)
            }),
        )
        .with_state(state.clone())
        .merge(routes(state))
        .fallback(not_found);
    http.layer(router)
}

async fn readyz(
    State(state): State<GatewayState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state.ready()?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled, then drains.
pub async fn run(
    listener: TcpListener,
    state: GatewayState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_app(listener, router(state.clone()), state, shutdown).await
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

/// Serves `app` (which must contain [`routes`] of `state`) and drains the
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
    let served = serve_http1(listener, app, signal, state.inner.config.common.drain).await;
    let deadline = tokio::time::Instant::now() + state.inner.config.common.drain;
    tracing::info!(
        connections = state.inner.metrics.connections.get(),
        "draining: closing every connection with 1012"
    );
    state.inner.sessions.close();
    if tokio::time::timeout_at(deadline, state.inner.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open at the drain deadline");
    }
    let reporters: Vec<_> = state
        .inner
        .reporters
        .lock()
        .expect("reporters lock poisoned")
        .drain(..)
        .collect();
    for task in reporters {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::warn!("a reporter did not finish by the drain deadline");
        }
    }
    tracing::info!("drained");
    served
}
