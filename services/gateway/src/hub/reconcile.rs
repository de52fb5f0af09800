//! The reconcile task: the one place this node subscribes and unsubscribes
//! bus channels. Joins and leaves only change the hub's registry and ask
//! this task to bring a channel's subscription in line with it, so the bus
//! calls happen in one order and never race; a failed call is retried every
//! second.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use telepath_shared::bus::Bus;
use tokio::sync::{mpsc, oneshot};

use super::Hub;

/// Bring one channel's bus subscription in line with local membership,
/// optionally telling the caller whether that worked.
pub(super) struct Reconcile {
    pub(super) channel: String,
    pub(super) done: Option<oneshot::Sender<bool>>,
}

/// Owns every subscribe/unsubscribe call of this node; ends with the hub.
pub(super) async fn run(
    hub: Weak<Hub>,
    bus: Arc<dyn Bus>,
    mut rx: mpsc::UnboundedReceiver<Reconcile>,
    permanent: Vec<String>,
) {
    let mut subscribed: HashSet<String> = HashSet::new();
    // Channels whose last subscribe/unsubscribe failed; retried every second.
    let mut dirty: HashSet<String> = permanent.iter().cloned().collect();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let request = tokio::select! {
            r = rx.recv() => match r { Some(r) => Some(r), None => return },
            _ = retry.tick() => None,
        };
        let Some(hub) = hub.upgrade() else { return };
        let mut work: Vec<(String, Option<oneshot::Sender<bool>>)> =
            dirty.drain().map(|c| (c, None)).collect();
        if let Some(r) = request {
            work.push((r.channel, r.done));
        }
        for (channel, done) in work {
            let want = permanent.contains(&channel) || hub.wants(&channel);
            let have = subscribed.contains(&channel);
            let ok = match (want, have) {
                (true, false) => bus
                    .subscribe(&channel)
                    .await
                    .map(|_| subscribed.insert(channel.clone()))
                    .is_ok(),
                (false, true) => bus
                    .unsubscribe(&channel)
                    .await
                    .map(|_| {
                        // A later subscription starts a new relay history.
                        hub.forget_position(&channel);
                        subscribed.remove(&channel)
                    })
                    .is_ok(),
                _ => true,
            };
            if !ok {
                tracing::warn!(%channel, "bus subscription change failed; retrying");
                dirty.insert(channel);
            }
            hub.metrics.subscriptions.set(subscribed.len() as i64);
            if let Some(done) = done {
                let _ = done.send(ok);
            }
        }
    }
}
