//! The unread-notification count a `welcome` carries when Redis does not
//! answer it with the admission (no Redis, or no per-user cap): asked of
//! the api (`POST /internal/notifications/unread`) for the connects that
//! arrive together in one request (up to four in flight), while the
//! admission is asked. A connect waits for it at most [`WAIT`]; without an
//! answer its `welcome` goes without the count (the client reads
//! `GET /notifications`).

use std::time::Duration;

use telepath_shared::batch::Batcher;
use telepath_shared::protocol::{MAX_UNREAD_USERS, UnreadRequest};

use super::ApiClient;

/// Connects that may wait for a count.
const QUEUE: usize = 16_384;
/// Requests in flight at once.
const IN_FLIGHT: usize = 4;
/// How long a connect waits for its count.
const WAIT: Duration = Duration::from_secs(2);

/// Asks the api for unread counts; cheap to clone.
#[derive(Clone)]
pub(crate) struct UnreadCounter {
    batcher: Batcher<String, i64>,
}

impl UnreadCounter {
    /// Starts the task asking `api`.
    pub(crate) fn spawn(api: ApiClient) -> Self {
        let batcher = Batcher::spawn(QUEUE, MAX_UNREAD_USERS, IN_FLIGHT, move |user_ids| {
            let api = api.clone();
            async move {
                let request = UnreadRequest { user_ids };
                match tokio::time::timeout(WAIT, api.unread(&request)).await {
                    Ok(Ok(counts)) => Some(counts.unread),
                    // Unanswered: each welcome goes without its count.
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e.message, "unread counts failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("unread counts timed out");
                        None
                    }
                }
            }
        });
        UnreadCounter { batcher }
    }

    /// `user_id`'s unread notifications, when the api answers in time.
    pub(crate) async fn unread(&self, user_id: &str) -> Option<i64> {
        let answer = self.batcher.ask(user_id.to_owned())?;
        tokio::time::timeout(WAIT, answer).await.ok()?.ok()
    }
}
