//! The ack reporter: clients' `ack` frames (DMs received, room delivery
//! cursors) are queued here and written to the api every 200 ms, grouped
//! by user (`POST /internal/acks`, one request per user with acks), so
//! acking every message costs the api a few writes per interval instead of
//! one per frame.
//!
//! An ack the client waits for (it carried a `ref`) is written at once, with
//! whatever else is queued, and its reply waits until the api has stored it:
//! the reply means the DM left the offline queue, so a reconnect elsewhere
//! does not bring it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use telepath_shared::http::ApiError;
use telepath_shared::protocol::{DmAckVersion, InternalAcks, RoomCursor};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ApiClient, REPORT_QUEUE};

/// How often queued acks are written.
const EVERY: Duration = Duration::from_millis(200);
/// Acks taken from the queue at once.
const BATCH: usize = 1000;

/// One ack of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ack {
    /// A DM received, in whatever state it is now.
    Dm { user_id: String, id: String },
    /// A DM received as of the version the client named.
    DmVersion {
        user_id: String,
        version: DmAckVersion,
    },
    Cursor {
        user_id: String,
        room: String,
        seq: i64,
    },
}

impl Ack {
    fn user_id(&self) -> &str {
        match self {
            Ack::Dm { user_id, .. }
            | Ack::DmVersion { user_id, .. }
            | Ack::Cursor { user_id, .. } => user_id,
        }
    }
}

/// What waits for a stored ack: its reply.
type Stored = oneshot::Sender<Result<(), ApiError>>;

/// One queued ack, and who waits for it to be stored.
struct Entry {
    ack: Ack,
    stored: Option<Stored>,
}

/// Queues acks for the api; cheap to clone.
#[derive(Clone)]
pub(crate) struct AckReporter {
    tx: mpsc::Sender<Entry>,
    /// Wakes the task before its next tick: someone waits for an ack.
    now: Arc<Notify>,
}

impl AckReporter {
    /// Starts the writing task; after `shutdown` it writes what is queued and stops.
    pub(crate) fn spawn(api: ApiClient, shutdown: CancellationToken) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        let now = Arc::new(Notify::new());
        let task = tokio::spawn(ack_task(api, rx, now.clone(), shutdown));
        (AckReporter { tx, now }, task)
    }

    /// Queues one ack; false when the queue is full (the client may ack again).
    pub(crate) fn ack(&self, ack: Ack) -> bool {
        self.tx.try_send(Entry { ack, stored: None }).is_ok()
    }

    /// Writes `ack` now (with whatever else is queued) and returns once the
    /// api has stored it, or why it could not.
    pub(crate) async fn ack_stored(&self, ack: Ack) -> Result<(), ApiError> {
        let (stored, rx) = oneshot::channel();
        let entry = Entry {
            ack,
            stored: Some(stored),
        };
        if self.tx.try_send(entry).is_err() {
            return Err(ApiError::unavailable(
                "too many acks queued; ack again later",
            ));
        }
        self.now.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(ApiError::unavailable("the gateway is stopping")))
    }
}

async fn ack_task(
    api: ApiClient,
    mut rx: mpsc::Receiver<Entry>,
    now: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = now.notified() => false,
            _ = shutdown.cancelled() => true,
        };
        while batch.len() < BATCH
            && let Ok(entry) = rx.try_recv()
        {
            batch.push(entry);
        }
        write(&api, std::mem::take(&mut batch)).await;
        if stop && rx.is_empty() {
            return;
        }
    }
}

/// One user's acks in a batch: their DMs, their cursors (each room's
/// highest seq), and who waits for them.
#[derive(Default)]
struct UserAcks {
    dms: Vec<String>,
    dm_versions: Vec<DmAckVersion>,
    cursors: HashMap<String, i64>,
    waiting: Vec<Stored>,
}

/// Groups acks by user (a cursor keeps its highest seq) and writes them,
/// answering whoever waits for each user's acks with that user's outcome.
async fn write(api: &ApiClient, entries: Vec<Entry>) {
    let mut by_user: HashMap<String, UserAcks> = HashMap::new();
    for Entry { ack, stored } in entries {
        let user = by_user.entry(ack.user_id().to_owned()).or_default();
        user.waiting.extend(stored);
        match ack {
            Ack::Dm { id, .. } => user.dms.push(id),
            Ack::DmVersion { version, .. } => user.dm_versions.push(version),
            Ack::Cursor { room, seq, .. } => {
                let cursor = user.cursors.entry(room).or_insert(seq);
                *cursor = (*cursor).max(seq);
            }
        }
    }
    // Users someone waits for go first.
    let mut by_user: Vec<(String, UserAcks)> = by_user.into_iter().collect();
    by_user.sort_by_key(|(_, user)| user.waiting.is_empty());
    for (user_id, user) in by_user {
        let cursors = user
            .cursors
            .into_iter()
            .map(|(room, seq)| RoomCursor { room, seq })
            .collect();
        let acks = InternalAcks {
            user_id,
            dms: user.dms,
            dm_versions: user.dm_versions,
            cursors,
        };
        let outcome = api.acks(&acks).await;
        if let Err(e) = &outcome {
            tracing::warn!(error = %e.message, "writing acks failed");
        }
        for waiting in user.waiting {
            let _ = waiting.send(outcome.clone());
        }
    }
}
