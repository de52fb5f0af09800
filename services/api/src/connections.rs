//! Connection logs: gateways report every connect and disconnect in
//! batches; each becomes a `connection_logs` row, and a disconnect moves the
//! user's `last_online`.

use axum::extract::State;
use axum::http::StatusCode;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::ErrorEnvelope;
use telepath_shared::protocol::{ConnectionEventKind, ConnectionEvents};

use crate::ApiState;
use crate::auth::Internal;
use crate::store::db_err;

/// Most events in one report.
pub(crate) const MAX_EVENTS: usize = 1000;

/// Cuts `s` to at most `max` bytes on a character boundary.
fn bounded(s: &Option<String>, max: usize) -> Option<&str> {
    s.as_deref().map(|s| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    })
}

#[utoipa::path(post, path = "/internal/connections", tag = "internal", request_body = ConnectionEvents,
    responses((status = 204, description = "Logged"), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn report(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(report): JsonBody<ConnectionEvents>,
) -> Result<StatusCode, ApiError> {
    if report.events.len() > MAX_EVENTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_EVENTS} events per report"
        )));
    }
    let mut tx = state
        .inner
        .write
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db_err)?;
    for e in &report.events {
        let kind = match e.event {
            ConnectionEventKind::Connect => "connect",
            ConnectionEventKind::Disconnect => "disconnect",
        };
        sqlx::query(
            "INSERT INTO connection_logs (user_id, conn_id, node_id, event, ip, user_agent, reason, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(bounded(&Some(e.user.id.clone()), 64))
        .bind(bounded(&Some(e.conn_id.clone()), 64))
        .bind(bounded(&Some(e.node.clone()), 64))
        .bind(kind)
        .bind(bounded(&e.ip, 64))
        .bind(bounded(&e.user_agent, 256))
        .bind(bounded(&e.reason, 64))
        .bind(e.at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if e.event == ConnectionEventKind::Disconnect {
            // Only moves forward: reports from several gateways may interleave.
            sqlx::query("UPDATE users SET last_online = ? WHERE id = ? AND (last_online IS NULL OR last_online < ?)")
                .bind(e.at)
                .bind(&e.user.id)
                .bind(e.at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
    }
    tx.commit().await.map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}
