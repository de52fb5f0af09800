//! Public room routes: create, list, join, leave, history.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::ErrorEnvelope;
use telepath_shared::protocol::{
    CreateRoom, ErrorCode, InternalSend, MemberAction, MemberEvent, Message, MessagePage,
    Participant, ParticipantList, Role, Room, RoomClosed, RoomEvent, RoomList, RoomRole,
    SendMessage, ServerFrame, UserRef, WebhookEvent, is_canonical_id, room_channel, user_channel,
};

use telepath_shared::bus::Outgoing;

use crate::ApiState;
use crate::auth::AuthUser;
use crate::limits::ClientIp;
use crate::manage;
use crate::store::{self, PageAnchor, db_err, now};
use crate::writer::Queued;

/// Largest `max_participants` a room may ask for.
const MAX_PARTICIPANTS: i64 = 100_000;
/// Participants when the creator does not say.
const DEFAULT_PARTICIPANTS: i64 = 100;

/// A room id from the path: canonical UUIDs only (400 otherwise).
pub(crate) fn room_id(id: &str) -> Result<&str, ApiError> {
    if is_canonical_id(id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request("room ids are lowercase UUIDs"))
    }
}

pub(crate) fn valid_room_name(name: &str) -> bool {
    let len = name.chars().count();
    (1..=64).contains(&len) && !name.chars().any(char::is_control) && name.trim() == name
}

/// The bounds of a room's name, description and size, at creation and in
/// `PATCH /rooms/{id}` (absent: not being set).
pub(crate) fn check_fields(
    name: Option<&str>,
    description: Option<&str>,
    max_participants: Option<i64>,
) -> Result<(), ApiError> {
    if name.is_some_and(|n| !valid_room_name(n)) {
        return Err(ApiError::bad_request(
            "name: 1-64 characters, no control characters or outer spaces",
        ));
    }
    if description.is_some_and(|d| d.chars().count() > 1024) {
        return Err(ApiError::bad_request(
            "description: at most 1024 characters",
        ));
    }
    if max_participants.is_some_and(|m| !(1..=MAX_PARTICIPANTS).contains(&m)) {
        return Err(ApiError::bad_request(format!(
            "max_participants: 1-{MAX_PARTICIPANTS}"
        )));
    }
    Ok(())
}

/// A patched optional text: absent leaves it (`None`), `""` clears it
/// (`Some(None)`), anything else sets it.
pub(crate) fn patched(text: &Option<String>) -> Option<Option<String>> {
    text.as_ref().map(|t| (!t.is_empty()).then(|| t.clone()))
}

#[utoipa::path(post, path = "/rooms", operation_id = "create_room", tag = "rooms", request_body = CreateRoom,
    responses((status = 201, description = "The room; the caller is its owner", body = Room), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope), (status = 429, description = "Too many rooms created from this address (TELEPATH_IP_ROOM_RATE_PER_S); see Retry-After", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<CreateRoom>,
) -> Result<(StatusCode, Json<Room>), ApiError> {
    let max = req.max_participants.unwrap_or(DEFAULT_PARTICIPANTS);
    check_fields(Some(&req.name), req.description.as_deref(), Some(max))?;
    state.limits().room(ip).await?;
    let room = insert_room(
        &state,
        &claims.user_ref(),
        claims.role,
        req.name,
        req.description,
        max,
        req.private.unwrap_or(false),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(room)))
}

