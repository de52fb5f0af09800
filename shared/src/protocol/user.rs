//! Users as frames and bodies show them, their roles and presence statuses.

use serde::{Deserialize, Serialize};
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
