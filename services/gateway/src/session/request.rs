//! Handling one client request: decode, rate-limit, run the operation, reply.
//!
//! A client sees its replies in the order it sent the requests. `send`s and
//! `dm`s are pipelined: each goes to the gateway's ordered send pipe and the
//! next frame is read at once (up to [`MAX_PIPELINED`] waiting per
//! connection), and the pipe queues each reply as the api answers, in order.
//! Any other request first waits for the connection's pipelined ones to be
//! answered, then runs to its reply before the next frame is read.
//!
//! The operations: rooms ([`rooms`]: join, leave) and the acks of what was
//! received ([`acks`]) go to the api and wait for it; sends and DMs
//! ([`sends`]) go through the send pipe; typing and statuses go to presence
//! ([`presence`]); admin broadcasts straight to the bus ([`admin`]).

mod acks;
mod admin;
mod presence;
mod rooms;
mod sends;

use std::time::Instant;

use serde_json::{Value, json};
use telepath_shared::protocol::{
    ChangeOp, ClientFrame, ClientOp, CloseCode, ErrorBody, ErrorCode, InternalChange, RefOnly,
    Reply, ServerFrame, is_canonical_id,
};
use telepath_shared::telemetry;
use tracing::Instrument;

use super::Session;
use crate::GatewayMetrics;
use crate::handle::SessionHandle;

/// Consecutive rate-limited frames after which the connection is closed (4008).
const MAX_STRIKES: u32 = 100;

/// Sends and DMs of one connection that may wait for the api at once; the
/// reader waits for the oldest to be answered before it reads past them.
const MAX_PIPELINED: u32 = 32;

/// The answer to one request: data for its reply (`None`: nothing to say), or an error.
type Answer = Result<Option<Value>, ErrorBody>;

/// Counts one frame from the client (a ping, a pong, one that does not
/// decode) against its connection's rate limit: false when it is over it
/// (a strike); a frame admitted ends the strikes.
pub(super) fn admit(session: &mut Session) -> bool {
    if session.limiter.check().is_ok() {
        session.strikes = 0;
        return true;
    }
    strike(session);
    false
}

/// One more frame refused in a row: [`MAX_STRIKES`] close the connection
/// with 4008.
fn strike(session: &mut Session) {
    session.strikes += 1;
    if session.strikes >= MAX_STRIKES {
        session.handle.close(CloseCode::RateLimit, None);
    }
}

/// Counts a request against its connection's limit and, when it spends
/// the user's budget (across connections and gateways), against that too:
/// false when either refuses it. A request both admit ends the strikes.
async fn admit_request(session: &mut Session, op: &ClientOp) -> bool {
    if session.limiter.check().is_err() {
        strike(session);
        return false;
    }
    if op.spends_user_budget() {
        let budget = session.state.budget();
        if !Box::pin(budget.spend(&session.claims.sub)).await {
            strike(session);
            return false;
        }
    }
    session.strikes = 0;
    true
}

/// Answers a frame over the rate limit with `rate_limited` (nothing once
/// the strikes have closed the connection).
async fn refuse(session: &mut Session, reference: Option<String>) {
    if session.handle.control().closing.is_cancelled() {
        return;
    }
    let err = ErrorBody::new(ErrorCode::RateLimited, "slow down");
    reply_in_turn(session, reference, Err(err)).await
}

