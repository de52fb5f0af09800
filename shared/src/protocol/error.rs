//! Error codes (in replies, `error` frames and REST error bodies, with the
//! HTTP status REST uses for each) and WebSocket close codes with what a
//! client should do after each.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"code","message"}`: in replies, `error` frames and REST error bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

/// The REST error envelope: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// Every error code of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    RoomFull,
    RateLimited,
    TooLarge,
    Conflict,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, for metrics that start each label at zero.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RoomFull,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status REST uses for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::RoomFull | ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The code for an HTTP status, for clients of REST (the gateway calling the api).
    pub fn from_http_status(status: u16) -> Self {
        match status {
            400 | 422 => ErrorCode::BadRequest,
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::TooLarge,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

/// WebSocket close codes and what a client should do after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// Normal closure.
    Normal = 1000,
    /// RFC 6455 protocol error (bad framing, unmasked client frame).
    ProtocolError = 1002,
    /// A binary frame on the JSON text protocol.
    UnsupportedData = 1003,
    /// A text frame that is not valid UTF-8.
    InvalidPayload = 1007,
    /// Policy violation; do not retry unchanged.
    Policy = 1008,
    /// Frame (message) larger than `limits.max_frame_bytes`.
    TooBig = 1009,
    /// Server error; reconnect with backoff.
    Internal = 1011,
    /// Service restart: reconnect (to another node) and resume with `since`.
    Restart = 1012,
    /// Try again later: overloaded or slow consumer; reconnect with backoff and resume.
    TryAgainLater = 1013,
    /// Token expired: get a fresh token, then reconnect.
    TokenExpired = 4001,
    /// Disconnected by an admin: do not reconnect automatically.
    Admin = 4003,
    /// Rate-limit abuse.
    RateLimit = 4008,
    /// Too many connections for this user.
    TooManyConnections = 4009,
}

impl CloseCode {
    /// The numeric code on the wire.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Whether a client should reconnect by itself after this close.
    pub fn should_reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::Policy
                | CloseCode::Admin
                | CloseCode::TokenExpired
                | CloseCode::TooManyConnections
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::protocol::*;

    #[test]
    fn error_code_names_are_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn every_error_code_has_its_wire_name_and_status() {
        let table = [
            (ErrorCode::BadRequest, "bad_request", 400),
            (ErrorCode::Unauthorized, "unauthorized", 401),
            (ErrorCode::Forbidden, "forbidden", 403),
            (ErrorCode::NotFound, "not_found", 404),
            (ErrorCode::RoomFull, "room_full", 409),
            (ErrorCode::RateLimited, "rate_limited", 429),
            (ErrorCode::TooLarge, "too_large", 413),
            (ErrorCode::Conflict, "conflict", 409),
            (ErrorCode::Unavailable, "unavailable", 503),
            (ErrorCode::Internal, "internal", 500),
        ];
        for (code, name, status) in table {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
            assert_eq!(
                serde_json::from_value::<ErrorCode>(json!(name)).unwrap(),
                code
            );
            assert_eq!(code.http_status(), status);
        }
    }

    #[test]
    fn close_codes_match_the_contract() {
        let table = [
            (CloseCode::Normal, 1000),
            (CloseCode::Policy, 1008),
            (CloseCode::TooBig, 1009),
            (CloseCode::Internal, 1011),
            (CloseCode::Restart, 1012),
            (CloseCode::TryAgainLater, 1013),
            (CloseCode::TokenExpired, 4001),
            (CloseCode::Admin, 4003),
            (CloseCode::RateLimit, 4008),
            (CloseCode::TooManyConnections, 4009),
        ];
        for (code, n) in table {
            assert_eq!(code.code(), n);
        }
        assert!(CloseCode::Restart.should_reconnect());
        assert!(!CloseCode::Admin.should_reconnect());
    }
}
