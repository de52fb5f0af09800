//! Test helpers shared by every crate's tests (feature `testing`): a
//! throwaway `redis-server` on a free loopback port that tests can stop,
//! pause and restart, a TCP proxy that puts network faults in front of it
//! ([`proxy::Proxy`]), a WebSocket client speaking the protocol ([`WsClient`]), and
//! REST helpers ([`login`], [`create_room`], [`internal_send`],
//! [`eventually`]). A helper two crates' tests need lives here, not in
//! both.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process owned by a test; killed on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A free TCP port on 127.0.0.1 for a process a test starts.
///
/// Drawn at random from 20000..32000, below the kernel's ephemeral range
/// (32768..60999 by default), and checked by binding it: a port the kernel
/// handed out with `bind(0)` is an ephemeral one, which the many outgoing
/// connections of concurrent tests may take as their local port before the
/// service binds it ("Address already in use"). Outside that range only
/// another test's pick can collide, and the draw makes that unlikely.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let draw = uuid::Uuid::new_v4().as_u128();
        let port = 20_000 + (draw % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000 on 127.0.0.1")
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn spawn(&mut self) {
        let bin =
            std::env::var("TELEPATH_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let log: PathBuf = self.dir.path().join("redis.log");
        let child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL, no save).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is
    /// answered, as with a stalled host. [`RedisServer::resume`] undoes it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([which, &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {which} failed");
        }
    }

    /// Runs one command with redis-cli-free raw RESP and returns the reply line(s).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn ping(&self) -> bool {
        self.command(&["PING"])
            .is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Number of subscribers of `channel` (PUBSUB NUMSUB).
    pub fn numsub(&self, channel: &str) -> i64 {
        let reply = self
            .command(&["PUBSUB", "NUMSUB", channel])
            .unwrap_or_default();
        // *2\r\n$len\r\nchannel\r\n:N\r\n
        reply
            .lines()
            .find_map(|l| l.strip_prefix(':'))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(-1)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub mod proxy;
mod rest;
mod ws;
pub mod wsraw;
pub use rest::{
    TestUser, create_room, eventually, get_json, get_text, internal_send, login, login_as, metric,
};
pub use ws::{WsClient, WsError};
