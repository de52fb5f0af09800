//! The presence store: which connections are alive, whose they are and when
//! each last sent a heartbeat.
//!
//! [`PresenceStore`] is the one boundary; [`memory::MemoryStore`] backs the
//! all-in-one binary and fast tests, [`redis::RedisStore`] is shared by every
//! presence replica of a cluster. A store keeps facts and answers queries; it
//! does not decide when to sweep (see `sweeper.rs`) and does no HTTP.

pub mod memory;
pub mod redis;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{ConnReport, HeartbeatReport, OnlineUser, Status};

/// Why a store operation failed. Clients only ever see `unavailable`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    /// No pooled Redis connection could be had.
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    /// Redis did not answer within the store's time bound.
    #[error("redis did not answer in time")]
    Timeout,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        tracing::warn!(error = %e, "presence store failed");
        ApiError::unavailable("presence store unavailable")
    }
}

/// Where presence lives. Times are milliseconds since the Unix epoch.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Registers (or re-registers) one connection with `now_ms` as its last heartbeat.
    async fn connect(&self, conn: &ConnReport, now_ms: i64) -> Result<(), Error>;
    /// Forgets one connection at once; unknown ids are not an error.
    async fn disconnect(&self, conn_id: &str, user_id: &str) -> Result<(), Error>;
    /// Sets every listed connection's last heartbeat to `now_ms`, registering those it does not know.
    async fn heartbeat(&self, report: &HeartbeatReport, now_ms: i64) -> Result<(), Error>;
    /// Users with at least one connection not yet expired at `now_ms`, in any order.
    async fn online(&self, now_ms: i64) -> Result<Vec<OnlineUser>, Error>;
    /// The connections of `user_id` not yet expired at `now_ms`, in any order; none if unknown.
    async fn connections(&self, user_id: &str, now_ms: i64) -> Result<Vec<ConnReport>, Error>;
    /// Every connection not yet expired at `now_ms`, counted per user and per node alike.
    async fn summary(&self, now_ms: i64) -> Result<Summary, Error>;
    /// Removes connections whose last heartbeat is before `expire_before_ms` and returns their
    /// ids; when several replicas sweep at once, each expired id is returned by exactly one.
    async fn sweep(&self, expire_before_ms: i64) -> Result<Vec<String>, Error>;
    /// Succeeds when the store answers.
    async fn ping(&self) -> Result<(), Error>;
}

/// Everything live at one instant, as [`PresenceStore::summary`] returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Users with a live connection, in any order; their counts add up to the nodes' counts.
    pub users: Vec<OnlineUser>,
    /// Node -> live connections on it; nodes without any are absent.
    pub by_node: BTreeMap<String, u64>,
}

/// Builds a [`Summary`] one live connection at a time; both stores count
/// through it so users and nodes always agree.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    users: HashMap<String, OnlineUser>,
    by_node: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts one live connection of `user_id` on `node`, last heard from at `last_ms`.
    pub(crate) fn add(&mut self, user_id: &str, name: &str, node: &str, last_ms: i64) {
        let seen = to_utc(last_ms);
        match self.users.get_mut(user_id) {
            Some(user) => {
                user.connections += 1;
                user.last_seen = user.last_seen.max(seen);
            }
            None => {
                let user = OnlineUser {
                    id: user_id.to_owned(),
                    name: name.to_owned(),
                    status: Status::Online,
                    text: None,
                    last_seen: seen,
                    connections: 1,
                };
                self.users.insert(user_id.to_owned(), user);
            }
        }
        *self.by_node.entry(node.to_owned()).or_default() += 1;
    }

    pub(crate) fn finish(self) -> Summary {
        Summary {
            users: self.users.into_values().collect(),
            by_node: self.by_node,
        }
    }
}

/// How long a connection lives without a heartbeat: two heartbeat intervals.
pub fn expiry_ms(heartbeat_ms: u64) -> i64 {
    i64::try_from(heartbeat_ms.saturating_mul(2)).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch as a UTC time (the epoch itself if out of range).
pub(crate) fn to_utc(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