/// Handles one complete text message from the client.
pub(super) async fn handle_text(session: &mut Session, text: &[u8]) {
    let frame: ClientFrame = match serde_json::from_slice(text) {
        Ok(frame) => frame,
        Err(e) => {
            // Still answer by ref when the frame carried one.
            let reference = serde_json::from_slice::<RefOnly>(text)
                .ok()
                .and_then(|r| r.reference);
            // Counted like any frame: a flood of garbage is refused, then closed (4008).
            if !admit(session) {
                return refuse(session, reference).await;
            }
            let err = bad(format!("malformed frame: {e}"));
            return reply_in_turn(session, reference, Err(err)).await;
        }
    };
    let name = frame.op.name();
    session
        .state
        .metrics()
        .frames_in
        .with_label_values(&[name])
        .inc();
    if !admit_request(session, &frame.op).await {
        return refuse(session, frame.reference).await;
    }
    if frame.reference.as_ref().is_some_and(|r| r.len() > 64) {
        let err = bad("ref is longer than 64 bytes");
        return reply_in_turn(session, None, Err(err)).await;
    }
    let started = Instant::now();
    // A span per request only when traces are exported: it is the parent of
    // the api call, whose `traceparent` carries it on.
    let span = if telemetry::tracing_enabled() {
        tracing::info_span!("ws.request", otel.name = format!("ws {name}"), otel.kind = "server", conn_id = %session.conn_id())
    } else {
        tracing::Span::none()
    };
    let asked = Asked {
        reference: frame.reference,
        started,
        span,
    };
    match frame.op {
        ClientOp::Send {
            room,
            body,
            kind,
            client_id,
            reply_to,
        } => return sends::send(session, asked, room, body, kind, client_id, reply_to).await,
        ClientOp::Dm {
            to,
            body,
            client_id,
        } => return sends::dm(session, asked, to, body, client_id).await,
        ClientOp::Edit { room, dm, id, body } => {
            let change = sends::change(session, ChangeOp::Edit, room, dm, Some(id));
            let change = InternalChange {
                body: Some(body),
                ..change
            };
            return sends::change_pipelined(session, asked, change).await;
        }
        ClientOp::Delete { room, dm, id } => {
            let change = sends::change(session, ChangeOp::Delete, room, dm, Some(id));
            return sends::change_pipelined(session, asked, change).await;
        }
        ClientOp::React {
            room,
            id,
            emoji,
            on,
        } => {
            let change = sends::change(session, ChangeOp::React, Some(room), None, Some(id));
            let change = InternalChange {
                emoji: Some(emoji),
                on: Some(on),
                ..change
            };
            return sends::change_pipelined(session, asked, change).await;
        }
        ClientOp::Read { room, seq } => {
            let change = sends::change(session, ChangeOp::Read, Some(room), None, None);
            let change = InternalChange {
                seq: Some(seq),
                ..change
            };
            return sends::change_pipelined(session, asked, change).await;
        }
        _ => {}
    }
    // Every earlier send and DM is answered before this request runs.
    session.handle.control().pipelined_below(1).await;
    let mut then = Vec::new();
    let sure = asked.reference.is_some();
    let result = run(session, frame.op, sure, &mut then)
        .instrument(asked.span)
        .await;
    let metrics = session.state.metrics();
    metrics
        .request_duration
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
    reply(&session.handle, metrics, asked.reference, result);
    // Frames that must follow the reply (a join's replayed messages).
    for follow in then {
        if !session.queue_frame(&follow) {
            break;
        }
    }
    // Then what was published during the join.
    if let Some((channel, after)) = session.ungate.take() {
        session.state.hub().ungate(&channel, session.id, after);
    }
}

/// What a request's reply needs besides its outcome.
struct Asked {
    reference: Option<String>,
    started: Instant,
    /// The request's span (when traces are exported); it ends with the reply.
    span: tracing::Span,
}

/// Runs one operation (not a send or DM: those are pipelined). `sure`: the
/// client waits for the reply (it gave a `ref`). Frames pushed to `then`
/// are queued after the reply.
async fn run(
    session: &mut Session,
    op: ClientOp,
    sure: bool,
    then: &mut Vec<ServerFrame>,
) -> Answer {
    match op {
        ClientOp::Ping => Ok(Some(json!({"pong": chrono::Utc::now().timestamp_millis()}))),
        ClientOp::Join { room, since } => rooms::join(session, room, since, then).await.map(Some),
        ClientOp::Leave { room } => rooms::leave(session, room).await.map(Some),
        ClientOp::Typing { room, active } => presence::typing(session, room, active).map(|_| None),
        ClientOp::Status { status, text } => presence::status(session, status, text).map(Some),
        ClientOp::Refresh { token } => refresh(session, &token).await.map(Some),
        ClientOp::Broadcast { body } => admin::broadcast(session, body).await.map(Some),
        ClientOp::Ack {
            room,
            seq,
            dm,
            edited_at,
            deleted,
        } => {
            let target = acks::Target {
                room,
                seq,
                dm,
                edited_at,
                deleted,
            };
            acks::ack(session, target, sure).await.map(|_| None)
        }
        // Pipelined before it gets here (see `handle_text`).
        ClientOp::Send { .. }
        | ClientOp::Dm { .. }
        | ClientOp::Edit { .. }
        | ClientOp::Delete { .. }
        | ClientOp::React { .. }
        | ClientOp::Read { .. } => Err(ErrorBody::new(
            ErrorCode::Internal,
            "sends, DMs and changes are pipelined",
        )),
    }
}

/// Replies once the connection's earlier sends and DMs have been answered,
/// so the replies keep the order of the requests.
async fn reply_in_turn(session: &Session, reference: Option<String>, result: Answer) {
    session.handle.control().pipelined_below(1).await;
    reply(&session.handle, session.state.metrics(), reference, result);
}

/// Queues the reply (with a ref) or an `error` frame (a failure without a ref).
fn reply(
    handle: &SessionHandle,
    metrics: &GatewayMetrics,
    reference: Option<String>,
    result: Answer,
) {
    if let Err(e) = &result {
        metrics
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
    handle.queue_frame(&frame, metrics);
}

fn bad(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}

/// A room id from a frame: canonical UUIDs only.
fn checked_room(room: &str) -> Result<(), ErrorBody> {
    if is_canonical_id(room) {
        Ok(())
    } else {
        Err(bad("room ids are lowercase UUIDs"))
    }
}

/// A fresh token for the same user moves the session's expiry.
async fn refresh(session: &mut Session, token: &str) -> Result<Value, ErrorBody> {
    let claims = session
        .state
        .keys()
        .verify(token)
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Unauthorized, e.reason()))?;
    if session.state.revocations().is_revoked(&claims) {
        return Err(ErrorBody::new(ErrorCode::Unauthorized, "revoked token"));
    }
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
