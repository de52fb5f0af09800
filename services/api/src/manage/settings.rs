//! A room's info and settings (`GET`/`PATCH /rooms/{id}`), and its roles
//! (`PATCH /rooms/{id}/participants/{user_id}`).

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    ErrorCode, ErrorEnvelope, MemberAction, MemberEvent, Participant, RoleChange, Room, RoomEvent,
    RoomPatch, RoomRole, ServerFrame, UserRef,
};

use super::{access, audit, from_object, publish_directory, room_for};
use crate::ApiState;
use crate::auth::AuthUser;
use crate::rooms::{announce, check_fields, patched, room_id};
use crate::store::{self, db_err};

/// Longest topic, in characters.
const MAX_TOPIC: usize = 256;

#[utoipa::path(get, path = "/rooms/{id}", operation_id = "get_room", tag = "rooms", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "The room with its member count, online count and the caller's role (absent when not a participant)", body = Room), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 503, description = "A dependency is unavailable", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Room>, ApiError> {
    let id = room_id(&id)?;
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let access = access(&mut conn, id, &claims.sub, claims.is_admin()).await?;
    // Kicked or banned users see no more of it than a stranger would of a private room.
    if access.role.is_none() && store::shut_out(&mut conn, id, &claims.sub).await? {
        return Err(ApiError::not_found("no such room"));
    }
    let members: HashSet<String> = store::member_ids(&mut conn, id)
        .await?
        .into_iter()
        .collect();
    drop(conn);
    let online = state.presence().summary().await?;
    let online_count = online
        .users
        .iter()
        .filter(|u| members.contains(&u.id))
        .count() as i64;
    let mut room = room_for(access.room, access.role);
    room.online_count = Some(online_count);
    Ok(Json(room))
}

#[utoipa::path(patch, path = "/rooms/{id}", operation_id = "update_room", tag = "rooms", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = RoomPatch,
    responses((status = 200, description = "The room as it is now; its participants (everyone, for a public room) get room_updated", body = Room), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Owners and moderators only (retention: the owner only)", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 409, description = "max_participants below the current participants", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Room>, ApiError> {
    let id = room_id(&id)?;
    let req: RoomPatch = from_object(body)?;
    check_patch(&req)?;
    let mut tx = state.db().begin_write().await?;
    let access = access(&mut tx, id, &claims.sub, claims.is_admin()).await?;
    access.require(RoomRole::Moderator)?;
    if req.retention.is_some() {
        access.require(RoomRole::Owner)?;
    }
    if let Some(max) = req.max_participants
        && max < access.room.participant_count
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "max_participants: not below the {} current participants",
                access.room.participant_count
            ),
        ));
    }
    let was_private = access.room.is_private;
    let description = patched(&req.description);
    let topic = patched(&req.topic);
    sqlx::query(
        "UPDATE rooms SET
            name = COALESCE(?2, name),
            description = CASE WHEN ?3 THEN ?4 ELSE description END,
            topic = CASE WHEN ?5 THEN ?6 ELSE topic END,
            max_participants = COALESCE(?7, max_participants),
            is_private = COALESCE(?8, is_private),
            retention_days = CASE WHEN ?9 THEN NULLIF(?10, 0) ELSE retention_days END
         WHERE id = ?1",
    )
    .bind(id)
    .bind(&req.name)
    .bind(description.is_some())
    .bind(description.flatten())
    .bind(topic.is_some())
    .bind(topic.flatten())
    .bind(req.max_participants)
    .bind(req.private)
    .bind(req.retention.is_some())
    .bind(req.retention)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let changed = serde_json::to_value(&req).expect("serialises");
    let changed = serde_json::Value::Object(
        changed
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    audit(&mut tx, id, &claims.sub, "update", None, Some(changed)).await?;
    let row = store::room(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    let now_private = row.is_private;
    let members = store::member_ids(&mut tx, id).await?;
    tx.commit().await.map_err(db_err)?;
    let room = row.into_room();
    let frame = ServerFrame::RoomUpdated(RoomEvent {
        room: room.clone(),
        by: claims.user_ref(),
    });
    // A room turning private tells everyone once more, so lists drop it.
    publish_directory(&state, &frame, !(was_private && now_private), members);
    let mut room = room;
    room.role = access.role;
    Ok(Json(room))
}

/// The bounds of a settings change: the creation's, and the topic's.
fn check_patch(req: &RoomPatch) -> Result<(), ApiError> {
    check_fields(
        req.name.as_deref(),
        req.description.as_deref(),
        req.max_participants,
    )?;
    if req
        .topic
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TOPIC || t.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "topic: at most 256 characters, no control characters",
        ));
    }
    if req.retention.is_some_and(|d| !(0..=36_500).contains(&d)) {
        return Err(ApiError::bad_request(
            "retention: 1-36500 days, or 0 for the server's default",
        ));
    }
    Ok(())
}