/// Creates a room owned by `user` (its fields checked by the caller) and
/// announces it to the directory: everyone connected hears of a public
/// room, the owner of a private one.
pub(crate) async fn insert_room(
    state: &ApiState,
    user: &UserRef,
    role: Role,
    name: String,
    description: Option<String>,
    max: i64,
    private: bool,
) -> Result<Room, ApiError> {
    let user = user.clone();
    let room = Room {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        name,
        description,
        max_participants: max,
        private,
        created_by: user.id.clone(),
        created_at: now(),
        is_active: true,
        topic: None,
        member_count: None,
        online_count: None,
        role: None,
        unread: None,
        read_seq: None,
        unread_capped: false,
        retention: None,
    };
    let mut tx = state.db().begin_write().await?;
    store::ensure_user(&mut tx, &user, role).await?;
    sqlx::query(
        "INSERT INTO rooms (id, name, description, max_participants, is_private, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&room.id)
    .bind(&room.name)
    .bind(&room.description)
    .bind(room.max_participants)
    .bind(room.private)
    .bind(&room.created_by)
    .bind(room.created_at)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    store::join(&mut tx, &room.id, &user, store::Admission::Creator).await?;
    tx.commit().await.map_err(db_err)?;
    let mut room = room;
    room.member_count = Some(1);
    // The directory: everyone connected hears of a public room, the owner of a private one.
    let frame = ServerFrame::RoomCreated(RoomEvent {
        room: room.clone(),
        by: user.clone(),
    });
    manage::publish_directory(state, &frame, !room.private, vec![user.id.clone()]);
    room.role = Some(RoomRole::Owner);
    Ok(room)
}

#[utoipa::path(get, path = "/rooms", operation_id = "list_rooms", tag = "rooms",
    responses((status = 200, description = "Active public rooms and the caller's rooms", body = RoomList), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<RoomList>, ApiError> {
    Ok(Json(RoomList {
        rooms: store::visible_rooms(&state.db().read, &claims.sub).await?,
    }))
}

#[utoipa::path(post, path = "/rooms/{id}/join", tag = "rooms", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "The caller as a participant", body = Participant), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 409, description = "room_full", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn join(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Participant>, ApiError> {
    let id = room_id(&id)?;
    let joined = store::join_room(&state.db().write, id, &claims.user_ref(), claims.role).await?;
    if joined.new {
        announce_member(&state, id, claims.user_ref(), MemberAction::Joined);
    }
    Ok(Json(joined.participant))
}

#[utoipa::path(delete, path = "/rooms/{id}/leave", tag = "rooms", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 204, description = "No longer a participant"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 409, description = "The owner of an open room hands it over first", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn leave(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    store::leave_room(&state.db().write, id, &claims.sub).await?;
    // Its notifications about the room are no longer shown, nor counted.
    state.unread().touch([&claims.sub]);
    announce_member(&state, id, claims.user_ref(), MemberAction::Left);
    Ok(StatusCode::NO_CONTENT)
}

/// Tells the room that `user` joined or left (a `member` event).
pub(crate) fn announce_member(state: &ApiState, room: &str, user: UserRef, action: MemberAction) {
    announce(state, MemberEvent::new(room.to_owned(), user, action));
}

/// Publishes a `member` event to the room. Any event but a join also goes
/// to the user's own channel: every gateway holding one of their
/// connections stops relaying the room to it after a leave, a kick or a
/// ban, and learns a mute (for `typing`) or a new role. After commit,
/// through the `rooms` outbox (in the order of the room's commits); an
/// event the outbox drops is not repaired (the database is the truth, and
/// the user's connections get `forbidden` on their next send).
///
/// A join is a `room.joined` webhook event, a leave (kicked and banned
/// too) a `room.left`, queued right after the commit by the webhooks'
/// recorder.
pub(crate) fn announce(state: &ApiState, event: MemberEvent) {
    let hook = match event.action {
        MemberAction::Joined => Some(WebhookEvent::RoomJoined),
        MemberAction::Left => Some(WebhookEvent::RoomLeft),
        MemberAction::Role | MemberAction::Muted | MemberAction::Unmuted => None,
    };
    if let Some(kind) = hook.filter(|k| state.webhooks().wants(*k))
        && let Some(e) = crate::webhooks::Event::new(kind, &event)
    {
        state.webhooks().emit(e);
    }
    let outbox = &state.outboxes().rooms;
    let room = event.room.clone();
    let user_id = event.user.id.clone();
    let own = event.action != MemberAction::Joined;
    let frame = bytes::Bytes::from(ServerFrame::Member(event).to_json());
    let mut channels = vec![room_channel(&room)];
    if own {
        channels.push(user_channel(&user_id));
    }
    outbox.push(
        channels
            .into_iter()
            .map(|channel| Outgoing::new(channel, frame.clone())),
    );
}

