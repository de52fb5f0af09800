//! Spawning the services on port 0 around one in-memory bus: the api,
//! presence and `n` gateways, each with its own listener, as a split
//! deployment runs them, in this process.

use std::sync::Arc;

use serde_json::Value;
use telepath_api::{ApiConfig, ApiState};
use telepath_gateway::{GatewayConfig, GatewayState};
use telepath_presence::{PresenceConfig, PresenceState};
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::config::Common;
use telepath_shared::testing::{self, TestUser, WsClient};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &str = "gateway-test-secret";

/// The api, presence and `n` gateways sharing one memory bus.
pub(crate) struct Stack {
    /// The api's public URL (REST).
    pub(crate) api: String,
    /// The api's internal listener (what gateways call).
    pub(crate) api_internal: String,
    /// Presence's public URL (nothing listens there until
    /// [`Stack::start_presence`] when the stack was made without it).
    pub(crate) presence: String,
    /// Presence's internal listener (what gateways report to).
    pub(crate) presence_internal: String,
    /// Bound to presence's ports (public, internal) until presence starts
    /// on them, so no other test takes them meanwhile (dropped for a stack
    /// made without presence: reports to it are refused until it starts).
    presence_listener: std::sync::Mutex<Option<(TcpListener, TcpListener)>>,
    common: Common,
    pub(crate) gateways: Vec<Gateway>,
    pub(crate) http: reqwest::Client,
    pub(crate) internal_token: String,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
    broker: MemoryBroker,
}

/// One running gateway.
pub(crate) struct Gateway {
    pub(crate) url: String,
    /// Cancel to drain this gateway alone.
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for gw in &self.gateways {
            gw.shutdown.cancel();
        }
    }
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// An api on the database in `dir`, publishing on `broker`'s bus; its
/// public and internal URLs.
async fn spawn_api(
    common: &Common,
    dir: &std::path::Path,
    broker: &MemoryBroker,
    shutdown: &CancellationToken,
) -> (String, String) {
    let db = format!("sqlite://{}", dir.join("gw.db").display());
    let (bus, inbound) = broker.connect(1024);
    let registry = prometheus::Registry::new();
    let config = ApiConfig::for_tests(&db);
    let api = ApiState::build(common.clone(), config, Arc::new(bus), inbound, registry)
        .await
        .unwrap();
    let (listener, url) = bind().await;
    let (internal, internal_url) = bind().await;
    tokio::spawn(telepath_api::run(
        listener,
        Some(internal),
        api,
        shutdown.clone(),
    ));
    (url, internal_url)
}

/// The api, presence and `n` gateways with every setting at its default.
pub(crate) async fn spawn_stack(n: usize) -> Stack {
    spawn_stack_with(n, |_, _| {}).await
}

/// Like [`spawn_stack`]; `tweak` adjusts the shared and the gateways' settings first.
pub(crate) async fn spawn_stack_with(
    n: usize,
    tweak: impl FnOnce(&mut Common, &mut GatewayConfig),
) -> Stack {
    let stack = build_stack(n, tweak, 1024).await;
    stack.start_presence().await;
    stack
}

/// Like [`spawn_stack_with`], but presence is not running: what gateways
/// report to it is lost until [`Stack::start_presence`].
pub(crate) async fn spawn_stack_without_presence(
    n: usize,
    tweak: impl FnOnce(&mut Common, &mut GatewayConfig),
) -> Stack {
    let stack = build_stack(n, tweak, 1024).await;
    drop(stack.presence_listener.lock().unwrap().take());
    stack
}

/// One gateway whose inbound bus queue holds only `capacity` messages, and
/// the rest of the stack.
pub(crate) async fn spawn_stack_with_inbound(capacity: usize) -> Stack {
    let stack = build_stack(1, |_, _| {}, capacity).await;
    stack.start_presence().await;
    stack
}

async fn build_stack(
    n: usize,
    tweak: impl FnOnce(&mut Common, &mut GatewayConfig),
    inbound: usize,
) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let broker = MemoryBroker::new();
    let mut common = Common::for_tests(SECRET);
    let mut gateway = GatewayConfig::for_tests("http://127.0.0.1:9");
    tweak(&mut common, &mut gateway);
    common.drain_secs = 3;

    // Presence's ports, held until presence starts on them.
    let (presence_listener, presence_url) = bind().await;
    let (presence_internal, presence_internal_url) = bind().await;
    common.presence_url = presence_internal_url.clone();

    let (api_url, api_internal) = spawn_api(&common, dir.path(), &broker, &shutdown).await;

    gateway.api_url = api_internal.clone();
    let mut gateways = Vec::new();
    for i in 0..n {
        let (listener, url) = bind().await;
        let mut c = common.clone();
        c.node_id = format!("gw{i}");
        let (bus, inbound) = broker.connect(inbound);
        let registry = prometheus::Registry::new();
        let gw = GatewayState::build(c, gateway.clone(), Arc::new(bus), inbound, registry);
        let stop = CancellationToken::new();
        let task = tokio::spawn(telepath_gateway::run(listener, None, gw, stop.clone()));
        gateways.push(Gateway {
            url,
            shutdown: stop,
            task: Some(task),
        });
    }
    Stack {
        api: api_url,
        api_internal,
        presence: presence_url,
        presence_internal: presence_internal_url,
        presence_listener: std::sync::Mutex::new(Some((presence_listener, presence_internal))),
        common: common.clone(),
        gateways,
        http: reqwest::Client::new(),
        internal_token: common.internal_token(),
        shutdown,
        dir,
        broker,
    }
}

