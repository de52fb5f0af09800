//! Test helpers: a presence service running in-process on a free port,
//! publishing on a bus the test listens to (in memory, or Redis); a client that speaks
//! to it like a gateway or a user would; and [`eventually`] for waiting on a
//! condition instead of sleeping.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use telepath_presence::{PresenceConfig, PresenceState, PresenceSummary, UserConnections, run};
use telepath_shared::auth::{INTERNAL_HEADER, JwtKeys};
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::bus::{Bus, BusMessage, Inbound};
use telepath_shared::config::Common;
use telepath_shared::protocol::{
    ConnReport, HeartbeatReport, LiveConn, OnlineUsers, PresenceBroadcast, PresenceReport,
    PresenceReports, Role, UserInfo, UserRef,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &str = "presence-test-secret";

/// The settings a test presence runs with: the shared ones and presence's own.
pub(crate) struct TestConfig {
    pub(crate) common: Common,
    pub(crate) presence: PresenceConfig,
}

/// Test settings: heartbeat every `heartbeat_ms`, Redis at `redis_url` if
/// any, every other setting at its default.
pub(crate) fn config(heartbeat_ms: u64, redis_url: Option<String>) -> TestConfig {
    let mut common = Common::for_tests(SECRET);
    common.redis_url = redis_url;
    common.heartbeat_ms = heartbeat_ms;
    TestConfig {
        common,
        presence: PresenceConfig::for_tests(),
    }
}

/// A running presence service; shut down when dropped.
pub(crate) struct TestPresence {
    pub(crate) addr: SocketAddr,
    /// The internal listener's address.
    pub(crate) internal_addr: SocketAddr,
    pub(crate) client: reqwest::Client,
    internal_token: String,
    shutdown: CancellationToken,
    /// A node of the service's bus, subscribed to `presence`.
    listener: Box<dyn Bus>,
    events: Mutex<Inbound>,
}

impl Drop for TestPresence {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts presence with `config` on 127.0.0.1:0, publishing on an in-memory
/// bus whose `presence` channel the returned handle listens to.
pub(crate) async fn spawn_presence(config: TestConfig) -> TestPresence {
    let broker = MemoryBroker::new();
    let (bus, _inbound) = broker.connect(16);
    let (listener, events) = broker.connect(4096);
    spawn_presence_on(config, Arc::new(bus), Box::new(listener), events).await
}

/// Starts presence with `config` on 127.0.0.1:0, publishing on `bus`;
/// `listener`, another node of that bus receiving on `events`, is
/// subscribed to `presence` for the returned handle.
pub(crate) async fn spawn_presence_on(
    config: TestConfig,
    bus: Arc<dyn Bus>,
    listener: Box<dyn Bus>,
    events: Inbound,
) -> TestPresence {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_addr = internal.local_addr().unwrap();
    let internal_token = config.common.internal_token();
    listener.subscribe("presence").await.unwrap();
    let registry = prometheus::Registry::new();
    let state = PresenceState::build(config.common, config.presence, bus, registry)
        .await
        .expect("presence builds");
    let shutdown = CancellationToken::new();
    tokio::spawn(run(tcp, Some(internal), state, shutdown.clone()));
    TestPresence {
        addr,
        internal_addr,
        client: reqwest::Client::new(),
        internal_token,
        shutdown,
        listener,
        events: Mutex::new(events),
    }
}

/// A user with a fresh id.
pub(crate) fn user(name: &str) -> UserRef {
    UserRef {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.into(),
    }
}

/// One connection of `user` on node `n1`.
pub(crate) fn conn(conn_id: &str, user: &UserRef) -> ConnReport {
    conn_on(conn_id, user, "n1")
}

/// One connection of `user` on `node`.
pub(crate) fn conn_on(conn_id: &str, user: &UserRef, node: &str) -> ConnReport {
    ConnReport {
        conn_id: conn_id.into(),
        user: user.clone(),
        node: node.into(),
    }
}

/// `conn` as a heartbeat lists it: no rooms, not idle, no choice.
pub(crate) fn live(conn: &ConnReport) -> LiveConn {
    LiveConn {
        conn_id: conn.conn_id.clone(),
        user: conn.user.clone(),
        node: conn.node.clone(),
        rooms: Vec::new(),
        idle: false,
        choice: None,
    }
}

/// The report a gateway sends when `conn` opens.
pub(crate) fn connect_report(conn: &ConnReport) -> PresenceReport {
    PresenceReport::Connect {
        conn_id: conn.conn_id.clone(),
        user: conn.user.clone(),
        node: conn.node.clone(),
    }
}

/// The report a gateway sends when `conn` closes.
pub(crate) fn disconnect_report(conn: &ConnReport) -> PresenceReport {
    PresenceReport::Disconnect {
        conn_id: conn.conn_id.clone(),
        user_id: conn.user.id.clone(),
    }
}

/// Now, in Unix ms: when a gateway would stamp a status choice.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A fresh room id.
pub(crate) fn room() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A valid token for `user`.
pub(crate) fn token(user: &UserRef) -> String {
    let info = UserInfo {
        id: user.id.clone(),
        name: user.name.clone(),
        role: Role::User,
    };
    JwtKeys::new(SECRET).mint(&info, 60)
}

impl TestPresence {
    /// `path` on the listener that serves it: the internal one for
    /// `/internal/` routes, the public one for the rest.
    pub(crate) fn url(&self, path: &str) -> String {
        let addr = if path.starts_with("/internal/") {
            self.internal_addr
        } else {
            self.addr
        };
        format!("http://{addr}{path}")
    }

    /// POSTs `body` to an internal route with the right token.
    pub(crate) async fn internal(&self, path: &str, body: &impl serde::Serialize) -> StatusCode {
        self.client
            .post(self.url(path))
            .header(INTERNAL_HEADER, &self.internal_token)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// GETs an internal route with the right token.
    pub(crate) async fn get_internal(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(INTERNAL_HEADER, &self.internal_token)
            .send()
            .await
            .unwrap()
    }

    /// `GET /internal/presence/users/{id}/connections`, which must answer 200.
    pub(crate) async fn connections_of(&self, user_id: &str) -> Vec<ConnReport> {
        let path = format!("/internal/presence/users/{user_id}/connections");
        let resp = self.get_internal(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<UserConnections>().await.unwrap().connections
    }

    /// `GET /internal/presence/summary`, which must answer 200.
    pub(crate) async fn summary(&self) -> PresenceSummary {
        let resp = self.get_internal("/internal/presence/summary").await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// Reports that `conn` opened (a Connect report), which must be accepted.
    pub(crate) async fn connect(&self, conn: &ConnReport) {
        self.reports_from(&conn.node, vec![connect_report(conn)])
            .await;
    }

    /// Reports that `conn` closed (a Disconnect report), which must be accepted.
    pub(crate) async fn disconnect(&self, conn: &ConnReport) {
        self.reports_from(&conn.node, vec![disconnect_report(conn)])
            .await;
    }

    /// Sends one heartbeat listing `conns` (no rooms, not idle); returns the status.
    pub(crate) async fn heartbeat(&self, conns: &[ConnReport]) -> StatusCode {
        self.heartbeat_live(conns.iter().map(live).collect()).await
    }

    /// Sends one heartbeat listing `conns`; returns the status.
    pub(crate) async fn heartbeat_live(&self, conns: Vec<LiveConn>) -> StatusCode {
        let report = HeartbeatReport {
            node: "n1".into(),
            conns,
        };
        self.internal("/internal/presence/heartbeat", &report).await
    }

    /// `POST /internal/presence/reports` from node `n1`; returns the status.
    pub(crate) async fn try_reports(&self, reports: Vec<PresenceReport>) -> StatusCode {
        self.try_reports_from("n1", reports).await
    }

    /// `POST /internal/presence/reports` from `node`; returns the status.
    async fn try_reports_from(&self, node: &str, reports: Vec<PresenceReport>) -> StatusCode {
        let batch = PresenceReports {
            node: node.into(),
            reports,
        };
        self.internal("/internal/presence/reports", &batch).await
    }

    /// Sends a batch of reports from node `n1`, which must be accepted.
    pub(crate) async fn reports(&self, reports: Vec<PresenceReport>) {
        self.reports_from("n1", reports).await;
    }

    /// Sends a batch of reports from `node`, which must be accepted.
    async fn reports_from(&self, node: &str, reports: Vec<PresenceReport>) {
        let status = self.try_reports_from(node, reports).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    /// Also listens to `channel` on the service's bus.
    pub(crate) async fn subscribe(&self, channel: &str) {
        self.listener.subscribe(channel).await.unwrap();
    }

    /// The next bus message within `within`, if any.
    pub(crate) async fn next_event(&self, within: Duration) -> Option<BusMessage> {
        let mut events = self.events.lock().await;
        tokio::time::timeout(within, events.recv()).await.ok()?
    }

    /// The next message, which must be a presence broadcast within five seconds.
    pub(crate) async fn presence_event(&self) -> PresenceBroadcast {
        let msg = self
            .next_event(Duration::from_secs(5))
            .await
            .expect("a presence event");
        assert_eq!(msg.channel, "presence");
        serde_json::from_slice(&msg.payload).expect("a PresenceBroadcast")
    }

    /// Nothing is published within `within`.
    pub(crate) async fn assert_quiet(&self, within: Duration) {
        if let Some(msg) = self.next_event(within).await {
            panic!(
                "unexpected event on {}: {}",
                msg.channel,
                String::from_utf8_lossy(&msg.payload)
            );
        }
    }

    /// `GET /presence/online` as `viewer`; `None` unless it answered 200.
    pub(crate) async fn try_online(&self, viewer: &UserRef) -> Option<OnlineUsers> {
        let resp = self
            .client
            .get(self.url("/presence/online"))
            .bearer_auth(token(viewer))
            .send()
            .await
            .ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        resp.json().await.ok()
    }

    /// Who is online as `(name, connections)`, in the order served.
    pub(crate) async fn online(&self, viewer: &UserRef) -> Vec<(String, u64)> {
        let users = self.try_online(viewer).await.expect("GET /presence/online");
        users
            .users
            .into_iter()
            .map(|u| (u.name, u.connections))
            .collect()
    }

    /// The `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        let resp = self.client.get(self.url("/metrics")).send().await.unwrap();
        resp.text().await.unwrap()
    }
}

/// Polls `check` until it holds, failing the test after ten seconds.
pub(crate) async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    telepath_shared::testing::eventually(Duration::from_secs(10), what, check).await;
}