/// `?before=&after=&limit=` of a history page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Messages with seq below this (the newest `limit` of them).
    #[param(minimum = 0)]
    #[serde(
        default,
        deserialize_with = "telepath_shared::protocol::integer::option"
    )]
    before: Option<i64>,
    /// Messages with seq above this (the oldest `limit` of them; with
    /// `before`, only those between the two).
    #[param(minimum = 0)]
    #[serde(
        default,
        deserialize_with = "telepath_shared::protocol::integer::option"
    )]
    after: Option<i64>,
    /// Page size: default 50, at most 500 (larger is clamped).
    #[param(minimum = 1)]
    #[serde(
        default,
        deserialize_with = "telepath_shared::protocol::integer::option"
    )]
    limit: Option<i64>,
}

/// Default and largest page sizes.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

impl HistoryQuery {
    /// Validates the query: one anchor at most, seqs ≥ 0, limit 1..=500 (larger is clamped).
    pub(crate) fn parse(
        q: Result<Query<HistoryQuery>, QueryRejection>,
    ) -> Result<(PageAnchor, i64), ApiError> {
        let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let limit = match q.limit {
            None => DEFAULT_LIMIT,
            Some(l) if l < 1 => return Err(ApiError::bad_request("limit must be at least 1")),
            Some(l) => l.min(MAX_LIMIT),
        };
        if q.before.is_some_and(|b| b < 0) || q.after.is_some_and(|a| a < 0) {
            return Err(ApiError::bad_request("seq values are non-negative"));
        }
        let anchor = match (q.before, q.after) {
            (Some(before), Some(after)) => PageAnchor::Between { after, before },
            (Some(b), None) => PageAnchor::Before(b),
            (None, Some(a)) => PageAnchor::After(a),
            (None, None) => PageAnchor::Latest,
        };
        Ok((anchor, limit))
    }
}

#[utoipa::path(get, path = "/rooms/{id}/messages", tag = "rooms",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), HistoryQuery),
    responses((status = 200, description = "A page of messages in seq order", body = MessagePage), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn messages(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    let id = room_id(&id)?;
    let (anchor, limit) = HistoryQuery::parse(query)?;
    readable(&state, id, &claims.sub).await?;
    let pool = &state.db().read;
    let (mut messages, has_more) = store::page(pool, id, anchor, limit).await?;
    store::with_reactions(pool, &mut messages, Some(&claims.sub)).await?;
    Ok(Json(MessagePage { messages, has_more }))
}

#[utoipa::path(post, path = "/rooms/{id}/messages", tag = "rooms",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    request_body = SendMessage,
    responses((status = 201, description = "Committed (or, repeated with the same `client_id`, the message the first send stored): what the `send` frame's acknowledgement and the room's `message` event carry", body = Message), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not a participant (join first), the room is closed, or the caller is muted", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller), or `reply_to` names no message of this room", body = ErrorEnvelope), (status = 409, description = "`client_id` already names a direct message of the caller", body = ErrorEnvelope), (status = 413, description = "The body is larger than `TELEPATH_MAX_BODY_BYTES`", body = ErrorEnvelope), (status = 429, description = "Over the caller's send budget (`TELEPATH_USER_RATE_PER_S`, shared with their connections); `Retry-After` says when to retry", body = ErrorEnvelope)),
    security(("bearer" = [])))]
