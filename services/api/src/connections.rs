//! Connection logs: gateways report every connect and disconnect in
//! batches; each becomes a `connection_logs` row, and a disconnect moves the
//! user's `last_online`.

use axum::extract::State;
use axum::http::StatusCode;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::ErrorEnvelope;
use telepath_shared::protocol::{
    ConnectionEvent, ConnectionEventKind, ConnectionEvents, WebhookEvent,
};

use crate::ApiState;
use crate::auth::Internal;
use crate::store::db_err;
use crate::webhooks::Event;

/// Most events in one report.
pub(crate) const MAX_EVENTS: usize = 1000;
/// Largest report body: 1000 events of bounded fields fit.
pub(crate) const MAX_REPORT_BYTES: usize = 4 << 20;

/// Refuses a field over `max` characters (the schema's bounds).
fn within(name: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::bad_request(format!(
            "{name}: at most {max} characters"
        ))),
        _ => Ok(()),
    }
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
    for e in &report.events {
        telepath_shared::protocol::check_user(&e.user)?;
        within("conn_id", Some(&e.conn_id), 64)?;
        within("node", Some(&e.node), 64)?;
        within("ip", e.ip.as_deref(), 64)?;
        within("user_agent", e.user_agent.as_deref(), 256)?;
        within("reason", e.reason.as_deref(), 64)?;
    }
    let mut tx = state.db().begin_write().await?;
    for e in &report.events {
        let kind = match e.event {
            ConnectionEventKind::Connect => "connect",
            ConnectionEventKind::Disconnect => "disconnect",
        };
        sqlx::query(
            "INSERT INTO connection_logs (user_id, conn_id, node_id, event, ip, user_agent, reason, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.user.id)
        .bind(&e.conn_id)
        .bind(&e.node)
        .bind(kind)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.reason)
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
    let events = webhook_events(&state, &report.events);
    let hooked = state
        .webhooks()
        .record(&mut tx, &events)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    if hooked {
        state.webhooks().wake();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What a `user.connected` or `user.disconnected` webhook event says (the
/// connection log's row without the address and user agent).
#[derive(serde::Serialize)]
struct ConnectionData<'a> {
    user: &'a telepath_shared::protocol::UserRef,
    conn_id: &'a str,
    node: &'a str,
    /// For disconnects: the close code.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    at: chrono::DateTime<chrono::Utc>,
}

fn webhook_events(state: &ApiState, events: &[ConnectionEvent]) -> Vec<Event> {
    let hooks = state.webhooks();
    events
        .iter()
        .filter_map(|e| {
            let kind = match e.event {
                ConnectionEventKind::Connect => WebhookEvent::UserConnected,
                ConnectionEventKind::Disconnect => WebhookEvent::UserDisconnected,
            };
            if !hooks.wants(kind) {
                return None;
            }
            let data = ConnectionData {
                user: &e.user,
                conn_id: &e.conn_id,
                node: &e.node,
                reason: e.reason.as_deref(),
                // To the millisecond, like every other time in the API.
                at: chrono::SubsecRound::trunc_subsecs(e.at, 3),
            };
            Event::new(kind, &data)
        })
        .collect()
}
