//! Service-to-service routes the gateway calls on behalf of its users.
//! Each needs the `X-Telepath-Internal` header; none is routed by the load balancer.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::ErrorEnvelope;
use telepath_shared::protocol::{
    self, DmOutcome, ErrorBody, InternalJoin, InternalMemberships, InternalSendBatch,
    InternalSendResults, JoinResult, MemberAction, Memberships, MessagePage, Role, SendOutcome,
};

use crate::auth::Internal;
use crate::rooms::{HistoryQuery, announce_member, room_id};
use crate::store;
use crate::writer::Queued;
use crate::{ApiState, dms};

#[utoipa::path(post, path = "/internal/rooms/{id}/join", tag = "internal", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = InternalJoin,
    responses((status = 200, description = "Joined; the room's latest seq", body = JoinResult), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 409, description = "room_full", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn join(
    State(state): State<ApiState>,
    _: Internal,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<InternalJoin>,
) -> Result<Json<JoinResult>, ApiError> {
    let id = room_id(&id)?;
    protocol::check_user(&req.user)?;
    let joined = store::join_room(&state.db().write, id, &req.user, Role::User).await?;
    if joined.new {
        announce_member(
            &state.outboxes().rooms,
            id,
            req.user.clone(),
            MemberAction::Joined,
        );
    }
    Ok(Json(JoinResult {
        room: id.to_owned(),
        seq: joined.seq,
        cursor: joined.cursor,
    }))
}

#[utoipa::path(post, path = "/internal/rooms/{id}/leave", tag = "internal", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = InternalJoin,
    responses((status = 204, description = "Left"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn leave(
    State(state): State<ApiState>,
    _: Internal,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<InternalJoin>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    store::leave_room(&state.db().write, id, &req.user.id).await?;
    announce_member(&state.outboxes().rooms, id, req.user, MemberAction::Left);
    Ok(StatusCode::NO_CONTENT)
}

/// Largest batch body. A gateway's batches stay far below it (256 items and
/// 512 KiB of bodies at most, under 4 MiB even JSON-escaped); a larger body
/// gets 413.
pub(crate) const MAX_SEND_BATCH_BYTES: usize = 8 << 20;

/// What gateways send through: room messages (group-committed by the
/// writer) and DMs, each list committed in its order.
#[utoipa::path(post, path = "/internal/messages", tag = "internal", request_body = InternalSendBatch,
    responses((status = 200, description = "One outcome per send and per DM, in order: the committed message or DM, or why this api refused that one (room, membership, recipient, offline queue, byte limit)", body = InternalSendResults), (status = 400, description = "Invalid input: the batch, or one of its items, breaks the schema's bounds", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 413, description = "The body, or an item's body, is too large", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn send_batch(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(req): JsonBody<InternalSendBatch>,
) -> Result<Json<InternalSendResults>, ApiError> {
    // What the schema bounds refuses the whole batch (a gateway checks the
    // same before it sends, so only another caller can get this); what
    // depends on this api (its byte limit, the room) refuses that send alone.
    req.check()?;
    let max = state.common().max_body_bytes;
    let jobs = req.sends.into_iter().map(|s| {
        room_id(&s.room)?;
        s.send.check(max)?;
        Ok(Queued {
            room: s.room,
            send: s.send,
            trace: s.traceparent,
        })
    });
    let dms = dms::store(&state, req.dms);
    let (messages, dms) = tokio::join!(state.writer().send_many(jobs.collect()), dms);
    Ok(Json(InternalSendResults {
        results: messages
            .into_iter()
            .map(|r| {
                let (message, error) = split(r);
                SendOutcome { message, error }
            })
            .collect(),
        dms: dms
            .into_iter()
            .map(|r| {
                let (dm, error) = split(r);
                DmOutcome { dm, error }
            })
            .collect(),
    }))
}

/// An outcome as the two optional fields of its wire form.
fn split<T>(result: Result<T, ApiError>) -> (Option<T>, Option<ErrorBody>) {
    match result {
        Ok(made) => (Some(made), None),
        Err(e) => (None, Some(e.body())),
    }
}

/// Largest memberships body. The most a query may hold, 10,000 user ids
/// and 1,000 room ids, is under half of it; a larger body gets 413.
pub(crate) const MAX_MEMBERSHIPS_BYTES: usize = 1 << 20;

/// Which rooms are still active and who still takes part in them, for a
/// gateway catching up after its bus subscription came back.
#[utoipa::path(post, path = "/internal/memberships", tag = "internal", request_body = InternalMemberships,
    responses((status = 200, description = "One entry per room asked about, in order: whether it exists and is active, and which of the listed users are active participants (none when it is not active)", body = Memberships), (status = 400, description = "Invalid input: more than 1,000 rooms or 10,000 user ids, or an id that is not a lowercase UUID", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 413, description = "Body too large (1 MiB)", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn memberships(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(req): JsonBody<InternalMemberships>,
) -> Result<Json<Memberships>, ApiError> {
    req.check()?;
    Ok(Json(store::memberships(&state.db().read, &req).await?))
}

/// History for the gateway (resume, gap repair): no membership check.
#[utoipa::path(get, path = "/internal/rooms/{id}/messages", tag = "internal",
    params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), HistoryQuery),
    responses((status = 200, description = "A page of messages in seq order", body = MessagePage), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn messages(
    State(state): State<ApiState>,
    _: Internal,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    let id = room_id(&id)?;
    let (anchor, limit) = HistoryQuery::parse(query)?;
    let (messages, has_more) = store::page(&state.db().read, id, anchor, limit).await?;
    Ok(Json(MessagePage { messages, has_more }))
}
