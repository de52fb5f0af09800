//! Typed configuration, one struct per service, read once from the
//! environment names of PROTOCOL.md. Tests build the structs directly and
//! never touch the process environment; a bad value fails start-up with one
//! line naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::derive_internal_token;

/// Why configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("starting the tokio runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The secret the all-in-one binary uses when `TELEPATH_JWT_SECRET` is unset.
/// Fine on a laptop; every real deployment sets its own.
pub const DEV_JWT_SECRET: &str = "telepath-dev-secret-change-me";

/// A source of configuration values by name (the environment, or a map in tests).
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn parse<T: std::str::FromStr>(
    src: &dyn Source,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match src.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: format!("{v:?}: {e}"),
        }),
    }
}

fn flag(src: &dyn Source, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match src.get(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::Invalid {
            name,
            reason: format!("{v:?} is not a boolean (use 1 or 0)"),
        }),
    }
}

/// The tokio runtime of a service binary: `TELEPATH_WORKER_THREADS` worker
/// threads (default: one per CPU). Fewer threads than cores suit a machine
/// several processes share: each wake-up of a connection's writer then
/// finds every frame fanned out to it since, and writes them in one go.
pub fn runtime() -> Result<tokio::runtime::Runtime, ConfigError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = Env.get("TELEPATH_WORKER_THREADS") {
        let n: usize = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(ConfigError::Invalid {
                name: "TELEPATH_WORKER_THREADS",
                reason: format!("{n:?} is not a positive number"),
            })?;
        builder.worker_threads(n);
    }
    Ok(builder.enable_all().build()?)
}

/// Settings every service shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// `TELEPATH_LISTEN`: address to bind (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `TELEPATH_NODE_ID`: this process's name in metrics, logs and `welcome` (default: random).
    pub node_id: String,
    /// `REDIS_URL`: Redis for the bus and presence; unset means in-memory (all-in-one only).
    pub redis_url: Option<String>,
    /// `TELEPATH_JWT_SECRET`: HS256 secret for user tokens.
    pub jwt_secret: String,
    /// `TELEPATH_INTERNAL_TOKEN`: service-to-service secret (default: derived from the JWT secret).
    pub internal_token: String,
    /// `TELEPATH_DRAIN_SECS`: after SIGTERM, the process exits within this
    /// long, seconds (default 10): gateways close every connection with
    /// `bye` restart and 1012, the api commits what its writer holds.
    pub drain: Duration,
}

