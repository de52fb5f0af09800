//! `ack`: a DM received (it leaves the offline queue), or a room's delivery
//! cursor. Acks are written to the api in batches; an ack with a `ref` is
//! written at once and its reply means the api has stored it.

use chrono::{DateTime, Utc};
use telepath_shared::protocol::{DmAckVersion, ErrorBody, ErrorCode, is_canonical_id};

use super::bad;
use crate::session::Session;
use crate::upstream::Ack;

/// What an `ack` frame names.
pub(super) struct Target {
    pub(super) room: Option<String>,
    pub(super) seq: Option<i64>,
    pub(super) dm: Option<String>,
    pub(super) edited_at: Option<DateTime<Utc>>,
    pub(super) deleted: Option<bool>,
}

/// Queues (or, when the client waits for it, writes) one ack. A room cursor
/// is taken only from a connection in the room. A DM ack naming the version
/// received (`deleted`, `edited_at`) leaves a later edit or delete queued.
pub(super) async fn ack(
    session: &mut Session,
    target: Target,
    sure: bool,
) -> Result<(), ErrorBody> {
    let user_id = session.claims.sub.clone();
    let Target {
        room,
        seq,
        dm,
        edited_at,
        deleted,
    } = target;
    let versioned = edited_at.is_some() || deleted.is_some();
    let ack = match (room, seq, dm) {
        (None, None, Some(id)) if is_canonical_id(&id) && versioned => Ack::DmVersion {
            user_id,
            version: DmAckVersion {
                id,
                deleted: deleted.unwrap_or(false),
                edited_at,
            },
        },
        (None, None, Some(id)) if is_canonical_id(&id) => Ack::Dm { user_id, id },
        (Some(room), Some(seq), None) if is_canonical_id(&room) && seq >= 0 && !versioned => {
            if !session.state.hub().in_room(&room, session.id) {
                return Err(ErrorBody::new(ErrorCode::Forbidden, "join the room first"));
            }
            Ack::Cursor { user_id, room, seq }
        }
        _ => {
            return Err(bad(
                "ack takes `dm` (a DM id, with `deleted` and `edited_at` naming its version), or `room` and `seq`",
            ));
        }
    };
    let acks = session.state.acks();
    if sure {
        return acks.ack_stored(ack).await.map_err(|e| e.body());
    }
    if acks.ack(ack) {
        Ok(())
    } else {
        Err(ErrorBody::new(
            ErrorCode::Unavailable,
            "too many acks queued; ack again later",
        ))
    }
}
