//! Spawning an api on port 0 with a temp database and an in-memory bus.

use std::sync::Arc;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use telepath_api::ApiState;
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::config::{ApiConfig, Common};
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &str = "api-test-secret";

/// A running api and what the tests need to talk to it.
pub(crate) struct TestApi {
    pub(crate) url: String,
    pub(crate) http: Client,
    pub(crate) internal_token: String,
    pub(crate) broker: MemoryBroker,
    pub(crate) shutdown: CancellationToken,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn spawn_api() -> TestApi {
    spawn_api_with(|_| {}).await
}

pub(crate) async fn spawn_api_with(tweak: impl FnOnce(&mut ApiConfig)) -> TestApi {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("api.db").display());
    let common = Common::for_tests(SECRET);
    let internal_token = common.internal_token.clone();
    let mut config = ApiConfig::for_tests(common, &db);
    tweak(&mut config);
    let broker = MemoryBroker::new();
    let (bus, inbound) = broker.connect(16);
    let state = ApiState::build(config, Arc::new(bus), inbound, prometheus::Registry::new())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(telepath_api::run(listener, state, shutdown.clone()));
    TestApi {
        url,
        http: Client::new(),
        internal_token,
        broker,
        shutdown,
        dir,
    }
}

/// A logged-in user.
pub(crate) struct TestUser {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) token: String,
}

impl TestApi {
    pub(crate) async fn login(&self, name: &str) -> TestUser {
        let resp = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&json!({"username": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        TestUser {
            id: body["user"]["id"].as_str().unwrap().to_owned(),
            name: name.to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
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

    /// Sends a room message through the internal route, as a gateway does.
    pub(crate) async fn internal_send(&self, user: &TestUser, room: &str, body: Value) -> Response {
        let mut body = body;
        body["from"] = json!({"id": user.id, "name": user.name});
        self.http
            .post(format!("{}/internal/rooms/{room}/messages", self.url))
            .header("x-telepath-internal", &self.internal_token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A bus node subscribed to `channel`, to watch what the api publishes.
    pub(crate) async fn watch(&self, channel: &str) -> (impl Bus, Inbound) {
        let (bus, rx) = self.broker.connect(1024);
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
        let resp = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&json!({"username": name, "role": "admin"}))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        TestUser {
            id: body["user"]["id"].as_str().unwrap().to_owned(),
            name: name.to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }
}

/// Asserts the JSON error shape and code of a failed response.
pub(crate) async fn assert_error(resp: Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string());
}