impl Common {
    /// Reads the shared settings; without `TELEPATH_JWT_SECRET` it fails unless
    /// `dev_default` allows the development secret.
    pub fn from_source(src: &dyn Source, dev_default: bool) -> Result<Self, ConfigError> {
        let jwt_secret = match src.get("TELEPATH_JWT_SECRET") {
            Some(s) => s,
            None if dev_default => DEV_JWT_SECRET.to_owned(),
            None => return Err(ConfigError::Missing("TELEPATH_JWT_SECRET")),
        };
        let internal_token = src
            .get("TELEPATH_INTERNAL_TOKEN")
            .unwrap_or_else(|| derive_internal_token(&jwt_secret));
        let node_id = src
            .get("TELEPATH_NODE_ID")
            .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        if node_id.len() > 64
            || !node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::Invalid {
                name: "TELEPATH_NODE_ID",
                reason: "use up to 64 of [A-Za-z0-9-_.]".into(),
            });
        }
        Ok(Common {
            listen: parse(
                src,
                "TELEPATH_LISTEN",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            node_id,
            redis_url: src.get("REDIS_URL"),
            jwt_secret,
            internal_token,
            drain: Duration::from_secs(parse(src, "TELEPATH_DRAIN_SECS", 10)?),
        })
    }

    /// Settings for tests: loopback port 0, the given secret, no Redis.
    pub fn for_tests(secret: &str) -> Self {
        Common {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_id: format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
            redis_url: None,
            jwt_secret: secret.to_owned(),
            internal_token: derive_internal_token(secret),
            drain: Duration::from_secs(5),
        }
    }
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub common: Common,
    /// `TELEPATH_API_URL`: base URL of the api (default `http://127.0.0.1:8081`).
    pub api_url: String,
    /// `TELEPATH_PRESENCE_URL`: base URL of presence (default `http://127.0.0.1:8082`).
    pub presence_url: String,
    /// `TELEPATH_HEARTBEAT_MS`: presence heartbeat and WebSocket ping interval, ms (default 15000).
    pub heartbeat_ms: u64,
    /// `TELEPATH_MAX_FRAME_BYTES`: largest accepted client message, bytes (default 65536).
    pub max_frame_bytes: usize,
    /// `TELEPATH_MAX_BODY_BYTES`: largest message body, bytes (default 16384).
    pub max_body_bytes: usize,
    /// `TELEPATH_OUTBOUND_QUEUE`: frames queued per connection before it is closed as a slow consumer (default 1024).
    pub outbound_queue: usize,
    /// `TELEPATH_MAX_ROOMS_PER_CONN`: rooms one connection may join (default 100).
    pub max_rooms_per_conn: usize,
    /// `TELEPATH_MAX_RATE_PER_S`: frames per second per connection (default 50).
    pub max_rate_per_s: u32,
    /// `TELEPATH_AWAY_AFTER_MS`: a connection with no client frames for this
    /// long counts as idle; a user whose connections are all idle is `away`
    /// unless they chose a status (default 300000).
    pub away_after_ms: u64,
    /// `TELEPATH_REPLAY_CAP`: most messages a `join` with `since` replays (default 1000).
    pub replay_cap: i64,
    /// `TELEPATH_WRITE_DELAY_MS`: the shortest gap between two writes to one
    /// connection (default 0, at most 1000). A text frame that comes sooner
    /// after the connection's last write waits for the rest of the gap, and
    /// the frames arriving meanwhile share its write: fewer system calls and
    /// packets for a busy connection, for up to this much added latency; a
    /// frame after a quiet spell goes out at once.
    pub write_delay_ms: u64,
}

impl GatewayConfig {
    /// Reads the gateway settings from `src`.
    pub fn from_source(src: &dyn Source, common: Common) -> Result<Self, ConfigError> {
        let heartbeat_ms: u64 = parse(src, "TELEPATH_HEARTBEAT_MS", 15_000)?;
        if !(100..=600_000).contains(&heartbeat_ms) {
            return Err(ConfigError::Invalid {
                name: "TELEPATH_HEARTBEAT_MS",
                reason: "must be 100..=600000".into(),
            });
        }
        let write_delay_ms: u64 = parse(src, "TELEPATH_WRITE_DELAY_MS", 0)?;
        if write_delay_ms > 1000 {
            return Err(ConfigError::Invalid {
                name: "TELEPATH_WRITE_DELAY_MS",
                reason: "must be 0..=1000".into(),
            });
        }
        Ok(GatewayConfig {
            common,
            api_url: src
                .get("TELEPATH_API_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8081".into()),
            presence_url: src
                .get("TELEPATH_PRESENCE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8082".into()),
            heartbeat_ms,
            max_frame_bytes: parse(src, "TELEPATH_MAX_FRAME_BYTES", 65_536)?,
            max_body_bytes: parse(src, "TELEPATH_MAX_BODY_BYTES", 16_384)?,
            outbound_queue: parse(src, "TELEPATH_OUTBOUND_QUEUE", 1024)?,
            max_rooms_per_conn: parse(src, "TELEPATH_MAX_ROOMS_PER_CONN", 100)?,
            max_rate_per_s: parse(src, "TELEPATH_MAX_RATE_PER_S", 50)?,
            away_after_ms: parse(src, "TELEPATH_AWAY_AFTER_MS", 300_000)?,
            replay_cap: parse(src, "TELEPATH_REPLAY_CAP", 1000)?,
            write_delay_ms,
        })
    }

