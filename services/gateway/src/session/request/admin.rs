//! `broadcast`: admins only, an event to every connection on every node,
//! with the same body rules as `POST /messages/broadcast`.

use serde_json::{Value, json};
use telepath_shared::protocol::{
    BROADCAST_CHANNEL, BroadcastEvent, ErrorBody, ErrorCode, ServerFrame, check_body,
};

use crate::session::Session;

/// Publishes an admin's broadcast on the bus (fire and forget: it reaches
/// whoever is connected now).
pub(super) async fn broadcast(session: &mut Session, body: String) -> Result<Value, ErrorBody> {
    if !session.claims.is_admin() {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "admins only"));
    }
    check_body(&body, session.state.common().max_body_bytes)?;
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let event = BroadcastEvent {
        id: id.clone(),
        from: session.claims.user_ref(),
        body,
        ts: chrono::Utc::now(),
    };
    let frame = bytes::Bytes::from(ServerFrame::Broadcast(event).to_json());
    session
        .state
        .bus()
        .publish(BROADCAST_CHANNEL, frame)
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Unavailable, "the bus is unavailable"))?;
    session.state.metrics().bus_out.inc();
    Ok(json!({"id": id}))
}
