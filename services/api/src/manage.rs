//! Running rooms (issue 21): who may do what in a room, the audit log, and
//! the room directory's events. The routes are in `manage/settings.rs`
//! (room info and settings, roles), `manage/moderation.rs` (kick, ban,
//! mute) and `manage/invites.rs` (invitations and invite links).
//!
//! Roles: `owner` > `moderator` > `member`; a global admin acts as an
//! owner in every room. Owners and moderators manage a room; only the
//! owner (or an admin) changes roles. A moderation action needs a role
//! above the target's, so moderators act on members, owners on moderators
//! too, and nobody on the owner. Non-participants of a private room get 404
//! from every route (the room's existence stays hidden); participants
//! lacking the role get 403.

pub(crate) mod invites;
pub(crate) mod moderation;
pub(crate) mod settings;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::SqliteConnection;
use telepath_shared::bus::Outgoing;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    AuditEntry, AuditPage, BROADCAST_CHANNEL, ErrorEnvelope, Room, RoomRole, ServerFrame,
    USERS_CHANNEL, UserRef, UsersBroadcast, integer,
};

use crate::ApiState;
use crate::auth::AuthUser;
use crate::rooms::room_id;
use crate::store::{self, RoomRow, db_err, now};

/// A caller in front of a room: the room (open), their role in it, and
/// whether they are a global admin.
pub(crate) struct Access {
    pub(crate) room: RoomRow,
    /// Their role as an active participant (none: not one).
    pub(crate) role: Option<RoomRole>,
    pub(crate) admin: bool,
}

impl Access {
    /// What the caller may do in the room: an admin as its owner.
    pub(crate) fn power(&self) -> Option<RoomRole> {
        if self.admin {
            Some(RoomRole::Owner)
        } else {
            self.role
        }
    }

    /// The caller's power if it is at least `needed` (403 otherwise).
    pub(crate) fn require(&self, needed: RoomRole) -> Result<RoomRole, ApiError> {
        match self.power() {
            Some(power) if power >= needed => Ok(power),
            _ if needed == RoomRole::Owner => Err(ApiError::forbidden(
                "only the room's owner or an admin may do this",
            )),
            _ => Err(ApiError::forbidden(
                "only the room's owner, its moderators or an admin may do this",
            )),
        }
    }
}

/// Opens room `id` for `caller`: 404 for an unknown or closed room, and
/// for a private room they take no part in (unless they are an admin).
pub(crate) async fn access(
    conn: &mut SqliteConnection,
    id: &str,
    caller: &str,
    admin: bool,
) -> Result<Access, ApiError> {
    let room = store::room(conn, id)
        .await?
        .filter(|r| r.is_active)
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    let role = store::role_of(conn, id, caller).await?;
    if room.is_private && role.is_none() && !admin {
        return Err(ApiError::not_found("no such room"));
    }
    Ok(Access { room, role, admin })
}

/// Whether someone with `power` may kick, ban or mute someone whose role
/// is `target` (none: not a participant, as a member): strictly above
/// them, and never the owner.
pub(crate) fn may_act_on(power: RoomRole, target: Option<RoomRole>) -> bool {
    let target = target.unwrap_or(RoomRole::Member);
    target != RoomRole::Owner && power > target && power >= RoomRole::Moderator
}

/// Writes one line of the room's audit log (in the caller's transaction).
pub(crate) async fn audit(
    conn: &mut SqliteConnection,
    room_id: &str,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO room_audit (room_id, actor_id, action, target_id, detail, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(room_id)
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail.map(|d| d.to_string()))
    .bind(now())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Publishes a directory event (`room_created`, `room_updated`,
/// `room_closed`) of `room` after commit: to everyone connected for a
/// public room (or one that was public until this change), to the room's
/// participants (`members`) for a private one. Through the `rooms` outbox,
/// in order with the room's messages.
pub(crate) fn publish_directory(
    state: &ApiState,
    frame: &ServerFrame,
    public: bool,
    members: Vec<String>,
) {
    let json = frame.to_json();
    let out = if public {
        Outgoing::new(BROADCAST_CHANNEL.to_owned(), bytes::Bytes::from(json))
    } else {
        users_message(members, json)
    };
    state.outboxes().rooms.push([out]);
}

/// A frame for a list of users, as one bus message on the `users` channel.
pub(crate) fn users_message(users: Vec<String>, frame: String) -> Outgoing {
    let body = serde_json::to_vec(&UsersBroadcast { users, frame }).expect("serialises");
    Outgoing::new(USERS_CHANNEL.to_owned(), bytes::Bytes::from(body))
}

/// A body whose fields are all optional, read from a JSON object only
/// (serde would take `[null, null]` for such a struct too).
pub(crate) fn from_object<T: serde::de::DeserializeOwned>(
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// The room as the caller sees it (their role, counts).
pub(crate) fn room_for(row: RoomRow, role: Option<RoomRole>) -> Room {
    let mut room = row.into_room();
    room.role = role;
    room
}

/// `?before=&limit=` of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Entries with an id below this (the next page).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "integer::option")]
    before: Option<i64>,
    /// Page size: default 50, at most 200 (larger is clamped).
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "integer::option")]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/rooms/{id}/audit", tag = "moderation",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), AuditQuery),
    responses((status = 200, description = "What owners, moderators and admins did in the room, newest first", body = AuditPage), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Owners and moderators only", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn audit_log(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let id = room_id(&id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match q.limit {
        None => 50,
        Some(l) if l < 1 => return Err(ApiError::bad_request("limit must be at least 1")),
        Some(l) => l.min(200),
    };
    if q.before.is_some_and(|b| b < 0) {
        return Err(ApiError::bad_request("before is non-negative"));
    }
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    access(&mut conn, id, &claims.sub, claims.is_admin())
        .await?
        .require(RoomRole::Moderator)?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        DateTime<Utc>,
    )> = sqlx::query_as(
        "SELECT a.id, a.action, a.actor_id, COALESCE(ua.username, ''), a.target_id, ut.username, a.detail, a.created_at
         FROM room_audit a
         LEFT JOIN users ua ON ua.id = a.actor_id
         LEFT JOIN users ut ON ut.id = a.target_id
         WHERE a.room_id = ? AND a.id < ?
         ORDER BY a.id DESC LIMIT ?",
    )
    .bind(id)
    .bind(q.before.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let has_more = rows.len() as i64 > limit;
    let entries = rows
        .into_iter()
        .take(limit as usize)
        .map(
            |(id, action, actor, actor_name, target, target_name, detail, ts)| AuditEntry {
                id,
                action,
                actor: UserRef {
                    id: actor,
                    name: actor_name,
                },
                target: target.map(|id| UserRef {
                    id,
                    name: target_name.unwrap_or_default(),
                }),
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                ts,
            },
        )
        .collect();
    Ok(Json(AuditPage { entries, has_more }))
}
