//! The presence reporter: every connect, disconnect, join, leave, typing,
//! status choice and idle change of this node, in order and in batches, to
//! presence's `POST /internal/presence/reports`; and every heartbeat
//! interval a heartbeat (`POST /internal/presence/heartbeat`) listing every
//! live connection of this node with its whole state, read from the hub:
//! its rooms, its idle flag and its user's latest status choice.
//!
//! Presence converges to each heartbeat, so a report that never arrived (the
//! queue was full, presence was unreachable, Redis lost it) is repaired by
//! the next heartbeat: the reports are the fast path, the heartbeats the
//! truth. Both go out from one task in order, so a heartbeat never
//! overtakes a report queued before it.

use std::sync::Arc;
use std::time::Duration;

use telepath_shared::http::client::InternalClient;
use telepath_shared::protocol::{HeartbeatReport, PresenceReport, PresenceReports};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::REPORT_QUEUE;
use crate::hub::Hub;

/// Reports sent in one request at most.
const BATCH: usize = 1000;
/// While draining, how often the task looks whether every session is done.
const DRAIN_CHECK: Duration = Duration::from_millis(20);

/// Queues reports for presence; cheap to clone.
#[derive(Clone)]
pub(crate) struct PresenceReporter {
    tx: mpsc::Sender<PresenceReport>,
}

impl PresenceReporter {
    /// Starts the reporting task, heartbeating `node`'s connections (from
    /// `hub`) every `every`; after `shutdown` it sends what is queued and
    /// stops once every session (tracked by `sessions`) has ended, that is
    /// once their disconnects are queued and sent.
    pub(crate) fn spawn(
        presence: InternalClient,
        hub: Arc<Hub>,
        node: String,
        every: Duration,
        drain: Drain,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        let task = tokio::spawn(report_task(presence, rx, hub, node, every, drain));
        (PresenceReporter { tx }, task)
    }

    /// Queues `report`. When the queue is full the report is dropped: the
    /// next heartbeat carries the same facts.
    pub(crate) fn report(&self, report: PresenceReport) {
        if self.tx.try_send(report).is_err() {
            tracing::warn!("presence report queue full; the next heartbeat repairs it");
        }
    }
}

/// What tells the reporter the node is draining, and when its sessions are done.
pub(crate) struct Drain {
    pub(crate) shutdown: CancellationToken,
    pub(crate) sessions: TaskTracker,
}

impl Drain {
    /// Draining, and every session has ended (its disconnect is queued).
    fn done(&self) -> bool {
        self.shutdown.is_cancelled() && self.sessions.is_closed() && self.sessions.is_empty()
    }
}

async fn report_task(
    presence: InternalClient,
    mut rx: mpsc::Receiver<PresenceReport>,
    hub: Arc<Hub>,
    node: String,
    every: Duration,
    drain: Drain,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_check = tokio::time::interval(DRAIN_CHECK);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if drain.done() && rx.is_empty() {
            return;
        }
        tokio::select! {
            // Whatever is queued goes in one request, in order.
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                let reports = PresenceReports { node: node.clone(), reports: std::mem::take(&mut batch) };
                if let Err(e) = presence.post_empty("/internal/presence/reports", &reports).await {
                    tracing::warn!(error = %e, "presence refused reports; the next heartbeat repairs them");
                }
            }
            _ = tick.tick() => {
                let heartbeat = HeartbeatReport { node: node.clone(), conns: hub.live(&node) };
                if let Err(e) = presence.post_empty("/internal/presence/heartbeat", &heartbeat).await {
                    tracing::warn!(error = %e, "presence refused a heartbeat");
                }
            }
            // A branch's condition is read when the select starts: without
            // this one, a drain beginning during the wait would be noticed
            // only at the next heartbeat (the whole drain deadline by default).
            _ = drain.shutdown.cancelled(), if !drain.shutdown.is_cancelled() => {}
            _ = drain_check.tick(), if drain.shutdown.is_cancelled() => {}
        }
    }
}
