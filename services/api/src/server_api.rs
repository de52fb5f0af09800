//! The server API: what an application backend does with an API key
//! (`Authorization: Bearer tpk_...`) under `/api/`, and the admin routes
//! and CLI that manage keys.
//!
//! A key holds scopes (`publish`, `presence`, `rooms`, `users`) and may be
//! limited to rooms whose name starts with a prefix. Only its SHA-256 is
//! stored. Keys never work on user routes (they are not JWTs), and user
//! tokens never work here (they do not start with `tpk_`).
//!
//! Publishing to a room goes through the writer exactly as a user's send
//! (the same group commit, seq order, `client_id` idempotency per sender,
//! published to the room after commit), sent as a bot user (`as`, a
//! username, created if new) or as the `system` user, neither of whom needs
//! to be a participant.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::SqliteConnection;
use telepath_shared::auth::bearer;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    AddMembers, AddedMembers, ApiKeyInfo, ApiKeyList, ApiPresence, CreateApiKey, CreateRoom,
    CreatedApiKey, DisconnectResult, ErrorCode, ErrorEnvelope, InternalDm, InternalSend,
    MemberAction, Message, Notification, NotificationKind, Publish, PublishBatch, PublishResults,
    PublishToUser, PublishedDm, Role, Room, Scope, SendOutcome, UserPublishKind, UserRef,
    is_canonical_id, is_valid_username, user_id_for,
};

use crate::auth::AdminUser;
use crate::rooms::{announce_member, check_fields, room_id};
use crate::store::{self, db_err, now};
use crate::writer::Queued;
use crate::{ApiState, admin, secret};

/// What every API key starts with.
pub const KEY_PREFIX: &str = "tpk_";
/// The user a publish without `as` is sent as.
pub const SYSTEM_USER: &str = "system";

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    scopes: String,
    room_prefix: Option<String>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    fn info(self) -> ApiKeyInfo {
        ApiKeyInfo {
            id: self.id,
            name: self.name,
            scopes: Scope::parse_list(&self.scopes).unwrap_or_default(),
            room_prefix: self.room_prefix,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        }
    }
}

/// The key store of the database at `url` (migrated), for the CLI.
pub async fn open_keys(url: &str) -> anyhow::Result<sqlx::SqlitePool> {
    Ok(crate::db::open(url, None).await?.write)
}

/// Creates a key (what `POST /admin/api-keys` and `telepath apikey create`
/// do): its secret, shown this once, and what is stored.
pub async fn create_key(
    conn: &mut SqliteConnection,
    name: &str,
    scopes: &[Scope],
    room_prefix: Option<&str>,
) -> Result<CreatedApiKey, ApiError> {
    if !crate::rooms::valid_room_name(name) {
        return Err(ApiError::bad_request(
            "name: 1-64 characters, no control characters or outer spaces",
        ));
    }
    if scopes.is_empty() || scopes.len() > Scope::ALL.len() {
        return Err(ApiError::bad_request(
            "scopes: 1-5 of publish, presence, rooms, users, webhooks",
        ));
    }
    if room_prefix.is_some_and(|p| p.is_empty() || p.chars().count() > 64) {
        return Err(ApiError::bad_request("room_prefix: 1-64 characters"));
    }
    if room_prefix.is_some() && scopes.contains(&Scope::Webhooks) {
        return Err(ApiError::bad_request(
            "scopes: webhooks hear about every room, so a key with a room_prefix cannot hold the webhooks scope",
        ));
    }
    let mut unique: Vec<Scope> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if !unique.contains(scope) {
            unique.push(*scope);
        }
    }
    let scopes = unique.as_slice();
    let key = format!("{KEY_PREFIX}{}", secret::new_token());
    let info = ApiKeyInfo {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        name: name.to_owned(),
        scopes: scopes.to_vec(),
        room_prefix: room_prefix.map(str::to_owned),
        created_at: now(),
        revoked_at: None,
        last_used_at: None,
    };
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, scopes, room_prefix, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&info.id)
    .bind(&info.name)
    .bind(secret::hash(&key))
    .bind(scopes_text(scopes))
    .bind(&info.room_prefix)
    .bind(info.created_at)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(CreatedApiKey { key, info })
}

/// Every key, newest first (revoked ones too).
pub async fn list_keys(conn: &mut SqliteConnection) -> Result<Vec<ApiKeyInfo>, ApiError> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT id, name, scopes, room_prefix, created_at, revoked_at, last_used_at
         FROM api_keys ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(rows.into_iter().map(KeyRow::info).collect())
}

