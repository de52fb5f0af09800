//! The offline reads of connects: what waits for a user who connects (their
//! queued DMs, pending invitations, undismissed announcements), asked of
//! the api (`POST /internal/dms/pending` with `connect`) for the connects
//! that arrive together in one request (up to four in flight), instead of
//! a request each. A connect whose read fails gets nothing now; what it
//! missed stays queued for its next connect.

use telepath_shared::batch::Batcher;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{InternalPendingDms, MAX_PENDING_USERS, PendingDms};

use super::ApiClient;

/// Connects that may wait for their read.
const QUEUE: usize = 16_384;
/// Requests in flight at once.
const IN_FLIGHT: usize = 4;

/// Reads connects' offline queues from the api; cheap to clone.
#[derive(Clone)]
pub(crate) struct OfflineReader {
    batcher: Batcher<String, PendingDms>,
}

impl OfflineReader {
    /// Starts the task asking `api`.
    pub(crate) fn spawn(api: ApiClient) -> Self {
        let batcher = Batcher::spawn(QUEUE, MAX_PENDING_USERS, IN_FLIGHT, move |user_ids| {
            let api = api.clone();
            async move {
                let query = InternalPendingDms {
                    user_ids,
                    connect: true,
                };
                match api.pending_dms_of(&query).await {
                    Ok(queues) => Some(queues.users.into_iter().map(PendingDms::from).collect()),
                    Err(e) => {
                        tracing::debug!(error = %e.message, "reading offline queues failed");
                        None
                    }
                }
            }
        });
        OfflineReader { batcher }
    }

    /// What waits for `user_id`'s connect.
    pub(crate) async fn read(&self, user_id: &str) -> Result<PendingDms, ApiError> {
        let Some(answer) = self.batcher.ask(user_id.to_owned()) else {
            return Err(ApiError::unavailable("too many offline reads queued"));
        };
        answer
            .await
            .map_err(|_| ApiError::unavailable("the offline read failed"))
    }
}
