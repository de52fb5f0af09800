//! Redis presence store, shared by every presence replica.
//!
//! Keys (times are milliseconds since the Unix epoch; "key TTL" is three
//! heartbeat intervals plus the grace period, refreshed by heartbeats):
//!
//! - `presence:conns` — ZSET, conn id -> last heartbeat. The source of truth
//!   for "alive"; the sweeper walks it by score and removes what expired.
//! - `presence:conn:{conn_id}` — HASH {user_id, name, node, idle ("1"/"0")},
//!   key TTL.
//! - `presence:connrooms:{conn_id}` — SET of the room ids the connection
//!   joined (at most [`MAX_ROOMS_PER_CONN`]), key TTL.
//! - `presence:user:{user_id}` — SET of the user's conn ids, key TTL.
//! - `presence:room:{room_id}` — SET of the *conn ids* joined to the room
//!   (a user is online in a room when any of their connections is in it),
//!   key TTL refreshed by joins and heartbeats; members leave on leave,
//!   disconnect and expiry.
//! - `presence:status:{user_id}` — HASH {name, chosen?, text?, chosen_at?,
//!   eff, etext, ended?, rooms?}: the user's latest status choice (the
//!   chosen status and its text, both absent after an `online` choice, and
//!   `chosen_at`, when a gateway received that choice, ms: a choice is
//!   taken only when strictly newer); the effective status and text last
//!   announced (`eff`, `etext`); and while pending offline the end of the
//!   last connection and the rooms its `offline` goes to (as
//!   `presence:seenrooms` below, plus the last connection's). Key TTL;
//!   deleted when the user goes offline (so the choice and its time do not
//!   outlive the session).
//! - `presence:seenrooms:{user_id}` — SET of every room any connection of
//!   the user joined (by a join report or a heartbeat) since the user came
//!   online; a leave (report or heartbeat) removes a room once none of the
//!   user's connections is in it. The user's `offline` goes to
//!   all of them, so a room that saw the user online hears of the offline
//!   even when the connection that joined it closed first. Same TTL handling
//!   as the status hash (key TTL, key TTL + grace while pending offline);
//!   deleted when the user goes offline.
//! - `presence:admitted:{user_id}` — ZSET, conn id -> when a gateway
//!   admitted it (`shared/src/bus/admit.lua`), until its connect registers
//!   it; entries older than the expiry are dropped by the next admission,
//!   and the key expires twice the expiry after the last one.
//! - `presence:pending` — ZSET, user id -> end of grace: users whose last
//!   connection closed. Swept; PEXPIRE key TTL + grace on every add.
//! - `presence:typing` — ZSET, `{room_id}|{user_id}` -> expiry, and
//!   `presence:typing:info` — HASH, same member -> JSON `[conn_id, name]`
//!   (who reported it, for leave/disconnect, and the name for the expiry
//!   event). Swept; PEXPIRE typing TTL + key TTL on every write.
//!
//! Every write is one run of `presence.lua` (loaded once, then EVALSHA), so
//! each transition is observed by exactly one replica: the script that
//! removes a user's last connection is the only one to see "became empty",
//! and whoever claims a pending user with ZREM announces its offline. The
//! script derives key names from ids instead of declaring KEYS, so this
//! store needs a single Redis (not Cluster). Batches are cut into chunks so
//! no script blocks Redis for long (a heartbeat's keep each user's
//! connections together, so a user settles once per heartbeat); every round
//! trip is bounded by [`OP_TIMEOUT`]. A heartbeat reads each listed
//! connection's owner, idle flag and rooms to compare them with the listed
//! ones, and each user's choice time once, and writes only liveness unless
//! something differs, so a heartbeat of unchanged connections stays cheap.

mod codec;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{Cmd, Pipeline, cmd, pipe};
use deadpool_redis::{Connection, Pool};
use telepath_shared::protocol::{
    AdmitConn, ConnReport, HeartbeatReport, LiveConn, OnlineUser, PresenceReport, UserRef,
};

use super::{Error, Interrupted, MAX_ROOMS_PER_CONN, PresenceStore, Summary, Swept, Tally, Timing};
use crate::change::{Change, parse_status};

/// Upper bound on one Redis round trip (including waiting for a pooled connection).
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Reports applied per script run.
const REPORT_BATCH: usize = 500;
/// Heartbeat connections applied per script run (at most).
const HEARTBEAT_BATCH: usize = 500;
/// Connections, pending users and typing indicators expired per sweep script run.
const SWEEP_BATCH: usize = 1_000;
/// Connection hashes (or status hashes) read per pipeline by the queries.
const READ_BATCH: usize = 1_000;

const CONNS_KEY: &str = "presence:conns";
const SCRIPT: &str = include_str!("redis/presence.lua");

/// `user_id`, `name` and `node` of one connection hash; all `None` once it is gone.
type ConnFields = (Option<String>, Option<String>, Option<String>);

fn conn_key(conn_id: &str) -> String {
    format!("presence:conn:{conn_id}")
}

fn user_key(user_id: &str) -> String {
    format!("presence:user:{user_id}")
}