#[utoipa::path(patch, path = "/rooms/{id}/participants/{user_id}", tag = "rooms",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), ("user_id" = String, Path, description = "The participant's user id")),
    request_body = RoleChange,
    responses((status = 200, description = "The participant with their new role; `owner` hands the room over (the previous owner becomes a moderator). Members get member events with action role", body = Participant), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Only the owner or an admin; nobody changes the owner's role but by handing over", body = ErrorEnvelope), (status = 404, description = "No such room or participant", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn role(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path((id, user_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<RoleChange>,
) -> Result<Json<Participant>, ApiError> {
    let id = room_id(&id)?;
    if user_id.is_empty() || user_id.len() > 64 {
        return Err(ApiError::not_found("no such participant"));
    }
    let mut tx = state.db().begin_write().await?;
    let access = access(&mut tx, id, &claims.sub, claims.is_admin()).await?;
    access.require(RoomRole::Owner)?;
    // The participant by id (or, as everywhere a user is named, by name).
    let Some(target) = store::find_user(&mut tx, &user_id).await? else {
        return Err(ApiError::not_found("no such participant"));
    };
    let Some(current) = store::role_of(&mut tx, id, &target.id).await? else {
        return Err(ApiError::not_found("no such participant"));
    };
    let mut events = Vec::new();
    if current == RoomRole::Owner {
        if req.role != RoomRole::Owner {
            return Err(ApiError::forbidden(
                "the owner's role changes only by handing the room over",
            ));
        }
    } else {
        if req.role == RoomRole::Owner {
            // Handing over: whoever owns the room now becomes a moderator.
            let owners: Vec<(String, String)> = sqlx::query_as(
                "SELECT u.id, u.username FROM room_participants p JOIN users u ON u.id = p.user_id
                 WHERE p.room_id = ? AND p.role = 'owner' AND p.is_active = 1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            for (owner_id, owner_name) in owners {
                set_role(&mut tx, id, &owner_id, RoomRole::Moderator).await?;
                events.push((
                    UserRef {
                        id: owner_id,
                        name: owner_name,
                    },
                    RoomRole::Moderator,
                ));
            }
        }
        if req.role != current {
            set_role(&mut tx, id, &target.id, req.role).await?;
            events.push((target.clone(), req.role));
            audit(
                &mut tx,
                id,
                &claims.sub,
                "role",
                Some(&target.id),
                Some(json!({ "role": req.role.as_str() })),
            )
            .await?;
        }
    }
    let participant = store::participants(&mut tx, id)
        .await?
        .into_iter()
        .find(|p| p.user.id == target.id)
        .ok_or_else(|| ApiError::not_found("no such participant"))?;
    tx.commit().await.map_err(db_err)?;
    for (user, role) in events {
        let mut event = MemberEvent::new(id.to_owned(), user, MemberAction::Role);
        event.role = Some(role);
        event.by = Some(claims.user_ref());
        announce(&state, event);
    }
    Ok(Json(participant))
}

async fn set_role(
    conn: &mut sqlx::SqliteConnection,
    room_id: &str,
    user_id: &str,
    role: RoomRole,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE room_participants SET role = ? WHERE room_id = ? AND user_id = ?")
        .bind(role.as_str())
        .bind(room_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}
