//! The api's client of the presence service: who is online (participants'
//! online flags, analytics) and where one user's connections live (admin
//! disconnect). Presence being unreachable is `unavailable` (503), never
//! stale data.

use std::time::Duration;

use serde::de::DeserializeOwned;
use telepath_shared::auth::INTERNAL_HEADER;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{ConnReport, PresenceSummary, UserConnections};

/// Calls presence's `/internal/presence/` query routes.
#[derive(Clone)]
pub(crate) struct PresenceClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl PresenceClient {
    pub(crate) fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(1))
            .build()
            .expect("a plain-HTTP client always builds");
        PresenceClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Everyone live right now.
    pub(crate) async fn summary(&self) -> Result<PresenceSummary, ApiError> {
        self.get("/internal/presence/summary").await
    }

    /// The live connections of `user_id`.
    pub(crate) async fn connections(&self, user_id: &str) -> Result<Vec<ConnReport>, ApiError> {
        let found: UserConnections = self
            .get(&format!("/internal/presence/users/{user_id}/connections"))
            .await?;
        Ok(found.connections)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let unavailable = |e: reqwest::Error| {
            tracing::warn!(error = %e, path, "presence query failed");
            ApiError::unavailable("presence is unavailable")
        };
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(INTERNAL_HEADER, &self.token)
            .send()
            .await
            .map_err(unavailable)?;
        resp.error_for_status()
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)
    }
}
