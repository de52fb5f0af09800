//! The Telepath wire contract, v1: every WebSocket frame, REST body, error code
//! and close code named in PROTOCOL.md, as serde types.
//!
//! This module is the one source of truth for wire-visible names. It does no
//! I/O and holds no policy beyond validation helpers for identifiers that end
//! up in bus channel names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A user as every frame and REST body shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    /// User id (a UUID string).
    #[schema(min_length = 1, max_length = 64)]
    pub id: String,
    /// Username.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
}

/// A user with a role, as `welcome` and `POST /auth/login` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// What a user may do: admins reach the admin routes and frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    User,
    Admin,
}

/// Presence status a user can choose (plus `offline`, which only the server sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Away,
    Busy,
    Meditating,
    Offline,
}

impl Status {
    /// The wire name (`online`, `away`, ...), as stored and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Busy => "busy",
            Status::Meditating => "meditating",
            Status::Offline => "offline",
        }
    }
}

// ---------------------------------------------------------------------------
// Client -> server
// ---------------------------------------------------------------------------

/// One client frame: an optional `ref` plus the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Correlation id chosen by the client; a frame with one gets exactly one reply.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(flatten)]
    pub op: ClientOp,
}

/// The operations a client may request, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientOp {
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<i64>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    Dm {
        to: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Broadcast {
        body: String,
    },
    Typing {
        room: String,
        active: bool,
    },
    Status {
        status: Status,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dm: Option<String>,
    },
    Refresh {
        token: String,
    },
    Ping,
}

impl ClientOp {
    /// Every client frame type, as [`ClientOp::name`] returns them.
    pub const NAMES: [&'static str; 10] = [
        "join",
        "leave",
        "send",
        "dm",
        "broadcast",
        "typing",
        "status",
        "ack",
        "refresh",
        "ping",
    ];

    /// The frame's `type` name, for metrics labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Join { .. } => "join",
            ClientOp::Leave { .. } => "leave",
            ClientOp::Send { .. } => "send",
            ClientOp::Dm { .. } => "dm",
            ClientOp::Broadcast { .. } => "broadcast",
            ClientOp::Typing { .. } => "typing",
            ClientOp::Status { .. } => "status",
            ClientOp::Ack { .. } => "ack",
            ClientOp::Refresh { .. } => "refresh",
            ClientOp::Ping => "ping",
        }
    }
}

/// Just the `ref` of a frame, read when the frame as a whole does not decode,
/// so the error can still be delivered as a reply.
#[derive(Debug, Deserialize)]
pub struct RefOnly {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

// ---------------------------------------------------------------------------
// Server -> client
// ---------------------------------------------------------------------------

/// Every frame the server sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome(Welcome),
    Reply(Reply),
    Message(Message),
    Dm(DirectMessage),
    Broadcast(BroadcastEvent),
    Presence(PresenceEvent),
    Typing(TypingEvent),
    Member(MemberEvent),
    Error(ErrorBody),
    Bye(Bye),
    RoomClosed(RoomClosed),
}

impl ServerFrame {
    /// The frame's `type` on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome(_) => "welcome",
            ServerFrame::Reply(_) => "reply",
            ServerFrame::Message(_) => "message",
            ServerFrame::Dm(_) => "dm",
            ServerFrame::Broadcast(_) => "broadcast",
            ServerFrame::Presence(_) => "presence",
            ServerFrame::Typing(_) => "typing",
            ServerFrame::Member(_) => "member",
            ServerFrame::Error(_) => "error",
            ServerFrame::Bye(_) => "bye",
            ServerFrame::RoomClosed(_) => "room_closed",
        }
    }

    /// Serialises the frame; serialising these types cannot fail (no maps with
    /// non-string keys, no foreign `Serialize` impls).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialise")
    }
}

/// Always the first frame on a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub conn_id: String,
    pub user: UserInfo,
    pub node: String,
    pub heartbeat_ms: u64,
    pub limits: Limits,
}