fn status_key(user_id: &str) -> String {
    format!("presence:status:{user_id}")
}

/// Adds the read of one connection's [`ConnFields`] to `p`.
fn read_fields(p: &mut Pipeline, conn_id: &str) {
    p.cmd("HMGET")
        .arg(conn_key(conn_id))
        .arg("user_id")
        .arg("name")
        .arg("node");
}

/// `conns` cut into chunks of at most `batch`, one script run each, with
/// each user's connections in one chunk (unless they alone exceed `batch`):
/// a script run settles the users it changed, so a user split over two runs
/// could be announced twice for one heartbeat (say away, then online).
/// Users keep the order of their first connection in `conns`.
fn heartbeat_chunks(conns: &[LiveConn], batch: usize) -> Vec<Vec<&LiveConn>> {
    let mut by_user: Vec<Vec<&LiveConn>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for conn in conns {
        let i = *index.entry(&conn.user.id).or_insert_with(|| {
            by_user.push(Vec::new());
            by_user.len() - 1
        });
        by_user[i].push(conn);
    }
    let mut chunks = Vec::new();
    let mut chunk: Vec<&LiveConn> = Vec::new();
    for group in by_user {
        if !chunk.is_empty() && chunk.len() + group.len() > batch {
            chunks.push(std::mem::take(&mut chunk));
        }
        for conn in group {
            if chunk.len() == batch {
                chunks.push(std::mem::take(&mut chunk));
            }
            chunk.push(conn);
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Presence in Redis.
pub struct RedisStore {
    pool: Pool,
    timing: Timing,
    /// SHA1 of [`SCRIPT`] once loaded; loaded again after NOSCRIPT (Redis restarted).
    sha: Mutex<Option<String>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// Awaits `op`, failing with [`Error::Timeout`] after [`OP_TIMEOUT`].
async fn timed<T, E: Into<Error>>(op: impl Future<Output = Result<T, E>>) -> Result<T, Error> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(Error::Timeout),
    }
}

impl RedisStore {
    /// A store on `pool` applying `timing`.
    pub fn new(pool: Pool, timing: Timing) -> Self {
        RedisStore {
            pool,
            timing,
            sha: Mutex::new(None),
        }
    }

    async fn conn(&self) -> Result<Connection, Error> {
        timed(self.pool.get()).await
    }

    fn cached_sha(&self) -> Option<String> {
        self.sha.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One run of the script: `op` with `payload` at `now_ms`.
    async fn script(
        &self,
        c: &mut Connection,
        op: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<codec::Reply, Error> {
        let t = self.timing;
        let evalsha = |sha: &str| {
            let mut command: Cmd = cmd("EVALSHA");
            command.arg(sha).arg(0).arg(op).arg(now_ms).arg(t.expiry_ms);
            command
                .arg(t.grace_ms)
                .arg(t.typing_ttl_ms)
                .arg(t.key_ttl_ms);
            command.arg(payload).arg(MAX_ROOMS_PER_CONN);
            command
        };
        if let Some(sha) = self.cached_sha() {
            match timed(evalsha(&sha).query_async(c)).await {
                Err(Error::Redis(e)) if e.code() == Some("NOSCRIPT") => {}
                other => return codec::decode(other?),
            }
        }
        // First use, or Redis lost its script cache (restart, SCRIPT FLUSH).
        let sha: String = timed(cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query_async(c)).await?;
        *self.sha.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha.clone());
        codec::decode(timed(evalsha(&sha).query_async(c)).await?)
    }

    /// Runs `payloads` one script call each, keeping the changes of the ones
    /// done when a later one fails.
    async fn chunks(
        &self,
        op: &str,
        payloads: impl Iterator<Item = String>,
        now_ms: i64,
    ) -> Result<Vec<Change>, Interrupted> {
        let mut c = self.conn().await?;
        let mut changes = Vec::new();
        for payload in payloads {
            match self.script(&mut c, op, &payload, now_ms).await {
                Ok(reply) => changes.extend(reply.changes),
                Err(error) => return Err(Interrupted { changes, error }),
            }
        }
        Ok(changes)
    }

    /// Reads the fields of each conn id's hash, in one pipeline.
    async fn fields(&self, c: &mut Connection, ids: &[String]) -> Result<Vec<ConnFields>, Error> {
        let mut p = pipe();
        for id in ids {
            read_fields(&mut p, id);
        }
        timed(p.query_async(c)).await
    }

    /// Reads the fields and the last heartbeat of each conn id, in one pipeline.
    async fn fields_and_scores(
        &self,
        c: &mut Connection,
        ids: &[String],
    ) -> Result<Vec<(ConnFields, Option<f64>)>, Error> {
        let mut p = pipe();
        for id in ids {
            read_fields(&mut p, id);
            p.cmd("ZSCORE").arg(CONNS_KEY).arg(id);
        }
        // The replies come back flat (array, score, array, score...); redis-rs
        // pairs them two by two because a three-field HMGET reply never looks
        // like a pair itself.
        timed(p.query_async(c)).await
    }

    /// The announced status and text of each user, read [`READ_BATCH`] at a time.
    async fn statuses(
        &self,
        c: &mut Connection,
        user_ids: &[String],
    ) -> Result<Vec<(Option<String>, Option<String>)>, Error> {
        let mut all = Vec::with_capacity(user_ids.len());
        for batch in user_ids.chunks(READ_BATCH) {
            let mut p = pipe();
            for id in batch {
                p.cmd("HMGET").arg(status_key(id)).arg("eff").arg("etext");
            }
            let rows: Vec<(Option<String>, Option<String>)> = timed(p.query_async(c)).await?;
            all.extend(rows);
        }
        Ok(all)
    }
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn apply(
        &self,
        reports: &[PresenceReport],
        now_ms: i64,
    ) -> Result<Vec<Change>, Interrupted> {
        let payloads = reports.chunks(REPORT_BATCH).map(codec::encode_reports);
        self.chunks("reports", payloads, now_ms).await
    }

    async fn heartbeat(
        &self,
        report: &HeartbeatReport,
        now_ms: i64,
    ) -> Result<Vec<Change>, Interrupted> {
        let chunks = heartbeat_chunks(&report.conns, HEARTBEAT_BATCH);
        let payloads = chunks.iter().map(|chunk| codec::encode_heartbeat(chunk));
        self.chunks("heartbeat", payloads, now_ms).await
    }

    async fn sweep(&self, now_ms: i64) -> Result<Swept, Interrupted> {
        let mut c = self.conn().await?;
        let mut swept = Swept::default();
        let batch = SWEEP_BATCH.to_string();
        loop {
            let reply = match self.script(&mut c, "sweep", &batch, now_ms).await {
                Ok(reply) => reply,
                Err(error) => {
                    let changes = swept.changes;
                    return Err(Interrupted { changes, error });
                }
            };
            swept.changes.extend(reply.changes);
            swept.expired.extend(reply.expired);
            if !reply.more {
                return Ok(swept);
            }
        }
    }

    async fn online(&self, now_ms: i64) -> Result<Vec<OnlineUser>, Error> {
        Ok(self.summary(now_ms).await?.users)
    }

    async fn connections(&self, user_id: &str, now_ms: i64) -> Result<Vec<ConnReport>, Error> {
        let mut c = self.conn().await?;
        let live_from = now_ms.saturating_sub(self.timing.expiry_ms);
        let ids: Vec<String> =
            timed(cmd("SMEMBERS").arg(user_key(user_id)).query_async(&mut c)).await?;
        let mut live = Vec::new();
        for batch in ids.chunks(READ_BATCH) {
            let rows = self.fields_and_scores(&mut c, batch).await?;
            for (id, (fields, score)) in batch.iter().zip(rows) {
                // Skipped: a conn swept or expired (no hash or no score), one
                // stale at `now_ms`, and one now owned by another user.
                let ((Some(owner), Some(name), Some(node)), Some(score)) = (fields, score) else {
                    continue;
                };
                if owner != user_id || (score as i64) < live_from {
                    continue;
                }
                live.push(ConnReport {
                    conn_id: id.clone(),
                    user: UserRef { id: owner, name },
                    node,
                });
            }
        }
        Ok(live)
    }

    async fn summary(&self, now_ms: i64) -> Result<Summary, Error> {
        let mut c = self.conn().await?;
        let live_from = now_ms.saturating_sub(self.timing.expiry_ms);
        let scored: Vec<(String, f64)> = timed(
            cmd("ZRANGEBYSCORE")
                .arg(CONNS_KEY)
                .arg(live_from)
                .arg("+inf")
                .arg("WITHSCORES")
                .query_async(&mut c),
        )
        .await?;
        let mut tally = Tally::default();
        for batch in scored.chunks(READ_BATCH) {
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            let fields = self.fields(&mut c, &ids).await?;
            for ((_, score), fields) in batch.iter().zip(fields) {
                // A conn whose hash vanished (expired, or swept mid-read) is skipped.
                let (Some(user_id), Some(name), Some(node)) = fields else {
                    continue;
                };
                tally.add(&user_id, &name, &node, *score as i64);
            }
        }
        let user_ids = tally.user_ids();
        let statuses = self.statuses(&mut c, &user_ids).await?;
        let by_user: HashMap<String, _> = user_ids.into_iter().zip(statuses).collect();
        Ok(tally.finish(|id| {
            let (eff, text) = by_user.get(id)?;
            Some((
                parse_status(eff.as_deref()?)?,
                text.clone().filter(|t| !t.is_empty()),
            ))
        }))
    }

    async fn admit(&self, conns: &[AdmitConn], max: u32, now_ms: i64) -> Result<Vec<bool>, Error> {
        // The script gateways run too (one definition of the count).
        let admitted = telepath_shared::bus::admit::admit(
            &self.pool,
            conns,
            max,
            now_ms,
            self.timing.expiry_ms,
        );
        let answers = timed(admitted).await?;
        Ok(answers.into_iter().map(|(admitted, _)| admitted).collect())
    }

    async fn ping(&self) -> Result<(), Error> {
        let mut c = self.conn().await?;
        let _: String = timed(cmd("PING").query_async(&mut c)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
