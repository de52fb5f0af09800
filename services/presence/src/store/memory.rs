//! In-memory presence store: one process's view, for the all-in-one binary
//! and tests.
//!
//! All state sits behind one `std::sync::Mutex`; every method takes it for a
//! short, non-async section and never across an `.await`. It is not shared
//! between processes, so it is only right when there is one presence replica.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use telepath_shared::protocol::{ConnReport, HeartbeatReport, OnlineUser, UserRef};

use super::{Error, PresenceStore, Summary, Tally, expiry_ms};

/// Presence in this process's memory.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// A connection counts as online while its last heartbeat is younger than this.
    expiry_ms: i64,
}

#[derive(Debug, Default)]
struct Inner {
    /// conn id -> connection.
    conns: HashMap<String, Conn>,
    /// user id -> ids of that user's connections.
    users: HashMap<String, HashSet<String>>,
    /// user id -> latest heartbeat or connect, ms (kept after the user goes offline).
    last_seen: HashMap<String, i64>,
}

#[derive(Debug)]
struct Conn {
    user_id: String,
    name: String,
    node: String,
    last_ms: i64,
}

impl MemoryStore {
    /// An empty store for gateways heartbeating every `heartbeat_ms`.
    pub fn new(heartbeat_ms: u64) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            expiry_ms: expiry_ms(heartbeat_ms),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still
        // consistent enough for presence, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn register(&mut self, report: &ConnReport, now_ms: i64) {
        let user_id = &report.user.id;
        let previous = self.conns.insert(
            report.conn_id.clone(),
            Conn {
                user_id: user_id.clone(),
                name: report.user.name.clone(),
                node: report.node.clone(),
                last_ms: now_ms,
            },
        );
        // A conn id reported under another user moves to that user.
        if let Some(old) = previous.filter(|old| &old.user_id != user_id) {
            self.unlink(&old.user_id, &report.conn_id);
        }
        let conns = self.users.entry(user_id.clone()).or_default();
        conns.insert(report.conn_id.clone());
        let seen = self.last_seen.entry(user_id.clone()).or_default();
        *seen = (*seen).max(now_ms);
    }

    fn remove(&mut self, conn_id: &str) -> bool {
        match self.conns.remove(conn_id) {
            Some(conn) => {
                self.unlink(&conn.user_id, conn_id);
                true
            }
            None => false,
        }
    }

    /// Every connection heard from at or after `live_from`.
    fn live(&self, live_from: i64) -> Summary {
        let mut tally = Tally::default();
        for conn in self.conns.values().filter(|c| c.last_ms >= live_from) {
            tally.add(&conn.user_id, &conn.name, &conn.node, conn.last_ms);
        }
        tally.finish()
    }

    fn unlink(&mut self, user_id: &str, conn_id: &str) {
        if let Some(conns) = self.users.get_mut(user_id) {
            conns.remove(conn_id);
            if conns.is_empty() {
                self.users.remove(user_id);
            }
        }
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn connect(&self, conn: &ConnReport, now_ms: i64) -> Result<(), Error> {
        self.lock().register(conn, now_ms);
        Ok(())
    }

    async fn disconnect(&self, conn_id: &str, _user_id: &str) -> Result<(), Error> {
        self.lock().remove(conn_id);
        Ok(())
    }

    async fn heartbeat(&self, report: &HeartbeatReport, now_ms: i64) -> Result<(), Error> {
        let mut inner = self.lock();
        for conn in &report.conns {
            inner.register(conn, now_ms);
        }
        Ok(())
    }

    async fn online(&self, now_ms: i64) -> Result<Vec<OnlineUser>, Error> {
        Ok(self.summary(now_ms).await?.users)
    }

    async fn connections(&self, user_id: &str, now_ms: i64) -> Result<Vec<ConnReport>, Error> {
        let live_from = now_ms.saturating_sub(self.expiry_ms);
        let inner = self.lock();
        let Some(ids) = inner.users.get(user_id) else {
            return Ok(Vec::new());
        };
        let live = ids.iter().filter_map(|id| {
            let conn = inner.conns.get(id).filter(|c| c.last_ms >= live_from)?;
            Some(ConnReport {
                conn_id: id.clone(),
                user: UserRef {
                    id: conn.user_id.clone(),
                    name: conn.name.clone(),
                },
                node: conn.node.clone(),
            })
        });
        Ok(live.collect())
    }

    async fn summary(&self, now_ms: i64) -> Result<Summary, Error> {
        Ok(self.lock().live(now_ms.saturating_sub(self.expiry_ms)))
    }

    async fn sweep(&self, expire_before_ms: i64) -> Result<Vec<String>, Error> {
        let mut inner = self.lock();
        let expired: Vec<String> = inner
            .conns
            .iter()
            .filter(|(_, c)| c.last_ms < expire_before_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            inner.remove(id);
        }
        Ok(expired)
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: u64 = 1_000;

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

    fn heartbeat(conns: &[ConnReport]) -> HeartbeatReport {
        HeartbeatReport {
            node: "n1".into(),
            conns: conns.to_vec(),
        }
    }

    async fn counts(store: &MemoryStore, now_ms: i64) -> Vec<(String, u64)> {
        let mut users: Vec<_> = store
            .online(now_ms)
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.name, u.connections))
            .collect();
        users.sort();
        users
    }

    #[tokio::test]
    async fn two_devices_of_one_user_count_as_two_connections() {
        let store = MemoryStore::new(HB);
        store.connect(&conn("c1", "ada"), 10).await.unwrap();
        store.connect(&conn("c2", "ada"), 20).await.unwrap();
        store.connect(&conn("c3", "bob"), 30).await.unwrap();
        assert_eq!(
            counts(&store, 30).await,
            [("ada".into(), 2), ("bob".into(), 1)]
        );
    }

    #[tokio::test]
    async fn disconnecting_the_last_connection_takes_the_user_offline() {
        let store = MemoryStore::new(HB);
        store.connect(&conn("c1", "ada"), 10).await.unwrap();
        store.connect(&conn("c2", "ada"), 10).await.unwrap();
        store.disconnect("c1", "id-ada").await.unwrap();
        assert_eq!(counts(&store, 10).await, [("ada".into(), 1)]);
        store.disconnect("c2", "id-ada").await.unwrap();
        store.disconnect("unknown", "id-ada").await.unwrap();
        assert!(counts(&store, 10).await.is_empty());
    }

    #[tokio::test]
    async fn a_heartbeat_registers_connections_the_store_does_not_know() {
        let store = MemoryStore::new(HB);
        store
            .heartbeat(&heartbeat(&[conn("c1", "ada"), conn("c2", "bob")]), 50)
            .await
            .unwrap();
        assert_eq!(
            counts(&store, 50).await,
            [("ada".into(), 1), ("bob".into(), 1)]
        );
    }

    #[tokio::test]
    async fn last_seen_is_the_latest_heartbeat_of_any_connection() {
        let store = MemoryStore::new(HB);
        store.connect(&conn("c1", "ada"), 1_000).await.unwrap();
        store.connect(&conn("c2", "ada"), 2_000).await.unwrap();
        store
            .heartbeat(&heartbeat(&[conn("c1", "ada")]), 3_000)
            .await
            .unwrap();
        let users = store.online(3_000).await.unwrap();
        assert_eq!(users[0].last_seen.timestamp_millis(), 3_000);
    }

    #[tokio::test]
    async fn sweep_expires_only_connections_older_than_the_cutoff() {
        let store = MemoryStore::new(HB);
        store.connect(&conn("old", "ada"), 1_000).await.unwrap();
        store.connect(&conn("fresh", "bob"), 2_500).await.unwrap();
        assert_eq!(store.sweep(2_000).await.unwrap(), ["old"]);
        assert!(store.sweep(2_000).await.unwrap().is_empty());
        assert_eq!(counts(&store, 2_500).await, [("bob".into(), 1)]);
    }

    #[tokio::test]
    async fn a_stale_connection_is_not_listed_even_before_the_sweep() {
        let store = MemoryStore::new(HB);
        store.connect(&conn("c1", "ada"), 1_000).await.unwrap();
        assert_eq!(counts(&store, 3_000).await, [("ada".into(), 1)]);
        assert!(counts(&store, 3_001).await.is_empty());
    }

    #[tokio::test]
    async fn a_conn_id_reported_for_another_user_moves_to_that_user() {
        let store = MemoryStore::new(HB);
        store.connect(&conn("c1", "ada"), 10).await.unwrap();
        store.connect(&conn("c1", "bob"), 20).await.unwrap();
        assert_eq!(counts(&store, 20).await, [("bob".into(), 1)]);
    }

    #[tokio::test]
    async fn connections_lists_a_users_live_connections_with_their_nodes() {
        let store = MemoryStore::new(HB);
        let (phone, laptop) = (conn_on("c1", "ada", "n1"), conn_on("c2", "ada", "n2"));
        store.connect(&phone, 1_000).await.unwrap();
        store.connect(&laptop, 3_000).await.unwrap();
        store.connect(&conn("c3", "bob"), 3_000).await.unwrap();
        let mut both = store.connections("id-ada", 3_000).await.unwrap();
        both.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
        assert_eq!(both, [phone, laptop.clone()]);
        // At 3_001 the phone's last heartbeat is more than two intervals old.
        assert_eq!(store.connections("id-ada", 3_001).await.unwrap(), [laptop]);
        assert!(store.connections("nobody", 3_000).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn summary_counts_live_connections_per_user_and_per_node() {
        let store = MemoryStore::new(HB);
        store
            .connect(&conn_on("c1", "ada", "n1"), 3_000)
            .await
            .unwrap();
        store
            .connect(&conn_on("c2", "ada", "n2"), 3_000)
            .await
            .unwrap();
        store
            .connect(&conn_on("c3", "bob", "n1"), 3_000)
            .await
            .unwrap();
        store
            .connect(&conn_on("c4", "eve", "n3"), 500)
            .await
            .unwrap();
        let summary = store.summary(3_000).await.unwrap();
        let by_node: Vec<_> = summary.by_node.into_iter().collect();
        assert_eq!(by_node, [("n1".into(), 2), ("n2".into(), 1)]);
        let mut users: Vec<_> = summary
            .users
            .into_iter()
            .map(|u| (u.name, u.connections))
            .collect();
        users.sort();
        assert_eq!(users, [("ada".into(), 2), ("bob".into(), 1)]);
    }
}
