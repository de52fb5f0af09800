//! The presence store: which connections are alive, whose they are, which
//! rooms they joined, whether they are idle, each user's latest status
//! choice (with its time) and announced status, users pending offline, and
//! typing indicators.
//!
//! [`PresenceStore`] is the one boundary; [`memory::MemoryStore`] backs the
//! all-in-one binary and fast tests, [`redis::RedisStore`] is shared by every
//! presence replica of a cluster. Both implement the same state machine:
//!
//! - effective status: the user's chosen status if any, else `away` when all
//!   their live connections are idle, else `online`;
//! - choices are ordered by the time a gateway received them (`at_ms`): the
//!   store keeps the user's latest choice and its time, and takes a choice
//!   (from a `Status` report or a heartbeat) only when it is strictly newer,
//!   so a late report or a gateway repeating an old choice changes nothing.
//!   An `online` choice clears the chosen status but its time is kept. A
//!   choice for a user with no connection who is not pending offline is
//!   ignored;
//! - the store remembers the status it last *announced* per user and returns
//!   a [`Change`] whenever the effective status (or its text) differs from
//!   it, to exactly one caller; the change carries the user's choice record
//!   (`None` if they made none this session, and for `offline`);
//! - a heartbeat lists each live connection of a node with its whole state
//!   (rooms, idle flag, the user's latest choice), and the store converges
//!   to it: an unknown connection is registered, a known one joins the
//!   listed rooms it is not in and leaves the ones not listed (as Join and
//!   Leave reports would, typing and seen rooms included) and takes the
//!   listed idle flag, and a newer choice is taken. Each user whose state
//!   changed settles once, so a report lost on the way is repaired by the
//!   next heartbeat, and a store that lost everything is rebuilt by one.
//!   Connections of the node that a heartbeat does not list are left to
//!   expire;
//! - the last connection's disconnect makes the user pending offline until
//!   `now + grace`; a connection within the grace cancels it silently, else
//!   the sweep announces `offline` once; the last connection's expiry
//!   announces `offline` at once. Going offline forgets the choice and its
//!   time;
//! - the `offline` goes to every room any of the user's connections joined
//!   since the user came online (by join or heartbeat), not only the last
//!   connection's, less rooms the user left on every connection: whoever
//!   saw the user come online in a room hears them go offline.
//!
//! A store keeps facts and returns changes; it does not decide when to sweep
//! (see `sweeper.rs`), publishes nothing (see `events.rs`) and does no HTTP.

pub mod memory;
pub mod redis;

#[cfg(test)]
mod conformance;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use telepath_shared::config::Common;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    AdmitConn, ConnReport, HeartbeatReport, OnlineUser, PresenceReport, Status,
};

use crate::change::Change;
use crate::config::PresenceConfig;

/// Most rooms one connection is recorded in (the heartbeat schema's bound);
/// joins beyond it are ignored.
pub const MAX_ROOMS_PER_CONN: usize = 1_000;

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
    /// Redis answered something the store's script never returns.
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
}

impl From<telepath_shared::bus::BusError> for Error {
    fn from(e: telepath_shared::bus::BusError) -> Self {
        use telepath_shared::bus::BusError;
        match e {
            BusError::Redis(e) => Error::Redis(e),
            BusError::Pool(e) => Error::Pool(e),
            BusError::Closed => Error::Reply("the connection closed".into()),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        tracing::warn!(error = %e, "presence store failed");
        ApiError::unavailable("presence store unavailable")
    }
}

/// A batch operation that failed part-way: the changes it made before the
/// failure, which must still be published (no other caller will ever see
/// them), and the failure itself.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Interrupted {
    /// Changes made (and committed) before the failure, in order.
    pub changes: Vec<Change>,
    /// Why the rest was not done.
    #[source]
    pub error: Error,
}

impl From<Error> for Interrupted {
    fn from(error: Error) -> Self {
        Interrupted {
            changes: Vec::new(),
            error,
        }
    }
}

/// The time bounds a store applies, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A connection whose last heartbeat is older than this is expired: 1.5 heartbeats.
    pub expiry_ms: i64,
    /// How long a user stays pending offline after their last disconnect.
    pub grace_ms: i64,
    /// A typing indicator not refreshed for this long expires.
    pub typing_ttl_ms: i64,
    /// TTL of the Redis keys heartbeats refresh: three heartbeats plus the grace.
    pub key_ttl_ms: i64,
}

