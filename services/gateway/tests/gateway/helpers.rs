//! Spawning the services on port 0 around one in-memory bus.

use std::sync::Arc;

use serde_json::{Value, json};
use telepath_api::ApiState;
use telepath_gateway::GatewayState;
use telepath_presence::PresenceState;
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::config::{ApiConfig, Common, GatewayConfig, PresenceConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "gateway-test-secret";

/// The api, presence and `n` gateways sharing one memory bus.
pub(crate) struct Stack {
    pub(crate) api: String,
    pub(crate) gateways: Vec<String>,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

pub(crate) async fn spawn_stack(n: usize) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let broker = MemoryBroker::new();
    let common = Common::for_tests(SECRET);

    let (listener, api_url) = bind().await;
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let (bus, inbound) = broker.connect(1024);
    let api = ApiState::build(
        ApiConfig::for_tests(common.clone(), &db),
        Arc::new(bus),
        inbound,
        prometheus::Registry::new(),
    )
    .await
    .unwrap();
    tokio::spawn(telepath_api::run(listener, api, shutdown.clone()));

    let (listener, presence_url) = bind().await;
    let (presence_bus, _) = broker.connect(16);
    let presence = PresenceState::build(
        PresenceConfig::for_tests(common.clone()),
        Arc::new(presence_bus),
        prometheus::Registry::new(),
    )
    .await
    .unwrap();
    tokio::spawn(telepath_presence::run(listener, presence, shutdown.clone()));

    let mut gateways = Vec::new();
    for i in 0..n {
        let (listener, url) = bind().await;
        let mut c = common.clone();
        c.node_id = format!("gw{i}");
        let config = GatewayConfig::for_tests(c, &api_url, &presence_url);
        let (bus, inbound) = broker.connect(1024);
        let gw = GatewayState::build(config, Arc::new(bus), inbound, prometheus::Registry::new());
        tokio::spawn(telepath_gateway::run(listener, gw, shutdown.clone()));
        gateways.push(url);
    }
    Stack {
        api: api_url,
        gateways,
        http: reqwest::Client::new(),
        shutdown,
        dir,
    }
}

impl Stack {
    /// Logs `name` in; returns the token.
    pub(crate) async fn login(&self, name: &str) -> String {
        let body: Value = self
            .http
            .post(format!("{}/auth/login", self.api))
            .json(&json!({"username": name}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates a public room as `token`'s user; returns its id.
    pub(crate) async fn room(&self, token: &str) -> String {
        let body: Value = self
            .http
            .post(format!("{}/rooms", self.api))
            .bearer_auth(token)
            .json(&json!({"name": "r"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["id"].as_str().unwrap().to_owned()
    }
}

impl Stack {
    /// A second api on the same database whose publishes go to a bus no
    /// gateway listens to: what it commits is lost to pub/sub, as when
    /// Redis drops messages. Returns its URL.
    pub(crate) async fn lossy_api(&self) -> String {
        let db = format!("sqlite://{}", self.dir.path().join("gw.db").display());
        let (bus, inbound) = MemoryBroker::new().connect(16);
        let config = ApiConfig::for_tests(Common::for_tests(SECRET), &db);
        let api = ApiState::build(config, Arc::new(bus), inbound, prometheus::Registry::new())
            .await
            .unwrap();
        let (listener, url) = bind().await;
        tokio::spawn(telepath_api::run(listener, api, self.shutdown.clone()));
        url
    }

    /// Sends a room message through `api`'s internal route as `token`'s user.
    pub(crate) async fn send_via(&self, api: &str, token: &str, room: &str, body: &str) -> i64 {
        let claims = telepath_shared::auth::JwtKeys::new(SECRET)
            .verify(token)
            .unwrap();
        let internal = telepath_shared::auth::derive_internal_token(SECRET);
        let resp: Value = self
            .http
            .post(format!("{api}/internal/rooms/{room}/messages"))
            .header("x-telepath-internal", internal)
            .json(&json!({"from": {"id": claims.sub, "name": claims.name}, "body": body}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["seq"].as_i64().unwrap()
    }
}
