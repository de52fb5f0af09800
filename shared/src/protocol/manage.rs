//! Running rooms and profiles (issue 21): room roles, settings,
//! invitations, invite links, moderation, the audit log, profiles, and the
//! events they cause.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Room, Status, UserRef, integer};

/// A participant's role in a room, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoomRole {
    Member,
    Moderator,
    Owner,
}

impl RoomRole {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomRole::Owner => "owner",
            RoomRole::Moderator => "moderator",
            RoomRole::Member => "member",
        }
    }

    /// The role stored as `name` (anything unknown reads as a member).
    pub fn parse(name: &str) -> RoomRole {
        match name {
            "owner" => RoomRole::Owner,
            "moderator" => RoomRole::Moderator,
            _ => RoomRole::Member,
        }
    }
}

/// `PATCH /rooms/{id}`: the fields to change (absent ones stay).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomPatch {
    #[serde(default)]
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s])?$"
    )]
    pub name: Option<String>,
    /// `""` clears it.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// `""` clears it. No control characters.
    #[serde(default)]
    #[schema(max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub topic: Option<String>,
    /// Not below the current number of participants (409).
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub max_participants: Option<i64>,
    #[serde(default)]
    pub private: Option<bool>,
    /// Owner (or admin) only: days the room's messages are kept, 1–36500;
    /// 0 returns to the server's default.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 0, maximum = 36_500)]
    pub retention: Option<i64>,
}

/// `PATCH /rooms/{id}/participants/{user_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleChange {
    /// `owner` hands the room over: the caller becomes a moderator.
    pub role: RoomRole,
}

/// A user named in a request body: their id or their username.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserTarget {
    #[schema(min_length = 1, max_length = 64)]
    pub user: String,
}

/// `POST /rooms/{id}/ban` and `POST /rooms/{id}/mute`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Sanction {
    /// The user's id or username.
    #[schema(min_length = 1, max_length = 64)]
    pub user: String,
    /// Seconds; absent: until lifted.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub duration: Option<i64>,
}

/// Longest ban or mute with a duration: a year (longer: leave it out).
pub const MAX_SANCTION_SECS: i64 = 31_536_000;

/// A room as an invitation or a link shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoomRef {
    pub id: String,
    pub name: String,
    pub private: bool,
}

/// What became of an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InviteState {
    Pending,
    Accepted,
    Declined,
    Revoked,
}

/// An invitation of one user into a room; also the `invite` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invite {
    pub id: String,
    pub room: RoomRef,
    /// The invitee.
    pub user: UserRef,
    /// Who invited them.
    pub from: UserRef,
    pub state: InviteState,
    pub created_at: DateTime<Utc>,
}

/// `GET /invites`: the caller's pending invitations, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteList {
    pub invites: Vec<Invite>,
}

/// `POST /rooms/{id}/invite-links`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateInviteLink {
    /// Joins the link allows; absent: no limit.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub max_uses: Option<i64>,
    /// Seconds until the link stops working; absent: 7 days.
    #[serde(default, deserialize_with = "integer::option")]
    #[schema(minimum = 60, maximum = 2_592_000)]
    pub expires_in: Option<i64>,
}

/// Bounds of an invite link.
pub const MAX_LINK_USES: i64 = 100_000;
pub const MIN_LINK_SECS: i64 = 60;
pub const MAX_LINK_SECS: i64 = 2_592_000;
pub const DEFAULT_LINK_SECS: i64 = 604_800;

/// An invite link: the token is shown once, at creation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteLink {
    /// Secret: whoever holds it joins with `POST /join/{token}`.
    pub token: String,
    pub room: RoomRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<i64>,
    pub expires_at: DateTime<Utc>,
}

/// `POST /join/{token}` and `POST /invites/{id}/accept`: the room joined.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinedRoom {
    pub room: Room,
    pub role: RoomRole,
}

/// A ban in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ban {
    pub user: UserRef,
    pub by: UserRef,
    /// Absent: until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `GET /rooms/{id}/bans`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BanList {
    pub bans: Vec<Ban>,
}

/// One line of a room's audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// `kick`, `ban`, `unban`, `mute`, `unmute`, `role`, `update`, `invite`,
    /// `invite_link`, `close`.
    pub action: String,
    pub actor: UserRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<UserRef>,
    /// What the action set (a role, a duration, the changed fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    pub ts: DateTime<Utc>,
}

/// `GET /rooms/{id}/audit`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub has_more: bool,
}

/// A user's profile: `GET /users/{id or name}`, `PATCH /users/me`, and the
/// `profile` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub abilities: Vec<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// When the user was last seen online (persisted: survives restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    pub online: bool,
}

/// `PATCH /users/me`: the fields to change (`""` or `[]` clears one).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// No control characters or outer spaces.
    #[serde(default)]
    #[schema(
        max_length = 64,
        pattern = r"^$|^[^\x00-\x1f\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s])?$"
    )]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00]*$")]
    pub bio: Option<String>,
    /// `https://` only, no spaces or control characters.
    #[serde(default)]
    #[schema(max_length = 512, pattern = r"^$|^https://[^\s\x00-\x1f\x7f-\x9f]+$")]
    pub avatar_url: Option<String>,
    /// At most 16 tags of 1-32 characters, no control characters or outer spaces.
    #[serde(default)]
    #[schema(schema_with = abilities_schema)]
    pub abilities: Option<Vec<String>>,
}

/// The schema of `abilities`: the bounds of each tag are in the document too.
fn abilities_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let tag = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ABILITY))
        .pattern(Some(
            r"^[^\x00-\x1f\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s])?$",
        ));
    // Nullable like the other fields: null leaves the tags as they are.
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(tag)
        .max_items(Some(MAX_ABILITIES))
        .build()
}

/// Bounds of a profile.
pub const MAX_DISPLAY_NAME: usize = 64;
pub const MAX_BIO: usize = 1024;
pub const MAX_AVATAR_URL: usize = 512;
pub const MAX_ABILITIES: usize = 16;
pub const MAX_ABILITY: usize = 32;

/// One user found by `GET /users?q=`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserHit {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `GET /users?q=`: users whose name starts with `q`, by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserHits {
    pub users: Vec<UserHit>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `room_created` and `room_updated`: the room as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub room: Room,
    /// Who created or changed it.
    pub by: UserRef,
}

/// A bus message for a list of users (`users` channel): each gateway
/// delivers `frame` once to every local connection of each listed user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsersBroadcast {
    pub users: Vec<String>,
    /// The frame's JSON text.
    pub frame: String,
}

/// The bus channel of [`UsersBroadcast`]s.
pub const USERS_CHANNEL: &str = "users";
