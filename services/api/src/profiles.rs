//! Profiles and last seen: `GET /users/{id or name}`, `PATCH /users/me`
//! (a `profile` event to everyone who shares a room with the user), and
//! `GET /users?q=` (by name prefix). `last_seen` is the persisted
//! `users.last_online`, kept by `presence_events.rs`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::SqliteConnection;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    ErrorEnvelope, MAX_ABILITIES, MAX_ABILITY, MAX_AVATAR_URL, MAX_BIO, MAX_DISPLAY_NAME, Profile,
    ProfilePatch, ServerFrame, Status, UserHit, UserHits, integer,
};

use crate::ApiState;
use crate::auth::AuthUser;
use crate::manage::users_message;
use crate::rooms::patched;
use crate::store::{self, db_err};

/// Most users one profile event goes to (those sharing a room with the user).
const MAX_PROFILE_AUDIENCE: i64 = 10_000;

#[derive(sqlx::FromRow)]
struct ProfileRow {
    id: String,
    username: String,
    display_name: Option<String>,
    bio: Option<String>,
    avatar_url: Option<String>,
    abilities: Option<String>,
    status: String,
    status_text: Option<String>,
    last_online: Option<DateTime<Utc>>,
}

async fn profile_row(
    conn: &mut SqliteConnection,
    who: &str,
) -> Result<Option<ProfileRow>, ApiError> {
    sqlx::query_as(
        "SELECT id, username, display_name, bio, avatar_url, abilities, status, status_text, last_online
         FROM users WHERE id = ?1 OR username = ?1 LIMIT 1",
    )
    .bind(who)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
}

/// The profile of `row`. Status, its text and last seen are what the api
/// persisted from presence's changes (`presence_events.rs`), so they need
/// no call to presence and outlive restarts.
fn profile(row: ProfileRow) -> Profile {
    let status = match row.status.as_str() {
        "online" => Status::Online,
        "away" => Status::Away,
        "busy" => Status::Busy,
        "meditating" => Status::Meditating,
        _ => Status::Offline,
    };
    let online = status != Status::Offline;
    Profile {
        id: row.id,
        name: row.username,
        display_name: row.display_name,
        bio: row.bio,
        avatar_url: row.avatar_url,
        abilities: row
            .abilities
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default(),
        status,
        status_text: if online { row.status_text } else { None },
        last_seen: row.last_online,
        online,
    }
}

#[utoipa::path(get, path = "/users/{user}", operation_id = "get_user", tag = "users", params(("user" = String, Path, description = "User id or username")),
    responses((status = 200, description = "The user's profile, status and last seen", body = Profile), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such user", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    AuthUser(_claims): AuthUser,
    Path(who): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    if who.is_empty() || who.len() > 64 {
        return Err(ApiError::not_found("no such user"));
    }
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let row = profile_row(&mut conn, &who)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(profile(row)))
}