/// Sends to a room over REST exactly as the `send` frame does: the same
/// checks, the same group commit, acknowledged (201) only once committed,
/// idempotent by `client_id`, and published to the room like any message.
pub(crate) async fn send(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SendMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let id = room_id(&id)?;
    let send = InternalSend {
        from: claims.user_ref(),
        body: req.body,
        kind: req.kind,
        client_id: req.client_id,
        reply_to: req.reply_to,
    };
    send.check(state.common().max_body_bytes)?;
    // Outsiders of a private room, and users a moderator removed, learn
    // nothing of it (404), as on every other route of the room.
    readable(&state, id, &claims.sub).await?;
    state.limits().user(&claims.sub).await?;
    let queued = Queued {
        room: id.to_owned(),
        send,
        trace: None,
        server: false,
    };
    let message = state
        .writer()
        .send_many(vec![Ok(queued)])
        .await
        .pop()
        .unwrap_or_else(|| Err(ApiError::internal("no outcome")))?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// Whether `user_id` may read room `id` over REST: an open room, public or
/// theirs (404 otherwise, so ids reveal nothing).
pub(crate) async fn readable(state: &ApiState, id: &str, user_id: &str) -> Result<(), ApiError> {
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    // Closed rooms are gone for REST readers (gateways still replay them).
    let room = store::room(&mut conn, id)
        .await?
        .map(store::RoomRow::into_room)
        .filter(|r| r.is_active)
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    // Private rooms are readable by their members only, and invisible to others.
    let member = store::is_member(&mut conn, id, user_id).await?;
    if room.private && !member {
        return Err(ApiError::not_found("no such room"));
    }
    // Nor do users a moderator removed read on (until they come back).
    if !member && store::shut_out(&mut conn, id, user_id).await? {
        return Err(ApiError::not_found("no such room"));
    }
    Ok(())
}

#[utoipa::path(get, path = "/rooms/{id}/participants", tag = "rooms", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "Active participants with online flags", body = ParticipantList), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 503, description = "A dependency is unavailable", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn participants(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ParticipantList>, ApiError> {
    let id = room_id(&id)?;
    let mut conn = state.db().read.acquire().await.map_err(db_err)?;
    // Members only; everyone else learns nothing, not even that the room exists.
    let active = store::room(&mut conn, id)
        .await?
        .is_some_and(|r| r.into_room().is_active);
    if !active || !store::is_member(&mut conn, id, &claims.sub).await? {
        return Err(ApiError::not_found("no such room"));
    }
    let mut participants = store::participants(&mut conn, id).await?;
    drop(conn);
    let online = state.presence().summary().await?;
    let online: std::collections::HashSet<&str> =
        online.users.iter().map(|u| u.id.as_str()).collect();
    for p in &mut participants {
        p.online = online.contains(p.user.id.as_str());
    }
    Ok(Json(ParticipantList { participants }))
}

/// `DELETE /rooms/{id}`: the owner or an admin deactivates the room. Members
/// get a `room_closed` event; sends and joins are refused from then on.
#[utoipa::path(delete, path = "/rooms/{id}", tag = "rooms", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 204, description = "Closed; members get a room_closed event"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not allowed", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn close(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    let mut tx = state.db().begin_write().await?;
    let access = manage::access(&mut tx, id, &claims.sub, claims.is_admin()).await?;
    if access.power() != Some(RoomRole::Owner) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the owner or an admin may close a room",
        ));
    }
    sqlx::query("UPDATE rooms SET is_active = 0, closed_by = ? WHERE id = ?")
        .bind(&claims.sub)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    manage::audit(&mut tx, id, &claims.sub, "close", None, None).await?;
    let members = store::member_ids(&mut tx, id).await?;
    tx.commit().await.map_err(db_err)?;
    // To everyone for a public room (the directory), to the participants of
    // a private one; every gateway takes its connections out of the room.
    let frame = ServerFrame::RoomClosed(RoomClosed {
        room: id.to_owned(),
        by: claims.user_ref(),
    });
    manage::publish_directory(&state, &frame, !access.room.is_private, members);
    Ok(StatusCode::NO_CONTENT)
}
