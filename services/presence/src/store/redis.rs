//! Redis presence store, shared by every presence replica.
//!
//! Keys (times are milliseconds since the Unix epoch):
//!
//! - `presence:conns` — ZSET, conn id -> last heartbeat. The source of truth
//!   for "alive"; the sweeper walks it by score.
//! - `presence:conn:{conn_id}` — HASH {user_id, name, node}, PEXPIRE 3 x
//!   heartbeat so a connection nobody sweeps still disappears.
//! - `presence:user:{user_id}` — SET of that user's conn ids, PEXPIRE 3 x
//!   heartbeat refreshed on every heartbeat.
//! - `presence:lastseen` — HASH user id -> latest heartbeat or connect; one
//!   field per user ever seen, kept when the user goes offline.
//!
//! Reads: `online` and `summary` walk `presence:conns` from the expiry cutoff
//! and read the conn hashes [`READ_BATCH`] at a time; `connections` starts
//! from one user's set and checks each member's hash owner and score.
//!
//! Writes that touch several keys go in one MULTI/EXEC pipeline; the sweep is
//! one Lua script per batch, so the check "still expired?" and the removal
//! are atomic and replicas sweeping together never remove a connection that
//! a heartbeat just refreshed, nor report the same one twice. Every round
//! trip is bounded by [`OP_TIMEOUT`]. A conn id re-reported under another
//! user is not unlinked from the old user's set; that set expires by itself.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{Pipeline, cmd, pipe};
use deadpool_redis::{Connection, Pool};
use telepath_shared::protocol::{ConnReport, HeartbeatReport, OnlineUser, UserRef};

use super::{Error, PresenceStore, Summary, Tally, expiry_ms};

/// Upper bound on one Redis round trip (including waiting for a pooled connection).
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections written per MULTI, so a large heartbeat never blocks Redis for long.
const WRITE_BATCH: usize = 500;
/// Connection hashes read per pipeline when listing who is online or one user's connections.
const READ_BATCH: usize = 1_000;
/// Connections expired per sweep script run.
const SWEEP_BATCH: usize = 1_000;

const CONNS_KEY: &str = "presence:conns";
const LAST_SEEN_KEY: &str = "presence:lastseen";

/// `user_id`, `name` and `node` of one connection hash; all `None` once it is gone.
type ConnFields = (Option<String>, Option<String>, Option<String>);

fn conn_key(conn_id: &str) -> String {
    format!("presence:conn:{conn_id}")
}

fn user_key(user_id: &str) -> String {
    format!("presence:user:{user_id}")
}

/// Adds the read of one connection's [`ConnFields`] to `p`.
fn read_fields(p: &mut Pipeline, conn_id: &str) {
    p.cmd("HMGET")
        .arg(conn_key(conn_id))
        .arg("user_id")
        .arg("name")
        .arg("node");
}

/// Removes up to ARGV[2] connections scored before ARGV[1] (exclusive) and
/// returns their ids. Key names mirror [`conn_key`] and [`user_key`].
const SWEEP_SCRIPT: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local conn = 'presence:conn:' .. id
  local user = redis.call('HGET', conn, 'user_id')
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', conn)
  if user then redis.call('SREM', 'presence:user:' .. user, id) end
end
return ids
";