/// The bounds a client must respect, announced in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted frame (whole message), in bytes.
    pub max_frame_bytes: usize,
    /// Frames per second a connection may send before `rate_limited`.
    pub max_rate_per_s: u32,
    /// Largest message body, in bytes.
    pub max_body_bytes: usize,
    /// Rooms one connection may be joined to at once.
    pub max_rooms_per_conn: usize,
}

/// The answer to a request that carried a `ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(rename = "ref")]
    pub reference: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    /// A successful reply carrying `data`.
    pub fn ok(reference: String, data: Value) -> Self {
        Reply {
            reference,
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    /// A failed reply.
    pub fn err(reference: String, error: ErrorBody) -> Self {
        Reply {
            reference,
            ok: false,
            data: None,
            error: Some(error),
        }
    }
}

/// A room message: the `message` event, and (without `type`) the REST form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub room: String,
    pub id: String,
    /// Position in the room, assigned at commit: 1, 2, 3... without holes.
    pub seq: i64,
    pub from: UserRef,
    pub body: String,
    pub kind: String,
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// A direct message between two users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectMessage {
    pub id: String,
    pub from: UserRef,
    pub to: String,
    pub body: String,
    pub ts: DateTime<Utc>,
}

/// An admin broadcast to everyone connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastEvent {
    pub id: String,
    pub from: UserRef,
    pub body: String,
    pub ts: DateTime<Utc>,
}

/// A user's presence changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceEvent {
    pub user: UserRef,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub last_seen: DateTime<Utc>,
}

/// Someone started or stopped typing in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypingEvent {
    pub room: String,
    pub user: UserRef,
    pub active: bool,
}

/// Someone joined or left a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEvent {
    pub room: String,
    pub user: UserRef,
    pub action: MemberAction,
}

/// What a `member` event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberAction {
    Joined,
    Left,
}

/// A room was deactivated by its owner or an admin: no more sends or joins.
/// Telepath's own event (the contract leaves its shape to us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClosed {
    pub room: String,
    /// Who closed it.
    pub by: UserRef,
}

/// Sent just before the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bye {
    pub reason: ByeReason,
}

/// Why the server is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    Admin,
    Restart,
    TokenExpired,
    SlowConsumer,
    Replaced,
}

// ---------------------------------------------------------------------------
// Errors and close codes
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// REST bodies
// ---------------------------------------------------------------------------

/// `POST /auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,32}$")]
    pub username: String,
    #[serde(default)]
    pub role: Option<Role>,
}

/// `POST /auth/login` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub user: UserInfo,
}

/// `POST /rooms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateRoom {
    /// 1-64 characters, no control characters, no leading or trailing space.
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s])?$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Default 100.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub max_participants: Option<i64>,
    #[serde(default)]
    pub private: Option<bool>,
}

/// A room as REST shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub max_participants: i64,
    pub private: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub is_active: bool,
}

/// `GET /rooms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<Room>,
}

/// `GET /rooms/{id}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// `POST /rooms/{id}/join` response: the caller as a participant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Participant {
    pub user: UserRef,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    #[serde(default)]
    pub online: bool,
}

/// One entry of `GET /presence/online`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OnlineUser {
    pub id: String,
    pub name: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub last_seen: DateTime<Utc>,
    pub connections: u64,
}

/// `GET /presence/online`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnlineUsers {
    pub users: Vec<OnlineUser>,
}

// ---------------------------------------------------------------------------
// Internal (service-to-service) bodies, under /internal/
// ---------------------------------------------------------------------------

/// Gateway -> api: join `room` on behalf of `user`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalJoin {
    pub user: UserRef,
}

/// Api -> gateway: the join succeeded; `seq` is the room's latest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinResult {
    pub room: String,
    pub seq: i64,
    /// The participant's delivery cursor (advanced by acks); a join without
    /// `since` replays from it.
    #[serde(default)]
    pub cursor: i64,
}

