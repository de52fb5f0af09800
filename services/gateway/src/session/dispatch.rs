//! Handling one client frame: decode, rate-limit, run the operation, reply.
//!
//! A client sees its replies in the order it sent the requests. `send`s are
//! pipelined: each goes to the gateway's ordered send pipe and the next
//! frame is read at once (up to [`MAX_PIPELINED`] waiting per connection),
//! and the pipe queues each reply as the api answers, in order. Any other
//! request first waits for the connection's sends to be answered, then runs
//! to its reply before the next frame is read. Durable operations go to the
//! api; ephemeral ones (typing) straight to the bus.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    BROADCAST_CHANNEL, BroadcastEvent, ClientFrame, ClientOp, CloseCode, ErrorBody, ErrorCode,
    InternalDm, InternalRoomSend, InternalSend, MAX_STATUS_TEXT_CHARS, PresenceReport, RefOnly,
    Reply, ServerFrame, Status, is_canonical_id, room_channel,
};
use telepath_shared::telemetry;
use tracing::Instrument;

use super::{Session, SessionHandle, send_to};
use crate::GatewayState;
use crate::upstream::{Ack, PendingSend};

/// Consecutive rate-limited frames after which the connection is closed (4008).
const MAX_STRIKES: u32 = 100;

/// Sends of one connection that may wait for the api at once; the reader
/// waits for the oldest to be answered before it reads past them.
const MAX_PIPELINED: u32 = 32;

/// Handles one complete text message from the client.
pub(super) async fn handle_text(session: &mut Session, text: &[u8]) {
    let frame: ClientFrame = match serde_json::from_slice(text) {
        Ok(frame) => frame,
        Err(e) => {
            // Still answer by ref when the frame carried one.
            let reference = serde_json::from_slice::<RefOnly>(text)
                .ok()
                .and_then(|r| r.reference);
            let err = ErrorBody::new(ErrorCode::BadRequest, format!("malformed frame: {e}"));
            answer(session, reference, Err(err)).await;
            return;
        }
    };
    let name = frame.op.name();
    let metrics = session.state.inner.metrics.clone();
    metrics.frames_in.with_label_values(&[name]).inc();
    if session.limiter.check().is_err() {
        session.strikes += 1;
        if session.strikes >= MAX_STRIKES {
            session.handle.close(CloseCode::RateLimit, None);
            return;
        }
        let err = ErrorBody::new(ErrorCode::RateLimited, "slow down");
        answer(session, frame.reference, Err(err)).await;
        return;
    }
    session.strikes = 0;
    if frame.reference.as_ref().is_some_and(|r| r.len() > 64) {
        let err = ErrorBody::new(ErrorCode::BadRequest, "ref is longer than 64 bytes");
        answer(session, None, Err(err)).await;
        return;
    }
    let started = Instant::now();
    // A span per request only when traces are exported: it is the parent of
    // the api call, whose `traceparent` carries it on.
    let span = if telemetry::tracing_enabled() {
        tracing::info_span!("ws.request", otel.name = format!("ws {name}"), otel.kind = "server", conn_id = %session.conn_id())
    } else {
        tracing::Span::none()
    };
    if let ClientOp::Send {
        room,
        body,
        kind,
        client_id,
        reply_to,
    } = frame.op
    {
        let send = InternalSend {
            from: session.claims.user_ref(),
            body,
            kind,
            client_id,
            reply_to,
        };
        let sent = Sent {
            reference: frame.reference,
            started,
            span,
        };
        return pipeline_send(session, room, send, sent).await;
    }
    // Every earlier send is answered before this request runs.
    session.handle.control.sends_answered(1).await;
    let mut then = Vec::new();
    let result = run(session, frame.op, &mut then).instrument(span).await;
    metrics
        .request_duration
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
    respond(session, frame.reference, result);
    // Frames that must follow the reply (a join's replayed messages).
    for follow in then {
        if !session.send(&follow) {
            break;
        }
    }
    // Then what was published during the join.
    if let Some((channel, after)) = session.ungate.take() {
        session.state.inner.hub.ungate(&channel, session.id, after);
    }
}

/// Replies once the connection's earlier sends have been answered, so the
/// replies keep the order of the requests.
async fn answer(
    session: &Session,
    reference: Option<String>,
    result: Result<Option<Value>, ErrorBody>,
) {
    session.handle.control.sends_answered(1).await;
    respond(session, reference, result);
}

