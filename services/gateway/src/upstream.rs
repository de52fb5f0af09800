//! Clients of the services behind a gateway: the api (durable operations)
//! and presence (connection reports and heartbeats).
//!
//! Api calls are awaited by the session that needs the answer. Presence
//! reports are fire-and-forget through one bounded queue drained by one task,
//! so they keep their order and never slow a session down; a report dropped
//! on overflow is repaired by the next heartbeat, which lists every live
//! connection of this node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use telepath_shared::auth::INTERNAL_HEADER;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ConnReport, ConnectionEvent, ConnectionEvents, DisconnectReport, ErrorCode, ErrorEnvelope,
    HeartbeatReport, InternalJoin, InternalSend, JoinResult, Message, MessagePage, UserRef,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Connection events sent to the api in one report at most.
const LOG_BATCH: usize = 256;
/// How often queued connection events are sent.
const LOG_EVERY: Duration = Duration::from_millis(500);

/// Timeout of one call to the api or presence.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Presence reports waiting to be sent.
const REPORT_QUEUE: usize = 16_384;

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        .build()
        .expect("a plain-HTTP client always builds")
}

/// Calls the api's `/internal/` routes.
#[derive(Clone)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    pub(crate) fn new(base: &str, token: &str) -> Self {
        ApiClient {
            http: http_client(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Makes `user` a participant of `room`.
    pub(crate) async fn join(&self, room: &str, user: &UserRef) -> Result<JoinResult, ApiError> {
        self.post(
            &format!("/internal/rooms/{room}/join"),
            &InternalJoin { user: user.clone() },
        )
        .await
    }

    /// Ends `user`'s participation in `room`.
    pub(crate) async fn leave(&self, room: &str, user: &UserRef) -> Result<(), ApiError> {
        let resp = self
            .request(
                self.http
                    .post(self.url(&format!("/internal/rooms/{room}/leave")))
                    .json(&InternalJoin { user: user.clone() }),
            )
            .await?;
        check(resp).await.map(|_| ())
    }

    /// Persists a room message; returns it once committed.
    pub(crate) async fn send(&self, room: &str, send: &InternalSend) -> Result<Message, ApiError> {
        self.post(&format!("/internal/rooms/{room}/messages"), send)
            .await
    }

    /// Up to `limit` messages of `room` after `after`, in seq order.
    pub(crate) async fn history_after(
        &self,
        room: &str,
        after: i64,
        limit: i64,
    ) -> Result<MessagePage, ApiError> {
        let url = self.url(&format!(
            "/internal/rooms/{room}/messages?after={after}&limit={limit}"
        ));
        let resp = self.request(self.http.get(url)).await?;
        decode(check(resp).await?).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let resp = self
            .request(self.http.post(self.url(path)).json(body))
            .await?;
        decode(check(resp).await?).await
    }

    async fn request(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        req.header(INTERNAL_HEADER, &self.token)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "api call failed");
                ApiError::unavailable("the api is unavailable")
            })
    }
}

/// Passes the api's own error through (code and message), or maps the status.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    match resp.json::<ErrorEnvelope>().await {
        Ok(env) => Err(ApiError::new(env.error.code, env.error.message)),
        Err(_) => Err(ApiError::new(
            ErrorCode::from_http_status(status),
            "upstream error",
        )),
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ApiError> {
    resp.json().await.map_err(ApiError::internal)
}

/// One report for presence.
enum Report {
    Connect(ConnReport),
    Disconnect(DisconnectReport),
}

/// Reports this node's connections to presence.
#[derive(Clone)]
pub(crate) struct PresenceReporter {
    tx: mpsc::Sender<Report>,
    /// Every live connection of this node, for heartbeats.
    live: Arc<Mutex<HashMap<String, ConnReport>>>,
}

impl PresenceReporter {
    /// Starts the reporting task; it heartbeats every `every` until `shutdown`.
    pub(crate) fn spawn(
        base: &str,
        token: &str,
        node: String,
        every: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        let live = Arc::new(Mutex::new(HashMap::new()));
        let sender = Sender {
            http: http_client(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        };
        tokio::spawn(report_task(sender, rx, live.clone(), node, every, shutdown));
        PresenceReporter { tx, live }
    }

    /// A connection opened.
    pub(crate) fn connected(&self, report: ConnReport) {
        self.live
            .lock()
            .expect("presence lock poisoned")
            .insert(report.conn_id.clone(), report.clone());
        let _ = self.tx.try_send(Report::Connect(report));
    }

    /// A connection ended.
    pub(crate) fn disconnected(&self, conn_id: &str, user_id: &str) {
        self.live
            .lock()
            .expect("presence lock poisoned")
            .remove(conn_id);
        let _ = self.tx.try_send(Report::Disconnect(DisconnectReport {
            conn_id: conn_id.to_owned(),
            user_id: user_id.to_owned(),
        }));
    }
}

struct Sender {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Sender {
    async fn post<B: Serialize>(&self, path: &str, body: &B) {
        let url = format!("{}{path}", self.base);
        match self
            .http
            .post(url)
            .header(INTERNAL_HEADER, &self.token)
            .json(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), path, "presence refused a report"),
            Err(e) => tracing::warn!(error = %e, path, "presence unreachable"),
        }
    }
}

async fn report_task(
    sender: Sender,
    mut rx: mpsc::Receiver<Report>,
    live: Arc<Mutex<HashMap<String, ConnReport>>>,
    node: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            report = rx.recv() => match report {
                Some(Report::Connect(c)) => sender.post("/internal/presence/connect", &c).await,
                Some(Report::Disconnect(d)) => sender.post("/internal/presence/disconnect", &d).await,
                None => return,
            },
            _ = tick.tick() => {
                let conns: Vec<ConnReport> = live.lock().expect("presence lock poisoned").values().cloned().collect();
                sender.post("/internal/presence/heartbeat", &HeartbeatReport { node: node.clone(), conns }).await;
            }
            // After shutdown, drain what is queued (the sessions' disconnects) and stop.
            _ = shutdown.cancelled(), if rx.is_empty() && live.lock().expect("presence lock poisoned").is_empty() => return,
        }
    }
}

/// Reports connects and disconnects to the api's connection log, in batches.
#[derive(Clone)]
pub(crate) struct LogReporter {
    tx: mpsc::Sender<ConnectionEvent>,
}

impl LogReporter {
    /// Starts the reporting task; it flushes what is queued and stops after `shutdown`.
    pub(crate) fn spawn(base: &str, token: &str, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        let sender = Sender {
            http: http_client(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        };
        tokio::spawn(log_task(sender, rx, shutdown));
        LogReporter { tx }
    }

    /// Queues one event; dropped (and logged) when the queue is full.
    pub(crate) fn log(&self, event: ConnectionEvent) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("connection log queue full; event dropped");
        }
    }
}

async fn log_task(
    sender: Sender,
    mut rx: mpsc::Receiver<ConnectionEvent>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(LOG_BATCH);
    let mut tick = tokio::time::interval(LOG_EVERY);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, LOG_BATCH) => {
                if n == 0 {
                    break;
                }
                if batch.len() < LOG_BATCH {
                    continue;
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.cancelled(), if rx.is_empty() => break,
        }
        if !batch.is_empty() {
            sender
                .post(
                    "/internal/connections",
                    &ConnectionEvents {
                        events: std::mem::take(&mut batch),
                    },
                )
                .await;
        }
    }
    if !batch.is_empty() {
        sender
            .post("/internal/connections", &ConnectionEvents { events: batch })
            .await;
    }
}
