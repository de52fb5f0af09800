//! REST request and response bodies of the public routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DirectMessage, Message, Role, Status, UserInfo, UserRef, integer};

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

/// `GET /rooms/{id}/participants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ParticipantList {
    pub participants: Vec<Participant>,
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