/// Queues the reply (with a ref) or an `error` frame (failure without a ref).
fn respond(session: &Session, reference: Option<String>, result: Result<Option<Value>, ErrorBody>) {
    respond_to(&session.handle, &session.state, reference, result);
}

/// [`respond`] on a connection's handle (what the send pipe has).
fn respond_to(
    handle: &SessionHandle,
    state: &GatewayState,
    reference: Option<String>,
    result: Result<Option<Value>, ErrorBody>,
) {
    if let Err(e) = &result {
        state
            .inner
            .metrics
            .reply_errors
            .with_label_values(&[e.code.as_str()])
            .inc();
    }
    let frame = match (reference, result) {
        (Some(r), Ok(data)) => ServerFrame::Reply(Reply::ok(r, data.unwrap_or_else(|| json!({})))),
        (Some(r), Err(e)) => ServerFrame::Reply(Reply::err(r, e)),
        (None, Err(e)) => ServerFrame::Error(e),
        (None, Ok(_)) => return,
    };
    send_to(handle, state, &frame);
}

fn bad(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}

fn from_api(e: ApiError) -> ErrorBody {
    e.body()
}

/// Runs one operation; `Ok(None)` means success with nothing to report.
/// Frames pushed to `then` are queued after the reply.
async fn run(
    session: &mut Session,
    op: ClientOp,
    then: &mut Vec<ServerFrame>,
) -> Result<Option<Value>, ErrorBody> {
    match op {
        ClientOp::Ping => Ok(Some(json!({"pong": chrono::Utc::now().timestamp_millis()}))),
        ClientOp::Join { room, since } => join(session, room, since, then).await.map(Some),
        ClientOp::Leave { room } => leave(session, room).await.map(Some),
        // Pipelined before it gets here (see `handle_text`).
        ClientOp::Send { .. } => Err(ErrorBody::new(ErrorCode::Internal, "send is pipelined")),
        ClientOp::Typing { room, active } => typing(session, room, active).map(|_| None),
        ClientOp::Status { status, text } => set_status(session, status, text).map(Some),
        ClientOp::Refresh { token } => refresh(session, &token).map(Some),
        ClientOp::Broadcast { body } => broadcast(session, body).await.map(Some),
        ClientOp::Dm {
            to,
            body,
            client_id,
        } => dm(session, to, body, client_id).await.map(Some),
        ClientOp::Ack { room, seq, dm } => ack(session, room, seq, dm).map(|_| None),
    }
}

fn checked_room(room: &str) -> Result<(), ErrorBody> {
    if is_canonical_id(room) {
        Ok(())
    } else {
        Err(bad("room ids are lowercase UUIDs"))
    }
}

/// Joins a room. The connection is subscribed first, with its room frames
/// held back; then the api makes the user a participant and names the
/// room's latest seq S. The reply, then the replay of (since, S], then the
/// held frames above S go out in that order: no hole and no repeat at the
/// seam, whatever was published meanwhile.
async fn join(
    session: &mut Session,
    room: String,
    since: Option<i64>,
    then: &mut Vec<ServerFrame>,
) -> Result<Value, ErrorBody> {
    checked_room(&room)?;
    if since.is_some_and(|s| s < 0) {
        return Err(bad("since must be non-negative"));
    }
    let state = session.state.clone();
    let hub = &state.inner.hub;
    let already = session.rooms.contains(&room);
    if !already && session.rooms.len() >= state.inner.config.max_rooms_per_conn {
        return Err(bad("too many rooms on this connection"));
    }
    let channel = room_channel(&room);
    if already {
        // Leave the live stream to rejoin it gated, behind this join's replay.
        hub.leave(&channel, session.id);
    }
    let subscribed = hub
        .join_gated(&channel, session.id, session.handle.clone())
        .await;
    let joined = match state
        .inner
        .api
        .join(&room, &session.claims.user_ref())
        .await
    {
        Ok(joined) if subscribed => joined,
        Ok(_) => {
            hub.leave(&channel, session.id);
            session.rooms.remove(&room);
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "the bus is unavailable; try again",
            ));
        }
        Err(e) => {
            hub.leave(&channel, session.id);
            session.rooms.remove(&room);
            return Err(from_api(e));
        }
    };
    if session.rooms.insert(room.clone()) {
        state.inner.presence.report(PresenceReport::Join {
            conn_id: session.conn_id().to_owned(),
            user: session.claims.user_ref(),
            room: room.clone(),
        });
    }
    // Without `since`, resume from the participant's delivery cursor.
    let since = since.or(Some(joined.cursor));
    let mut recovered = true;
    if let Some(since) = since.filter(|s| *s < joined.seq) {
        // If the api cannot replay now, say so: the client pages history itself.
        recovered = replay(session, &room, since, joined.seq, then)
            .await
            .unwrap_or(false);
        let metrics = &state.inner.metrics;
        metrics
            .recoveries
            .with_label_values(&[if recovered { "true" } else { "false" }])
            .inc();
        metrics
            .replayed
            .with_label_values(&["join"])
            .inc_by(then.len() as u64);
    }
    session.ungate = Some((channel, joined.seq));
    Ok(json!({"room": room, "seq": joined.seq, "recovered": recovered}))
}