    /// Test settings: the api and presence at the given URLs.
    pub fn for_tests(common: Common, api_url: &str, presence_url: &str) -> Self {
        let empty = |_: &str| None;
        let mut cfg = Self::from_source(&empty, common).expect("defaults are valid");
        cfg.api_url = api_url.to_owned();
        cfg.presence_url = presence_url.to_owned();
        cfg
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// The shortest gap between two writes to one connection.
    pub fn write_delay(&self) -> Duration {
        Duration::from_millis(self.write_delay_ms)
    }
}

/// Api settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub common: Common,
    /// `DATABASE_URL`: SQLite database (default `sqlite://telepath.db`).
    pub database_url: String,
    /// `TELEPATH_DEV_LOGIN`: enable `POST /auth/login` (default off; on in the all-in-one).
    pub dev_login: bool,
    /// `TELEPATH_MAX_REQUEST_BYTES`: largest REST request body, bytes (default 65536).
    pub max_request_bytes: usize,
    /// `TELEPATH_MAX_BODY_BYTES`: largest message body, bytes (default 16384).
    pub max_body_bytes: usize,
    /// `TELEPATH_TOKEN_TTL_SECS`: lifetime of dev-login tokens, seconds (default 86400).
    pub token_ttl_secs: i64,
    /// `TELEPATH_PRESENCE_URL`: base URL of presence, for online flags and analytics (default `http://127.0.0.1:8082`).
    pub presence_url: String,
    /// `TELEPATH_COMMIT_BATCH`: most room messages per group-commit transaction (default 256; 1 turns group commit off).
    pub commit_batch: usize,
    /// `TELEPATH_OFFLINE_QUEUE_MAX`: DMs that may wait for one recipient's ack
    /// (default 1000); a DM beyond it is refused (`rate_limited`), never dropped after being acked.
    pub offline_queue_max: i64,
    /// `TELEPATH_OFFLINE_TTL`: how long a DM waits in the offline queue, e.g. `7d` (default 7 days).
    pub offline_ttl: Duration,
}

impl ApiConfig {
    /// Reads the api settings from `src`; `dev_login_default` is the default of `TELEPATH_DEV_LOGIN`.
    pub fn from_source(
        src: &dyn Source,
        common: Common,
        dev_login_default: bool,
    ) -> Result<Self, ConfigError> {
        Ok(ApiConfig {
            common,
            database_url: src
                .get("DATABASE_URL")
                .unwrap_or_else(|| "sqlite://telepath.db".into()),
            dev_login: flag(src, "TELEPATH_DEV_LOGIN", dev_login_default)?,
            max_request_bytes: parse(src, "TELEPATH_MAX_REQUEST_BYTES", 65_536)?,
            max_body_bytes: parse(src, "TELEPATH_MAX_BODY_BYTES", 16_384)?,
            token_ttl_secs: parse(src, "TELEPATH_TOKEN_TTL_SECS", 86_400)?,
            presence_url: src
                .get("TELEPATH_PRESENCE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8082".into()),
            commit_batch: parse(src, "TELEPATH_COMMIT_BATCH", 256)?,
            offline_queue_max: parse(src, "TELEPATH_OFFLINE_QUEUE_MAX", 1000)?,
            offline_ttl: match src.get("TELEPATH_OFFLINE_TTL") {
                None => Duration::from_secs(7 * 86_400),
                Some(v) => {
                    humantime::parse_duration(v.trim()).map_err(|e| ConfigError::Invalid {
                        name: "TELEPATH_OFFLINE_TTL",
                        reason: format!("{v:?}: {e}"),
                    })?
                }
            },
        })
    }

    /// Test settings: SQLite at `database_url`, dev login on.
    pub fn for_tests(common: Common, database_url: &str) -> Self {
        let empty = |_: &str| None;
        let mut cfg = Self::from_source(&empty, common, true).expect("defaults are valid");
        cfg.database_url = database_url.to_owned();
        cfg
    }
}

