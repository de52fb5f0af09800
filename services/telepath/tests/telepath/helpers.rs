//! Spawning nodes for tests: the all-in-one in process on port 0, and the
//! split services as real processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Client;
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
    let mut config = telepath::Config::for_tests(SECRET, &db);
    config.common.drain_secs = 3;
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = telepath::build(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(telepath::run(listener, None, node, shutdown.clone()));
    TestNode {
        url: format!("http://{addr}"),
        http: Client::new(),
        shutdown,
        task: Some(task),
        _dir: dir,
    }
}

pub(crate) use telepath_shared::testing::{
    TestUser, create_room, eventually, get_json, get_text, login, login_as,
};

/// Where the service binaries are: this build's, or another build's named
/// by `TELEPATH_TEST_BIN_DIR` (to see a test fail against an older build).
pub(crate) fn bin_dir() -> PathBuf {
    std::env::var_os("TELEPATH_TEST_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_BIN_EXE_telepath"))
                .parent()
                .unwrap()
                .to_path_buf()
        })
}

/// A service process killed on drop.
pub(crate) struct Service {
    pub(crate) url: String,
    /// Its internal listener (`TELEPATH_INTERNAL_LISTEN`, on a free port).
    pub(crate) internal_url: String,
    child: Child,
}

impl Service {
    /// Starts binary `name` with `env`, on a free port, and waits for `/readyz`.
    pub(crate) async fn start(name: &str, env: &[(&str, String)]) -> Service {
        Self::start_logging_to(name, env, Stdio::inherit()).await
    }

    /// [`Service::start`], with the process's stderr (its log) going to `log`.
    ///
    /// A process that exits before it is ready (its port was taken between
    /// the draw and its bind) is started again on other ports, up to three
    /// times.
    pub(crate) async fn start_logging_to(
        name: &str,
        env: &[(&str, String)],
        log: Stdio,
    ) -> Service {
        let path = bin_dir().join(name);
        assert!(
            path.exists(),
            "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
            path.display()
        );
        let mut log = Some(log);
        let http = Client::new();
        for _attempt in 0..3 {
            let port = telepath_shared::testing::free_port();
            let internal_port = telepath_shared::testing::free_port();
            let mut cmd = Command::new(&path);
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("TELEPATH_LISTEN", format!("127.0.0.1:{port}"))
                .env(
                    "TELEPATH_INTERNAL_LISTEN",
                    format!("127.0.0.1:{internal_port}"),
                )
                .env("TELEPATH_JWT_SECRET", SECRET)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.take().unwrap_or_else(Stdio::inherit));
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut service = Service {
                url: format!("http://127.0.0.1:{port}"),
                internal_url: format!("http://127.0.0.1:{internal_port}"),
                child: cmd.spawn().unwrap(),
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let ready = http
                    .get(format!("{}/readyz", service.url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ready {
                    return service;
                }
                if let Ok(Some(status)) = service.child.try_wait() {
                    eprintln!("{name} exited before it was ready ({status}); starting it again");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {name} to become ready"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("{name} exited before it was ready three times")
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
