//! HTTP pieces every service shares: the one error type that renders
//! `{"error":{"code","message"}}`, the internal-token check for `/internal/`
//! routes, and the JSON 404 fallback.
//!
//! Internal causes are logged here and never sent to clients. Request
//! metrics and spans are in [`observe`].

pub mod client;
pub mod client_ip;
pub mod observe;
pub mod origins;
pub mod serve;

pub use serve::serve_gracefully;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use subtle::ConstantTimeEq;

use crate::auth::INTERNAL_HEADER;
use crate::protocol::{ErrorBody, ErrorCode, ErrorEnvelope};

/// A failed request: a protocol error code and a message safe to show clients.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// An HTTP status other than the code's own (415, 405, 507).
    pub status: Option<StatusCode>,
    /// `Retry-After` on a 503 or 429 other than [`RETRY_AFTER_SECS`].
    pub retry_after_secs: Option<u64>,
}

/// The message of a 401 for a request without a usable token.
const MISSING_TOKEN: &str = "missing or invalid token";

/// What `Retry-After` says on a 503 or 429, seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            status: None,
            retry_after_secs: None,
        }
    }
    /// This error answered with `status` instead of its code's.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
    /// A request body that is not `application/json`: `bad_request`, 415.
    pub fn unsupported_media_type() -> Self {
        Self::bad_request("expected Content-Type: application/json")
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    }
    /// The database has no room left: `unavailable`, 507. Writes work again
    /// once space returns.
    pub fn storage_full() -> Self {
        Self::unavailable("the database is full").with_status(StatusCode::INSUFFICIENT_STORAGE)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, MISSING_TOKEN)
    }
    /// 401 for a token that was refused, saying why (`expired`,
    /// `bad_signature`, `missing_claim: name` ...).
    pub fn unauthorized_because(why: &crate::auth::AuthError) -> Self {
        Self::new(ErrorCode::Unauthorized, why.reason())
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// Over a rate limit: `rate_limited`, 429, retry after `secs`.
    pub fn rate_limited(secs: u64) -> Self {
        let mut err = Self::new(ErrorCode::RateLimited, "too many requests; slow down");
        err.retry_after_secs = Some(secs.max(1));
        err
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    /// An internal failure: logs `cause`, tells the client only "internal error".
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }
    /// The wire body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl From<ErrorBody> for ApiError {
    fn from(e: ErrorBody) -> Self {
        ApiError::new(e.code, e.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    /// The JSON error; a 503 or 429 says when to retry (`Retry-After`).
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, Json(ErrorEnvelope { error: self.body() })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            let secs = self.retry_after_secs.unwrap_or(u64::from(RETRY_AFTER_SECS));
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: the scheme, and why a token that was sent failed.
            let challenge = if self.message == MISSING_TOKEN {
                "Bearer realm=\"telepath\"".to_owned()
            } else {
                let why: String = self
                    .message
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ')
                    .collect();
                format!(
                    "Bearer realm=\"telepath\", error=\"invalid_token\", error_description=\"{why}\""
                )
            };
            if let Ok(v) = axum::http::HeaderValue::from_str(&challenge) {
                resp.headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

/// Checks the `X-Telepath-Internal` header against the deployment's token.
pub fn check_internal(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let given = headers
        .get(INTERNAL_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if bool::from(given.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::Unauthorized, "internal route"))
    }
}

/// Fallback for unknown routes: 404 in the JSON error shape.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Fallback for a route asked with a method it does not serve: 405 in the
/// JSON error shape (axum adds the `Allow` header listing the methods it
/// serves). Set it on a router after its last route.
pub async fn method_not_allowed() -> ApiError {
    ApiError::bad_request("method not allowed on this route (see Allow)")
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// Maps axum's JSON extractor failures to our error shape (400 malformed,
/// 413 too large, 415 wrong content type).
pub fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection as R;
    match rejection {
        R::MissingJsonContentType(_) => ApiError::unsupported_media_type(),
        R::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::TooLarge, "request body too large")
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// A JSON body extractor whose failures use our error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// A body with another `Content-Type` gets 415; a request with no
    /// `Content-Type` at all (no body) 400, like any missing field.
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let typed = req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(axum::extract::rejection::JsonRejection::MissingJsonContentType(_)) if !typed => {
                Err(ApiError::bad_request("a JSON body is required"))
            }
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_and_a_429_say_when_to_retry_and_other_errors_do_not() {
        for (err, retry) in [
            (ApiError::unavailable("down"), true),
            (ApiError::new(ErrorCode::RateLimited, "slow down"), true),
            (ApiError::storage_full(), false),
            (ApiError::bad_request("no"), false),
        ] {
            let status = err.status();
            let resp = err.into_response();
            assert_eq!(
                resp.headers()
                    .get(axum::http::header::RETRY_AFTER)
                    .is_some(),
                retry,
                "{status}"
            );
        }
        assert_eq!(ApiError::storage_full().status(), 507);
        assert_eq!(ApiError::unsupported_media_type().status(), 415);
    }
}