/// Gateway -> api: persist a room message from `from`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalSend {
    pub from: UserRef,
    /// At most `TELEPATH_MAX_BODY_BYTES` bytes (default 16384).
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 64)]
    pub reply_to: Option<String>,
}

impl InternalSend {
    /// The bounds its schema states (a sender of 1–64 characters each, a
    /// body of 1–[`MAX_BODY_CHARS`] characters, `kind` 1–32, `client_id`
    /// 1–128, `reply_to` ≤ 64), and a body of at most `max_body_bytes`
    /// bytes. What a gateway checks before it sends, and the api again.
    pub fn check(&self, max_body_bytes: usize) -> Result<(), ErrorBody> {
        check_user(&self.from)?;
        check_body(&self.body, max_body_bytes)?;
        let chars = |s: &String| s.chars().count();
        if self
            .kind
            .as_ref()
            .is_some_and(|k| k.is_empty() || chars(k) > 32)
            || self
                .client_id
                .as_ref()
                .is_some_and(|c| c.is_empty() || chars(c) > 128)
            || self.reply_to.as_ref().is_some_and(|r| chars(r) > 64)
        {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "kind (1-32), client_id (1-128) or reply_to (≤64) out of bounds",
            ));
        }
        Ok(())
    }
}

/// Most characters in a message, DM or broadcast body (the schemas' `maxLength`).
pub const MAX_BODY_CHARS: usize = 4096;

/// A body: not empty, at most [`MAX_BODY_CHARS`] characters and
/// `max_bytes` bytes (`too_large` otherwise).
pub fn check_body(body: &str, max_bytes: usize) -> Result<(), ErrorBody> {
    if body.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "body must not be empty",
        ));
    }
    if body.len() > max_bytes || body.chars().count() > MAX_BODY_CHARS {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("body is over {MAX_BODY_CHARS} characters or {max_bytes} bytes"),
        ));
    }
    Ok(())
}

/// A user named by a service (it came from a verified token; bound it
/// anyway): an id and a name of 1–64 characters each.
pub fn check_user(user: &UserRef) -> Result<(), ErrorBody> {
    let ok = |s: &str| !s.is_empty() && s.chars().count() <= 64;
    if !ok(&user.id) || !ok(&user.name) {
        return Err(ErrorBody::new(ErrorCode::BadRequest, "bad user"));
    }
    Ok(())
}

/// Most sends in one [`InternalSendBatch`].
pub const MAX_SEND_BATCH: usize = 1000;

/// Gateway -> api: room messages to persist, in the order their senders
/// sent them (`POST /internal/messages`). A gateway keeps one batch in
/// flight, so every connection's sends are committed in its order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalSendBatch {
    #[schema(max_items = 1000)]
    pub sends: Vec<InternalRoomSend>,
}

/// One send of an [`InternalSendBatch`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalRoomSend {
    /// The room (a lowercase UUID).
    #[schema(min_length = 1, max_length = 64)]
    pub room: String,
    pub send: InternalSend,
    /// The W3C `traceparent` of the request that sent it, when traces are
    /// exported: the message's commit span continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub traceparent: Option<String>,
}

/// Api -> gateway: one outcome per send of an [`InternalSendBatch`], in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalSendResults {
    pub results: Vec<SendOutcome>,
}

/// The committed message, or why the send was refused (as the single-send
/// route's error body would say).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// One live connection, as gateways report it to presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnReport {
    #[schema(min_length = 1, max_length = 256)]
    pub conn_id: String,
    pub user: UserRef,
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
}

/// One live connection in a heartbeat: enough for presence to rebuild
/// everything it knows about it after losing its store (Redis restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveConn {
    #[schema(min_length = 1, max_length = 256)]
    pub conn_id: String,
    pub user: UserRef,
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
    /// Rooms this connection has joined (room ids).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub rooms: Vec<String>,
    /// No client frames for `TELEPATH_AWAY_AFTER_MS`.
    #[serde(default)]
    pub idle: bool,
}