/// Collects the messages after `since` up to `upto` for queueing after the
/// reply. Returns false (and collects nothing) when the gap is larger than
/// the replay cap.
async fn replay(
    session: &Session,
    room: &str,
    since: i64,
    upto: i64,
    then: &mut Vec<ServerFrame>,
) -> Result<bool, ErrorBody> {
    let cap = session.state.inner.config.replay_cap;
    if upto - since > cap {
        return Ok(false);
    }
    let page = session
        .state
        .inner
        .api
        .history_after(room, since, cap)
        .await
        .map_err(from_api)?;
    then.extend(
        page.messages
            .into_iter()
            .filter(|m| m.seq <= upto)
            .map(ServerFrame::Message),
    );
    Ok(true)
}

async fn leave(session: &mut Session, room: String) -> Result<Value, ErrorBody> {
    checked_room(&room)?;
    let state = session.state.clone();
    state
        .inner
        .api
        .leave(&room, &session.claims.user_ref())
        .await
        .map_err(from_api)?;
    if session.rooms.remove(&room) {
        state.inner.hub.leave(&room_channel(&room), session.id);
        state.inner.presence.report(PresenceReport::Leave {
            conn_id: session.conn_id().to_owned(),
            user_id: session.claims.sub.clone(),
            room: room.clone(),
        });
    }
    Ok(json!({"room": room}))
}

/// What a pipelined send's reply needs once the api answers.
struct Sent {
    reference: Option<String>,
    started: Instant,
    /// The request's span (when traces are exported); it ends with the reply.
    span: tracing::Span,
}

/// Checks a send, then queues it on the send pipe without waiting for the
/// api: the pipe queues its reply. A send refused here is answered in
/// order, after the connection's earlier sends.
async fn pipeline_send(session: &mut Session, room: String, send: InternalSend, sent: Sent) {
    if let Err(e) = check_send(session, &room, &send) {
        return answer(session, sent.reference, Err(e)).await;
    }
    let control = &session.handle.control;
    control.sends_answered(MAX_PIPELINED).await;
    control.sends_in_flight.fetch_add(1, Ordering::AcqRel);
    let traceparent = sent.span.in_scope(telemetry::traceparent);
    let (handle, state) = (session.handle.clone(), session.state.clone());
    let done = Box::new(
        move |result: Result<telepath_shared::protocol::Message, ApiError>| {
            let Sent {
                reference,
                started,
                span,
            } = sent;
            state
                .inner
                .metrics
                .request_duration
                .with_label_values(&["send"])
                .observe(started.elapsed().as_secs_f64());
            let result = result
                .map(|m| Some(json!({"id": m.id, "seq": m.seq, "ts": m.ts})))
                .map_err(from_api);
            respond_to(&handle, &state, reference, result);
            drop(span);
            let control = &handle.control;
            control.sends_in_flight.fetch_sub(1, Ordering::AcqRel);
            control.send_answered.notify_waiters();
        },
    );
    let pending = PendingSend::new(
        InternalRoomSend {
            room,
            send,
            traceparent,
        },
        done,
    );
    session.state.inner.sends.submit(pending).await;
}

/// The checks of a send that need no database: the room id and every
/// bound of the api's send schema. A refused send never joins a batch, so
/// one client's bad frame cannot sink the others' (the api refuses a batch
/// that breaks its schema as a whole).
fn check_send(session: &Session, room: &str, send: &InternalSend) -> Result<(), ErrorBody> {
    checked_room(room)?;
    send.check(session.state.inner.config.max_body_bytes)
}