/// Revokes key `id`: false when there is no such key.
pub async fn revoke_key(conn: &mut SqliteConnection, id: &str) -> Result<bool, ApiError> {
    let done = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
        .bind(now())
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// The caller's key, checked: 401 without a key, with a user token, or with
/// a key that is unknown or revoked.
pub(crate) struct ApiKey(ApiKeyInfo);

impl FromRequestParts<ApiState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let unauthorized = |why: &str| ApiError::new(ErrorCode::Unauthorized, why);
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .ok_or_else(|| unauthorized("missing_api_key"))?;
        let Some(secret_part) = key.strip_prefix(KEY_PREFIX) else {
            return Err(unauthorized("not_an_api_key"));
        };
        if !secret::has_shape(secret_part) {
            return Err(unauthorized("unknown_api_key"));
        }
        let mut conn = state.db().read.acquire().await.map_err(db_err)?;
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, name, scopes, room_prefix, created_at, revoked_at, last_used_at
             FROM api_keys WHERE key_hash = ?",
        )
        .bind(secret::hash(key))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
        let row = row.ok_or_else(|| unauthorized("unknown_api_key"))?;
        if row.revoked_at.is_some() {
            return Err(unauthorized("revoked_api_key"));
        }
        // `last_used_at` to the minute: at most one write a minute per key,
        // off the request's path.
        let stale = row
            .last_used_at
            .is_none_or(|t| now() - t > chrono::Duration::seconds(60));
        if stale {
            let (write, id) = (state.db().write.clone(), row.id.clone());
            tokio::spawn(async move {
                let done = sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                    .bind(now())
                    .bind(id)
                    .execute(&write)
                    .await;
                if let Err(e) = done {
                    tracing::debug!(error = %e, "recording an API key's use failed");
                }
            });
        }
        Ok(ApiKey(row.info()))
    }
}

impl ApiKey {
    /// 403 unless the key holds `scope`.
    pub(crate) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "missing scope: {}",
                scope.as_str()
            )))
        }
    }

    /// The prefix of the rooms it is limited to, if any.
    pub(crate) fn room_prefix(&self) -> Option<&str> {
        self.0.room_prefix.as_deref()
    }

    /// 403 unless the key may act on a room named `name`.
    fn may_use_room(&self, name: &str) -> Result<(), ApiError> {
        match &self.0.room_prefix {
            Some(prefix) if !name.starts_with(prefix.as_str()) => Err(ApiError::forbidden(
                "the room is outside this key's room prefix",
            )),
            _ => Ok(()),
        }
    }
}

/// The active room `id` this key may act on: 404 when there is none (or
/// it is closed), 403 outside the key's prefix.
async fn key_room(state: &ApiState, key: &ApiKey, id: &str) -> Result<Room, ApiError> {
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let room = store::room(&mut conn, id)
        .await?
        .map(store::RoomRow::into_room)
        .filter(|r| r.is_active)
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    key.may_use_room(&room.name)?;
    Ok(room)
}

/// The bot users this process has made sure exist, so a publish costs no
/// write transaction of its own once its sender is known (at most
/// [`Senders::MAX`]; forgotten all at once past it, then relearned).
#[derive(Default)]
pub(crate) struct Senders(std::sync::Mutex<std::collections::HashSet<String>>);

impl Senders {
    const MAX: usize = 10_000;

