//! `send`, `dm` and the changes (`edit`, `delete`, `react`, `read`): checked here, then pipelined through the gateway's send
//! pipe without waiting for the api; the pipe queues each reply when the api
//! answers. A request refused here is answered in turn, after the
//! connection's earlier sends and DMs.
//!
//! Every bound of the api's schema is checked before an item joins a batch,
//! so one client's bad frame cannot sink the others' (the api refuses a
//! batch that breaks its schema as a whole).

use serde_json::json;
use telepath_shared::protocol::{
    ChangeOp, InternalChange, InternalDm, InternalRoomSend, InternalSend, Role,
};
use telepath_shared::telemetry;

use super::{Answer, Asked, MAX_PIPELINED, checked_room, reply, reply_in_turn};
use crate::session::Session;
use crate::upstream::{Done, Outcome, PendingSend, Sendable};

/// A room message.
pub(super) async fn send(
    session: &mut Session,
    asked: Asked,
    room: String,
    body: String,
    kind: Option<String>,
    client_id: Option<String>,
    reply_to: Option<String>,
) {
    let send = InternalSend {
        from: session.claims.user_ref(),
        body,
        kind,
        client_id,
        reply_to,
    };
    let max = session.state.common().max_body_bytes;
    if let Err(e) = checked_room(&room).and_then(|()| send.check(max)) {
        return reply_in_turn(session, asked.reference, Err(e)).await;
    }
    let traceparent = asked.span.in_scope(telemetry::traceparent);
    let item = Sendable::Room(InternalRoomSend {
        room,
        send,
        traceparent,
    });
    pipeline(session, asked, "send", item).await;
}

/// A direct message: stored and queued by the api, then published to the
/// recipient's connections (and the sender's other ones).
pub(super) async fn dm(
    session: &mut Session,
    asked: Asked,
    to: String,
    body: String,
    client_id: Option<String>,
) {
    let mut dm = InternalDm {
        from: session.claims.user_ref(),
        to,
        body,
        client_id,
        traceparent: None,
    };
    if let Err(e) = dm.check(session.state.common().max_body_bytes) {
        return reply_in_turn(session, asked.reference, Err(e)).await;
    }
    dm.traceparent = asked.span.in_scope(telemetry::traceparent);
    pipeline(session, asked, "dm", Sendable::Dm(dm)).await;
}

/// A change of `op` by the session's user, its other fields empty.
pub(super) fn change(
    session: &Session,
    op: ChangeOp,
    room: Option<String>,
    dm: Option<String>,
    id: Option<String>,
) -> InternalChange {
    InternalChange {
        op,
        from: session.claims.user_ref(),
        admin: session.claims.role == Role::Admin,
        room,
        dm,
        id,
        body: None,
        emoji: None,
        on: None,
        seq: None,
        traceparent: None,
    }
}

/// An edit, delete, reaction or read cursor: committed by the api (a room's
/// in its log, through the writer), pipelined like sends.
pub(super) async fn change_pipelined(
    session: &mut Session,
    asked: Asked,
    mut change: InternalChange,
) {
    let max = session.state.common().max_body_bytes;
    let room = change.room.as_deref().map_or(Ok(()), checked_room);
    if let Err(e) = room.and_then(|()| change.check(max)) {
        return reply_in_turn(session, asked.reference, Err(e)).await;
    }
    change.traceparent = asked.span.in_scope(telemetry::traceparent);
    let name = match change.op {
        ChangeOp::Edit => "edit",
        ChangeOp::Delete => "delete",
        ChangeOp::React => "react",
        ChangeOp::Read => "read",
    };
    pipeline(session, asked, name, Sendable::Change(change)).await;
}

/// Queues `item` on the send pipe once fewer than [`MAX_PIPELINED`] of the
/// connection's items wait; its reply is queued when the api answers.
async fn pipeline(session: &mut Session, asked: Asked, name: &'static str, item: Sendable) {
    let control = session.handle.control();
    control.pipelined_below(MAX_PIPELINED).await;
    control.pipeline_started();
    let (handle, state) = (session.handle.clone(), session.state.clone());
    let done: Done = Box::new(move |result| {
        let Asked {
            reference,
            started,
            span,
        } = asked;
        let metrics = state.metrics();
        metrics
            .request_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        let answer: Answer = result
            .map(|made| {
                Some(match made {
                    Outcome::Message(m) => {
                        json!({"id": m.id, "seq": m.seq, "ts": m.ts})
                    }
                    Outcome::Dm(d) => {
                        json!({"id": d.id, "ts": d.ts, "delivered": d.delivered})
                    }
                    Outcome::Change(op, c) => change_reply(op, c),
                })
            })
            .map_err(|e| e.body());
        reply(&handle, metrics, reference, answer);
        drop(span);
        handle.control().pipeline_answered();
    });
    session
        .state
        .sends()
        .submit(PendingSend::new(item, done))
        .await;
}

/// The reply data of a change, by its op (see PROTOCOL.md).
fn change_reply(op: ChangeOp, c: telepath_shared::protocol::ChangeResult) -> serde_json::Value {
    match op {
        ChangeOp::Edit => {
            let mut v = json!({"id": c.id, "edited_at": c.edited_at});
            if let Some(seq) = c.seq {
                v["seq"] = json!(seq);
            }
            v
        }
        ChangeOp::Delete => {
            let mut v = json!({"id": c.id});
            if let Some(seq) = c.seq {
                v["seq"] = json!(seq);
            }
            v
        }
        ChangeOp::React => json!({"id": c.id, "seq": c.seq, "count": c.count}),
        ChangeOp::Read => json!({"room": c.room, "seq": c.seq}),
    }
}