#[utoipa::path(get, path = "/users/me", tag = "users",
    responses((status = 200, description = "The caller's own profile", body = Profile), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "The caller has no user row yet (never logged in or took part in anything)", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn me(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<Profile>, ApiError> {
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let row = profile_row(&mut conn, &claims.sub)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(profile(row)))
}

/// The bounds of a profile change.
fn check(patch: &ProfilePatch) -> Result<(), ApiError> {
    let text_ok =
        |s: &str, max: usize| s.chars().count() <= max && !s.chars().any(char::is_control);
    if patch
        .display_name
        .as_deref()
        .is_some_and(|d| !text_ok(d, MAX_DISPLAY_NAME) || d.trim() != d)
    {
        return Err(ApiError::bad_request(
            "display_name: at most 64 characters, no control characters or outer spaces",
        ));
    }
    if patch
        .bio
        .as_deref()
        .is_some_and(|b| b.chars().count() > MAX_BIO || b.contains('\0'))
    {
        return Err(ApiError::bad_request("bio: at most 1024 characters"));
    }
    if let Some(url) = patch.avatar_url.as_deref()
        && !url.is_empty()
        && (url.chars().count() > MAX_AVATAR_URL
            || !url.starts_with("https://")
            || url.len() == "https://".len()
            || url.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(ApiError::bad_request(
            "avatar_url: an https:// URL of at most 512 characters, no spaces",
        ));
    }
    if let Some(abilities) = &patch.abilities {
        if abilities.len() > MAX_ABILITIES {
            return Err(ApiError::bad_request("abilities: at most 16 tags"));
        }
        if abilities
            .iter()
            .any(|a| a.is_empty() || a.trim() != a || !text_ok(a, MAX_ABILITY))
        {
            return Err(ApiError::bad_request(
                "abilities: tags of 1-32 characters, no control characters or outer spaces",
            ));
        }
    }
    Ok(())
}

#[utoipa::path(patch, path = "/users/me", operation_id = "update_me", tag = "users", request_body = ProfilePatch,
    responses((status = 200, description = "The caller's profile as it is now; everyone who shares a room with them gets a profile event", body = Profile), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 409, description = "The token's username belongs to another user", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Profile>, ApiError> {
    let req: ProfilePatch = crate::manage::from_object(body)?;
    check(&req)?;
    let display_name = patched(&req.display_name);
    let bio = patched(&req.bio);
    let avatar_url = patched(&req.avatar_url);
    let abilities = req.abilities.as_ref().map(|a| {
        let mut seen = Vec::new();
        for tag in a {
            if !seen.contains(tag) {
                seen.push(tag.clone());
            }
        }
        (!seen.is_empty()).then(|| serde_json::to_string(&seen).expect("serialises"))
    });
    let mut tx = state.db().begin_write().await?;
    store::ensure_user(&mut tx, &claims.user_ref(), claims.role).await?;
    sqlx::query(
        "UPDATE users SET
            display_name = CASE WHEN ?2 THEN ?3 ELSE display_name END,
            bio = CASE WHEN ?4 THEN ?5 ELSE bio END,
            avatar_url = CASE WHEN ?6 THEN ?7 ELSE avatar_url END,
            abilities = CASE WHEN ?8 THEN ?9 ELSE abilities END
         WHERE id = ?1",
    )
    .bind(&claims.sub)
    .bind(display_name.is_some())
    .bind(display_name.flatten())
    .bind(bio.is_some())
    .bind(bio.flatten())
    .bind(avatar_url.is_some())
    .bind(avatar_url.flatten())
    .bind(abilities.is_some())
    .bind(abilities.flatten())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let row = profile_row(&mut tx, &claims.sub)
        .await?
        .ok_or_else(|| ApiError::internal("the user just written is missing"))?;
    // Everyone who shares an active room with the user, and the user.
    let mut audience: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT o.user_id FROM room_participants p
         JOIN rooms r ON r.id = p.room_id AND r.is_active = 1
         JOIN room_participants o ON o.room_id = p.room_id AND o.is_active = 1
         WHERE p.user_id = ?1 AND p.is_active = 1 AND o.user_id <> ?1
         LIMIT ?2",
    )
    .bind(&claims.sub)
    .bind(MAX_PROFILE_AUDIENCE)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    audience.push(claims.sub.clone());
    let profile = profile(row);
    let frame = ServerFrame::Profile(profile.clone()).to_json();
    state
        .outboxes()
        .rooms
        .push([users_message(audience, frame)]);
    Ok(Json(profile))
}

/// `?q=&after=&limit=` of a user search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserQuery {
    /// The start of the username (1-64 characters; case-sensitive).
    #[param(min_length = 1, max_length = 64)]
    q: String,
    /// The last username of the previous page.
    after: Option<String>,
    /// Page size: default 20, at most 50 (larger is clamped).
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "integer::option")]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/users", operation_id = "search_users", tag = "users", params(UserQuery),
    responses((status = 200, description = "Users whose name starts with q, by name", body = UserHits), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn search(
    State(state): State<ApiState>,
    AuthUser(_claims): AuthUser,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<UserHits>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Some(prefix) = Some(q.q).filter(|p| !p.is_empty() && p.chars().count() <= 64) else {
        return Err(ApiError::bad_request("q: 1-64 characters"));
    };
    let limit = match q.limit {
        None => 20,
        Some(l) if l < 1 => return Err(ApiError::bad_request("limit must be at least 1")),
        Some(l) => l.min(50),
    };
    // Names from `prefix` (inclusive) up to the first string past every
    // name that starts with it: a range of the username index.
    let mut end = prefix.clone();
    end.push(char::MAX);
    let after = q.after.unwrap_or_default();
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, username, display_name FROM users
         WHERE username >= ?1 AND username < ?2 AND username > ?3
         ORDER BY username LIMIT ?4",
    )
    .bind(&prefix)
    .bind(&end)
    .bind(&after)
    .bind(limit + 1)
    .fetch_all(&state.db().read)
    .await
    .map_err(db_err)?;
    let more = rows.len() as i64 > limit;
    let users: Vec<UserHit> = rows
        .into_iter()
        .take(limit as usize)
        .map(|(id, name, display_name)| UserHit {
            id,
            name,
            display_name,
        })
        .collect();
    let next = if more {
        users.last().map(|u| u.name.clone())
    } else {
        None
    };
    Ok(Json(UserHits { users, next }))
}
