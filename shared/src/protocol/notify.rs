//! Personal notifications and announcements: the `notification`,
//! `notifications_read`, `announcement` and `announcement_dismissed`
//! events, and their REST bodies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ErrorBody, ErrorCode, UserRef, is_canonical_id};

/// Most notifications one user keeps; past it the oldest read ones are
/// deleted first, then the oldest unread ones.
pub const MAX_NOTIFICATIONS_PER_USER: i64 = 500;
/// Most ids one `POST /notifications/read` names.
pub const MAX_READ_IDS: usize = 500;
/// Longest announcement title, characters.
pub const MAX_ANNOUNCEMENT_TITLE: usize = 200;
/// Longest announcement body, characters.
pub const MAX_ANNOUNCEMENT_BODY: usize = 4000;
/// Most users in one [`UnreadRequest`].
pub const MAX_UNREAD_USERS: usize = 1000;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// `@name` in a room message.
    Mention,
    /// A reply to one of the user's messages.
    Reply,
    /// Reactions to one of the user's messages (one per message, the latest).
    Reaction,
    /// An invitation into a room.
    Invite,
    /// A DM that arrived while the user had no live connection.
    Dm,
    /// From the application's backend (`POST /api/users/{id}/publish`
    /// with `"kind": "notification"`).
    App,
}

impl NotificationKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationKind::Mention => "mention",
            NotificationKind::Reply => "reply",
            NotificationKind::Reaction => "reaction",
            NotificationKind::Invite => "invite",
            NotificationKind::Dm => "dm",
            NotificationKind::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mention" => NotificationKind::Mention,
            "reply" => NotificationKind::Reply,
            "reaction" => NotificationKind::Reaction,
            "invite" => NotificationKind::Invite,
            "dm" => NotificationKind::Dm,
            "app" => NotificationKind::App,
            _ => return None,
        })
    }
}

/// One notification; also the `notification` event (without `read`, which
/// is false for a new one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// A UUIDv7: ids sort by creation.
    pub id: String,
    pub kind: NotificationKind,
    /// The room it is about (mentions, replies, reactions, invitations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The message it is about (a room message, or the DM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Who caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<UserRef>,
    /// What to show: at most 200 characters of the message it is about,
    /// or the body an application sent (`app`).
    pub text: String,
    pub ts: DateTime<Utc>,
    /// In lists only: whether the user marked it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<bool>,
}

/// `GET /notifications`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<Notification>,
    /// The user's unread notifications in all.
    pub unread: i64,
    pub has_more: bool,
}

/// `POST /notifications/read`: `ids`, `up_to`, or both (neither: nothing
/// changes, the answer says how many are unread).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// These notifications (at most 500 ids; unknown or others' ids are ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = read_ids)]
    pub ids: Vec<String>,
    /// Every notification up to this id, included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub up_to: Option<String>,
}

fn read_ids() -> utoipa::openapi::schema::Array {
    super::ids::id_list_schema(MAX_READ_IDS)
}

impl MarkRead {
    pub fn check(&self) -> Result<(), ErrorBody> {
        let bad = |m: &str| Err(ErrorBody::new(ErrorCode::BadRequest, m));
        if self.ids.len() > MAX_READ_IDS {
            return bad("ids: at most 500 notification ids");
        }
        if let Some(i) = self.ids.iter().position(|id| !is_canonical_id(id)) {
            return bad(&format!("ids[{i}]: a lowercase UUID"));
        }
        if self.up_to.as_deref().is_some_and(|u| !is_canonical_id(u)) {
            return bad("up_to: a lowercase UUID");
        }
        Ok(())
    }
}

/// The answer to `POST /notifications/read`, and the
/// `notifications_read` event every connection of the user gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationsRead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<String>,
    /// The user's unread notifications after this.
    pub unread: i64,
}

/// How loud an announcement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnouncementLevel {
    Info,
    Warning,
    Critical,
}

impl AnnouncementLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            AnnouncementLevel::Info => "info",
            AnnouncementLevel::Warning => "warning",
            AnnouncementLevel::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => AnnouncementLevel::Info,
            "warning" => AnnouncementLevel::Warning,
            "critical" => AnnouncementLevel::Critical,
            _ => return None,
        })
    }
}

/// `POST /announcements` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAnnouncement {
    /// 1–200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// 1–4000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    pub body: String,
    pub level: AnnouncementLevel,
    /// When it stops being shown; absent: never. One already past is
    /// stored but shown to nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl CreateAnnouncement {
    pub fn check(&self) -> Result<(), ErrorBody> {
        let bad = |m: &str| Err(ErrorBody::new(ErrorCode::BadRequest, m));
        if !(1..=MAX_ANNOUNCEMENT_TITLE).contains(&self.title.chars().count()) {
            return bad("title: 1-200 characters");
        }
        if !(1..=MAX_ANNOUNCEMENT_BODY).contains(&self.body.chars().count()) {
            return bad("body: 1-4000 characters");
        }
        Ok(())
    }
}

/// An announcement; also the `announcement` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Announcement {
    pub id: String,
    pub title: String,
    pub body: String,
    pub level: AnnouncementLevel,
    pub created_by: UserRef,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// In `GET /announcements`: whether the caller dismissed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissed: Option<bool>,
}

/// `GET /announcements`: the active ones, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnnouncementList {
    pub announcements: Vec<Announcement>,
}

/// The `announcement_dismissed` event: the user dismissed it on some device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnnouncementDismissed {
    pub id: String,
}

/// Gateway -> api (`POST /internal/notifications/unread`): the unread
/// counts of users connecting.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UnreadRequest {
    /// At most 1000 user ids (lowercase UUIDs).
    #[schema(schema_with = unread_users)]
    pub user_ids: Vec<String>,
}

fn unread_users() -> utoipa::openapi::schema::Array {
    super::ids::id_list_schema(MAX_UNREAD_USERS)
}

impl UnreadRequest {
    pub fn check(&self) -> Result<(), ErrorBody> {
        if self.user_ids.len() > MAX_UNREAD_USERS {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "user_ids: at most 1000",
            ));
        }
        if self.user_ids.iter().any(|u| !is_canonical_id(u)) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "user_ids: each a lowercase UUID",
            ));
        }
        Ok(())
    }
}

/// One count per user id asked about, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UnreadCounts {
    pub unread: Vec<i64>,
}