    fn known(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    fn learn(&self, id: &str) {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= Self::MAX {
            known.clear();
        }
        known.insert(id.to_owned());
    }
}

/// The sender of a publish: the bot user `as_user` (created if new) or the
/// system user.
async fn sender(state: &ApiState, as_user: Option<&str>) -> Result<UserRef, ApiError> {
    let name = as_user.unwrap_or(SYSTEM_USER);
    if !is_valid_username(name) {
        return Err(ApiError::bad_request("as: 1-32 of A-Z a-z 0-9 _ . -"));
    }
    let user = UserRef {
        id: user_id_for(name),
        name: name.to_owned(),
    };
    if !state.senders().known(&user.id) {
        let mut tx = state.db().begin_write().await?;
        store::ensure_user(&mut tx, &user, Role::User).await?;
        tx.commit().await.map_err(db_err)?;
        state.senders().learn(&user.id);
    }
    Ok(user)
}

/// One publish, checked and ready for the writer.
async fn queued(
    state: &ApiState,
    key: &ApiKey,
    room: &str,
    publish: Publish,
) -> Result<Queued, ApiError> {
    let room = room_id(room)?;
    key_room(state, key, room).await?;
    let send = InternalSend {
        from: sender(state, publish.as_user.as_deref()).await?,
        body: publish.body,
        kind: publish.kind,
        client_id: publish.client_id,
        reply_to: None,
    };
    send.check(state.common().max_body_bytes)?;
    Ok(Queued {
        room: room.to_owned(),
        send,
        trace: None,
        server: true,
    })
}

#[utoipa::path(post, path = "/api/rooms/{id}/publish", tag = "server", operation_id = "api_publish",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    request_body = Publish,
    responses((status = 201, description = "Committed and published to the room, ordered like any message (repeated with its `client_id` and sender: the message first stored)", body = Message), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the publish scope, or the room is outside its prefix", body = ErrorEnvelope), (status = 404, description = "No such room (or it is closed)", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn publish(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Publish>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    key.require(Scope::Publish)?;
    let job = queued(&state, &key, &id, req).await?;
    let message = state
        .writer()
        .send_many(vec![Ok(job)])
        .await
        .pop()
        .unwrap_or_else(|| Err(ApiError::internal("no outcome")))?;
    Ok((StatusCode::CREATED, Json(message)))
}

#[utoipa::path(post, path = "/api/publish", tag = "server", operation_id = "api_publish_batch",
    request_body = PublishBatch,
    responses((status = 200, description = "One outcome per item, in order: the committed message, or why that item was refused (the others are not held back)", body = PublishResults), (status = 400, description = "Invalid input (0 or more than 100 items)", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the publish scope", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn publish_batch(
    State(state): State<ApiState>,
    key: ApiKey,
    JsonBody(req): JsonBody<PublishBatch>,
) -> Result<Json<PublishResults>, ApiError> {
    key.require(Scope::Publish)?;
    if req.items.is_empty() || req.items.len() > 100 {
        return Err(ApiError::bad_request("items: 1-100"));
    }
    for (i, item) in req.items.iter().enumerate() {
        item.check()
            .map_err(|why| ApiError::bad_request(format!("items[{i}]: {why}")))?;
    }
    let mut jobs = Vec::with_capacity(req.items.len());
    for item in req.items {
        let (room, publish) = item.into_publish();
        jobs.push(queued(&state, &key, &room, publish).await);
    }
    let results = state
        .writer()
        .send_many(jobs)
        .await
        .into_iter()
        .map(|r| {
            let (message, error) = crate::internal::split(r);
            SendOutcome { message, error }
        })
        .collect();
    Ok(Json(PublishResults { results }))
}

#[utoipa::path(post, path = "/api/users/{id}/publish", tag = "server", operation_id = "api_publish_to_user",
    params(("id" = String, Path, description = "User id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    request_body = PublishToUser,
    responses((status = 201, description = "`dm` (the default): a direct message from the bot (or system) user, stored and delivered like any DM (queued while the user is offline). `notification`: a notification of kind `app` from that user, the `notification` event on the user's live connections, listed in GET /notifications; a repeat of its `client_id` returns the first", body = PublishedDm), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the publish scope", body = ErrorEnvelope), (status = 404, description = "No such user", body = ErrorEnvelope), (status = 409, description = "`client_id` already names a room message of this sender", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn publish_to_user(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PublishToUser>,
) -> Result<(StatusCode, Json<PublishedDm>), ApiError> {
    key.require(Scope::Publish)?;
    if !is_canonical_id(&id) {
        return Err(ApiError::bad_request("user ids are lowercase UUIDs"));
    }
    telepath_shared::protocol::check_body(&req.body, state.common().max_body_bytes)?;
    if req
        .client_id
        .as_deref()
        .is_some_and(|c| c.is_empty() || c.chars().count() > 128)
    {
        return Err(ApiError::bad_request("client_id: 1-128 characters"));
    }
    let from = sender(&state, req.as_user.as_deref()).await?;
    if req.kind == UserPublishKind::Notification {
        let notification = notify(&state, from, &id, req.body, req.client_id).await?;
        return Ok((
            StatusCode::CREATED,
            Json(PublishedDm {
                dm: None,
                notification: Some(notification),
            }),
        ));
    }
    let dm = InternalDm {
        from,
        to: id,
        body: req.body,
        client_id: req.client_id,
        traceparent: None,
    };
    let dm = crate::dms::store(&state, vec![dm])
        .await
        .pop()
        .unwrap_or_else(|| Err(ApiError::internal("no outcome")))?;
    Ok((
        StatusCode::CREATED,
        Json(PublishedDm {
            dm: Some(dm),
            notification: None,
        }),
    ))
}

/// An application notification from `from` to user `to`: stored, then
/// published on the user's channel (every live connection gets the
/// `notification` event). A repeat of `client_id` by the same sender
/// returns the first, publishing nothing.
async fn notify(
    state: &ApiState,
    from: UserRef,
    to: &str,
    body: String,
    client_id: Option<String>,
) -> Result<Notification, ApiError> {
    let app_key = client_id.map(|c| format!("{}:{c}", from.id));
    let mut tx = state.db().begin_write().await?;
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = ?")
        .bind(to)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    if known.is_none() {
        return Err(ApiError::not_found("no such user"));
    }
    if let Some(key) = &app_key
        && let Some(first) = crate::notifications::find_app(&mut tx, to, key)
            .await
            .map_err(db_err)?
    {
        return Ok(first);
    }
    let new = crate::notifications::NewNotification {
        user_id: to.to_owned(),
        kind: NotificationKind::App,
        room: None,
        message_id: None,
        from: Some(from),
        text: body,
        app_key,
    };
    let written = crate::notifications::insert(&mut tx, vec![new], now())
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    crate::notifications::publish(state, &written);
    // Answered as a repeat would find it: unread.
    written
        .into_iter()
        .next()
        .map(|(_, n)| Notification {
            read: Some(false),
            ..n
        })
        .ok_or_else(|| ApiError::bad_request("a user cannot notify themselves"))
}

/// `?users=id,id` of `GET /api/presence`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsersQuery {
    /// Comma-separated user ids (lowercase UUIDs), 1-1000.
    #[param(
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(,[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}){0,999}$"
    )]
    users: String,
}

/// Which of `ids` are online, as presence knows them.
async fn presence_of(state: &ApiState, ids: Vec<String>) -> Result<ApiPresence, ApiError> {
    let summary = state.presence().summary().await?;
    let mut online = Vec::new();
    let mut offline = Vec::new();
    let by_id: std::collections::HashMap<&str, _> =
        summary.users.iter().map(|u| (u.id.as_str(), u)).collect();
    for id in ids {
        match by_id.get(id.as_str()) {
            Some(u) => online.push((*u).clone()),
            None => offline.push(id),
        }
    }
    Ok(ApiPresence { online, offline })
}

#[utoipa::path(get, path = "/api/presence", tag = "server", operation_id = "api_presence", params(UsersQuery),
    responses((status = 200, description = "Which of the users are online (with status and connections) and which are not", body = ApiPresence), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the presence scope", body = ErrorEnvelope), (status = 503, description = "Presence is unreachable", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn users_presence(
    State(state): State<ApiState>,
    key: ApiKey,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Json<ApiPresence>, ApiError> {
    key.require(Scope::Presence)?;
    let Query(query) =
        query.map_err(|_| ApiError::bad_request("users: comma-separated user ids"))?;
    let ids: Vec<String> = query
        .users
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() || ids.len() > 1000 || !ids.iter().all(|i| is_canonical_id(i)) {
        return Err(ApiError::bad_request(
            "users: 1-1000 comma-separated user ids (lowercase UUIDs)",
        ));
    }
    Ok(Json(presence_of(&state, ids).await?))
}

#[utoipa::path(get, path = "/api/rooms/{id}/presence", tag = "server", operation_id = "api_room_presence",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "Which of the room's participants are online and which are not", body = ApiPresence), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the presence scope, or the room is outside its prefix", body = ErrorEnvelope), (status = 404, description = "No such room (or it is closed)", body = ErrorEnvelope), (status = 503, description = "Presence is unreachable", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn room_presence(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> Result<Json<ApiPresence>, ApiError> {
    key.require(Scope::Presence)?;
    let id = room_id(&id)?;
    key_room(&state, &key, id).await?;
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    let members = store::member_ids(&mut conn, id).await?;
    drop(conn);
    Ok(Json(presence_of(&state, members).await?))
}

#[utoipa::path(post, path = "/api/rooms", tag = "server", operation_id = "api_create_room", request_body = CreateRoom,
    responses((status = 201, description = "The room, owned by the system user", body = Room), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the rooms scope, or the name is outside its prefix", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn create_room(
    State(state): State<ApiState>,
    key: ApiKey,
    JsonBody(req): JsonBody<CreateRoom>,
) -> Result<(StatusCode, Json<Room>), ApiError> {
    key.require(Scope::Rooms)?;
    let max = req.max_participants.unwrap_or(100);
    check_fields(Some(&req.name), req.description.as_deref(), Some(max))?;
    key.may_use_room(&req.name)?;
    let owner = sender(&state, None).await?;
    let room = crate::rooms::insert_room(
        &state,
        &owner,
        Role::User,
        req.name,
        req.description,
        max,
        req.private.unwrap_or(false),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(room)))
}

