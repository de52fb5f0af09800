//! The deployment topology as plain processes, started through
//! `deploy/local/run.sh` exactly as a user starts it: redis-server, the api,
//! presence, three gateways and HAProxy (HTTP and TLS; Prometheus too when
//! installed), with the test's binaries and a state directory of its own.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::SECRET;

/// A running `deploy/local/run.sh`; stopped (SIGTERM, then SIGKILL of its
/// whole process group) on drop.
pub(crate) struct LocalTopology {
    child: Child,
    /// `topology.env`: every URL and pid run.sh started.
    pub(crate) env: HashMap<String, String>,
    pub(crate) dir: tempfile::TempDir,
}

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl LocalTopology {
    /// Starts run.sh with `extra` environment and waits until it is ready.
    pub(crate) fn start(extra: &[(&str, &str)]) -> LocalTopology {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_telepath"))
            .parent()
            .unwrap()
            .to_path_buf();
        let lb_port = telepath_shared::testing::free_port().to_string();
        let lb_tls_port = telepath_shared::testing::free_port().to_string();
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("deploy/local/run.sh"))
            .env("TELEPATH_BIN_DIR", &bin_dir)
            .env("TELEPATH_LB_PORT", &lb_port)
            .env("TELEPATH_LB_TLS_PORT", &lb_tls_port)
            .env("TELEPATH_LOCAL_DIR", dir.path())
            .env("TELEPATH_JWT_SECRET", SECRET)
            .env("TELEPATH_LOCAL_MAX_SECS", "300")
            .env("TELEPATH_LOCAL_WATCH_PID", std::process::id().to_string())
            .env("TELEPATH_LOCAL_SCRAPE", "1s")
            .env("RUST_LOG", "warn")
            // The tests log in and create rooms from one address, fast.
            .env("TELEPATH_IP_LOGIN_RATE_PER_S", "0")
            .env("TELEPATH_IP_ROOM_RATE_PER_S", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group, so a failed test can kill everything it started.
            .process_group(0);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("bash runs deploy/local/run.sh");
        let mut topology = LocalTopology {
            child,
            env: HashMap::new(),
            dir,
        };
        let file = topology.dir.path().join("topology.env");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && text.contains("READY=1")
            {
                topology.env = text
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                return topology;
            }
            if let Ok(Some(status)) = topology.child.try_wait() {
                // The state directory goes with the test: show the logs now.
                for (name, text) in topology.logs() {
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    eprintln!("--- {name}:");
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
                panic!("deploy/local/run.sh exited with {status} before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "deploy/local/run.sh was not ready within 90 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The load balancer's base URL.
    pub(crate) fn url(&self) -> &str {
        &self.env["TELEPATH_URL"]
    }

    /// Gateway `i` (1-based): its base URL and pid.
    pub(crate) fn gateway(&self, i: usize) -> (String, u32) {
        (
            self.env[&format!("GATEWAY_{i}_URL")].clone(),
            self.env[&format!("GATEWAY_{i}_PID")].parse().unwrap(),
        )
    }

    /// Every pid run.sh reported.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.env
            .iter()
            .filter(|(k, _)| k.ends_with("_PID"))
            .map(|(_, v)| v.parse().unwrap())
            .collect()
    }

    /// SIGTERMs run.sh and waits for it to stop everything (at most `within`).
    pub(crate) fn stop(&mut self, within: Duration) -> bool {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Every log line a process of the topology wrote, by file name.
    pub(crate) fn logs(&self) -> Vec<(String, String)> {
        let dir = self.dir.path().join("logs");
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            logs.push((name, std::fs::read_to_string(&path).unwrap_or_default()));
        }
        logs
    }
}

impl Drop for LocalTopology {
    fn drop(&mut self) {
        if !self.stop(Duration::from_secs(20)) {
            eprintln!("run.sh did not stop in time; killing its process group");
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Sends SIG`name` to `pid`.
pub(crate) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Whether `pid` is still running (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Fails with a clear message when a deployment tool is missing.
pub(crate) fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: run ./scripts/test.sh, which installs it"
    );
}
