//! The unread-notification count a `welcome` carries: asked of the api
//! (`POST /internal/notifications/unread`) for the connects that arrive
//! together in one request (up to four in flight), while the per-user cap's
//! admission is asked. A connect waits for it at most [`WAIT`]; without an
//! answer its `welcome` goes without the count (the client reads
//! `GET /notifications`).

use std::sync::Arc;
use std::time::Duration;

use telepath_shared::protocol::{MAX_UNREAD_USERS, UnreadCounts, UnreadRequest};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::ApiClient;

/// Connects that may wait for a count.
const QUEUE: usize = 16_384;
/// Requests in flight at once.
const IN_FLIGHT: usize = 4;
/// How long a connect waits for its count.
const WAIT: Duration = Duration::from_secs(2);

type Waiting = (String, oneshot::Sender<i64>);

/// Asks the api for unread counts; cheap to clone.
#[derive(Clone)]
pub(crate) struct UnreadCounter {
    tx: mpsc::Sender<Waiting>,
}

impl UnreadCounter {
    /// Starts the task asking `api`.
    pub(crate) fn spawn(api: ApiClient) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(api, rx));
        UnreadCounter { tx }
    }

    /// `user_id`'s unread notifications, when the api answers in time.
    pub(crate) async fn unread(&self, user_id: &str) -> Option<i64> {
        let (done, answer) = oneshot::channel();
        self.tx.try_send((user_id.to_owned(), done)).ok()?;
        tokio::time::timeout(WAIT, answer).await.ok()?.ok()
    }
}

async fn run(api: ApiClient, mut rx: mpsc::Receiver<Waiting>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_UNREAD_USERS);
    while rx.recv_many(&mut batch, MAX_UNREAD_USERS).await > 0 {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let waiting = std::mem::take(&mut batch);
        let api = api.clone();
        tokio::spawn(async move {
            let (user_ids, waiting): (Vec<String>, Vec<oneshot::Sender<i64>>) =
                waiting.into_iter().unzip();
            let request = UnreadRequest { user_ids };
            let asked = api.unread(&request);
            match tokio::time::timeout(WAIT, asked).await {
                Ok(Ok(UnreadCounts { unread })) if unread.len() == waiting.len() => {
                    for (done, n) in waiting.into_iter().zip(unread) {
                        let _ = done.send(n);
                    }
                }
                // Dropped senders: each welcome goes without its count.
                Ok(Ok(_)) => tracing::warn!("the api answered unread counts in a wrong count"),
                Ok(Err(e)) => tracing::debug!(error = %e.message, "unread counts failed"),
                Err(_) => tracing::debug!("unread counts timed out"),
            }
            drop(permit);
        });
    }
}