/// Gateway -> presence: the connections of `node` that are still alive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatReport {
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
    #[schema(max_items = 100_000)]
    pub conns: Vec<LiveConn>,
}

/// Gateway -> presence: one thing that happened on a gateway, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresenceReport {
    /// A connection opened.
    Connect {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        user: UserRef,
        #[schema(min_length = 1, max_length = 256)]
        node: String,
    },
    /// A connection closed.
    Disconnect {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        #[schema(min_length = 1, max_length = 64)]
        user_id: String,
    },
    /// A connection joined a room.
    Join {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        user: UserRef,
        #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
        room: String,
    },
    /// A connection left a room.
    Leave {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        #[schema(min_length = 1, max_length = 64)]
        user_id: String,
        #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
        room: String,
    },
    /// A typing indicator started (refreshed) or stopped.
    Typing {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        user: UserRef,
        #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
        room: String,
        active: bool,
    },
    /// The user chose a status (`online` clears the choice: automatic online/away again).
    Status {
        user: UserRef,
        status: Status,
        #[schema(max_length = 128)]
        text: Option<String>,
    },
    /// A connection went idle (no client frames for `TELEPATH_AWAY_AFTER_MS`) or active again.
    Idle {
        #[schema(min_length = 1, max_length = 256)]
        conn_id: String,
        #[schema(min_length = 1, max_length = 64)]
        user_id: String,
        idle: bool,
    },
}

/// Gateway -> presence: a batch of reports, applied in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PresenceReports {
    #[schema(min_length = 1, max_length = 256)]
    pub node: String,
    #[schema(max_items = 10_000)]
    pub reports: Vec<PresenceReport>,
}

/// Presence -> every gateway (bus channel [`PRESENCE_CHANNEL`]): a user's
/// presence changed; tell the connections in `rooms` and the user's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceBroadcast {
    /// Rooms the user's connections had joined.
    pub rooms: Vec<String>,
    pub event: PresenceEvent,
}

/// Bus channel of presence changes; every gateway and the api subscribe to it.
pub const PRESENCE_CHANNEL: &str = "presence";

/// Longest status text, in characters.
pub const MAX_STATUS_TEXT_CHARS: usize = 128;

/// Gateway -> presence: a connection ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DisconnectReport {
    #[schema(min_length = 1, max_length = 256)]
    pub conn_id: String,
    #[schema(min_length = 1, max_length = 256)]
    pub user_id: String,
}

/// Control messages on a node's bus channel (`node:{id}`), never relayed to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeControl {
    /// Close every local connection of `user_id` with `bye` admin and 4003.
    DisconnectUser { user_id: String },
    /// The node's own liveness probe: it publishes these to itself and
    /// expects them back, which proves its subscription delivers.
    Probe { nonce: u64 },
}

/// What a connection log row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionEventKind {
    Connect,
    Disconnect,
}

/// Gateway -> api: one connect or disconnect, for `connection_logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionEvent {
    pub event: ConnectionEventKind,
    #[schema(max_length = 64)]
    pub conn_id: String,
    pub user: UserRef,
    #[schema(max_length = 64)]
    pub node: String,
    #[serde(default)]
    #[schema(max_length = 64)]
    pub ip: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub user_agent: Option<String>,
    /// For disconnects: the close code, e.g. `1000` or `4003`.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Gateway -> api: a batch of connection events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionEvents {
    #[schema(max_items = 1000)]
    pub events: Vec<ConnectionEvent>,
}

/// Presence -> api: everyone live right now (`GET /internal/presence/summary`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PresenceSummary {
    pub online_users: u64,
    pub connections: u64,
    pub by_node: std::collections::BTreeMap<String, u64>,
    pub users: Vec<OnlineUser>,
}

