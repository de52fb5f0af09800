//! The connection-log reporter: connects and disconnects, in batches, to
//! the api's `POST /internal/connections`.

use std::time::Duration;

use telepath_shared::http::client::InternalClient;
use telepath_shared::protocol::{ConnectionEvent, ConnectionEvents};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::REPORT_QUEUE;

/// Connection events sent to the api in one report at most.
const LOG_BATCH: usize = 256;
/// How often queued connection events are sent.
const LOG_EVERY: Duration = Duration::from_millis(500);

/// Reports connects and disconnects to the api's connection log, in batches.
#[derive(Clone)]
pub(crate) struct LogReporter {
    tx: mpsc::Sender<ConnectionEvent>,
}

impl LogReporter {
    /// Starts the reporting task; it sends what is queued and stops after `shutdown`.
    pub(crate) fn spawn(
        api: InternalClient,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        let task = tokio::spawn(log_task(api, rx, shutdown));
        (LogReporter { tx }, task)
    }

    /// Queues one event; dropped (and logged) when the queue is full: the
    /// log is a record for analytics, not state anything depends on.
    pub(crate) fn log(&self, event: ConnectionEvent) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("connection log queue full; event dropped");
        }
    }
}

async fn log_task(
    api: InternalClient,
    mut rx: mpsc::Receiver<ConnectionEvent>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(LOG_BATCH);
    let mut tick = tokio::time::interval(LOG_EVERY);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, LOG_BATCH) => {
                if n == 0 {
                    break;
                }
                if batch.len() < LOG_BATCH {
                    continue;
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.cancelled(), if rx.is_empty() => break,
        }
        send(&api, std::mem::take(&mut batch)).await;
    }
    send(&api, batch).await;
}

async fn send(api: &InternalClient, events: Vec<ConnectionEvent>) {
    if events.is_empty() {
        return;
    }
    let report = ConnectionEvents { events };
    if let Err(e) = api.post_empty("/internal/connections", &report).await {
        tracing::warn!(error = %e, "the connection log refused a report");
    }
}
