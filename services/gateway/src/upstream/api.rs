//! The api client: join, leave, history, the offline queue and the
//! catch-up reads (memberships, several offline queues), over the
//! api's `/internal/` routes. Every call goes through the shared internal
//! client (timeouts, token, trace context, error mapping); room ids are
//! checked canonical before they are put in a path.

use serde::Serialize;
use telepath_shared::http::ApiError;
use telepath_shared::http::client::InternalClient;
use telepath_shared::protocol::{
    InternalAcks, InternalJoin, InternalMemberships, InternalPendingDms, InternalSendBatch,
    InternalSendResults, JoinResult, LogPage, Memberships, PendingDmsByUser, RedeemTicket,
    RedeemedTicket, Revocations, UnreadCounts, UnreadRequest, UserRef,
};

/// Calls the api's `/internal/` routes; cheap to clone.
#[derive(Clone)]
pub(crate) struct ApiClient {
    client: InternalClient,
}

/// `?after=&before=&limit=` of a history read.
#[derive(Serialize)]
struct HistoryQuery {
    after: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<i64>,
    limit: i64,
}

impl ApiClient {
    pub(crate) fn new(client: InternalClient) -> Self {
        ApiClient { client }
    }

    /// The token a connect ticket was issued for, using the ticket up
    /// (`Err` with 404 when it is unknown, used or expired).
    pub(crate) async fn redeem_ticket(&self, ticket: &str) -> Result<String, ApiError> {
        let body = RedeemTicket {
            ticket: ticket.to_owned(),
        };
        let redeemed: RedeemedTicket = self.client.post("/internal/tickets/redeem", &body).await?;
        Ok(redeemed.token)
    }

    /// Makes `user` a participant of `room`.
    pub(crate) async fn join(&self, room: &str, user: &UserRef) -> Result<JoinResult, ApiError> {
        let body = InternalJoin { user: user.clone() };
        self.client
            .post(&format!("/internal/rooms/{room}/join"), &body)
            .await
    }

    /// Ends `user`'s participation in `room`.
    pub(crate) async fn leave(&self, room: &str, user: &UserRef) -> Result<(), ApiError> {
        let body = InternalJoin { user: user.clone() };
        self.client
            .post_empty(&format!("/internal/rooms/{room}/leave"), &body)
            .await
    }

    /// Persists room messages, DMs and changes (each list in its order); one
    /// outcome per item, in order.
    pub(crate) async fn send_batch(
        &self,
        batch: &InternalSendBatch,
    ) -> Result<InternalSendResults, ApiError> {
        let results: InternalSendResults = self.client.post("/internal/messages", batch).await?;
        if results.results.len() != batch.sends.len()
            || results.dms.len() != batch.dms.len()
            || results.changes.len() != batch.changes.len()
        {
            return Err(ApiError::internal(format!(
                "the api answered {} sends, {} DMs and {} changes with {}, {} and {} outcomes",
                batch.sends.len(),
                batch.dms.len(),
                batch.changes.len(),
                results.results.len(),
                results.dms.len(),
                results.changes.len()
            )));
        }
        Ok(results)
    }

    /// The unread notifications of several users (at most `MAX_UNREAD_USERS`).
    pub(crate) async fn unread(&self, users: &UnreadRequest) -> Result<UnreadCounts, ApiError> {
        self.client
            .post("/internal/notifications/unread", users)
            .await
    }

    /// The offline queues of several users (at most `MAX_PENDING_USERS`).
    pub(crate) async fn pending_dms_of(
        &self,
        users: &InternalPendingDms,
    ) -> Result<PendingDmsByUser, ApiError> {
        self.client.post("/internal/dms/pending", users).await
    }

    /// Which of the listed rooms are open and which listed users take part.
    pub(crate) async fn memberships(
        &self,
        query: &InternalMemberships,
    ) -> Result<Memberships, ApiError> {
        self.client.post("/internal/memberships", query).await
    }

    /// Every user whose older tokens are revoked.
    pub(crate) async fn revocations(&self) -> Result<Revocations, ApiError> {
        self.client.get("/internal/revocations", &()).await
    }

    /// Records acks (DMs received, room cursors).
    pub(crate) async fn acks(&self, acks: &InternalAcks) -> Result<(), ApiError> {
        self.client.post_empty("/internal/acks", acks).await
    }

    /// Up to `limit` messages of `room` after `after` (and below `before`), in seq order.
    pub(crate) async fn history(
        &self,
        room: &str,
        after: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<LogPage, ApiError> {
        let query = HistoryQuery {
            after,
            before,
            limit,
        };
        self.client
            .get(&format!("/internal/rooms/{room}/messages"), &query)
            .await
    }
}
