//! Getting back what the bus lost. Pub/sub is at-most-once; the api has
//! everything, so the relay reads back from it:
//!
//! - a room's messages after the position this node stands at ([`repair`]:
//!   on a jump, on a seq a join named that never came, after an outage);
//! - after an outage ([`catch_up`]), besides every followed room's
//!   messages, what has no seq to notice a gap by: the `member` and
//!   `room_closed` events, by re-reading the memberships of the local
//!   users ([`memberships`]), and the DMs, from the local users' offline
//!   queues ([`dms`]: those sent since shortly before the loss; clients
//!   drop a DM they already have by its id).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use telepath_shared::protocol::{
    ByeReason, CloseCode, InternalMemberships, InternalPendingDms, MAX_MEMBERSHIP_ROOMS,
    MAX_MEMBERSHIP_USERS, MAX_PENDING_USERS, MemberAction, MemberEvent, NODES_CHANNEL,
    PresenceReport, RoomClosed, RoomMembership, RoomUsers, ServerFrame, UserRef, room_channel,
    user_channel,
};

use super::Relay;
use crate::handle::Outbound;
use crate::metrics::OutKind;

/// Most messages one repair fetches (pages of 500).
const REPAIR_LIMIT: i64 = 10_000;

/// Fetches the messages of `room` after `after` (and below `before`) from the
/// api and relays them in order.
pub(super) async fn repair(
    relay: &Relay,
    room: &str,
    channel: &str,
    mut after: i64,
    before: Option<i64>,
) {
    let hub = relay.hub.as_ref();
    let start = after;
    while after - start < REPAIR_LIMIT {
        let page = match relay.api.history(room, after, before, 500).await {
            Ok(page) => page,
            Err(e) => {
                // Members resume with `since` on their next join; nothing else to do here.
                tracing::warn!(room, after, error = %e.message, "gap repair failed");
                return;
            }
        };
        for m in &page.entries {
            let seq = m.seq();
            hub.advance(channel, seq);
            let frame = Outbound::local(Bytes::from(m.to_json()));
            let kind = OutKind::of_type(m.name());
            hub.fan_out_room(channel, &frame, kind, Some(seq));
            after = seq;
        }
        relay
            .metrics
            .replayed
            .with_label_values(&["repair"])
            .inc_by(page.entries.len() as u64);
        if !page.has_more || page.entries.is_empty() {
            break;
        }
    }
    if after > start {
        tracing::info!(room, from = start, to = after, "gap repaired from the api");
    }
}

/// After the bus lost messages from about `lost_at` on: every followed
/// room's messages, the local users' memberships, and their DMs since then.
pub(super) async fn catch_up(relay: &Relay, lost_at: DateTime<Utc>) {
    for (channel, last) in relay.hub.positions() {
        if let Some(room) = channel.strip_prefix("room:") {
            repair(relay, room, &channel, last, None).await;
        }
    }
    memberships(relay).await;
    dms(relay, &relay.hub.users(), lost_at).await;
    revocations(relay).await;
}

/// Reads the revocations again (one may have been published while the bus
/// lost messages), and closes the local connections they cover.
pub(super) async fn revocations(relay: &Relay) {
    let list = match relay.api.revocations().await {
        Ok(list) => list.revocations,
        Err(e) => return tracing::warn!(error = %e, "could not read the revocations back"),
    };
    // The news among them may cover connections opened before: closed.
    for r in list {
        if relay.revocations.record(&r.user_id, r.valid_after) {
            relay.hub.close_all(
                &user_channel(&r.user_id),
                CloseCode::TokenExpired,
                Some(ByeReason::TokenRevoked),
            );
        }
    }
}

/// Reads back the channels a full inbound queue dropped messages of, since
/// about `since`: a room's messages after this node's position; for a
/// user's channel, their DMs and (for `member` events) the memberships.
/// Presence changes and broadcasts have nothing to read back.
pub(super) async fn resync(relay: &Relay, channels: Vec<String>, since: DateTime<Utc>) {
    let mut users = Vec::new();
    for channel in channels {
        if let Some(room) = channel.strip_prefix("room:") {
            if let Some(last) = relay.hub.position(&channel) {
                repair(relay, room, &channel, last, None).await;
            }
        } else if let Some(user) = channel.strip_prefix("user:") {
            users.push(user.to_owned());
        } else if channel == NODES_CHANNEL {
            revocations(relay).await;
        } else {
            tracing::warn!(%channel, "messages dropped that cannot be read back");
        }
    }
    if !users.is_empty() {
        let here: Vec<UserRef> = relay
            .hub
            .users()
            .into_iter()
            .filter(|u| users.contains(&u.id))
            .collect();
        dms(relay, &here, since).await;
        memberships(relay).await;
    }
}

