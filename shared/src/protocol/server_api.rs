//! The server API (`/api/`): what an application backend sends and gets
//! with an API key, and the admin routes that manage the keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DmResult, OnlineUser, SendOutcome};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Publish to rooms and to users.
    Publish,
    /// Read presence.
    Presence,
    /// Create rooms and add members.
    Rooms,
    /// Disconnect users.
    Users,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Publish, Scope::Presence, Scope::Rooms, Scope::Users];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Presence => "presence",
            Scope::Rooms => "rooms",
            Scope::Users => "users",
        }
    }

    /// A comma list of scopes (`publish,presence`), or which one is unknown.
    pub fn parse_list(list: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.as_str() == name)
                .ok_or_else(|| {
                    format!("unknown scope {name:?} (publish, presence, rooms, users)")
                })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope (publish, presence, rooms, users)".to_owned());
        }
        Ok(scopes)
    }
}

/// `POST /admin/api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1-64 characters, no control characters, no leading or trailing space.
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s])?$"
    )]
    pub name: String,
    #[schema(min_items = 1, max_items = 4)]
    pub scopes: Vec<Scope>,
    /// Limits the key to rooms whose name starts with this (1-64 characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub room_prefix: Option<String>,
}

/// An API key as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_prefix: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A new API key: its secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    /// `tpk_` and 43 characters; send as `Authorization: Bearer <key>`.
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKeyInfo,
}

/// `GET /admin/api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyInfo>,
}

/// `POST /api/rooms/{id}/publish`: a room message from the application.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    /// The bot user it is sent as (a username, created if new); absent:
    /// the `system` user.
    #[serde(default, rename = "as")]
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,32}$")]
    pub as_user: Option<String>,
}

/// One item of `POST /api/publish`: a [`Publish`] and its room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishItem {
    /// Room id (lowercase UUID).
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub room: String,
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    #[serde(default, rename = "as")]
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,32}$")]
    pub as_user: Option<String>,
}

impl PublishItem {
    /// The item without its room.
    pub fn into_publish(self) -> (String, Publish) {
        (
            self.room,
            Publish {
                body: self.body,
                kind: self.kind,
                client_id: self.client_id,
                as_user: self.as_user,
            },
        )
    }
}

/// `POST /api/publish`: up to 100 room messages in one call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatch {
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<PublishItem>,
}

/// `POST /api/publish` answer, one outcome per item in order: the
/// message, or why that item was refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishResults {
    pub results: Vec<SendOutcome>,
}

/// `POST /api/users/{id}/publish`: a direct message from the application.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishToUser {
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    #[serde(default, rename = "as")]
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,32}$")]
    pub as_user: Option<String>,
}

/// `POST /api/users/{id}/publish` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishedDm {
    pub dm: DmResult,
}

/// `GET /api/rooms/{id}/presence` and `GET /api/presence`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiPresence {
    /// The users asked about who are online, with their status.
    pub online: Vec<OnlineUser>,
    /// Those who are not.
    pub offline: Vec<String>,
}

/// `POST /api/rooms/{id}/members`: users (ids of known users) made
/// participants.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    /// User ids (lowercase UUIDs).
    #[schema(schema_with = member_ids)]
    pub users: Vec<String>,
}

fn member_ids() -> utoipa::openapi::schema::Array {
    let mut ids = super::ids::id_list_schema(1000);
    ids.min_items = Some(1);
    ids
}

impl PublishItem {
    /// The bounds its schema states: a room id, a body of 1-4096
    /// characters, `kind` 1-32, `client_id` 1-128, `as` a username. A batch
    /// with an item out of them is refused whole; what depends on the
    /// server (the room, the key's prefix, the byte limit) refuses that
    /// item alone.
    pub fn check(&self) -> Result<(), String> {
        let chars = |s: &str| s.chars().count();
        if !super::is_canonical_id(&self.room) {
            return Err("room: a room id (lowercase UUID)".to_owned());
        }
        if self.body.is_empty() || chars(&self.body) > super::MAX_BODY_CHARS {
            return Err("body: 1-4096 characters".to_owned());
        }
        if self
            .kind
            .as_deref()
            .is_some_and(|k| k.is_empty() || chars(k) > 32)
        {
            return Err("kind: 1-32 characters".to_owned());
        }
        if self
            .client_id
            .as_deref()
            .is_some_and(|c| c.is_empty() || chars(c) > 128)
        {
            return Err("client_id: 1-128 characters".to_owned());
        }
        if self
            .as_user
            .as_deref()
            .is_some_and(|a| !super::is_valid_username(a))
        {
            return Err("as: 1-32 of A-Z a-z 0-9 _ . -".to_owned());
        }
        Ok(())
    }
}

/// `POST /api/rooms/{id}/members` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddedMembers {
    /// Users who were not participants before.
    pub added: Vec<String>,
}
