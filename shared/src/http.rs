//! HTTP pieces every service shares: the one error type that renders
//! `{"error":{"code","message"}}`, the internal-token check for `/internal/`
//! routes, and the JSON 404 fallback.
//!
//! Internal causes are logged here and never sent to clients. Request
//! metrics and spans are in [`observe`].

pub mod client;
pub mod observe;
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
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing or invalid token")
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
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
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
    fn into_response(self) -> Response {
        (self.status(), Json(ErrorEnvelope { error: self.body() })).into_response()
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

/// Maps axum's JSON extractor failures to our error shape (400 malformed,
/// 413 too large, 415 wrong content type).
pub fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection as R;
    match rejection {
        R::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::BadRequest,
            "expected Content-Type: application/json",
        ),
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

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}