#[utoipa::path(post, path = "/api/rooms/{id}/members", tag = "server", operation_id = "api_add_members",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    request_body = AddMembers,
    responses((status = 200, description = "Every user is a participant now (private rooms too); `added` lists those who were not", body = AddedMembers), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the rooms scope, or the room is outside its prefix", body = ErrorEnvelope), (status = 404, description = "No such room, or no such user", body = ErrorEnvelope), (status = 409, description = "The room is full, or a user is banned from it", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn add_members(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AddMembers>,
) -> Result<Json<AddedMembers>, ApiError> {
    key.require(Scope::Rooms)?;
    let id = room_id(&id)?;
    if req.users.is_empty()
        || req.users.len() > 1000
        || !req.users.iter().all(|u| is_canonical_id(u))
    {
        return Err(ApiError::bad_request(
            "users: 1-1000 user ids (lowercase UUIDs)",
        ));
    }
    key_room(&state, &key, id).await?;
    let mut tx = state.db().begin_write().await?;
    let mut users = Vec::with_capacity(req.users.len());
    for who in &req.users {
        let user = store::find_user(&mut tx, who)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no such user: {who}")))?;
        users.push(user);
    }
    let mut added = Vec::new();
    for user in users {
        let joined = store::join(&mut tx, id, &user, store::Admission::Invited).await?;
        if joined.new {
            added.push(user);
        }
    }
    tx.commit().await.map_err(db_err)?;
    for user in &added {
        announce_member(&state, id, user.clone(), MemberAction::Joined);
    }
    state.unread().touch(added.iter().map(|u| &u.id));
    Ok(Json(AddedMembers {
        added: added.into_iter().map(|u| u.id).collect(),
    }))
}

