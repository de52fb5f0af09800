//! The api's side of the connect marks (`telepath_shared::bus::pending`):
//! what lets a gateway skip the offline read on the common connect.
//!
//! After committing what a connect must read (a DM or a DM change queued
//! for its recipient, an invitation) and before publishing it, the api
//! [`touch`](Marks::touch)es the users concerned; an announcement
//! [`bump`](Marks::bump)s everyone. An offline read that found nothing
//! marks its user clean ([`Marks::snapshot`] before the read,
//! [`Marks::mark_clean`] after).
//!
//! A touch or bump Redis did not take is owed: until a bump for everyone
//! succeeds (retried every second), no user is marked clean. The api also
//! owes one from its start, since it may have stopped between a commit and
//! its touch. Without Redis (the all-in-one) there are no marks: every
//! connect reads the api, as gateways without Redis do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_redis::Pool;
use telepath_shared::bus::pending::{self, Snapshot};
use tokio::sync::Notify;

/// Longest a touch or bump may hold a request.
const WITHIN: Duration = Duration::from_millis(250);
/// How often an owed bump is retried.
const RETRY: Duration = Duration::from_secs(1);

/// The connect marks; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Marks {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    pool: Pool,
    /// A bump for everyone is owed: no user is marked clean until it is made.
    owed: AtomicBool,
    wake: Notify,
}

impl Marks {
    /// The marks on `redis` (none without), owing the start's bump, which
    /// a task makes (and retries while Redis does not take it).
    pub(crate) fn spawn(redis: Option<Pool>) -> Self {
        let Some(pool) = redis else {
            return Marks::default();
        };
        let inner = Arc::new(Inner {
            pool,
            owed: AtomicBool::new(true),
            wake: Notify::new(),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if inner.owed.load(Ordering::Acquire) {
                    // Cleared before the bump: a touch failing meanwhile owes another.
                    inner.owed.store(false, Ordering::Release);
                    if !inner.bump_now().await {
                        inner.owed.store(true, Ordering::Release);
                    }
                }
                // Held at most RETRY past the marks' end: then the upgrade fails.
                let _ = tokio::time::timeout(RETRY, inner.wake.notified()).await;
            }
        });
        Marks { inner: Some(inner) }
    }

    /// `users` have something new a connect must read: their marks stop
    /// matching. After the commit, before the publish.
    pub(crate) async fn touch(&self, users: &[&str]) {
        let Some(inner) = &self.inner else { return };
        if users.is_empty() {
            return;
        }
        let touched = tokio::time::timeout(WITHIN, pending::touch(&inner.pool, users)).await;
        if !matches!(touched, Ok(Ok(()))) {
            tracing::warn!("could not touch connect marks; bumping everyone's");
            inner.owe();
        }
    }

    /// Every mark stops matching (an announcement). After the commit,
    /// before the publish.
    pub(crate) async fn bump(&self) {
        let Some(inner) = &self.inner else { return };
        if !inner.bump_now().await {
            inner.owe();
        }
    }

    /// What to mark clean with if the offline read about to be made for
    /// `user` finds nothing; none when no mark may be set now.
    pub(crate) async fn snapshot(&self, user: &str) -> Option<Snapshot> {
        let inner = self.inner.as_ref()?;
        if inner.owed.load(Ordering::Acquire) {
            return None;
        }
        tokio::time::timeout(WITHIN, pending::snapshot(&inner.pool, user))
            .await
            .ok()?
            .ok()
    }

    /// `user`'s offline read, made after `snapshot`, found nothing.
    pub(crate) async fn mark_clean(&self, user: &str, snapshot: &Snapshot) {
        let Some(inner) = &self.inner else { return };
        if inner.owed.load(Ordering::Acquire) {
            return;
        }
        let _ =
            tokio::time::timeout(WITHIN, pending::mark_clean(&inner.pool, user, snapshot)).await;
    }
}

impl Inner {
    async fn bump_now(&self) -> bool {
        matches!(
            tokio::time::timeout(WITHIN, pending::bump(&self.pool)).await,
            Ok(Ok(()))
        )
    }

    fn owe(&self) {
        self.owed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}
