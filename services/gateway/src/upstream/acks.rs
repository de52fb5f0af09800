//! The ack reporter: clients' `ack` frames (DMs received, room delivery
//! cursors) are queued here and written to the api in batches, grouped by
//! user, every 200 ms, so acking every message costs the api one
//! transaction per batch instead of one per frame.

use std::collections::HashMap;
use std::time::Duration;

use telepath_shared::protocol::{InternalAcks, RoomCursor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ApiClient, REPORT_QUEUE};

/// How often queued acks are written.
const EVERY: Duration = Duration::from_millis(200);
/// Acks taken from the queue at once.
const BATCH: usize = 1000;

/// One ack of one user.
pub(crate) enum Ack {
    Dm {
        user_id: String,
        id: String,
    },
    Cursor {
        user_id: String,
        room: String,
        seq: i64,
    },
}

/// Queues acks for the api; cheap to clone.
#[derive(Clone)]
pub(crate) struct AckReporter {
    tx: mpsc::Sender<Ack>,
}

impl AckReporter {
    /// Starts the writing task; after `shutdown` it writes what is queued and stops.
    pub(crate) fn spawn(api: ApiClient, shutdown: CancellationToken) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        (
            AckReporter { tx },
            tokio::spawn(ack_task(api, rx, shutdown)),
        )
    }

    /// Queues one ack; false when the queue is full (the client may ack again).
    pub(crate) fn ack(&self, ack: Ack) -> bool {
        self.tx.try_send(ack).is_ok()
    }
}

async fn ack_task(api: ApiClient, mut rx: mpsc::Receiver<Ack>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.cancelled() => true,
        };
        while rx.try_recv().map(|a| batch.push(a)).is_ok() && batch.len() < BATCH {}
        write(&api, std::mem::take(&mut batch)).await;
        if stop && rx.is_empty() {
            return;
        }
    }
}

/// Groups acks by user (a cursor keeps its highest seq) and writes them.
async fn write(api: &ApiClient, acks: Vec<Ack>) {
    let mut by_user: HashMap<String, (Vec<String>, HashMap<String, i64>)> = HashMap::new();
    for ack in acks {
        match ack {
            Ack::Dm { user_id, id } => by_user.entry(user_id).or_default().0.push(id),
            Ack::Cursor { user_id, room, seq } => {
                let cursor = by_user
                    .entry(user_id)
                    .or_default()
                    .1
                    .entry(room)
                    .or_insert(seq);
                *cursor = (*cursor).max(seq);
            }
        }
    }
    for (user_id, (dms, cursors)) in by_user {
        let cursors = cursors
            .into_iter()
            .map(|(room, seq)| RoomCursor { room, seq })
            .collect();
        if let Err(e) = api
            .acks(&InternalAcks {
                user_id,
                dms,
                cursors,
            })
            .await
        {
            tracing::warn!(error = %e.message, "writing acks failed");
        }
    }
}
