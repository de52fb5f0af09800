//! The per-user connection cap (`TELEPATH_MAX_CONNS_PER_USER`): before a
//! new connection's `welcome`, presence is asked whether its user may have
//! one more connection across every gateway. Presence counts atomically in
//! its store (registered connections plus admitted ones not registered
//! yet), so two gateways cannot both admit the one over the cap.
//!
//! Connects that arrive together share one request: one task drains the
//! queue and asks for all of them at once, so a reconnect storm costs a few
//! requests, not one per connection. When presence cannot answer (down,
//! slow, refusing), connections are admitted: the cap guards against abuse
//! and must not turn a presence outage into a gateway outage.

use std::time::Duration;

use telepath_shared::http::client::InternalClient;
use telepath_shared::protocol::{AdmitConn, AdmitRequest, AdmitResult};
use tokio::sync::{mpsc, oneshot};

/// Connections asked for in one request at most (presence's bound).
const BATCH: usize = 1000;
/// Connects that may wait for an answer.
const QUEUE: usize = 16_384;
/// How long a connect waits for presence before it is admitted anyway.
const WAIT: Duration = Duration::from_secs(2);

type Waiting = (AdmitConn, oneshot::Sender<bool>);

/// Asks presence to admit connections; cheap to clone.
#[derive(Clone)]
pub(crate) struct Admitter {
    tx: mpsc::Sender<Waiting>,
    max: u32,
}

impl Admitter {
    /// Starts the task asking `presence` for at most `max` connections per
    /// user (0: no cap, nothing is asked).
    pub(crate) fn spawn(presence: InternalClient, max: u32) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        if max > 0 {
            tokio::spawn(run(presence, rx, max));
        }
        Admitter { tx, max }
    }

    /// Whether `user_id` may open `conn_id`: false only when presence
    /// answered that the user has `max` connections already.
    pub(crate) async fn admit(&self, conn_id: &str, user_id: &str) -> bool {
        if self.max == 0 {
            return true;
        }
        let (done, answer) = oneshot::channel();
        let ask = AdmitConn {
            conn_id: conn_id.to_owned(),
            user_id: user_id.to_owned(),
        };
        if self.tx.try_send((ask, done)).is_err() {
            tracing::warn!("admission queue full; admitting without asking presence");
            return true;
        }
        match tokio::time::timeout(WAIT, answer).await {
            Ok(Ok(admitted)) => admitted,
            _ => true,
        }
    }
}

async fn run(presence: InternalClient, mut rx: mpsc::Receiver<Waiting>, max: u32) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let (conns, waiting): (Vec<AdmitConn>, Vec<oneshot::Sender<bool>>) =
            std::mem::take(&mut batch).into_iter().unzip();
        let request = AdmitRequest { max, conns };
        let asked = presence.post::<_, AdmitResult>("/internal/presence/admit", &request);
        let answers = match tokio::time::timeout(WAIT, asked).await {
            Ok(Ok(result)) if result.admitted.len() == waiting.len() => result.admitted,
            Ok(Ok(_)) => {
                tracing::warn!("presence answered admissions in a wrong count; admitting");
                vec![true; waiting.len()]
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "presence refused admissions; admitting");
                vec![true; waiting.len()]
            }
            Err(_) => {
                tracing::warn!("presence did not answer admissions in time; admitting");
                vec![true; waiting.len()]
            }
        };
        for (done, admitted) in waiting.into_iter().zip(answers) {
            let _ = done.send(admitted);
        }
    }
}
