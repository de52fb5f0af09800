//! Kick, ban and mute: written with their audit line in one transaction,
//! then announced as `member` events to the room and to the user's own
//! channel, where every gateway holding one of the user's connections
//! carries them out (a kick or a ban takes the room away from each).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use telepath_shared::auth::Claims;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    Ban, BanList, ErrorEnvelope, LeftReason, MAX_SANCTION_SECS, MemberAction, MemberEvent,
    RoomRole, Sanction, UserRef, UserTarget,
};

use super::{Access, access, audit, may_act_on};
use crate::ApiState;
use crate::auth::AuthUser;
use crate::rooms::{announce, room_id};
use crate::store::{self, db_err, now};

/// A mute without end is stored with this end (as text it sorts after
/// every real time).
fn forever() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .expect("a valid time")
}

/// The end of a sanction of `duration` seconds (none: without end).
fn until(duration: Option<i64>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match duration {
        None => Ok(None),
        Some(d) if (1..=MAX_SANCTION_SECS).contains(&d) => Ok(Some(now() + Duration::seconds(d))),
        Some(_) => Err(ApiError::bad_request(format!(
            "duration: 1-{MAX_SANCTION_SECS} seconds (leave it out for no end)"
        ))),
    }
}

/// The user a moderation request names, checked against the caller's
/// power: 404 for an unknown user (or, with `member`, one who takes no
/// part in the room), 403 when the caller's role is not above theirs.
async fn target(
    conn: &mut SqliteConnection,
    access: &Access,
    who: &str,
    member: bool,
) -> Result<(UserRef, Option<RoomRole>), ApiError> {
    let power = access.require(RoomRole::Moderator)?;
    if who.is_empty() || who.chars().count() > 64 {
        return Err(ApiError::bad_request("user: 1-64 characters"));
    }
    let user = store::find_user(conn, who)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let role = store::role_of(conn, &access.room.id, &user.id).await?;
    if member && role.is_none() {
        return Err(ApiError::not_found("not a member of this room"));
    }
    if !may_act_on(power, role) {
        return Err(ApiError::forbidden(
            "moderators act on members, owners on moderators too, nobody on the owner",
        ));
    }
    Ok((user, role))
}

/// What a moderation action on one user starts with: its write
/// transaction, the user and their role in the room (see [`target`]). A
/// user named in the path (`from_path`) who cannot exist is 404, not 400.
async fn begin(
    state: &ApiState,
    claims: &Claims,
    id: &str,
    who: &str,
    member: bool,
    from_path: bool,
) -> Result<(Transaction<'static, Sqlite>, UserRef, Option<RoomRole>), ApiError> {
    let mut tx = state.db().begin_write().await?;
    let access = access(&mut tx, id, &claims.sub, claims.is_admin()).await?;
    if from_path {
        no_such_name(who)?;
    }
    let (user, role) = target(&mut tx, &access, who, member).await?;
    Ok((tx, user, role))
}

/// A user named in a path: no user has an empty name or one over 64 bytes.
fn no_such_name(who: &str) -> Result<(), ApiError> {
    if who.is_empty() || who.len() > 64 {
        return Err(ApiError::not_found("no such user"));
    }
    Ok(())
}

/// A `member` event by the caller about `user`.
fn event(room: &str, user: UserRef, action: MemberAction, by: UserRef) -> MemberEvent {
    let mut event = MemberEvent::new(room.to_owned(), user, action);
    event.by = Some(by);
    event
}