impl Stack {
    /// Starts presence on its port, publishing on the stack's bus.
    pub(crate) async fn start_presence(&self) {
        let held = self.presence_listener.lock().unwrap().take();
        let (listener, internal) = match held {
            Some(pair) => pair,
            None => {
                let rebind = |url: &str| {
                    let addr = url.trim_start_matches("http://").to_owned();
                    async move {
                        TcpListener::bind(addr)
                            .await
                            .expect("presence's port is free")
                    }
                };
                (
                    rebind(&self.presence).await,
                    rebind(&self.presence_internal).await,
                )
            }
        };
        let (bus, _) = self.broker.connect(16);
        let presence = PresenceState::build(
            self.common.clone(),
            PresenceConfig::for_tests(),
            Arc::new(bus),
            prometheus::Registry::new(),
        )
        .await
        .unwrap();
        tokio::spawn(telepath_presence::run(
            listener,
            Some(internal),
            presence,
            self.shutdown.clone(),
        ));
    }

    /// The URL of gateway `i`.
    pub(crate) fn gw(&self, i: usize) -> &str {
        &self.gateways[i].url
    }

    /// Logs `name` in (dev login on the api).
    pub(crate) async fn login(&self, name: &str) -> TestUser {
        testing::login(&self.http, &self.api, name).await
    }

    /// Logs `name` in as an admin.
    pub(crate) async fn admin(&self, name: &str) -> TestUser {
        testing::login_as(&self.http, &self.api, name, "admin").await
    }

    /// Creates a public room as `user`; returns its id.
    pub(crate) async fn room(&self, user: &TestUser) -> String {
        testing::create_room(&self.http, &self.api, user, "r").await
    }

    /// Connects `user` to gateway `i`.
    pub(crate) async fn connect(&self, i: usize, user: &TestUser) -> WsClient {
        WsClient::connect(self.gw(i), &user.token).await.unwrap()
    }

    /// Sends a room message through `api`'s internal route as `user`; returns its seq.
    pub(crate) async fn send_via(&self, api: &str, user: &TestUser, room: &str, body: &str) -> i64 {
        let send = serde_json::json!({ "body": body });
        let outcome =
            testing::internal_send(&self.http, api, &self.internal_token, user, room, send).await;
        outcome["message"]["seq"]
            .as_i64()
            .expect("a committed message")
    }

    /// `GET path` on the api as `user`, as JSON.
    pub(crate) async fn get(&self, user: &TestUser, path: &str) -> Value {
        let url = format!("{}{path}", self.api);
        testing::get_json(&self.http, &url, |r| r.bearer_auth(&user.token)).await
    }

    /// A second api on the same database whose publishes go to a bus no
    /// gateway listens to: what it commits is lost to pub/sub, as when
    /// Redis drops messages. Returns its internal URL.
    pub(crate) async fn lossy_api(&self) -> String {
        let elsewhere = MemoryBroker::new();
        spawn_api(&self.common, self.dir.path(), &elsewhere, &self.shutdown)
            .await
            .1
    }
}

/// Ada on two devices (a phone on gateway 0, a laptop on gateway 1) and
/// Bob (on gateway 1), all three connections in one new room.
pub(crate) struct TwoDevices {
    pub(crate) room: String,
    pub(crate) phone: WsClient,
    pub(crate) laptop: WsClient,
    pub(crate) bob: WsClient,
}

/// Sets up [`TwoDevices`] on a stack of two gateways.
pub(crate) async fn two_devices_and_a_peer(stack: &Stack) -> TwoDevices {
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    // Bob's room: ada, a member, may leave it (an owner hands over first).
    let room = stack.room(&bob).await;
    let mut phone = stack.connect(0, &ada).await;
    let mut laptop = stack.connect(1, &ada).await;
    let mut b = stack.connect(1, &bob).await;
    for c in [&mut phone, &mut laptop, &mut b] {
        c.join(&room).await;
    }
    TwoDevices {
        room,
        phone,
        laptop,
        bob: b,
    }
}
