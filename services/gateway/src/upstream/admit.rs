//! The per-user connection cap (`TELEPATH_MAX_CONNS_PER_USER`): before a
//! new connection's `welcome`, presence's count decides whether its user
//! may have one more connection across every gateway. The count is atomic
//! in presence's store (registered connections plus admitted ones not
//! registered yet), so two gateways cannot both admit the one over the cap.
//! A gateway with Redis runs presence's admission script there itself
//! (`telepath_shared::bus::admit`: one round trip, no hop through the
//! presence service); without Redis (the all-in-one) it asks presence
//! (`POST /internal/presence/admit`), which runs the same count.
//!
//! Connects that arrive together share one request: one task drains the
//! queue and asks for all of them at once (up to four requests in flight),
//! so a reconnect storm costs a few requests, not one per connection. When presence cannot answer (down,
//! slow, refusing), connections are admitted: the cap guards against abuse
//! and must not turn a presence outage into a gateway outage.

use std::time::Duration;

use telepath_shared::batch::Batcher;
use telepath_shared::http::client::InternalClient;
use telepath_shared::protocol::{AdmitConn, AdmitRequest, AdmitResult};

/// Connections asked for in one request at most (presence's bound).
const BATCH: usize = 1000;
/// Connects that may wait for an answer.
const QUEUE: usize = 16_384;
/// Requests in flight at once: connects arriving while one is answered
/// need not wait for it.
const IN_FLIGHT: usize = 4;
/// How long a connect waits for presence before it is admitted anyway.
const WAIT: Duration = Duration::from_secs(2);

/// An answer: admitted, and the user's unread notifications when the count
/// came with it (Redis).
type Answer = (bool, Option<i64>);

/// Asks presence's count to admit connections; cheap to clone.
#[derive(Clone)]
pub(crate) struct Admitter {
    batcher: Option<Batcher<AdmitConn, Answer>>,
    max: u32,
    /// Whether an answer carries the user's unread notifications.
    counts_unread: bool,
}

/// Where the count is kept.
#[derive(Clone)]
pub(crate) enum Counter {
    /// Presence's keys in Redis, with presence's expiry (ms).
    Redis(telepath_shared::bus::admit::RedisPool, i64),
    /// The presence service (its store).
    Presence(InternalClient),
}

impl Admitter {
    /// Starts the task asking `presence` for at most `max` connections per
    /// user (0: no cap, nothing is asked).
    pub(crate) fn spawn(counter: Counter, max: u32) -> Self {
        let counts_unread = max > 0 && matches!(counter, Counter::Redis(..));
        let batcher = (max > 0).then(|| {
            Batcher::spawn(QUEUE, BATCH, IN_FLIGHT, move |conns: Vec<AdmitConn>| {
                let counter = counter.clone();
                async move { ask(&counter, conns, max).await }
            })
        });
        Admitter {
            batcher,
            max,
            counts_unread,
        }
    }

    /// Whether [`admit`](Self::admit) answers the unread count too (the
    /// count is asked of Redis with the admission: no other round trip).
    pub(crate) fn counts_unread(&self) -> bool {
        self.counts_unread
    }

    /// Whether `user_id` may open `conn_id`: false only when presence
    /// answered that the user has `max` connections already; with the
    /// user's unread notifications when the answer came from Redis.
    pub(crate) async fn admit(&self, conn_id: &str, user_id: &str) -> Answer {
        if self.max == 0 {
            return (true, None);
        }
        let ask = AdmitConn {
            conn_id: conn_id.to_owned(),
            user_id: user_id.to_owned(),
        };
        let Some(answer) = self.batcher.as_ref().and_then(|b| b.ask(ask)) else {
            tracing::warn!("admission queue full; admitting without asking presence");
            return (true, None);
        };
        match tokio::time::timeout(WAIT, answer).await {
            Ok(Ok(answer)) => answer,
            _ => (true, None),
        }
    }
}

/// One request for `conns`: an answer each, or none (each is then admitted).
async fn ask(counter: &Counter, conns: Vec<AdmitConn>, max: u32) -> Option<Vec<Answer>> {
    let asked = async {
        match counter {
            Counter::Redis(pool, expiry_ms) => {
                let now = chrono::Utc::now().timestamp_millis();
                telepath_shared::bus::admit::admit(pool, &conns, max, now, *expiry_ms)
                    .await
                    .map(|answers| answers.into_iter().map(|(a, n)| (a, Some(n))).collect())
                    .map_err(|e| e.to_string())
            }
            Counter::Presence(presence) => {
                let request = AdmitRequest { max, conns };
                presence
                    .post::<_, AdmitResult>("/internal/presence/admit", &request)
                    .await
                    .map(|r| {
                        r.admitted
                            .into_iter()
                            .map(|a| (a, None))
                            .collect::<Vec<_>>()
                    })
                    .map_err(|e| e.to_string())
            }
        }
    };
    match tokio::time::timeout(WAIT, asked).await {
        Ok(Ok(answers)) => Some(answers),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "presence's count did not answer; admitting");
            None
        }
        Err(_) => {
            tracing::warn!("presence did not answer admissions in time; admitting");
            None
        }
    }
}
