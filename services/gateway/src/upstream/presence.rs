//! The presence reporter: every connect, disconnect, join, leave, typing,
//! status choice and idle change of this node, in order and in batches, to
//! presence's `POST /internal/presence/reports`; and a heartbeat listing
//! every live connection with its rooms and idle flag every heartbeat
//! interval, from which presence rebuilds itself after losing its store.
//!
//! A report dropped because the queue is full is repaired by the next
//! heartbeat, which carries the same facts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telepath_shared::protocol::{
    HeartbeatReport, LiveConn, PresenceReport, PresenceReports, UserRef,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{REPORT_QUEUE, Sender};

/// Reports sent in one request at most.
const BATCH: usize = 1000;

/// Every live connection of this node by conn id, as the next heartbeat lists it.
type Live = Arc<Mutex<HashMap<String, Conn>>>;

/// One live connection: a [`LiveConn`] without the conn id (the map's key)
/// and the node (the same for all), which the heartbeat adds back.
#[derive(Debug)]
struct Conn {
    user: UserRef,
    rooms: Vec<String>,
    idle: bool,
}

/// Queues reports for presence; cheap to clone.
#[derive(Clone)]
pub(crate) struct PresenceReporter {
    tx: mpsc::Sender<PresenceReport>,
    live: Live,
}

impl PresenceReporter {
    /// Starts the reporting task; after `shutdown` it sends what is queued
    /// (the sessions' disconnects) and stops once no connection is left.
    pub(crate) fn spawn(
        base: &str,
        token: &str,
        node: String,
        every: Duration,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        let live: Live = Arc::default();
        let task = tokio::spawn(report_task(
            Sender::new(base, token),
            rx,
            live.clone(),
            node,
            every,
            shutdown,
        ));
        (PresenceReporter { tx, live }, task)
    }

    /// Records `report` in the heartbeat state and queues it.
    pub(crate) fn report(&self, report: PresenceReport) {
        self.apply(&report);
        if self.tx.try_send(report).is_err() {
            tracing::warn!("presence report queue full; the next heartbeat repairs it");
        }
    }

    /// Keeps the heartbeat's view of this node's connections current.
    fn apply(&self, report: &PresenceReport) {
        let mut live = self.live.lock().expect("presence lock poisoned");
        match report {
            PresenceReport::Connect { conn_id, user, .. } => {
                let conn = Conn {
                    user: user.clone(),
                    rooms: Vec::new(),
                    idle: false,
                };
                live.insert(conn_id.clone(), conn);
            }
            PresenceReport::Disconnect { conn_id, .. } => {
                live.remove(conn_id);
            }
            PresenceReport::Join { conn_id, room, .. } => {
                if let Some(c) = live.get_mut(conn_id)
                    && !c.rooms.contains(room)
                {
                    c.rooms.push(room.clone());
                }
            }
            PresenceReport::Leave { conn_id, room, .. } => {
                if let Some(c) = live.get_mut(conn_id) {
                    c.rooms.retain(|r| r != room);
                }
            }
            PresenceReport::Idle { conn_id, idle, .. } => {
                if let Some(c) = live.get_mut(conn_id) {
                    c.idle = *idle;
                }
            }
            PresenceReport::Typing { .. } | PresenceReport::Status { .. } => {}
        }
    }
}

async fn report_task(
    sender: Sender,
    mut rx: mpsc::Receiver<PresenceReport>,
    live: Live,
    node: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let empty = || live.lock().expect("presence lock poisoned").is_empty();
        tokio::select! {
            // Whatever is queued goes in one request, in order.
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                let reports = PresenceReports { node: node.clone(), reports: std::mem::take(&mut batch) };
                sender.post("/internal/presence/reports", &reports).await;
            }
            _ = tick.tick() => {
                let conns: Vec<LiveConn> = live
                    .lock()
                    .expect("presence lock poisoned")
                    .iter()
                    .map(|(conn_id, c)| LiveConn {
                        conn_id: conn_id.clone(),
                        user: c.user.clone(),
                        node: node.clone(),
                        rooms: c.rooms.clone(),
                        idle: c.idle,
                    })
                    .collect();
                sender.post("/internal/presence/heartbeat", &HeartbeatReport { node: node.clone(), conns }).await;
            }
            _ = shutdown.cancelled(), if rx.is_empty() && empty() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> UserRef {
        UserRef {
            id: "u1".into(),
            name: "ada".into(),
        }
    }

    #[tokio::test]
    async fn the_heartbeat_view_follows_connects_joins_idles_and_disconnects() {
        let (tx, _rx) = mpsc::channel(16);
        let r = PresenceReporter {
            tx,
            live: Arc::default(),
        };
        r.report(PresenceReport::Connect {
            conn_id: "c1".into(),
            user: ada(),
            node: "n".into(),
        });
        r.report(PresenceReport::Join {
            conn_id: "c1".into(),
            user: ada(),
            room: "r1".into(),
        });
        r.report(PresenceReport::Join {
            conn_id: "c1".into(),
            user: ada(),
            room: "r1".into(),
        });
        r.report(PresenceReport::Idle {
            conn_id: "c1".into(),
            user_id: "u1".into(),
            idle: true,
        });
        {
            let live = r.live.lock().unwrap();
            assert_eq!(live["c1"].rooms, vec!["r1".to_owned()]);
            assert!(live["c1"].idle);
        }
        r.report(PresenceReport::Leave {
            conn_id: "c1".into(),
            user_id: "u1".into(),
            room: "r1".into(),
        });
        assert!(r.live.lock().unwrap()["c1"].rooms.is_empty());
        r.report(PresenceReport::Disconnect {
            conn_id: "c1".into(),
            user_id: "u1".into(),
        });
        assert!(r.live.lock().unwrap().is_empty());
    }
}
