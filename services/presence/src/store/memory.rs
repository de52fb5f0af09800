//! In-memory presence store: one process's view, for the all-in-one binary
//! and tests. It implements the state machine described in `store.rs`
//! (`memory/machine.rs`) with the same semantics as the Redis store's script
//! (`redis/presence.lua`); `store/conformance.rs` runs the same tests
//! against both.
//!
//! All state sits behind one `std::sync::Mutex`; every method takes it for a
//! short, non-async section and never across an `.await`. It is not shared
//! between processes, so it is only right when there is one presence replica.

mod machine;

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use telepath_shared::protocol::{
    AdmitConn, ConnReport, HeartbeatReport, OnlineUser, PresenceReport,
};

use super::{Error, Interrupted, PresenceStore, Summary, Swept, Timing};
use crate::change::Change;
use machine::{Inner, Op};

/// Presence in this process's memory.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    timing: Timing,
}

impl MemoryStore {
    /// An empty store applying `timing`.
    pub fn new(timing: Timing) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            timing,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still
        // consistent enough for presence, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` as one operation at `now_ms` under the lock; returns its changes.
    fn op(&self, now_ms: i64, f: impl FnOnce(&mut Op<'_>)) -> Vec<Change> {
        Op::run(&mut self.lock(), self.timing, now_ms, f)
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn apply(
        &self,
        reports: &[PresenceReport],
        now_ms: i64,
    ) -> Result<Vec<Change>, Interrupted> {
        Ok(self.op(now_ms, |op| reports.iter().for_each(|r| op.report(r))))
    }

    async fn heartbeat(
        &self,
        report: &HeartbeatReport,
        now_ms: i64,
    ) -> Result<Vec<Change>, Interrupted> {
        Ok(self.op(now_ms, |op| op.heartbeat(report)))
    }

    async fn sweep(&self, now_ms: i64) -> Result<Swept, Interrupted> {
        let mut expired = Vec::new();
        let changes = self.op(now_ms, |op| expired = op.sweep());
        Ok(Swept { expired, changes })
    }

    async fn online(&self, now_ms: i64) -> Result<Vec<OnlineUser>, Error> {
        Ok(self.summary(now_ms).await?.users)
    }

    async fn connections(&self, user_id: &str, now_ms: i64) -> Result<Vec<ConnReport>, Error> {
        let live_from = now_ms.saturating_sub(self.timing.expiry_ms);
        Ok(self.lock().connections(user_id, live_from))
    }

    async fn summary(&self, now_ms: i64) -> Result<Summary, Error> {
        let live_from = now_ms.saturating_sub(self.timing.expiry_ms);
        Ok(self.lock().live(live_from))
    }

    async fn admit(&self, conns: &[AdmitConn], max: u32, now_ms: i64) -> Result<Vec<bool>, Error> {
        let since = now_ms.saturating_sub(self.timing.expiry_ms);
        let mut inner = self.lock();
        Ok(conns
            .iter()
            .map(|c| inner.admit(&c.conn_id, &c.user_id, max, since, now_ms))
            .collect())
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    fn store() -> MemoryStore {
        MemoryStore::new(conformance::timing())
    }

    conformance::suite!(((), store()));

    #[tokio::test]
    async fn the_sweep_forgets_admissions_that_never_registered() {
        let store = store();
        let ask = AdmitConn {
            conn_id: "c1".into(),
            user_id: "u1".into(),
        };
        let t = conformance::T;
        assert_eq!(store.admit(&[ask], 2, t).await.unwrap(), [true]);
        store.sweep(t + 1).await.unwrap();
        assert_eq!(store.lock().admissions(), 1, "still within the expiry");
        store.sweep(t + store.timing.expiry_ms + 1).await.unwrap();
        assert_eq!(store.lock().admissions(), 0);
    }
}