/// A direct message: stored and queued by the api, then published to the
/// recipient's connections (and the sender's other ones).
async fn dm(
    session: &mut Session,
    to: String,
    body: String,
    client_id: Option<String>,
) -> Result<Value, ErrorBody> {
    let max = session.state.inner.config.max_body_bytes;
    if body.len() > max {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("body is over {max} bytes"),
        ));
    }
    let dm = InternalDm {
        from: session.claims.user_ref(),
        to,
        body,
        client_id,
    };
    let sent = session.state.inner.api.dm(&dm).await.map_err(from_api)?;
    Ok(json!({"id": sent.id, "ts": sent.ts, "delivered": sent.delivered}))
}

/// `ack` with `dm` (a DM id) or `room` + `seq` (a delivery cursor); written in batches.
fn ack(
    session: &mut Session,
    room: Option<String>,
    seq: Option<i64>,
    dm: Option<String>,
) -> Result<(), ErrorBody> {
    let user_id = session.claims.sub.clone();
    let ack = match (room, seq, dm) {
        (None, None, Some(id)) if is_canonical_id(&id) => Ack::Dm { user_id, id },
        (Some(room), Some(seq), None) if is_canonical_id(&room) && seq >= 0 => {
            Ack::Cursor { user_id, room, seq }
        }
        _ => return Err(bad("ack takes `dm` (a DM id), or `room` and `seq`")),
    };
    if session.state.inner.acks.ack(ack) {
        Ok(())
    } else {
        Err(ErrorBody::new(
            ErrorCode::Unavailable,
            "too many acks queued; ack again later",
        ))
    }
}

/// Typing goes through presence, which fans it out to the room and turns it
/// off by itself when it is not refreshed.
fn typing(session: &mut Session, room: String, active: bool) -> Result<(), ErrorBody> {
    checked_room(&room)?;
    if !session.rooms.contains(&room) {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "join the room first"));
    }
    session.state.inner.presence.report(PresenceReport::Typing {
        conn_id: session.conn_id().to_owned(),
        user: session.claims.user_ref(),
        room,
        active,
    });
    Ok(())
}

/// The user's chosen status (`online` goes back to automatic online/away).
fn set_status(
    session: &mut Session,
    status: Status,
    text: Option<String>,
) -> Result<Value, ErrorBody> {
    if status == Status::Offline {
        return Err(bad("status is one of online, away, busy, meditating"));
    }
    if text.as_ref().is_some_and(|t| {
        t.chars().count() > MAX_STATUS_TEXT_CHARS || t.chars().any(char::is_control)
    }) {
        return Err(bad(format!(
            "text: at most {MAX_STATUS_TEXT_CHARS} characters, no control characters"
        )));
    }
    session.state.inner.presence.report(PresenceReport::Status {
        user: session.claims.user_ref(),
        status,
        text,
    });
    Ok(json!({"status": status}))
}

/// Admins only: an event to every connection on every node.
async fn broadcast(session: &mut Session, body: String) -> Result<Value, ErrorBody> {
    if !session.claims.is_admin() {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "admins only"));
    }
    let max = session.state.inner.config.max_body_bytes;
    if body.is_empty() || body.len() > max {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("body: 1-{max} bytes"),
        ));
    }
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let event = BroadcastEvent {
        id: id.clone(),
        from: session.claims.user_ref(),
        body,
        ts: chrono::Utc::now(),
    };
    session
        .state
        .inner
        .bus
        .publish(
            BROADCAST_CHANNEL,
            bytes::Bytes::from(ServerFrame::Broadcast(event).to_json()),
        )
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Unavailable, "the bus is unavailable"))?;
    session.state.inner.metrics.bus_out.inc();
    Ok(json!({"id": id}))
}

fn refresh(session: &mut Session, token: &str) -> Result<Value, ErrorBody> {
    let claims = session
        .state
        .inner
        .keys
        .verify(token)
        .map_err(|_| ErrorBody::new(ErrorCode::Unauthorized, "invalid token"))?;
    if claims.sub != session.claims.sub {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "the token names another user",
        ));
    }
    let exp = claims.exp;
    session.claims = claims;
    session.handle.set_expiry(exp);
    Ok(json!({"exp": exp}))
}
