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

/// `POST /auth/ticket` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectTicket {
    /// Single use: `GET /connect?ticket=`.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
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

/// `POST /rooms/{id}/messages`: what the `send` frame carries, without the
/// room (the path names it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// 1-4096 characters, at most `TELEPATH_MAX_BODY_BYTES` bytes.
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    /// Default `text`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub kind: Option<String>,
    /// The sender's idempotency key: a send repeated with it answers the
    /// message the first one stored.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    /// A message of the same room this one replies to.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub reply_to: Option<String>,
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
    /// What the room is about now (settable by owners and moderators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Active participants (`GET /rooms/{id}`, `GET /rooms`, room events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// `GET /rooms/{id}`: participants online now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_count: Option<i64>,
    /// `GET /rooms/{id}` and `GET /rooms`: the caller's role, when they take part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<super::RoomRole>,
    /// `GET /rooms`, rooms the caller takes part in: messages above their
    /// read cursor that are not their own and not deleted (counted up to
    /// 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
    /// `GET /rooms`, rooms the caller takes part in: their read cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
    /// True when `unread` stopped counting at 10,000 (there may be more).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unread_capped: bool,
    /// Days its messages are kept (set by the owner); absent: the server's
    /// default (`TELEPATH_RETENTION_DAYS`; unset there: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<i64>,
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
    /// The participant's read cursor (`read`).
    #[serde(default)]
    pub read_seq: i64,
    /// When the user was last seen online (persisted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// Until when the participant is muted (far future: until lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<DateTime<Utc>>,
}

/// `GET /rooms/{id}/messages/{message_id}/thread`: replies in seq order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThreadPage {
    /// The message the replies answer, as it is now.
    pub parent: Message,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// One hit of `GET /search`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub id: String,
    /// A room message's room and seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// A DM's other user (id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    pub from: UserRef,
    pub ts: DateTime<Utc>,
    /// An excerpt with each match between `«` and `»`.
    pub snippet: String,
}

/// `GET /search`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
    /// The `offset` of the next page, when there may be one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<i64>,
}

/// `GET /dms?with=`: one conversation, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmPage {
    pub messages: Vec<DirectMessage>,
    pub has_more: bool,
}

/// One conversation of `GET /dms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmConversation {
    pub user: UserRef,
    pub last: DirectMessage,
    /// Their DMs to the caller not acked yet.
    pub unread: i64,
}

/// `GET /dms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DmConversations {
    pub conversations: Vec<DmConversation>,
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
    /// The internal route (a gateway's connect): the user's pending room
    /// invitations too, sent as `invite` events after `welcome`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invites: Vec<super::Invite>,
    /// The internal route: the active announcements the user has not
    /// dismissed, sent as `announcement` events after `welcome`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announcements: Vec<super::Announcement>,
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