/// Re-reads whether the rooms local users are in are still open and whether
/// those users still take part, and carries out what the bus did not
/// bring: a closed room's `room_closed`, a user's `member` `left`.
pub(super) async fn memberships(relay: &Relay) {
    let rooms = relay.hub.rooms_and_users();
    let mut batch: Vec<(String, Vec<UserRef>)> = Vec::new();
    let mut users = 0;
    for (room, of_room) in rooms {
        if batch.len() == MAX_MEMBERSHIP_ROOMS || users + of_room.len() > MAX_MEMBERSHIP_USERS {
            membership_batch(relay, std::mem::take(&mut batch)).await;
            users = 0;
        }
        // A room with more local users than one batch holds is asked alone
        // (its users cut to the bound: the rest are checked next time).
        users += of_room.len().min(MAX_MEMBERSHIP_USERS);
        batch.push((
            room,
            of_room.into_iter().take(MAX_MEMBERSHIP_USERS).collect(),
        ));
    }
    if !batch.is_empty() {
        membership_batch(relay, batch).await;
    }
}

/// One membership read, and what it says to do.
async fn membership_batch(relay: &Relay, batch: Vec<(String, Vec<UserRef>)>) {
    let query = InternalMemberships {
        rooms: batch
            .iter()
            .map(|(room, users)| RoomUsers {
                room: room.clone(),
                users: users.iter().map(|u| u.id.clone()).collect(),
            })
            .collect(),
    };
    let answer = match relay.api.memberships(&query).await {
        Ok(answer) => answer,
        Err(e) => {
            return tracing::warn!(error = %e.message, "re-reading memberships failed");
        }
    };
    for (membership, (_, users)) in answer.rooms.into_iter().zip(&batch) {
        apply(relay, membership, users);
    }
}

/// Carries out one room's membership as the api knows it.
fn apply(relay: &Relay, membership: RoomMembership, users: &[UserRef]) {
    let room = membership.room;
    if !membership.active {
        match membership.closed_by {
            Some(by) => {
                let frame = ServerFrame::RoomClosed(RoomClosed {
                    room: room.clone(),
                    by,
                });
                room_closed(relay, &room, &Outbound::local(Bytes::from(frame.to_json())));
            }
            // Unknown to the api: nothing to tell, only to forget.
            None => leave_all(relay, &room),
        }
        return;
    }
    for user in users.iter().filter(|u| !membership.members.contains(&u.id)) {
        let frame = ServerFrame::Member(MemberEvent::new(
            room.clone(),
            user.clone(),
            MemberAction::Left,
        ));
        let out = Outbound::local(Bytes::from(frame.to_json()));
        relay
            .hub
            .fan_out(&user_channel(&user.id), &out, OutKind::Member);
        left(relay, &user.id, &room);
    }
    tracing::debug!(room, "membership re-read");
}

/// `user_id` no longer takes part in `room`: their connections here leave
/// it, and presence hears of each.
pub(super) fn left(relay: &Relay, user_id: &str, room: &str) {
    let conns = relay.hub.leave_everywhere(user_id, room);
    report_leaves(
        relay,
        room,
        conns.into_iter().map(|c| (c, user_id.to_owned())),
    );
}

/// `room` was closed: its local members get `frame` (the `room_closed`
/// event) and leave it, so nothing room-scoped of theirs is taken any more.
pub(super) fn room_closed(relay: &Relay, room: &str, frame: &Outbound) {
    relay
        .hub
        .fan_out_room(&room_channel(room), frame, OutKind::RoomClosed, None);
    leave_all(relay, room);
}

/// Takes every local connection out of `room`, telling presence.
pub(super) fn leave_all(relay: &Relay, room: &str) {
    report_leaves(relay, room, relay.hub.close_room(room));
}

/// Tells presence that these connections (with their users) left `room`.
fn report_leaves(relay: &Relay, room: &str, left: impl IntoIterator<Item = (String, String)>) {
    for (conn_id, user_id) in left {
        relay.presence.report(PresenceReport::Leave {
            conn_id,
            user_id,
            room: room.to_owned(),
        });
    }
}

/// Sends `users` again the DMs of their offline queues sent since `since`
/// (the bus may have lost their live copies).
pub(super) async fn dms(relay: &Relay, users: &[UserRef], since: DateTime<Utc>) {
    for chunk in users.chunks(MAX_PENDING_USERS) {
        let query = InternalPendingDms {
            user_ids: chunk.iter().map(|u| u.id.clone()).collect(),
            connect: false,
        };
        let queues = match relay.api.pending_dms_of(&query).await {
            Ok(queues) => queues,
            Err(e) => {
                tracing::warn!(error = %e.message, "re-reading offline queues failed");
                continue;
            }
        };
        let mut sent = 0u64;
        for queue in queues.users {
            let channel = user_channel(&queue.user_id);
            for dm in queue.messages.into_iter().filter(|dm| dm.ts >= since) {
                let out = Outbound::local(Bytes::from(ServerFrame::Dm(dm).to_json()));
                relay.hub.fan_out(&channel, &out, OutKind::Dm);
                sent += 1;
            }
        }
        relay
            .metrics
            .replayed
            .with_label_values(&["dm"])
            .inc_by(sent);
    }
}
