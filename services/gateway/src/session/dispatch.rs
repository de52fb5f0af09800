//! Handling one client frame: decode, rate-limit, run the operation, reply.
//!
//! Requests of one connection are handled in order, one at a time, so a
//! client sees its replies in the order it sent the requests. Durable
//! operations go to the api; ephemeral ones (typing) straight to the bus.

use std::time::Instant;

use serde_json::{Value, json};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    BROADCAST_CHANNEL, BroadcastEvent, ClientFrame, ClientOp, CloseCode, ErrorBody, ErrorCode,
    InternalDm, InternalSend, MAX_STATUS_TEXT_CHARS, PresenceReport, RefOnly, Reply, ServerFrame,
    Status, is_canonical_id, room_channel,
};
use telepath_shared::telemetry;
use tracing::Instrument;

use super::Session;
use crate::upstream::Ack;

/// Consecutive rate-limited frames after which the connection is closed (4008).
const MAX_STRIKES: u32 = 100;

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
            respond(session, reference, Err(err));
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
        respond(
            session,
            frame.reference,
            Err(ErrorBody::new(ErrorCode::RateLimited, "slow down")),
        );
        return;
    }
    session.strikes = 0;
    if frame.reference.as_ref().is_some_and(|r| r.len() > 64) {
        respond(
            session,
            None,
            Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "ref is longer than 64 bytes",
            )),
        );
        return;
    }
    let started = Instant::now();
    let mut then = Vec::new();
    // A span per request only when traces are exported: it is the parent of
    // the api call, whose `traceparent` carries it on.
    let span = if telemetry::tracing_enabled() {
        tracing::info_span!("ws.request", otel.name = format!("ws {name}"), otel.kind = "server", conn_id = %session.conn_id())
    } else {
        tracing::Span::none()
    };
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

/// Queues the reply (with a ref) or an `error` frame (failure without a ref).
fn respond(session: &Session, reference: Option<String>, result: Result<Option<Value>, ErrorBody>) {
    if let Err(e) = &result {
        session
            .state
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
    session.send(&frame);
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
        ClientOp::Send {
            room,
            body,
            kind,
            client_id,
            reply_to,
        } => send(
            session,
            room,
            InternalSend {
                from: session.claims.user_ref(),
                body,
                kind,
                client_id,
                reply_to,
            },
        )
        .await
        .map(Some),
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

async fn send(session: &mut Session, room: String, send: InternalSend) -> Result<Value, ErrorBody> {
    checked_room(&room)?;
    let max = session.state.inner.config.max_body_bytes;
    if send.body.len() > max {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("body is over {max} bytes"),
        ));
    }
    let message = session
        .state
        .inner
        .api
        .send(&room, &send)
        .await
        .map_err(from_api)?;
    Ok(json!({"id": message.id, "seq": message.seq, "ts": message.ts}))
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