/// Presence in Redis.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    /// A connection counts as online while its last heartbeat is younger than this.
    expiry_ms: i64,
    /// TTL of the per-connection and per-user keys, ms.
    key_ttl_ms: i64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("expiry_ms", &self.expiry_ms)
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
    /// A store on `pool` for gateways heartbeating every `heartbeat_ms`.
    pub fn new(pool: Pool, heartbeat_ms: u64) -> Self {
        let hb = i64::try_from(heartbeat_ms).unwrap_or(i64::MAX / 3);
        RedisStore {
            pool,
            expiry_ms: expiry_ms(heartbeat_ms),
            key_ttl_ms: hb.saturating_mul(3).max(1),
        }
    }

    async fn conn(&self) -> Result<Connection, Error> {
        timed(self.pool.get()).await
    }

    async fn run(&self, conn: &mut Connection, pipeline: &Pipeline) -> Result<(), Error> {
        timed(pipeline.query_async::<()>(conn)).await
    }

    /// One MULTI registering `conns` with heartbeat `now_ms`.
    fn register(&self, conns: &[ConnReport], now_ms: i64) -> Pipeline {
        let mut p = pipe();
        p.atomic();
        p.cmd("ZADD").arg(CONNS_KEY);
        for c in conns {
            p.arg(now_ms).arg(&c.conn_id);
        }
        p.ignore();
        let mut by_user: HashMap<&str, Vec<&str>> = HashMap::new();
        for c in conns {
            let key = conn_key(&c.conn_id);
            p.cmd("HSET")
                .arg(&key)
                .arg("user_id")
                .arg(&c.user.id)
                .arg("name")
                .arg(&c.user.name)
                .arg("node")
                .arg(&c.node)
                .ignore();
            p.cmd("PEXPIRE").arg(&key).arg(self.key_ttl_ms).ignore();
            by_user.entry(&c.user.id).or_default().push(&c.conn_id);
        }
        for (user_id, ids) in by_user {
            let key = user_key(user_id);
            p.cmd("SADD").arg(&key).arg(ids).ignore();
            p.cmd("PEXPIRE").arg(&key).arg(self.key_ttl_ms).ignore();
            p.cmd("HSET")
                .arg(LAST_SEEN_KEY)
                .arg(user_id)
                .arg(now_ms)
                .ignore();
        }
        p
    }

    /// Reads the fields of each conn id's hash, in one pipeline.
    async fn fields(
        &self,
        conn: &mut Connection,
        ids: &[String],
    ) -> Result<Vec<ConnFields>, Error> {
        let mut p = pipe();
        for id in ids {
            read_fields(&mut p, id);
        }
        timed(p.query_async(conn)).await
    }

    /// Reads the fields and the last heartbeat of each conn id, in one pipeline.
    async fn fields_and_scores(
        &self,
        conn: &mut Connection,
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
        timed(p.query_async(conn)).await
    }
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn connect(&self, conn: &ConnReport, now_ms: i64) -> Result<(), Error> {
        let mut c = self.conn().await?;
        let pipeline = self.register(std::slice::from_ref(conn), now_ms);
        self.run(&mut c, &pipeline).await
    }

    async fn disconnect(&self, conn_id: &str, user_id: &str) -> Result<(), Error> {
        let mut c = self.conn().await?;
        let mut p = pipe();
        p.atomic()
            .cmd("ZREM")
            .arg(CONNS_KEY)
            .arg(conn_id)
            .ignore()
            .cmd("DEL")
            .arg(conn_key(conn_id))
            .ignore()
            .cmd("SREM")
            .arg(user_key(user_id))
            .arg(conn_id)
            .ignore();
        self.run(&mut c, &p).await
    }

    async fn heartbeat(&self, report: &HeartbeatReport, now_ms: i64) -> Result<(), Error> {
        let mut c = self.conn().await?;
        for chunk in report.conns.chunks(WRITE_BATCH) {
            let pipeline = self.register(chunk, now_ms);
            self.run(&mut c, &pipeline).await?;
        }
        Ok(())
    }

    async fn online(&self, now_ms: i64) -> Result<Vec<OnlineUser>, Error> {
        Ok(self.summary(now_ms).await?.users)
    }

    async fn connections(&self, user_id: &str, now_ms: i64) -> Result<Vec<ConnReport>, Error> {
        let mut c = self.conn().await?;
        let live_from = now_ms.saturating_sub(self.expiry_ms);
        let ids: Vec<String> =
            timed(cmd("SMEMBERS").arg(user_key(user_id)).query_async(&mut c)).await?;
        let mut live = Vec::new();
        for batch in ids.chunks(READ_BATCH) {
            let rows = self.fields_and_scores(&mut c, batch).await?;
            for (id, (fields, score)) in batch.iter().zip(rows) {
                // Skipped: a conn swept or expired (no hash or no score), one
                // stale at `now_ms`, and one re-reported under another user,
                // which this user's set still lists until it expires.
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
        let live_from = now_ms.saturating_sub(self.expiry_ms);
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
        Ok(tally.finish())
    }

    async fn sweep(&self, expire_before_ms: i64) -> Result<Vec<String>, Error> {
        let mut c = self.conn().await?;
        let mut expired = Vec::new();
        loop {
            let batch: Vec<String> = timed(
                cmd("EVAL")
                    .arg(SWEEP_SCRIPT)
                    .arg(1)
                    .arg(CONNS_KEY)
                    .arg(expire_before_ms)
                    .arg(SWEEP_BATCH)
                    .query_async(&mut c),
            )
            .await?;
            let done = batch.len() < SWEEP_BATCH;
            expired.extend(batch);
            if done {
                return Ok(expired);
            }
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        let mut c = self.conn().await?;
        let _: String = timed(cmd("PING").query_async(&mut c)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telepath_shared::testing::RedisServer;

    const HB: u64 = 1_000;

    fn store(redis: &RedisServer) -> RedisStore {
        let pool = telepath_shared::bus::redis::pool(&redis.url()).unwrap();
        RedisStore::new(pool, HB)
    }

    fn conn(conn_id: &str, user: &str) -> ConnReport {
        conn_on(conn_id, user, "n1")
    }

    fn conn_on(conn_id: &str, user: &str, node: &str) -> ConnReport {
        ConnReport {
            conn_id: conn_id.into(),
            user: UserRef {
                id: format!("id-{user}"),
                name: user.into(),
            },
            node: node.into(),
        }
    }

    #[tokio::test]
    async fn connections_are_grouped_by_user_with_their_latest_heartbeat() {
        let redis = RedisServer::start();
        let s = store(&redis);
        s.connect(&conn("c1", "ada"), 1_000).await.unwrap();
        s.connect(&conn("c2", "ada"), 2_000).await.unwrap();
        let users = s.online(2_000).await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].connections, 2);
        assert_eq!(users[0].last_seen.timestamp_millis(), 2_000);
        s.disconnect("c2", "id-ada").await.unwrap();
        assert_eq!(s.online(2_000).await.unwrap()[0].connections, 1);
        assert_eq!(
            redis.command(&["SCARD", "presence:user:id-ada"]).unwrap(),
            ":1\r\n"
        );
    }

    #[tokio::test]
    async fn a_large_heartbeat_registers_every_connection() {
        let redis = RedisServer::start();
        let s = store(&redis);
        let conns: Vec<_> = (0..1_203)
            .map(|i| conn(&format!("c{i}"), &format!("u{}", i % 7)))
            .collect();
        let report = HeartbeatReport {
            node: "n1".into(),
            conns,
        };
        s.heartbeat(&report, 5_000).await.unwrap();
        let users = s.online(5_000).await.unwrap();
        assert_eq!(users.len(), 7);
        assert_eq!(users.iter().map(|u| u.connections).sum::<u64>(), 1_203);
    }

    #[tokio::test]
    async fn two_replicas_sweeping_together_expire_each_connection_once() {
        let redis = RedisServer::start();
        let (a, b) = (store(&redis), store(&redis));
        for i in 0..2_500 {
            a.connect(&conn(&format!("old{i}"), "ada"), 1_000)
                .await
                .unwrap();
        }
        a.connect(&conn("fresh", "bob"), 3_000).await.unwrap();
        let (x, y) = tokio::join!(a.sweep(2_000), b.sweep(2_000));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.len() + y.len(), 2_500);
        assert!(x.iter().all(|id| !y.contains(id)));
        let users = a.online(3_000).await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].name, "bob");
        assert_eq!(
            redis.command(&["EXISTS", "presence:conn:old0"]).unwrap(),
            ":0\r\n"
        );
        assert_eq!(
            redis
                .command(&["HGET", "presence:lastseen", "id-ada"])
                .unwrap(),
            "$4\r\n1000\r\n"
        );
    }

    #[tokio::test]
    async fn connections_skip_stale_connections_and_ones_moved_to_another_user() {
        let redis = RedisServer::start();
        let s = store(&redis);
        s.connect(&conn_on("c1", "ada", "n1"), 1_000).await.unwrap();
        let laptop = conn_on("c2", "ada", "n2");
        s.connect(&laptop, 3_000).await.unwrap();
        s.connect(&conn("c3", "ada"), 3_000).await.unwrap();
        // c3 moves to bob; ada's set still lists it until the set expires.
        let moved = conn("c3", "bob");
        s.connect(&moved, 3_000).await.unwrap();
        assert_eq!(s.connections("id-ada", 3_001).await.unwrap(), [laptop]);
        assert_eq!(s.connections("id-bob", 3_001).await.unwrap(), [moved]);
        assert!(s.connections("nobody", 3_001).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn connections_read_a_user_with_more_than_one_batch() {
        let redis = RedisServer::start();
        let s = store(&redis);
        let conns: Vec<_> = (0..READ_BATCH + 3)
            .map(|i| conn_on(&format!("c{i}"), "ada", &format!("n{}", i % 2)))
            .collect();
        let report = HeartbeatReport {
            node: "n0".into(),
            conns: conns.clone(),
        };
        s.heartbeat(&report, 5_000).await.unwrap();
        let mut listed = s.connections("id-ada", 5_000).await.unwrap();
        listed.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
        let mut expected = conns;
        expected.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
        assert_eq!(listed, expected);
    }

    #[tokio::test]
    async fn summary_counts_live_connections_per_node_across_batches() {
        let redis = RedisServer::start();
        let s = store(&redis);
        let conns: Vec<_> = (0..1_203)
            .map(|i| {
                conn_on(
                    &format!("c{i}"),
                    &format!("u{}", i % 7),
                    &format!("n{}", i % 3),
                )
            })
            .collect();
        let report = HeartbeatReport {
            node: "n0".into(),
            conns,
        };
        s.heartbeat(&report, 5_000).await.unwrap();
        s.connect(&conn_on("stale", "eve", "n9"), 1_000)
            .await
            .unwrap();
        let summary = s.summary(5_000).await.unwrap();
        let by_node: Vec<_> = summary.by_node.into_iter().collect();
        assert_eq!(
            by_node,
            [("n0".into(), 401), ("n1".into(), 401), ("n2".into(), 401)]
        );
        assert_eq!(summary.users.len(), 7);
        assert_eq!(
            summary.users.iter().map(|u| u.connections).sum::<u64>(),
            1_203
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_within_the_bound() {
        let mut redis = RedisServer::start();
        let s = store(&redis);
        redis.stop();
        let started = std::time::Instant::now();
        assert!(s.ping().await.is_err());
        assert!(started.elapsed() < OP_TIMEOUT * 3);
    }
}
