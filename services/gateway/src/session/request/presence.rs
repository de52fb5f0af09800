//! `typing` and `status`: presence keeps both, and fans them out itself.
//! A status choice is also recorded in the hub, stamped with when it was
//! received (strictly after the user's latest choice the hub knows), so
//! this gateway's heartbeats repeat it to presence until the user's last
//! connection here closes.

use serde_json::{Value, json};
use telepath_shared::protocol::{
    ErrorBody, ErrorCode, MAX_STATUS_TEXT_CHARS, PresenceReport, Status,
};

use super::{bad, checked_room};
use crate::session::Session;

/// Typing goes through presence, which fans it out to the room and turns it
/// off by itself when it is not refreshed. Only a connection in the room may
/// type in it.
pub(super) fn typing(session: &mut Session, room: String, active: bool) -> Result<(), ErrorBody> {
    checked_room(&room)?;
    let hub = session.state.hub();
    if !hub.in_room(&room, session.id) {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "join the room first"));
    }
    if hub.muted(
        &session.claims.sub,
        &room,
        chrono::Utc::now().timestamp_millis(),
    ) {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "you are muted in this room",
        ));
    }
    session.state.presence().report(PresenceReport::Typing {
        conn_id: session.conn_id().to_owned(),
        user: session.claims.user_ref(),
        room,
        active,
    });
    Ok(())
}

/// The user's chosen status (`online` goes back to automatic online/away).
pub(super) fn status(
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
    let choice = session.state.hub().choose(
        &session.claims.sub,
        status,
        text,
        chrono::Utc::now().timestamp_millis(),
    );
    session.state.presence().report(PresenceReport::Status {
        user: session.claims.user_ref(),
        status,
        text: choice.text,
        at_ms: choice.at_ms,
    });
    Ok(json!({"status": status}))
}