/// Presence -> api: one user's live connections
/// (`GET /internal/presence/users/{id}/connections`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserConnections {
    pub connections: Vec<ConnReport>,
}

/// Gateway -> api: a direct message from `from` to `to` (user id or username).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalDm {
    pub from: UserRef,
    #[schema(min_length = 1, max_length = 64)]
    pub to: String,
    /// At most `TELEPATH_MAX_BODY_BYTES` bytes (default 16384).
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
}

/// Api -> gateway: a DM was stored (and published).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmResult {
    pub id: String,
    pub ts: DateTime<Utc>,
    /// Whether the recipient had a live connection when it was sent.
    pub delivered: bool,
}

/// A room's delivery cursor: everything up to `seq` reached the user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomCursor {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub room: String,
    #[serde(deserialize_with = "integer::required")]
    #[schema(minimum = 0)]
    pub seq: i64,
}

/// Gateway -> api: acks of one user, in a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InternalAcks {
    #[schema(min_length = 1, max_length = 64)]
    pub user_id: String,
    /// DMs the user received (their ids).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub dms: Vec<String>,
    /// Room delivery cursors.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub cursors: Vec<RoomCursor>,
}

/// DMs waiting for their recipient's ack, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingDms {
    pub messages: Vec<DirectMessage>,
}

/// `GET /dms/{id}`: where a DM stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmState {
    pub id: String,
    pub from: UserRef,
    pub to: String,
    pub ts: DateTime<Utc>,
    /// True once the recipient acked it.
    pub delivered: bool,
    pub delivered_at: Option<DateTime<Utc>>,
    /// True while it waits in the recipient's offline queue.
    pub queued: bool,
}

/// `POST /messages/broadcast`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BroadcastRequest {
    /// At most `TELEPATH_MAX_BODY_BYTES` bytes (default 16384).
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
}

/// `POST /admin/disconnect`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DisconnectRequest {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub user_id: String,
}

/// `POST /admin/disconnect` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DisconnectResult {
    /// Connections told to close (as presence knew them).
    pub disconnected: u64,
}

/// `GET /rooms/{id}/participants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ParticipantList {
    pub participants: Vec<Participant>,
}

/// Lenient integers: JSON Schema counts `256.0` as the integer 256, and
/// query strings carry numbers as text, so integral values arrive as
/// integers, integral floats, or strings of either.
pub mod integer {
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }

    fn integral(raw: Raw) -> Option<i64> {
        let float = match raw {
            Raw::Int(i) => return Some(i),
            Raw::Float(f) => f,
            Raw::Text(t) => match t.trim().parse::<i64>() {
                Ok(i) => return Some(i),
                Err(_) => t.trim().parse::<f64>().ok()?,
            },
        };
        // Only whole numbers inside i64's range.
        (float.fract() == 0.0 && float.abs() < 9.2e18).then_some(float as i64)
    }

    /// A required integer (integral in any spelling).
    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        integral(Raw::deserialize(d)?).ok_or_else(|| D::Error::custom("expected an integer"))
    }

    /// An optional integer (`null`, absent, or integral).
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(raw) => integral(raw)
                .map(Some)
                .ok_or_else(|| D::Error::custom("expected an integer")),
        }
    }
}

// ---------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------

/// Whether `id` is a canonical lowercase hyphenated UUID. Room and user ids
/// must be, because they become bus channel names (`room:{id}`): nothing a
/// client types is ever used as a channel name or pattern unchecked.
pub fn is_canonical_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

/// Usernames: 1-32 of `[A-Za-z0-9_.-]`.
pub fn is_valid_username(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Namespace of user ids derived from usernames (UUID v5).
const USER_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c1f_5d1e_8b0a_4b7e_9f3c_2a4d_5e6f_7081);

