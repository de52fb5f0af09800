//! The one client for service-to-service calls: a gateway calling the api
//! and presence, the api calling presence.
//!
//! It owns what every such call needs: the base URL, the internal token
//! header, the caller's `traceparent` (when traces are exported), bounded
//! timeouts, query strings encoded by serde, and one error mapping: the
//! callee's own `{"error":{"code","message"}}` passes through, a status
//! without that body maps to the code of the status, and a callee that
//! cannot be reached (or does not answer in time) is `unavailable`, and one
//! that refuses the internal token (401: the services disagree on it) is
//! `internal`. Callers never see transport errors or the callee's internals.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::auth::INTERNAL_HEADER;
use crate::protocol::{ErrorCode, ErrorEnvelope};

/// Longest a call may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Calls one service's `/internal/` routes; cheap to clone.
#[derive(Clone)]
pub struct InternalClient {
    http: reqwest::Client,
    base: Arc<str>,
    token: Arc<str>,
    /// The callee, as logs and error messages name it ("api", "presence").
    service: &'static str,
}

impl std::fmt::Debug for InternalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalClient")
            .field("service", &self.service)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl InternalClient {
    /// A client of `service` at `base` (e.g. `http://127.0.0.1:8081`),
    /// sending `token` as `X-Telepath-Internal`.
    pub fn new(service: &'static str, base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(64)
            // Well before the callee closes an idle connection (after
            // HEADER_READ_TIMEOUT), so a call never races that close.
            .pool_idle_timeout(super::serve::HEADER_READ_TIMEOUT / 2)
            .tcp_nodelay(true)
            .build()
            .expect("a plain-HTTP client always builds");
        InternalClient {
            http,
            base: base.trim_end_matches('/').into(),
            token: token.into(),
            service,
        }
    }

    /// `GET path?query`, decoding the JSON answer.
    pub async fn get<Q, T>(&self, path: &str, query: &Q) -> Result<T, ApiError>
    where
        Q: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let resp = self
            .send(self.http.get(self.url(path)).query(query))
            .await?;
        self.decode(resp).await
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub async fn post<B, T>(&self, path: &str, body: &B) -> Result<T, ApiError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let resp = self.send(self.http.post(self.url(path)).json(body)).await?;
        self.decode(resp).await
    }

    /// `POST path` with a JSON body, for routes that answer without a body (204).
    pub async fn post_empty<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ApiError> {
        self.send(self.http.post(self.url(path)).json(body))
            .await
            .map(drop)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with the internal token and trace context; a success, or the
    /// call's error as [`ApiError`].
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let mut trace = reqwest::header::HeaderMap::new();
        crate::telemetry::inject(&mut trace);
        let resp = req
            .header(INTERNAL_HEADER, &*self.token)
            .headers(trace)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            // Only the internal token is checked on these routes: the
            // deployment's services disagree on it. Not the caller's fault.
            return Err(ApiError::internal(format!(
                "{} refused this service's internal token (TELEPATH_INTERNAL_TOKEN)",
                self.service
            )));
        }
        let status = resp.status().as_u16();
        Err(match resp.json::<ErrorEnvelope>().await {
            Ok(env) => ApiError::new(env.error.code, env.error.message),
            Err(_) => ApiError::new(
                ErrorCode::from_http_status(status),
                format!("{} answered {status}", self.service),
            ),
        })
    }

    async fn decode<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ApiError> {
        match resp.json().await {
            Ok(body) => Ok(body),
            // A body cut off by a timeout is the callee being slow, not broken.
            Err(e) if e.is_timeout() => Err(self.unreachable(e)),
            Err(e) => Err(ApiError::internal(format!(
                "{} sent an unreadable answer: {e}",
                self.service
            ))),
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> ApiError {
        tracing::warn!(service = self.service, error = %e, "internal call failed");
        ApiError::unavailable(format!("{} is unavailable", self.service))
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use serde_json::{Value, json};

    use super::*;

    /// A callee on port 0 with a few routes that answer the ways services do.
    async fn callee() -> String {
        let app = Router::new()
            .route(
                "/echo",
                get(|headers: HeaderMap, Query(q): Query<Value>| async move {
                    let token = headers[INTERNAL_HEADER].to_str().unwrap().to_owned();
                    axum::Json(json!({"query": q, "token": token}))
                }),
            )
            .route(
                "/refused",
                post(|| async { ApiError::new(ErrorCode::RoomFull, "full up") }),
            )
            .route("/bare", post(|| async { StatusCode::TOO_MANY_REQUESTS }))
            .route("/locked", post(|| async { ApiError::unauthorized() }))
            .route("/empty", post(|| async { StatusCode::NO_CONTENT }))
            .route("/garbage", get(|| async { "not json" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn queries_are_encoded_and_the_token_is_sent() {
        let client = InternalClient::new("api", &format!("{}/", callee().await), "tok");
        let got: Value = client
            .get("/echo", &[("user_id", "a&b=c d"), ("n", "1")])
            .await
            .unwrap();
        assert_eq!(got["query"], json!({"user_id": "a&b=c d", "n": "1"}));
        assert_eq!(got["token"], "tok");
    }

    #[tokio::test]
    async fn the_callees_error_passes_through_and_a_bare_status_maps_to_its_code() {
        let client = InternalClient::new("api", &callee().await, "tok");
        let refused = client.post::<_, Value>("/refused", &json!({})).await;
        let e = refused.unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::RoomFull, "full up")
        );
        let bare = client.post_empty("/bare", &json!({})).await.unwrap_err();
        assert_eq!(bare.code, ErrorCode::RateLimited);
        client.post_empty("/empty", &json!({})).await.unwrap();
        let locked = client.post_empty("/locked", &json!({})).await.unwrap_err();
        assert_eq!(locked.code, ErrorCode::Internal, "not the caller's token");
        let garbage = client.get::<_, Value>("/garbage", &()).await.unwrap_err();
        assert_eq!(garbage.code, ErrorCode::Internal);
    }

    #[tokio::test]
    async fn a_callee_that_is_not_there_is_unavailable() {
        // Bound and dropped: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = InternalClient::new("presence", &format!("http://127.0.0.1:{port}"), "t");
        let e = client.post_empty("/x", &json!({})).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.message, "presence is unavailable");
    }
}
