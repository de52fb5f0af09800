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

/// A client for calls out of the deployment (an identity provider's JWKS):
/// http, or https checked against the Mozilla root certificates
/// (webpki-roots) with rustls on ring.
pub type OutboundClient = OutboundClientWith<
    hyper_util::client::legacy::connect::dns::GaiResolver,
    http_body_util::Empty<bytes::Bytes>,
>;

/// An [`OutboundClient`] resolving names with `R` and sending bodies of type `B`.
pub type OutboundClientWith<R, B> = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector<R>>,
    B,
>;

/// A new [`OutboundClient`].
pub fn outbound_client() -> Result<OutboundClient, String> {
    outbound_client_with(hyper_util::client::legacy::connect::HttpConnector::new())
}

/// A new outbound client over `http` (its resolver and connect settings),
/// with the same TLS as [`outbound_client`].
pub fn outbound_client_with<R, B>(
    mut http: hyper_util::client::legacy::connect::HttpConnector<R>,
) -> Result<OutboundClientWith<R, B>, String>
where
    R: tower_service::Service<hyper_util::client::legacy::connect::dns::Name>
        + Clone
        + Send
        + Sync
        + 'static,
    R::Response: Iterator<Item = std::net::SocketAddr>,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R::Future: Send,
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    #[expect(
        deprecated,
        reason = "ring is the workspace's rustls provider (aws-lc needs a C build); post-quantum key exchange is not needed to fetch a JWKS"
    )]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // https:// URLs are the TLS layer's; the plain connector must let them through.
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// Calls one service's `/internal/` routes; cheap to clone.
#[derive(Clone)]
pub struct InternalClient {
    transport: Transport,
    base: Arc<str>,
    token: Arc<str>,
    /// The callee, as logs and error messages name it ("api", "presence").
    service: &'static str,
}

/// How calls reach the callee.
#[derive(Clone)]
enum Transport {
    /// Over HTTP (the split deployment).
    Http(reqwest::Client),
    /// Straight into the callee's router in this process (the all-in-one):
    /// the same handlers, extractors and limits, with no socket at all.
    Local(axum::Router),
}

/// The largest answer a local call reads.
const MAX_LOCAL_ANSWER: usize = 64 << 20;

impl std::fmt::Debug for InternalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalClient")
            .field("service", &self.service)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl InternalClient {
    /// A client of `service` at `base` (e.g. `http://127.0.0.1:9081`),
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
            transport: Transport::Http(http),
            base: base.trim_end_matches('/').into(),
            token: token.into(),
            service,
        }
    }

    /// A client of `service` that calls `router` (the callee's internal
    /// routes) in this process, sending `token` as the HTTP client does.
    pub fn local(service: &'static str, router: axum::Router, token: &str) -> Self {
        InternalClient {
            transport: Transport::Local(router),
            base: "".into(),
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
        let query = serde_urlencoded::to_string(query)
            .map_err(|e| ApiError::internal(format!("unencodable query: {e}")))?;
        let path = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let body = self.call(reqwest::Method::GET, &path, None).await?;
        self.decode(&body)
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub async fn post<B, T>(&self, path: &str, body: &B) -> Result<T, ApiError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let answer = self
            .call(reqwest::Method::POST, path, Some(encode(body)?))
            .await?;
        self.decode(&answer)
    }

    /// `POST path` with a JSON body, for routes that answer without a body (204).
    pub async fn post_empty<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ApiError> {
        self.call(reqwest::Method::POST, path, Some(encode(body)?))
            .await
            .map(drop)
    }

    /// One call with the internal token and trace context, within
    /// [`CALL_TIMEOUT`]: the answer's body on success, else the call's
    /// error as [`ApiError`].
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, ApiError> {
        let mut headers = reqwest::header::HeaderMap::new();
        crate::telemetry::inject(&mut headers);
        headers.insert(
            INTERNAL_HEADER,
            reqwest::header::HeaderValue::from_str(&self.token)
                .map_err(|_| ApiError::internal("the internal token is not a header value"))?,
        );
        if body.is_some() {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                reqwest::header::HeaderValue::from_static("application/json"),
            );
        }
        let (status, answer) = match &self.transport {
            Transport::Http(http) => {
                let mut req = http
                    .request(method, format!("{}{path}", self.base))
                    .headers(headers);
                if let Some(body) = body {
                    req = req.body(body);
                }
                let resp = req.send().await.map_err(|e| self.unreachable(e))?;
                let status = resp.status();
                let answer = resp.bytes().await.map_err(|e| self.unreachable(e))?;
                (status, answer)
            }
            Transport::Local(router) => {
                let call = self.call_local(router, method, path, headers, body);
                tokio::time::timeout(CALL_TIMEOUT, call)
                    .await
                    .map_err(|_| self.unreachable("timed out"))??
            }
        };
        if status.is_success() {
            return Ok(answer);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // Only the internal token is checked on these routes: the
            // deployment's services disagree on it. Not the caller's fault.
            return Err(ApiError::internal(format!(
                "{} refused this service's internal token (TELEPATH_INTERNAL_TOKEN)",
                self.service
            )));
        }
        let status = status.as_u16();
        Err(match serde_json::from_slice::<ErrorEnvelope>(&answer) {
            Ok(env) => ApiError::new(env.error.code, env.error.message),
            Err(_) => ApiError::new(
                ErrorCode::from_http_status(status),
                format!("{} answered {status}", self.service),
            ),
        })
    }

    /// A call into `router` in this process.
    async fn call_local(
        &self,
        router: &axum::Router,
        method: reqwest::Method,
        path: &str,
        headers: reqwest::header::HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), ApiError> {
        use tower::ServiceExt as _;
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::from(body.unwrap_or_default()))
            .map_err(|e| ApiError::internal(format!("bad internal request: {e}")))?;
        *req.headers_mut() = headers;
        let resp = router
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never| match never {});
        let status = resp.status();
        let answer = axum::body::to_bytes(resp.into_body(), MAX_LOCAL_ANSWER)
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok((status, answer))
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ApiError> {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::internal(format!("{} sent an unreadable answer: {e}", self.service))
        })
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> ApiError {
        tracing::warn!(service = self.service, error = %e, "internal call failed");
        ApiError::unavailable(format!("{} is unavailable", self.service))
    }
}

/// A request body as JSON.
fn encode<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body).map_err(|e| ApiError::internal(format!("unencodable body: {e}")))
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
        let app = routes();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// The callee's routes.
    fn routes() -> Router {
        Router::new()
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
            .route("/garbage", get(|| async { "not json" }))
    }

    #[tokio::test]
    async fn queries_are_encoded_and_the_token_is_sent() {
        let client = InternalClient::new("api", &format!("{}/", callee().await), "tok");
        query_and_token_arrive(&client).await;
    }

    /// `/echo` sees the query decoded and the internal token.
    async fn query_and_token_arrive(client: &InternalClient) {
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
        errors_map_the_same_way(client).await;
    }

    /// In process, the same calls get the same answers, token and query included.
    #[tokio::test]
    async fn a_local_client_calls_the_router_in_process_the_same_way() {
        let client = InternalClient::local("api", routes(), "tok");
        query_and_token_arrive(&client).await;
        errors_map_the_same_way(client).await;
    }

    async fn errors_map_the_same_way(client: InternalClient) {
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