/// The user id of `username`: the same on every node and in every token
/// minted for that name, so dev login and `telepath token` agree.
pub fn user_id_for(username: &str) -> String {
    uuid::Uuid::new_v5(&USER_NAMESPACE, username.as_bytes())
        .hyphenated()
        .to_string()
}

/// Bus channel carrying a room's events.
pub fn room_channel(room_id: &str) -> String {
    format!("room:{room_id}")
}

/// Bus channel carrying one user's events on every node.
pub fn user_channel(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Bus channel every node subscribes to for admin broadcasts.
pub const BROADCAST_CHANNEL: &str = "broadcast";

/// Bus channel of one node, for control messages.
pub fn node_channel(node_id: &str) -> String {
    format!("node:{node_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip_client(v: Value) {
        let frame: ClientFrame = serde_json::from_value(v.clone()).expect("decodes");
        let back = serde_json::to_value(&frame).unwrap();
        assert_eq!(back, v);
        assert_eq!(v["type"], frame.op.name());
        assert!(ClientOp::NAMES.contains(&frame.op.name()));
    }

    #[test]
    fn error_code_names_are_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn every_client_frame_round_trips() {
        let room = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";
        round_trip_client(json!({"type":"join","ref":"1","room":room,"since":41}));
        round_trip_client(json!({"type":"join","room":room}));
        round_trip_client(json!({"type":"leave","ref":"2","room":room}));
        round_trip_client(
            json!({"type":"send","ref":"3","room":room,"body":"hi","kind":"text","client_id":"c1","reply_to":"m1"}),
        );
        round_trip_client(json!({"type":"send","room":room,"body":"hi"}));
        round_trip_client(json!({"type":"dm","ref":"4","to":"ada","body":"psst","client_id":"c2"}));
        round_trip_client(json!({"type":"broadcast","body":"all hands"}));
        round_trip_client(json!({"type":"typing","room":room,"active":true}));
        round_trip_client(json!({"type":"status","status":"meditating","text":"om"}));
        round_trip_client(json!({"type":"ack","room":room,"seq":7}));
        round_trip_client(json!({"type":"ack","dm":"m9"}));
        round_trip_client(json!({"type":"refresh","token":"t"}));
        round_trip_client(json!({"type":"ping","ref":"9"}));
    }

    #[test]
    fn every_server_frame_round_trips() {
        let ts: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let user = UserRef {
            id: "u1".into(),
            name: "ada".into(),
        };
        let frames = vec![
            ServerFrame::Welcome(Welcome {
                conn_id: "c".into(),
                user: UserInfo {
                    id: "u1".into(),
                    name: "ada".into(),
                    role: Role::Admin,
                },
                node: "n1".into(),
                heartbeat_ms: 15000,
                limits: Limits {
                    max_frame_bytes: 65536,
                    max_rate_per_s: 50,
                    max_body_bytes: 4096,
                    max_rooms_per_conn: 100,
                },
            }),
            ServerFrame::Reply(Reply::ok("1".into(), json!({"pong": 5}))),
            ServerFrame::Reply(Reply::err(
                "2".into(),
                ErrorBody::new(ErrorCode::RoomFull, "full"),
            )),
            ServerFrame::Message(Message {
                room: "r".into(),
                id: "m".into(),
                seq: 3,
                from: user.clone(),
                body: "b".into(),
                kind: "text".into(),
                ts,
                reply_to: Some("m0".into()),
            }),
            ServerFrame::Dm(DirectMessage {
                id: "d".into(),
                from: user.clone(),
                to: "u2".into(),
                body: "x".into(),
                ts,
            }),
            ServerFrame::Broadcast(BroadcastEvent {
                id: "b".into(),
                from: user.clone(),
                body: "y".into(),
                ts,
            }),
            ServerFrame::Presence(PresenceEvent {
                user: user.clone(),
                status: Status::Meditating,
                text: Some("om".into()),
                last_seen: ts,
            }),
            ServerFrame::Typing(TypingEvent {
                room: "r".into(),
                user: user.clone(),
                active: false,
            }),
            ServerFrame::Member(MemberEvent {
                room: "r".into(),
                user,
                action: MemberAction::Left,
            }),
            ServerFrame::Error(ErrorBody::new(ErrorCode::BadRequest, "bad")),
            ServerFrame::Bye(Bye {
                reason: ByeReason::TokenExpired,
            }),
            ServerFrame::RoomClosed(RoomClosed {
                room: "r".into(),
                by: UserRef {
                    id: "u1".into(),
                    name: "ada".into(),
                },
            }),
        ];
        for frame in frames {
            let text = frame.to_json();
            let back: ServerFrame = serde_json::from_str(&text).unwrap();
            assert_eq!(back, frame, "{text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], frame.name(), "name() is the wire type");
        }
    }

    #[test]
    fn server_frames_use_the_wire_names() {
        let v: Value = serde_json::from_str(
            &ServerFrame::Bye(Bye {
                reason: ByeReason::SlowConsumer,
            })
            .to_json(),
        )
        .unwrap();
        assert_eq!(v, json!({"type":"bye","reason":"slow_consumer"}));
        let v: Value = serde_json::from_str(
            &ServerFrame::Reply(Reply::err(
                "7".into(),
                ErrorBody::new(ErrorCode::RoomFull, "m"),
            ))
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"reply","ref":"7","ok":false,"error":{"code":"room_full","message":"m"}})
        );
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

    #[test]
    fn integral_values_in_any_spelling_are_integers() {
        #[derive(Deserialize)]
        struct Q {
            #[serde(default, deserialize_with = "integer::option")]
            n: Option<i64>,
        }
        for (text, want) in [
            (r#"{"n":256}"#, Some(256)),
            (r#"{"n":256.0}"#, Some(256)),
            (r#"{"n":"7"}"#, Some(7)),
            (r#"{"n":"7.0"}"#, Some(7)),
            (r#"{"n":null}"#, None),
            ("{}", None),
        ] {
            assert_eq!(serde_json::from_str::<Q>(text).unwrap().n, want, "{text}");
        }
        for bad in [
            r#"{"n":2.5}"#,
            r#"{"n":"abc"}"#,
            r#"{"n":1e400}"#,
            r#"{"n":true}"#,
        ] {
            assert!(serde_json::from_str::<Q>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_control_messages_use_op_tags() {
        let c = NodeControl::DisconnectUser {
            user_id: "u".into(),
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"op":"disconnect_user","user_id":"u"})
        );
        assert_eq!(
            serde_json::from_value::<NodeControl>(json!({"op":"disconnect_user","user_id":"u"}))
                .unwrap(),
            c
        );
    }

    #[test]
    fn unknown_types_and_missing_fields_are_rejected() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"join"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"[1,2]"#).is_err());
        assert!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"status","status":"asleep"}"#).is_err()
        );
        let r: RefOnly = serde_json::from_str(r#"{"type":"join","ref":"5"}"#).unwrap();
        assert_eq!(r.reference.as_deref(), Some("5"));
    }

    #[test]
    fn user_ids_derive_from_usernames_stably() {
        assert_eq!(user_id_for("ada"), user_id_for("ada"));
        assert_ne!(user_id_for("ada"), user_id_for("Ada"));
        assert!(is_canonical_id(&user_id_for("ada")));
        assert!(
            is_valid_username("ada_1.x-y") && !is_valid_username("a b") && !is_valid_username("")
        );
    }

    #[test]
    fn only_canonical_uuids_are_ids() {
        assert!(is_canonical_id("0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f"));
        for bad in [
            "room:*",
            "0190F5A4-7C1E-7C3A-9D2E-1A2B3C4D5E6F",
            "user:42",
            "",
            "0190f5a47c1e7c3a9d2e1a2b3c4d5e6f",
            "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6*",
        ] {
            assert!(!is_canonical_id(bad), "{bad}");
        }
    }
}
