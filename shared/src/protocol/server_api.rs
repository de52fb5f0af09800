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
    /// Register webhooks and read their deliveries.
    Webhooks,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Publish,
        Scope::Presence,
        Scope::Rooms,
        Scope::Users,
        Scope::Webhooks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Presence => "presence",
            Scope::Rooms => "rooms",
            Scope::Users => "users",
            Scope::Webhooks => "webhooks",
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
                    format!("unknown scope {name:?} (publish, presence, rooms, users, webhooks)")
                })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(
                "at least one scope (publish, presence, rooms, users, webhooks)".to_owned(),
            );
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
    #[schema(min_items = 1, max_items = 5)]
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

/// What `POST /api/users/{id}/publish` sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserPublishKind {
    /// A direct message (queued while the user is offline, acked).
    #[default]
    Dm,
    /// A notification (`kind` `app`): the `notification` event on every
    /// live connection, kept in `GET /notifications` and the unread count.
    Notification,
}

/// `POST /api/users/{id}/publish`: a direct message or a notification from
/// the application.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishToUser {
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    /// `dm` (the default) or `notification`.
    #[serde(default)]
    pub kind: UserPublishKind,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    #[serde(default, rename = "as")]
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,32}$")]
    pub as_user: Option<String>,
}

/// `POST /api/users/{id}/publish` answer: `dm` or `notification`, as sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishedDm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<DmResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<super::Notification>,
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

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum WebhookEvent {
    /// A connection was opened (one per connection, on any gateway).
    #[serde(rename = "user.connected")]
    UserConnected,
    /// A connection ended.
    #[serde(rename = "user.disconnected")]
    UserDisconnected,
    /// A user became a participant of a room.
    #[serde(rename = "room.joined")]
    RoomJoined,
    /// A user stopped being one: left, kicked or banned.
    #[serde(rename = "room.left")]
    RoomLeft,
    /// A room message was committed.
    #[serde(rename = "message.created")]
    MessageCreated,
    /// A room message was edited.
    #[serde(rename = "message.edited")]
    MessageEdited,
    /// A room message was deleted.
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    /// A user's status changed (online, away, busy, offline, custom ...).
    #[serde(rename = "presence.changed")]
    PresenceChanged,
}

impl WebhookEvent {
    /// Every event, in a fixed order (its bit in a set is its index).
    pub const ALL: [WebhookEvent; 8] = [
        WebhookEvent::UserConnected,
        WebhookEvent::UserDisconnected,
        WebhookEvent::RoomJoined,
        WebhookEvent::RoomLeft,
        WebhookEvent::MessageCreated,
        WebhookEvent::MessageEdited,
        WebhookEvent::MessageDeleted,
        WebhookEvent::PresenceChanged,
    ];

    /// Its name, as deliveries carry it in `type` and `Telepath-Event`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::UserConnected => "user.connected",
            WebhookEvent::UserDisconnected => "user.disconnected",
            WebhookEvent::RoomJoined => "room.joined",
            WebhookEvent::RoomLeft => "room.left",
            WebhookEvent::MessageCreated => "message.created",
            WebhookEvent::MessageEdited => "message.edited",
            WebhookEvent::MessageDeleted => "message.deleted",
            WebhookEvent::PresenceChanged => "presence.changed",
        }
    }

    /// The event named `name`.
    pub fn parse(name: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Its bit in an event set.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// `POST /api/webhooks`: an endpoint to deliver events to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://`, at most 2048 characters, no user info. Its
    /// host must resolve to public addresses only (loopback, private,
    /// link-local and other reserved ranges are refused) unless the server
    /// sets `TELEPATH_WEBHOOK_ALLOW_PRIVATE=1`.
    #[schema(
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#\\s]+([/?#]\\S*)?$"
    )]
    pub url: String,
    /// Which events to deliver (1-8, each once).
    #[schema(min_items = 1, max_items = 8)]
    pub events: Vec<WebhookEvent>,
    /// The signing secret: 16-128 printable ASCII characters without
    /// spaces. Absent: one is made (`whsec_` and 43 characters) and
    /// returned this once.
    #[serde(default)]
    #[schema(pattern = "^[!-~]{16,128}$")]
    pub secret: Option<String>,
}

/// A webhook as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: DateTime<Utc>,
    /// Deliveries waiting (not yet delivered, not given up).
    pub pending: i64,
    /// Events not queued because `pending` was at its bound
    /// (`TELEPATH_WEBHOOK_MAX_PENDING`).
    pub dropped: i64,
}

/// A new webhook, with its signing secret (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    pub secret: String,
    #[serde(flatten)]
    pub webhook: Webhook,
}

/// `GET /api/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not delivered yet: waiting for its first attempt or its next retry.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up: still failing `TELEPATH_WEBHOOK_RETRY_FOR` after it was queued.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    /// Increasing in the order events were queued.
    pub id: i64,
    /// The event's id (the body's `id` and `Telepath-Event-Id`): the same
    /// for every webhook and every attempt, for deduplication.
    pub event_id: String,
    pub event: WebhookEvent,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt (absent when it got no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// `GET /api/webhooks/{id}/deliveries`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveries {
    pub deliveries: Vec<WebhookDelivery>,
}
