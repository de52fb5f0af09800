//! The api's client of the presence service: who is online (participants'
//! online flags, analytics) and where one user's connections live (admin
//! disconnect). Presence being unreachable is `unavailable` (503), never
//! stale data (the shared internal client maps it).

use telepath_shared::http::ApiError;
use telepath_shared::http::client::InternalClient;
use telepath_shared::protocol::{ConnReport, PresenceSummary, UserConnections};

/// Calls presence's `/internal/presence/` query routes.
#[derive(Clone)]
pub(crate) struct PresenceClient {
    client: InternalClient,
}

impl PresenceClient {
    pub(crate) fn new(client: InternalClient) -> Self {
        PresenceClient { client }
    }

    /// Everyone live right now.
    pub(crate) async fn summary(&self) -> Result<PresenceSummary, ApiError> {
        self.client.get("/internal/presence/summary", &()).await
    }

    /// The live connections of `user_id` (a canonical id: it goes in the path).
    pub(crate) async fn connections(&self, user_id: &str) -> Result<Vec<ConnReport>, ApiError> {
        let path = format!("/internal/presence/users/{user_id}/connections");
        let found: UserConnections = self.client.get(&path, &()).await?;
        Ok(found.connections)
    }
}