impl Timing {
    /// The bounds for gateways heartbeating every `heartbeat_ms`.
    pub fn new(heartbeat_ms: u64, grace_ms: u64, typing_ttl_ms: u64) -> Self {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX / 4).min(i64::MAX / 4);
        let (hb, grace) = (ms(heartbeat_ms).max(1), ms(grace_ms));
        Timing {
            expiry_ms: expiry_ms(heartbeat_ms),
            grace_ms: grace,
            typing_ttl_ms: ms(typing_ttl_ms).max(1),
            key_ttl_ms: hb.saturating_mul(3).saturating_add(grace),
        }
    }

    /// The bounds the settings ask for.
    pub fn from_config(common: &Common, config: &PresenceConfig) -> Self {
        Self::new(common.heartbeat_ms, config.grace_ms, config.typing_ttl_ms)
    }
}

/// What one [`PresenceStore::sweep`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swept {
    /// Connections expired, each returned to exactly one sweeping replica.
    pub expired: Vec<String>,
    /// The changes the sweep made (offline, away, typing stopped), in order.
    pub changes: Vec<Change>,
}

/// Where presence lives. Times are milliseconds since the Unix epoch.
///
/// Every change is returned to exactly one caller, however many replicas
/// share the store; reports about connections the store does not know (or
/// that belong to another user) change nothing.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Applies `reports` in order at `now_ms` and returns the changes they made, in order.
    async fn apply(
        &self,
        reports: &[PresenceReport],
        now_ms: i64,
    ) -> Result<Vec<Change>, Interrupted>;
    /// Sets each listed connection's last heartbeat to `now_ms` and converges to its
    /// listed state (registers unknown ones; joins, leaves and idle flag of known ones;
    /// a newer choice); returns the changes that made, each user settled once.
    async fn heartbeat(
        &self,
        report: &HeartbeatReport,
        now_ms: i64,
    ) -> Result<Vec<Change>, Interrupted>;
    /// Expires connections older than the expiry, announces due pending-offline users
    /// and expires typing indicators due at `now_ms`.
    async fn sweep(&self, now_ms: i64) -> Result<Swept, Interrupted>;
    /// Users with at least one connection not yet expired at `now_ms`, in any order.
    async fn online(&self, now_ms: i64) -> Result<Vec<OnlineUser>, Error>;
    /// The connections of `user_id` not yet expired at `now_ms`, in any order; none if unknown.
    async fn connections(&self, user_id: &str, now_ms: i64) -> Result<Vec<ConnReport>, Error>;
    /// Every connection not yet expired at `now_ms`, counted per user and per node alike.
    async fn summary(&self, now_ms: i64) -> Result<Summary, Error>;
    /// Admits each connection, in order, while its user has fewer than
    /// `max`: their registered connections plus those admitted within the
    /// expiry and not registered yet (registering one moves it from the
    /// second count to the first). One answer per connection.
    async fn admit(&self, conns: &[AdmitConn], max: u32, now_ms: i64) -> Result<Vec<bool>, Error>;
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

    /// The summary, each user's status and text given by `status_of` (which
    /// answers `None` for a user with nothing announced yet: `online`).
    pub(crate) fn finish(
        self,
        mut status_of: impl FnMut(&str) -> Option<(Status, Option<String>)>,
    ) -> Summary {
        let users = self.users.into_values().map(|mut user| {
            if let Some((status, text)) = status_of(&user.id) {
                (user.status, user.text) = (status, text);
            }
            user
        });
        Summary {
            users: users.collect(),
            by_node: self.by_node,
        }
    }

    /// The ids of the users counted so far.
    pub(crate) fn user_ids(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }
}

/// How long a connection lives without a heartbeat: one and a half heartbeat
/// intervals, so with a sweep every quarter interval a dead gateway's users
/// are offline within two intervals of its last heartbeat.
pub fn expiry_ms(heartbeat_ms: u64) -> i64 {
    telepath_shared::bus::admit::presence_expiry_ms(heartbeat_ms)
}

/// Milliseconds since the epoch as a UTC time (the epoch itself if out of range).
pub(crate) fn to_utc(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
