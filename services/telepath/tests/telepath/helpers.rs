//! Spawning nodes for tests: the all-in-one in process on port 0, and the
//! split services as real processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &str = "telepath-test-secret";

/// A running all-in-one node.
pub(crate) struct TestNode {
    pub(crate) url: String,
    pub(crate) http: Client,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts an all-in-one node; `tweak` adjusts its configuration first.
pub(crate) async fn spawn_node(tweak: impl FnOnce(&mut telepath::Config)) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("telepath.db").display());
    let map = move |name: &str| match name {
        "TELEPATH_JWT_SECRET" => Some(SECRET.to_owned()),
        "DATABASE_URL" => Some(db.clone()),
        "TELEPATH_LISTEN" => Some("127.0.0.1:0".to_owned()),
        _ => None,
    };
    let mut config = telepath::Config::from_source(&map).unwrap();
    config.gateway.common.drain = Duration::from_secs(3);
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = telepath::build(config, addr).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(telepath::run(listener, node, shutdown.clone()));
    TestNode {
        url: format!("http://{addr}"),
        http: Client::new(),
        shutdown,
        task: Some(task),
        _dir: dir,
    }
}

/// A user logged in through dev login.
#[derive(Clone)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) token: String,
}

pub(crate) async fn login(http: &Client, base: &str, name: &str) -> User {
    login_as(http, base, name, "user").await
}

/// Dev login with a role (`user` or `admin`).
pub(crate) async fn login_as(http: &Client, base: &str, name: &str, role: &str) -> User {
    let body: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": name, "role": role}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    User {
        id: body["user"]["id"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

/// Creates a public room; returns its id.
pub(crate) async fn create_room(http: &Client, base: &str, user: &User, name: &str) -> String {
    let resp = http
        .post(format!("{base}/rooms"))
        .bearer_auth(&user.token)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let room: Value = resp.json().await.unwrap();
    room["id"].as_str().unwrap().to_owned()
}

/// `GET url` with `req` adding auth; the JSON body (panics on a transport error).
pub(crate) async fn get_json(
    http: &Client,
    url: &str,
    req: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Value {
    req(http.get(url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET url` as text (a `/metrics` page).
pub(crate) async fn get_text(http: &Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Waits until `cond` holds, polling every 50 ms, or panics after `within`.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory holding the workspace's binaries (next to `telepath`).
fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_telepath"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A service process killed on drop.
pub(crate) struct Service {
    pub(crate) url: String,
    child: Child,
}

impl Service {
    /// Starts binary `name` with `env`, on a free port, and waits for `/healthz`.
    pub(crate) async fn start(name: &str, env: &[(&str, String)]) -> Service {
        let port = telepath_shared::testing::free_port();
        let path = bin_dir().join(name);
        assert!(
            path.exists(),
            "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
            path.display()
        );
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TELEPATH_LISTEN", format!("127.0.0.1:{port}"))
            .env("TELEPATH_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let service = Service {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let http = Client::new();
        eventually(
            Duration::from_secs(20),
            &format!("{name} to become ready"),
            || {
                let url = format!("{}/readyz", service.url);
                let http = http.clone();
                async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await;
        service
    }
}

impl Service {
    /// SIGKILL: the process dies without any goodbye.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the process shuts down gracefully; waits for it to exit.
    pub(crate) fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
