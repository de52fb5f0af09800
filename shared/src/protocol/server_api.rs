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
    /// 1-64 characters.
    #[schema(min_length = 1, max_length = 64)]
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

/// One item of `POST /api/publish`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishItem {
    /// Room id (lowercase UUID).
    pub room: String,
    #[serde(flatten)]
    pub publish: Publish,
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

/// `POST /api/rooms`: a room the application owns (its owner is the
/// `system` user).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiCreateRoom {
    #[schema(max_length = 64)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100_000)]
    pub max_participants: Option<i64>,
    #[serde(default)]
    pub private: Option<bool>,
}

/// `POST /api/rooms/{id}/members`: users (ids of known users) made
/// participants.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    #[schema(min_items = 1, max_items = 1000)]
    pub users: Vec<String>,
}

/// `POST /api/rooms/{id}/members` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddedMembers {
    /// Users who were not participants before.
    pub added: Vec<String>,
}