/// Presence settings.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    pub common: Common,
    /// `TELEPATH_HEARTBEAT_MS`: gateways' heartbeat interval, ms (default 15000);
    /// a connection whose heartbeats stopped is expired within two intervals.
    pub heartbeat_ms: u64,
    /// `TELEPATH_PRESENCE_GRACE_MS`: how long after a user's last connection
    /// closes before they are announced offline, ms (default 3000); a
    /// reconnect within it announces nothing.
    pub grace_ms: u64,
    /// `TELEPATH_TYPING_TTL_MS`: a typing indicator not refreshed for this
    /// long is announced `active:false`, ms (default 6000).
    pub typing_ttl_ms: u64,
}

impl PresenceConfig {
    /// Reads the presence settings from `src`.
    pub fn from_source(src: &dyn Source, common: Common) -> Result<Self, ConfigError> {
        Ok(PresenceConfig {
            common,
            heartbeat_ms: parse(src, "TELEPATH_HEARTBEAT_MS", 15_000)?,
            grace_ms: parse(src, "TELEPATH_PRESENCE_GRACE_MS", 3_000)?,
            typing_ttl_ms: parse(src, "TELEPATH_TYPING_TTL_MS", 6_000)?,
        })
    }

    /// Test settings.
    pub fn for_tests(common: Common) -> Self {
        PresenceConfig {
            common,
            heartbeat_ms: 15_000,
            grace_ms: 3_000,
            typing_ttl_ms: 6_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn src(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let s = src(&[("TELEPATH_JWT_SECRET", "x")]);
        let common = Common::from_source(&s, false).unwrap();
        assert_eq!(common.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(common.internal_token, derive_internal_token("x"));
        let api = ApiConfig::from_source(&s, common.clone(), false).unwrap();
        assert_eq!(api.database_url, "sqlite://telepath.db");
        assert!(!api.dev_login);
        let gw = GatewayConfig::from_source(&s, common).unwrap();
        assert_eq!(gw.heartbeat_ms, 15_000);
        assert_eq!(gw.write_delay_ms, 0, "writes are not delayed unless asked");
    }

    #[test]
    fn the_write_delay_is_bounded() {
        let common = Common::for_tests("x");
        let ok = src(&[("TELEPATH_WRITE_DELAY_MS", "1000")]);
        let gw = GatewayConfig::from_source(&ok, common.clone()).unwrap();
        assert_eq!(gw.write_delay(), Duration::from_secs(1));
        for bad in ["1001", "-1", "soon"] {
            let pairs = [("TELEPATH_WRITE_DELAY_MS", bad)];
            let s = src(&pairs);
            let err = GatewayConfig::from_source(&s, common.clone())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("TELEPATH_WRITE_DELAY_MS"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_missing_secret_fails_outside_the_all_in_one() {
        let s = src(&[]);
        assert!(matches!(
            Common::from_source(&s, false),
            Err(ConfigError::Missing("TELEPATH_JWT_SECRET"))
        ));
        assert_eq!(
            Common::from_source(&s, true).unwrap().jwt_secret,
            DEV_JWT_SECRET
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let s = src(&[("TELEPATH_JWT_SECRET", "x"), ("TELEPATH_LISTEN", "nope")]);
        let err = Common::from_source(&s, false).unwrap_err().to_string();
        assert!(err.starts_with("TELEPATH_LISTEN"), "{err}");
        let s = src(&[("TELEPATH_DEV_LOGIN", "maybe")]);
        let err = ApiConfig::from_source(&s, Common::for_tests("x"), false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("TELEPATH_DEV_LOGIN"), "{err}");
        let s = src(&[("TELEPATH_NODE_ID", "bad id*")]);
        assert!(Common::from_source(&s, true).is_err());
    }

    #[test]
    fn an_explicit_internal_token_wins() {
        let s = src(&[
            ("TELEPATH_JWT_SECRET", "x"),
            ("TELEPATH_INTERNAL_TOKEN", "tok"),
        ]);
        assert_eq!(
            Common::from_source(&s, false).unwrap().internal_token,
            "tok"
        );
    }
}
