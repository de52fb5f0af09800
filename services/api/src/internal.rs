//! Service-to-service routes the gateway calls on behalf of its users.
//! Each needs the `X-Telepath-Internal` header; none is routed by the load balancer.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::ErrorEnvelope;
use telepath_shared::protocol::{
    self, ChangeOutcome, DmOutcome, ErrorBody, InternalJoin, InternalMemberships,
    InternalSendBatch, InternalSendResults, JoinResult, LogPage, MemberAction, Memberships, Role,
    SendOutcome,
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
        announce_member(&state, id, req.user.clone(), MemberAction::Joined);
    }
    Ok(Json(JoinResult {
        room: id.to_owned(),
        seq: joined.seq,
        cursor: joined.cursor,
        muted_until: joined
            .participant
            .muted_until
            .filter(|until| *until > store::now()),
        pruned_seq: joined.pruned_seq,
    }))
}

#[utoipa::path(post, path = "/internal/rooms/{id}/leave", tag = "internal", params(("id" = String, Path, description = "Room id (lowercase UUID)", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")), request_body = InternalJoin,
    responses((status = 204, description = "Left"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such room (or not visible to the caller)", body = ErrorEnvelope), (status = 409, description = "The owner of an open room hands it over first", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn leave(
    State(state): State<ApiState>,
    _: Internal,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<InternalJoin>,
) -> Result<StatusCode, ApiError> {
    let id = room_id(&id)?;
    store::leave_room(&state.db().write, id, &req.user.id).await?;
    state.unread().touch([&req.user.id]);
    announce_member(&state, id, req.user, MemberAction::Left);
    Ok(StatusCode::NO_CONTENT)
}

/// `work(items)`, boxed, or nothing when there are no items. DMs and
/// changes are rare beside room sends: boxing their work only when there is
/// some keeps [`send_batch`]'s own future, which is moved into its box on
/// every request, small.
async fn unless_empty<I, T, F, W>(items: Vec<I>, work: W) -> Vec<T>
where
    W: FnOnce(Vec<I>) -> F,
    F: std::future::Future<Output = Vec<T>>,
{
    if items.is_empty() {
        Vec::new()
    } else {
        Box::pin(work(items)).await
    }
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
            server: false,
        })
    });
    let dms = unless_empty(req.dms, |dms| dms::store(&state, dms));
    // Room changes go to the writer after the sends; DM changes to their own
    // transaction. Each list keeps its order; the answers come back in the
    // batch's order.
    let (mut room_changes, mut dm_changes, mut is_dm) = (Vec::new(), Vec::new(), Vec::new());
    for c in req.changes {
        let checked = c.check(max).map_err(ApiError::from).and_then(|()| {
            if let Some(room) = &c.room {
                room_id(room)?;
            }
            Ok(c)
        });
        let dm = checked.as_ref().is_ok_and(|c| c.dm.is_some());
        is_dm.push(dm);
        if dm {
            dm_changes.push(checked);
        } else {
            room_changes.push(checked);
        }
    }
    let writer = state.writer();
    let room_work = async {
        let messages = writer.send_many(jobs.collect()).await;
        let changes = unless_empty(room_changes, |c| writer.change_many(c)).await;
        (messages, changes)
    };
    let dm_work = unless_empty(dm_changes, |c| dms::change_many(&state, c));
    let ((messages, room_changes), dms, dm_changes) = tokio::join!(room_work, dms, dm_work);
    let (mut room_changes, mut dm_changes) = (room_changes.into_iter(), dm_changes.into_iter());
    let changes = is_dm
        .into_iter()
        .map(|dm| {
            let next = if dm {
                dm_changes.next()
            } else {
                room_changes.next()
            };
            let (change, error) =
                split(next.unwrap_or_else(|| Err(ApiError::internal("no outcome"))));
            ChangeOutcome { change, error }
        })
        .collect();
    Ok(Json(InternalSendResults {
        changes,
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
pub(crate) fn split<T>(result: Result<T, ApiError>) -> (Option<T>, Option<ErrorBody>) {
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
    responses((status = 200, description = "A page of the room's log: its messages (as they are now) and the changes to them (edits, deletes, reactions), in seq order", body = LogPage), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn messages(
    State(state): State<ApiState>,
    _: Internal,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<LogPage>, ApiError> {
    let id = room_id(&id)?;
    let (anchor, limit) = HistoryQuery::parse(query)?;
    let (entries, has_more) = store::log_page(&state.db().read, id, anchor, limit).await?;
    Ok(Json(LogPage { entries, has_more }))
}
