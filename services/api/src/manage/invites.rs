//! Invitations (one user, accepted or declined by them) and invite links
//! (a secret token, bounded in uses and time): the ways into a private
//! room. The invitee gets an `invite` event live on their own channel, and
//! their pending invitations with their offline DMs when they connect.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::SqliteConnection;
use telepath_shared::bus::Outgoing;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    CreateInviteLink, DEFAULT_LINK_SECS, ErrorCode, ErrorEnvelope, Invite, InviteLink, InviteList,
    InviteState, JoinedRoom, MAX_LINK_SECS, MAX_LINK_USES, MIN_LINK_SECS, MemberAction, RoomRef,
    RoomRole, ServerFrame, UserRef, UserTarget, is_canonical_id, user_channel,
};

use super::{access, audit, from_object, room_for};
use crate::auth::AuthUser;
use crate::rooms::{announce_member, room_id};
use crate::store::{self, Admission, db_err, now};
use crate::{ApiState, secret};

/// The users who may have a pending invitation, so a connect (which sends
/// the user's pending invitations after `welcome`) reads the invitations
/// table only for them. Never misses one: a user is added before the
/// invitation's commit and again after it, and removed only when a read found none pending and
/// nothing was added for them since that read began (an invitation decided
/// meanwhile leaves a user here until the next such read).
#[derive(Default)]
pub(crate) struct Invitees(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl Invitees {
    /// The users with a pending invitation now.
    pub(crate) async fn load(pool: &sqlx::SqlitePool) -> Result<Invitees, sqlx::Error> {
        let users: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT user_id FROM room_invites WHERE state = 'pending'")
                .fetch_all(pool)
                .await?;
        Ok(Invitees(std::sync::Mutex::new(
            users.into_iter().map(|u| (u, 0)).collect(),
        )))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, user_id: &str) {
        *self.map().entry(user_id.to_owned()).or_insert(0) += 1;
    }

    /// Whether `user_id` may have one: the version to pass to [`Self::none_for`].
    pub(crate) fn may_have(&self, user_id: &str) -> Option<u64> {
        self.map().get(user_id).copied()
    }

    /// A read begun at `version` found none pending for `user_id`.
    pub(crate) fn none_for(&self, user_id: &str, version: u64) {
        let mut map = self.map();
        if map.get(user_id) == Some(&version) {
            map.remove(user_id);
        }
    }
}

/// Most pending invitations `GET /invites` and a connect return.
pub(crate) const MAX_PENDING_INVITES: i64 = 100;

/// The start of every invitation read: an [`InviteRow`] from the
/// invitation, its room, the invitee and the inviter.
macro_rules! invite_select {
    () => {
        "SELECT i.id, r.id AS room_id, r.name AS room_name, r.is_private,
            u.id AS user_id, u.username AS user_name, f.id AS from_id, f.username AS from_name,
            i.state, i.created_at
         FROM room_invites i
         JOIN rooms r ON r.id = i.room_id JOIN users u ON u.id = i.user_id JOIN users f ON f.id = i.invited_by"
    };
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    id: String,
    room_id: String,
    room_name: String,
    is_private: bool,
    user_id: String,
    user_name: String,
    from_id: String,
    from_name: String,
    state: String,
    created_at: DateTime<Utc>,
}

impl InviteRow {
    fn into_invite(self) -> Invite {
        Invite {
            id: self.id,
            room: RoomRef {
                id: self.room_id,
                name: self.room_name,
                private: self.is_private,
            },
            user: UserRef {
                id: self.user_id,
                name: self.user_name,
            },
            from: UserRef {
                id: self.from_id,
                name: self.from_name,
            },
            state: match self.state.as_str() {
                "accepted" => InviteState::Accepted,
                "declined" => InviteState::Declined,
                "revoked" => InviteState::Revoked,
                _ => InviteState::Pending,
            },
            created_at: self.created_at,
        }
    }
}

async fn invite_by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<Invite>, ApiError> {
    let row: Option<InviteRow> = sqlx::query_as(concat!(invite_select!(), " WHERE i.id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(row.map(InviteRow::into_invite))
}

/// `user_id`'s pending invitations into open rooms, newest first.
pub(crate) async fn pending(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<Vec<Invite>, ApiError> {
    let rows: Vec<InviteRow> = sqlx::query_as(concat!(
        invite_select!(),
        " WHERE i.user_id = ? AND i.state = 'pending' AND r.is_active = 1
          ORDER BY i.created_at DESC LIMIT ?"
    ))
    .bind(user_id)
    .bind(MAX_PENDING_INVITES)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().map(InviteRow::into_invite).collect())
}

#[utoipa::path(post, path = "/rooms/{id}/invites", operation_id = "create_invite", tag = "invites", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = UserTarget,
    responses((status = 201, description = "The invitation; the invitee gets an invite event (live, or when they next connect)", body = Invite), (status = 200, description = "The user's pending invitation into this room, already made", body = Invite), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Owners and moderators only", body = ErrorEnvelope), (status = 404, description = "No such room or user", body = ErrorEnvelope), (status = 409, description = "Already a participant, or banned", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UserTarget>,
) -> Result<(StatusCode, Json<Invite>), ApiError> {
    let id = room_id(&id)?;
    if req.user.is_empty() || req.user.chars().count() > 64 {
        return Err(ApiError::bad_request("user: 1-64 characters"));
    }
    let mut tx = state.db().begin_write().await?;
    let access = access(&mut tx, id, &claims.sub, claims.is_admin()).await?;
    access.require(RoomRole::Moderator)?;
    let user = store::find_user(&mut tx, &req.user)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    if store::role_of(&mut tx, id, &user.id).await?.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the user already takes part in this room",
        ));
    }
    if store::banned(&mut tx, id, &user.id).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the user is banned from this room (lift the ban first)",
        ));
    }
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT id FROM room_invites WHERE room_id = ? AND user_id = ? AND state = 'pending'",
    )
    .bind(id)
    .bind(&user.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if let Some(existing) = existing {
        let invite = invite_by_id(&mut tx, &existing)
            .await?
            .ok_or_else(|| ApiError::not_found("no such invitation"))?;
        return Ok((StatusCode::OK, Json(invite)));
    }
    let invite_id = uuid::Uuid::now_v7().hyphenated().to_string();
    store::ensure_user(&mut tx, &claims.user_ref(), claims.role).await?;
    // Before the commit: a connect from now on reads the invitations.
    state.invitees().add(&user.id);
    sqlx::query(
        "INSERT INTO room_invites (id, room_id, user_id, invited_by, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&invite_id)
    .bind(id)
    .bind(&user.id)
    .bind(&claims.sub)
    .bind(now())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    audit(&mut tx, id, &claims.sub, "invite", Some(&user.id), None).await?;
    let invite = invite_by_id(&mut tx, &invite_id)
        .await?
        .ok_or_else(|| ApiError::internal("the invitation just written is missing"))?;
    let notified = crate::notifications::insert(
        &mut tx,
        vec![crate::notifications::NewNotification {
            user_id: user.id.clone(),
            kind: telepath_shared::protocol::NotificationKind::Invite,
            app_key: None,
            room: Some(id.to_owned()),
            message_id: None,
            from: Some(invite.from.clone()),
            text: format!("{} invited you to {}", invite.from.name, invite.room.name),
        }],
        now(),
    )
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    // And after it: a connect that read before the commit saw none, and
    // may have taken the user out meanwhile.
    state.invitees().add(&user.id);
    state.marks().touch(&[user.id.as_str()]).await;
    let frame = ServerFrame::Invite(invite.clone()).to_json();
    state.outboxes().rooms.push([Outgoing::new(
        user_channel(&user.id),
        bytes::Bytes::from(frame),
    )]);
    crate::notifications::publish(&state, &notified);
    Ok((StatusCode::CREATED, Json(invite)))
}

#[utoipa::path(get, path = "/invites", operation_id = "list_invites", tag = "invites",
    responses((status = 200, description = "The caller's pending invitations, newest first (at most 100)", body = InviteList), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<InviteList>, ApiError> {
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    Ok(Json(InviteList {
        invites: pending(&mut conn, &claims.sub).await?,
    }))
}

/// The caller's pending invitation `id` (404 for anyone else's, or one
/// already decided).
async fn own_pending(
    conn: &mut SqliteConnection,
    id: &str,
    caller: &str,
) -> Result<Invite, ApiError> {
    if !is_canonical_id(id) {
        return Err(ApiError::not_found("no such invitation"));
    }
    invite_by_id(conn, id)
        .await?
        .filter(|i| i.user.id == caller && i.state == InviteState::Pending)
        .ok_or_else(|| ApiError::not_found("no such invitation"))
}

#[utoipa::path(post, path = "/invites/{id}/accept", tag = "invites", params(("id" = String, Path, description = "Invitation id")),
    responses((status = 200, description = "Joined: the room and the caller's role", body = JoinedRoom), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Banned from the room", body = ErrorEnvelope), (status = 404, description = "No such pending invitation of the caller (or the room is closed)", body = ErrorEnvelope), (status = 409, description = "room_full", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn accept(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<JoinedRoom>, ApiError> {
    let mut tx = state.db().begin_write().await?;
    let invite = own_pending(&mut tx, &id, &claims.sub).await?;
    let user = claims.user_ref();
    let joined = store::join(&mut tx, &invite.room.id, &user, Admission::Invited).await?;
    decide(&mut tx, &invite.id, "accepted").await?;
    let row = store::room(&mut tx, &invite.room.id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    tx.commit().await.map_err(db_err)?;
    if joined.new {
        announce_member(&state, &invite.room.id, user, MemberAction::Joined);
    }
    let role = RoomRole::parse(&joined.participant.role);
    Ok(Json(JoinedRoom {
        room: room_for(row, Some(role)),
        role,
    }))
}

#[utoipa::path(post, path = "/invites/{id}/decline", tag = "invites", params(("id" = String, Path, description = "Invitation id")),
    responses((status = 204, description = "Declined"), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such pending invitation of the caller", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn decline(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db().begin_write().await?;
    let invite = own_pending(&mut tx, &id, &claims.sub).await?;
    decide(&mut tx, &invite.id, "declined").await?;
    tx.commit().await.map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn decide(conn: &mut SqliteConnection, id: &str, state: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE room_invites SET state = ?, decided_at = ? WHERE id = ?")
        .bind(state)
        .bind(now())
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[utoipa::path(post, path = "/rooms/{id}/invite-links", tag = "invites", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = CreateInviteLink,
    responses((status = 201, description = "The link's token (shown once: only its hash is stored)", body = InviteLink), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Owners and moderators only", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn create_link(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<InviteLink>), ApiError> {
    let id = room_id(&id)?;
    let req: CreateInviteLink = from_object(body)?;
    if req
        .max_uses
        .is_some_and(|m| !(1..=MAX_LINK_USES).contains(&m))
    {
        return Err(ApiError::bad_request(format!(
            "max_uses: 1-{MAX_LINK_USES}"
        )));
    }
    let secs = req.expires_in.unwrap_or(DEFAULT_LINK_SECS);
    if !(MIN_LINK_SECS..=MAX_LINK_SECS).contains(&secs) {
        return Err(ApiError::bad_request(format!(
            "expires_in: {MIN_LINK_SECS}-{MAX_LINK_SECS} seconds"
        )));
    }
    let mut tx = state.db().begin_write().await?;
    let access = access(&mut tx, id, &claims.sub, claims.is_admin()).await?;
    access.require(RoomRole::Moderator)?;
    store::ensure_user(&mut tx, &claims.user_ref(), claims.role).await?;
    let token = secret::new_token();
    let expires_at = now() + Duration::seconds(secs);
    sqlx::query(
        "INSERT INTO room_invite_links (token_hash, room_id, created_by, max_uses, expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(secret::hash(&token))
    .bind(id)
    .bind(&claims.sub)
    .bind(req.max_uses)
    .bind(expires_at)
    .bind(now())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    audit(
        &mut tx,
        id,
        &claims.sub,
        "invite_link",
        None,
        Some(json!({ "max_uses": req.max_uses, "expires_at": expires_at })),
    )
    .await?;
    tx.commit().await.map_err(db_err)?;
    let room = access.room.into_room();
    Ok((
        StatusCode::CREATED,
        Json(InviteLink {
            token,
            room: RoomRef {
                id: room.id,
                name: room.name,
                private: room.private,
            },
            max_uses: req.max_uses,
            expires_at,
        }),
    ))
}

#[utoipa::path(post, path = "/join/{token}", tag = "invites", params(("token" = String, Path, description = "An invite link's token", pattern = "^[A-Za-z0-9_-]{43}$")),
    responses((status = 200, description = "Joined (or already a participant): the room and the caller's role", body = JoinedRoom), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Banned from the room", body = ErrorEnvelope), (status = 404, description = "No such link, or it expired, was used up, or its room is closed", body = ErrorEnvelope), (status = 409, description = "room_full", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn join_by_link(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(token): Path<String>,
) -> Result<Json<JoinedRoom>, ApiError> {
    let gone = || ApiError::not_found("no such invite link (or it expired or was used up)");
    if !secret::has_shape(&token) {
        return Err(gone());
    }
    let mut tx = state.db().begin_write().await?;
    let link: Option<(String, Option<i64>, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT room_id, max_uses, uses, expires_at FROM room_invite_links WHERE token_hash = ?",
    )
    .bind(secret::hash(&token))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some((room, max_uses, uses, expires_at)) = link else {
        return Err(gone());
    };
    // A participant already is answered as one, whatever is left of the link.
    let member = store::role_of(&mut tx, &room, &claims.sub).await?.is_some();
    if !member && (expires_at <= now() || max_uses.is_some_and(|m| uses >= m)) {
        return Err(gone());
    }
    let user = claims.user_ref();
    store::ensure_user(&mut tx, &user, claims.role).await?;
    let joined = store::join(&mut tx, &room, &user, Admission::Invited).await?;
    if joined.new {
        sqlx::query("UPDATE room_invite_links SET uses = uses + 1 WHERE token_hash = ?")
            .bind(secret::hash(&token))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // A pending invitation into the room is spent too.
        sqlx::query(
            "UPDATE room_invites SET state = 'accepted', decided_at = ?
             WHERE room_id = ? AND user_id = ? AND state = 'pending'",
        )
        .bind(now())
        .bind(&room)
        .bind(&user.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    let row = store::room(&mut tx, &room).await?.ok_or_else(gone)?;
    tx.commit().await.map_err(db_err)?;
    if joined.new {
        announce_member(&state, &room, user, MemberAction::Joined);
    }
    let role = RoomRole::parse(&joined.participant.role);
    Ok(Json(JoinedRoom {
        room: room_for(row, Some(role)),
        role,
    }))
}
