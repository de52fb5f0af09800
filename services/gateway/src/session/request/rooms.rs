//! `join` (with its replay of what the client missed) and `leave`.
//!
//! The hub is the one record of which rooms a connection is in; presence
//! hears of each change through a report (and, should that get lost, through
//! the next heartbeat, which the hub builds).

use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use telepath_shared::protocol::{
    ErrorBody, ErrorCode, LogEntry, PresenceReport, ServerFrame, room_channel,
};

use super::{bad, checked_room};
use crate::handle::Outbound;
use crate::hub::JoinRefused;
use crate::session::Session;

/// Joins a room. The connection is subscribed first, with its room frames
/// held back; then the api makes the user a participant and names the
/// room's latest seq S. The reply, then the replay of (since, S], then the
/// held frames above S go out in that order: no hole and no repeat at the
/// seam, whatever was published meanwhile.
pub(super) async fn join(
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
    let hub = state.hub();
    let subscribed = match hub
        .begin_join(&room, session.id, state.config().max_rooms_per_conn)
        .await
    {
        Ok(subscribed) => subscribed,
        Err(JoinRefused::TooManyRooms) => return Err(bad("too many rooms on this connection")),
        Err(JoinRefused::Gone) => {
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "the connection is closing",
            ));
        }
    };
    let joined = match state.api().join(&room, &session.claims.user_ref()).await {
        Ok(joined) if subscribed => joined,
        failed => {
            let was_in = hub.leave_room(&room, session.id);
            if was_in {
                report_leave(session, &room);
            }
            return Err(match failed {
                Err(e) => e.body(),
                Ok(_) => {
                    ErrorBody::new(ErrorCode::Unavailable, "the bus is unavailable; try again")
                }
            });
        }
    };
    let channel = room_channel(&room);
    let confirmed = hub.confirm_join(&room, session.id);
    if confirmed.is_some() {
        hub.anchor(&channel, joined.seq, Instant::now());
        // A mute the api knows of (typing is refused here until it ends).
        let until = joined.muted_until.map(|t| t.timestamp_millis());
        hub.set_mute(&session.claims.sub, &room, until);
    }
    match confirmed {
        Some(true) => state.presence().report(PresenceReport::Join {
            conn_id: session.conn_id().to_owned(),
            user: session.claims.user_ref(),
            room: room.clone(),
        }),
        Some(false) => {}
        // Closing: the session took itself out of every room meanwhile.
        None => {
            return Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "the connection is closing",
            ));
        }
    }
    // Without `since`, resume from the participant's delivery cursor.
    let since = since.or(Some(joined.cursor));
    let mut recovered = true;
    if let Some(since) = since.filter(|s| *s < joined.seq) {
        // Below what retention kept there is nothing to replay; if the api
        // cannot replay now, say so too: the client pages history itself.
        recovered = since >= joined.pruned_seq
            && replay(session, &room, since, joined.seq, then)
                .await
                .unwrap_or(false);
        let metrics = state.metrics();
        metrics
            .recoveries
            .with_label_values(&[if recovered { "true" } else { "false" }])
            .inc();
        metrics
            .replayed
            .with_label_values(&["join"])
            .inc_by(then.len() as u64);
    }
    fill_gap(session, &room, &channel, joined.seq).await;
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
    let cap = session.state.config().replay_cap;
    if upto - since > cap {
        return Ok(false);
    }
    let messages = session
        .state
        .replays()
        .replay(room, since, upto, cap)
        .await
        .map_err(|e| e.body())?;
    then.extend(messages.into_iter().map(LogEntry::into_frame));
    Ok(true)
}

/// Fetches the messages missing from what the join's gate holds above
/// `seq` (pub/sub lost one while the join was in progress, before this node
/// had the room's position) and adds them to it, so the release has no hole.
async fn fill_gap(session: &Session, room: &str, channel: &str, seq: i64) {
    let state = &session.state;
    let Some((after, upto)) = state.hub().gate_gap(channel, session.id, seq) else {
        return;
    };
    let limit = state.config().replay_cap.min(upto - after);
    match state.api().history(room, after, Some(upto), limit).await {
        Ok(page) => {
            let n = page.entries.len() as u64;
            let fetched = page
                .entries
                .into_iter()
                .map(|m| {
                    let seq = m.seq();
                    let frame = Outbound::local(Bytes::from(m.to_json()));
                    (seq, frame)
                })
                .collect();
            state.hub().fill_gate(channel, session.id, fetched);
            state
                .metrics()
                .replayed
                .with_label_values(&["repair"])
                .inc_by(n);
        }
        // The client sees the hole and fills it itself (history over REST).
        Err(e) => tracing::warn!(room, error = %e.message, "filling a join's gap failed"),
    }
}

/// Ends the user's participation. This connection leaves the room now; the
/// api's `member` `left` event takes the user's other connections, on every
/// gateway, out of it too (see `relay.rs`).
pub(super) async fn leave(session: &mut Session, room: String) -> Result<Value, ErrorBody> {
    checked_room(&room)?;
    let state = session.state.clone();
    state
        .api()
        .leave(&room, &session.claims.user_ref())
        .await
        .map_err(|e| e.body())?;
    if state.hub().leave_room(&room, session.id) {
        report_leave(session, &room);
    }
    Ok(json!({"room": room}))
}

/// Tells presence this connection is no longer in `room`.
fn report_leave(session: &Session, room: &str) {
    session.state.presence().report(PresenceReport::Leave {
        conn_id: session.conn_id().to_owned(),
        user_id: session.claims.sub.clone(),
        room: room.to_owned(),
    });
}
