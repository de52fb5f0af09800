//! Spawning an api on port 0 with a temp database and an in-memory bus (or
//! a given one: Redis).

use std::sync::Arc;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use telepath_api::{ApiConfig, ApiState};
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::config::Common;
use telepath_shared::testing;
use tokio_util::sync::CancellationToken;

pub(crate) use telepath_shared::testing::TestUser;

pub(crate) const SECRET: &str = "api-test-secret";

/// A running api and what the tests need to talk to it.
pub(crate) struct TestApi {
    pub(crate) url: String,
    /// The internal listener (`/internal/` routes).
    pub(crate) internal: String,
    pub(crate) http: Client,
    pub(crate) internal_token: String,
    /// The in-memory bus the api is on, unless it was given another.
    pub(crate) broker: Option<MemoryBroker>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) dir: tempfile::TempDir,
    /// The api's state (its retention cleanup, run at a chosen time).
    pub(crate) state: ApiState,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn spawn_api() -> TestApi {
    spawn_api_with(|_, _| {}).await
}

/// An api whose settings `tweak` adjusts first (the shared ones, and its own).
pub(crate) async fn spawn_api_with(tweak: impl FnOnce(&mut Common, &mut ApiConfig)) -> TestApi {
    let broker = MemoryBroker::new();
    let (bus, inbound) = broker.connect(16);
    let mut api = spawn_api_on(Arc::new(bus), inbound, tweak).await;
    api.broker = Some(broker);
    api
}

/// An api on `bus` (receiving on `inbound`), its settings adjusted by `tweak`.
pub(crate) async fn spawn_api_on(
    bus: Arc<dyn Bus>,
    inbound: Inbound,
    tweak: impl FnOnce(&mut Common, &mut ApiConfig),
) -> TestApi {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("api.db").display());
    let mut common = Common::for_tests(SECRET);
    let mut config = ApiConfig::for_tests(&db);
    tweak(&mut common, &mut config);
    let internal_token = common.internal_token();
    let registry = prometheus::Registry::new();
    let state = ApiState::build(common, config, bus, inbound, registry)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let internal_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = format!("http://{}", internal_listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_api::run(
        listener,
        Some(internal_listener),
        state.clone(),
        shutdown.clone(),
    ));
    TestApi {
        url,
        internal,
        http: Client::new(),
        internal_token,
        broker: None,
        shutdown,
        dir,
        state,
    }
}

impl TestApi {
    pub(crate) async fn login(&self, name: &str) -> TestUser {
        testing::login(&self.http, &self.url, name).await
    }

    pub(crate) async fn create_room(&self, user: &TestUser, body: Value) -> Value {
        let resp = self.post(user, "/rooms", body).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    /// Creates a public room named `name` as `user`; returns its id.
    pub(crate) async fn room_id(&self, user: &TestUser, name: &str) -> String {
        self.create_room(user, json!({ "name": name })).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn post(&self, user: &TestUser, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn get(&self, user: &TestUser, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    /// Sends a room message as a gateway does (a batch of one); its
    /// outcome: `{"message"}` or `{"error"}`.
    pub(crate) async fn internal_send(&self, user: &TestUser, room: &str, send: Value) -> Value {
        let token = &self.internal_token;
        testing::internal_send(&self.http, &self.internal, token, user, room, send).await
    }

    /// Sends a room message that must be committed; returns the message.
    pub(crate) async fn sent(&self, user: &TestUser, room: &str, send: Value) -> Value {
        let outcome = self.internal_send(user, room, send).await;
        assert!(outcome["message"].is_object(), "refused: {outcome}");
        outcome["message"].clone()
    }

    /// Posts `batch` (`{"sends"?,"dms"?}`) to `POST /internal/messages`, as a gateway does.
    pub(crate) async fn post_batch(&self, batch: Value) -> Response {
        self.http
            .post(format!("{}/internal/messages", self.internal))
            .header("x-telepath-internal", &self.internal_token)
            .json(&batch)
            .send()
            .await
            .unwrap()
    }

    /// Sends a DM (`{"to","body","client_id"?}`) from `user` as a gateway
    /// does (a batch of one); its outcome: `{"dm"}` or `{"error"}`.
    pub(crate) async fn internal_dm(&self, user: &TestUser, dm: Value) -> Value {
        let mut dm = dm;
        dm["from"] = json!({"id": user.id, "name": user.name});
        let resp = self.post_batch(json!({ "dms": [dm] })).await;
        assert_eq!(resp.status(), 200);
        let mut answer: Value = resp.json().await.unwrap();
        answer["dms"][0].take()
    }

    /// The in-memory bus of an api spawned on one.
    pub(crate) fn broker(&self) -> &MemoryBroker {
        self.broker.as_ref().expect("an api on the in-memory bus")
    }

    /// A bus node subscribed to `channel`, to watch what the api publishes
    /// (an api on the in-memory bus).
    pub(crate) async fn watch(&self, channel: &str) -> (impl Bus, Inbound) {
        let (bus, rx) = self.broker().connect(1024);
        bus.subscribe(channel).await.unwrap();
        (bus, rx)
    }
}

impl TestApi {
    /// A read connection to the api's SQLite file, to check what was stored.
    pub(crate) async fn db(&self) -> sqlx::SqlitePool {
        let url = format!("sqlite://{}", self.dir.path().join("api.db").display());
        sqlx::SqlitePool::connect(&url).await.unwrap()
    }

    /// `DELETE path` as `user`.
    pub(crate) async fn delete(&self, user: &TestUser, path: &str) -> Response {
        self.http
            .delete(format!("{}{path}", self.url))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    /// Dev login with the admin role.
    pub(crate) async fn login_admin(&self, name: &str) -> TestUser {
        testing::login_as(&self.http, &self.url, name, "admin").await
    }
}

/// Asserts the JSON error shape and code of a failed response.
pub(crate) async fn assert_error(resp: Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string());
}

/// Asserts an item of a batch was refused with `code`.
pub(crate) fn assert_refused(outcome: Value, code: &str) {
    assert_eq!(outcome["error"]["code"], code, "{outcome}");
    assert!(outcome["error"]["message"].is_string());
}
