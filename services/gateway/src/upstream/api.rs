//! The api client: join, leave, send and history over `/internal/`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use telepath_shared::auth::INTERNAL_HEADER;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    DmResult, ErrorCode, ErrorEnvelope, InternalAcks, InternalDm, InternalJoin, InternalRoomSend,
    InternalSendResults, JoinResult, MessagePage, PendingDms, UserRef,
};

use super::http_client;

/// Calls the api's `/internal/` routes.
#[derive(Clone)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    pub(crate) fn new(base: &str, token: &str) -> Self {
        ApiClient {
            http: http_client(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Makes `user` a participant of `room`.
    pub(crate) async fn join(&self, room: &str, user: &UserRef) -> Result<JoinResult, ApiError> {
        self.post(
            &format!("/internal/rooms/{room}/join"),
            &InternalJoin { user: user.clone() },
        )
        .await
    }

    /// Ends `user`'s participation in `room`.
    pub(crate) async fn leave(&self, room: &str, user: &UserRef) -> Result<(), ApiError> {
        let resp = self
            .request(
                self.http
                    .post(self.url(&format!("/internal/rooms/{room}/leave")))
                    .json(&InternalJoin { user: user.clone() }),
            )
            .await?;
        check(resp).await.map(|_| ())
    }

    /// Persists room messages in this order (an `InternalSendBatch`); one
    /// outcome per send, in order.
    pub(crate) async fn send_batch(
        &self,
        sends: &[&InternalRoomSend],
    ) -> Result<InternalSendResults, ApiError> {
        #[derive(serde::Serialize)]
        struct Batch<'a> {
            sends: &'a [&'a InternalRoomSend],
        }
        let results: InternalSendResults =
            self.post("/internal/messages", &Batch { sends }).await?;
        if results.results.len() != sends.len() {
            return Err(ApiError::internal(format!(
                "the api answered {} sends with {} outcomes",
                sends.len(),
                results.results.len()
            )));
        }
        Ok(results)
    }

    /// Stores, queues and publishes a DM.
    pub(crate) async fn dm(&self, dm: &InternalDm) -> Result<DmResult, ApiError> {
        self.post("/internal/dms", dm).await
    }

    /// The DMs `user_id` has not acked yet, oldest first.
    pub(crate) async fn pending_dms(&self, user_id: &str) -> Result<PendingDms, ApiError> {
        let resp = self
            .request(
                self.http
                    .get(self.url(&format!("/internal/dms/pending?user_id={user_id}"))),
            )
            .await?;
        decode(check(resp).await?).await
    }

    /// Records acks (DMs received, room cursors).
    pub(crate) async fn acks(&self, acks: &InternalAcks) -> Result<(), ApiError> {
        let resp = self
            .request(self.http.post(self.url("/internal/acks")).json(acks))
            .await?;
        check(resp).await.map(|_| ())
    }

    /// Up to `limit` messages of `room` after `after` (and below `before`), in seq order.
    pub(crate) async fn history_between(
        &self,
        room: &str,
        after: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<MessagePage, ApiError> {
        let before = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let url = self.url(&format!(
            "/internal/rooms/{room}/messages?after={after}{before}&limit={limit}"
        ));
        let resp = self.request(self.http.get(url)).await?;
        decode(check(resp).await?).await
    }

    /// Up to `limit` messages of `room` after `after`, in seq order.
    pub(crate) async fn history_after(
        &self,
        room: &str,
        after: i64,
        limit: i64,
    ) -> Result<MessagePage, ApiError> {
        let url = self.url(&format!(
            "/internal/rooms/{room}/messages?after={after}&limit={limit}"
        ));
        let resp = self.request(self.http.get(url)).await?;
        decode(check(resp).await?).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let resp = self
            .request(self.http.post(self.url(path)).json(body))
            .await?;
        decode(check(resp).await?).await
    }

    async fn request(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let mut trace = reqwest::header::HeaderMap::new();
        telepath_shared::telemetry::inject(&mut trace);
        req.header(INTERNAL_HEADER, &self.token)
            .headers(trace)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "api call failed");
                ApiError::unavailable("the api is unavailable")
            })
    }
}

/// Passes the api's own error through (code and message), or maps the status.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    match resp.json::<ErrorEnvelope>().await {
        Ok(env) => Err(ApiError::new(env.error.code, env.error.message)),
        Err(_) => Err(ApiError::new(
            ErrorCode::from_http_status(status),
            "upstream error",
        )),
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ApiError> {
    resp.json().await.map_err(ApiError::internal)
}