#[utoipa::path(post, path = "/api/users/{id}/disconnect", tag = "server", operation_id = "api_disconnect",
    params(("id" = String, Path, description = "User id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "Every connection of the user told to close with 4003 (`bye` admin), on every gateway", body = DisconnectResult), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing, unknown or revoked API key (or a user token)", body = ErrorEnvelope), (status = 403, description = "The key lacks the users scope", body = ErrorEnvelope), (status = 503, description = "Presence or the bus is unavailable", body = ErrorEnvelope)),
    security(("api_key" = [])))]
pub(crate) async fn disconnect(
    State(state): State<ApiState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> Result<Json<DisconnectResult>, ApiError> {
    key.require(Scope::Users)?;
    Ok(Json(admin::disconnect_user(&state, &id).await?))
}

#[utoipa::path(post, path = "/admin/api-keys", tag = "admin", operation_id = "create_api_key", request_body = CreateApiKey,
    responses((status = 201, description = "The key: its secret is shown this once (only its hash is stored)", body = CreatedApiKey), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not allowed", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn admin_create(
    State(state): State<ApiState>,
    AdminUser(_): AdminUser,
    JsonBody(req): JsonBody<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let mut tx = state.db().begin_write().await?;
    let created = create_key(&mut tx, &req.name, &req.scopes, req.room_prefix.as_deref()).await?;
    tx.commit().await.map_err(db_err)?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/admin/api-keys", tag = "admin", operation_id = "list_api_keys",
    responses((status = 200, description = "Every key, newest first, revoked ones too (never their secrets)", body = ApiKeyList), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not allowed", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn admin_list(
    State(state): State<ApiState>,
    AdminUser(_): AdminUser,
) -> Result<Json<ApiKeyList>, ApiError> {
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    Ok(Json(ApiKeyList {
        keys: list_keys(&mut conn).await?,
    }))
}

#[utoipa::path(delete, path = "/admin/api-keys/{id}", tag = "admin", operation_id = "revoke_api_key",
    params(("id" = String, Path, description = "Key id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 204, description = "Revoked: the key is refused (401) from now on"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not allowed", body = ErrorEnvelope), (status = 404, description = "No such key", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn admin_revoke(
    State(state): State<ApiState>,
    AdminUser(_): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !is_canonical_id(&id) {
        return Err(ApiError::bad_request("key ids are lowercase UUIDs"));
    }
    let mut tx = state.db().begin_write().await?;
    let found = revoke_key(&mut tx, &id).await?;
    tx.commit().await.map_err(db_err)?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_strictly() {
        assert_eq!(
            Scope::parse_list("publish, presence,publish").unwrap(),
            vec![Scope::Publish, Scope::Presence]
        );
        assert!(Scope::parse_list("").is_err());
        assert!(Scope::parse_list("publish,admin").is_err());
        assert_eq!(
            scopes_text(&Scope::ALL),
            "publish,presence,rooms,users,webhooks"
        );
    }
}