#[utoipa::path(post, path = "/rooms/{id}/kick", tag = "moderation", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = UserTarget,
    responses((status = 204, description = "Removed: every connection of the user stops receiving the room (member left, reason kicked); they may rejoin a public room"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "The caller's role is not above the user's", body = ErrorEnvelope), (status = 404, description = "No such room, user or participant", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn kick(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UserTarget>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    let (mut tx, user, _) = begin(&state, &claims, id, &req.user, true, false).await?;
    store::remove(&mut tx, id, &user.id, "kicked").await?;
    audit(&mut tx, id, &claims.sub, "kick", Some(&user.id), None).await?;
    tx.commit().await.map_err(db_err)?;
    state.unread().touch([&user.id]);
    let mut left = event(id, user, MemberAction::Left, claims.user_ref());
    left.reason = Some(LeftReason::Kicked);
    announce(&state, left);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/rooms/{id}/ban", tag = "moderation", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = Sanction,
    responses((status = 204, description = "Banned (a participant is removed: member left, reason banned); they cannot join until the ban ends or is lifted, and their pending invitation is revoked"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "The caller's role is not above the user's", body = ErrorEnvelope), (status = 404, description = "No such room or user", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn ban(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Sanction>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    let until = until(req.duration)?;
    let (mut tx, user, role) = begin(&state, &claims, id, &req.user, false, false).await?;
    sqlx::query(
        "INSERT INTO room_bans (room_id, user_id, banned_by, until, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (room_id, user_id) DO UPDATE SET banned_by = excluded.banned_by,
             until = excluded.until, created_at = excluded.created_at",
    )
    .bind(id)
    .bind(&user.id)
    .bind(&claims.sub)
    .bind(until)
    .bind(now())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "UPDATE room_invites SET state = 'revoked', decided_at = ?
         WHERE room_id = ? AND user_id = ? AND state = 'pending'",
    )
    .bind(now())
    .bind(id)
    .bind(&user.id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    // (A non-participant's history stays closed through the ban itself.)
    if role.is_some() {
        store::remove(&mut tx, id, &user.id, "banned").await?;
    }
    audit(
        &mut tx,
        id,
        &claims.sub,
        "ban",
        Some(&user.id),
        Some(json!({ "duration": req.duration })),
    )
    .await?;
    tx.commit().await.map_err(db_err)?;
    if role.is_some() {
        state.unread().touch([&user.id]);
        let mut left = event(id, user, MemberAction::Left, claims.user_ref());
        left.reason = Some(LeftReason::Banned);
        announce(&state, left);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/rooms/{id}/ban/{user}", tag = "moderation",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), ("user" = String, Path, description = "The banned user's id or name")),
    responses((status = 204, description = "Lifted: the user may join again"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Owners and moderators only", body = ErrorEnvelope), (status = 404, description = "No such room, user or ban", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn unban(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path((id, who)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    let (mut tx, user, _) = begin(&state, &claims, id, &who, false, true).await?;
    let done = sqlx::query("DELETE FROM room_bans WHERE room_id = ? AND user_id = ?")
        .bind(id)
        .bind(&user.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("the user is not banned here"));
    }
    sqlx::query(
        "UPDATE room_participants SET removed = 'left' WHERE room_id = ? AND user_id = ? AND is_active = 0",
    )
    .bind(id)
    .bind(&user.id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    audit(&mut tx, id, &claims.sub, "unban", Some(&user.id), None).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/rooms/{id}/bans", tag = "moderation", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "Bans in force, newest first (at most 1,000)", body = BanList), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Owners and moderators only", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn bans(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<BanList>, ApiError> {
    let id = room_id(&id)?;
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    access(&mut conn, id, &claims.sub, claims.is_admin())
        .await?
        .require(RoomRole::Moderator)?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, String, String, String, Option<DateTime<Utc>>, DateTime<Utc>)> =
        sqlx::query_as(
            "SELECT b.user_id, COALESCE(u.username, ''), b.banned_by, COALESCE(m.username, ''), b.until, b.created_at
             FROM room_bans b
             LEFT JOIN users u ON u.id = b.user_id
             LEFT JOIN users m ON m.id = b.banned_by
             WHERE b.room_id = ? AND (b.until IS NULL OR b.until > ?)
             ORDER BY b.created_at DESC LIMIT 1000",
        )
        .bind(id)
        .bind(now())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    let bans = rows
        .into_iter()
        .map(|(id, name, by, by_name, until, created_at)| Ban {
            user: UserRef { id, name },
            by: UserRef {
                id: by,
                name: by_name,
            },
            until,
            created_at,
        })
        .collect();
    Ok(Json(BanList { bans }))
}

#[utoipa::path(post, path = "/rooms/{id}/mute", tag = "moderation", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = Sanction,
    responses((status = 204, description = "Muted: the member still reads, but send, react and typing are forbidden until the mute ends or is lifted (member muted)"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "The caller's role is not above the user's", body = ErrorEnvelope), (status = 404, description = "No such room, user or participant", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn mute(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Sanction>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    let until = until(req.duration)?;
    let (mut tx, user, _) = begin(&state, &claims, id, &req.user, true, false).await?;
    set_mute(&mut tx, id, &user.id, Some(until.unwrap_or_else(forever))).await?;
    audit(
        &mut tx,
        id,
        &claims.sub,
        "mute",
        Some(&user.id),
        Some(json!({ "duration": req.duration })),
    )
    .await?;
    tx.commit().await.map_err(db_err)?;
    let mut muted = event(id, user, MemberAction::Muted, claims.user_ref());
    muted.until = until;
    announce(&state, muted);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/rooms/{id}/mute/{user}", tag = "moderation",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), ("user" = String, Path, description = "The muted member's id or name")),
    responses((status = 204, description = "Lifted (member unmuted)"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "The caller's role is not above the user's", body = ErrorEnvelope), (status = 404, description = "No such room, user or participant", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn unmute(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path((id, who)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    let (mut tx, user, _) = begin(&state, &claims, id, &who, true, true).await?;
    set_mute(&mut tx, id, &user.id, None).await?;
    audit(&mut tx, id, &claims.sub, "unmute", Some(&user.id), None).await?;
    tx.commit().await.map_err(db_err)?;
    let unmuted = event(id, user, MemberAction::Unmuted, claims.user_ref());
    announce(&state, unmuted);
    Ok(StatusCode::NO_CONTENT)
}

async fn set_mute(
    conn: &mut SqliteConnection,
    room_id: &str,
    user_id: &str,
    until: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE room_participants SET muted_until = ? WHERE room_id = ? AND user_id = ?")
        .bind(until)
        .bind(room_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}
