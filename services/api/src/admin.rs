//! Admin routes: broadcast to everyone, disconnect a user everywhere, and
//! connection analytics. Every handler takes [`AdminUser`], so the role is
//! checked server-side before anything else.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::ErrorEnvelope;
use telepath_shared::protocol::{
    BROADCAST_CHANNEL, BroadcastEvent, BroadcastRequest, DisconnectRequest, DisconnectResult,
    NodeControl, ServerFrame, is_canonical_id, node_channel,
};

use crate::ApiState;
use crate::auth::AdminUser;
use crate::store::{db_err, now};

/// `POST /messages/broadcast` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct BroadcastAccepted {
    pub(crate) id: String,
}

#[utoipa::path(post, path = "/messages/broadcast", tag = "admin", request_body = BroadcastRequest,
    responses((status = 202, description = "Published to every connection", body = BroadcastAccepted), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not allowed", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope), (status = 503, description = "A dependency is unavailable", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn broadcast(
    State(state): State<ApiState>,
    AdminUser(claims): AdminUser,
    JsonBody(req): JsonBody<BroadcastRequest>,
) -> Result<(StatusCode, Json<BroadcastAccepted>), ApiError> {
    telepath_shared::protocol::check_body(&req.body, state.common().max_body_bytes)?;
    let event = BroadcastEvent {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        from: claims.user_ref(),
        body: req.body,
        ts: now(),
    };
    let id = event.id.clone();
    let frame = Bytes::from(ServerFrame::Broadcast(event).to_json());
    state
        .bus()
        .publish(BROADCAST_CHANNEL, frame)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "broadcast publish failed");
            ApiError::unavailable("the bus is unavailable")
        })?;
    Ok((StatusCode::ACCEPTED, Json(BroadcastAccepted { id })))
}

#[utoipa::path(post, path = "/admin/disconnect", tag = "admin", request_body = DisconnectRequest,
    responses((status = 200, description = "Connections told to close with 4003", body = DisconnectResult), (status = 400, description = "Invalid input", body = ErrorEnvelope), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not allowed", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope), (status = 503, description = "A dependency is unavailable", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn disconnect(
    State(state): State<ApiState>,
    AdminUser(_): AdminUser,
    JsonBody(req): JsonBody<DisconnectRequest>,
) -> Result<Json<DisconnectResult>, ApiError> {
    Ok(Json(disconnect_user(&state, &req.user_id).await?))
}

/// Tells every gateway holding a connection of `user_id` (as presence knows
/// them) to close it with 4003; how many there were.
pub(crate) async fn disconnect_user(
    state: &ApiState,
    user_id: &str,
) -> Result<DisconnectResult, ApiError> {
    if !is_canonical_id(user_id) {
        return Err(ApiError::bad_request(
            "user_id must be a user id (lowercase UUID)",
        ));
    }
    let conns = state.presence().connections(user_id).await?;
    let nodes: BTreeSet<&str> = conns.iter().map(|c| c.node.as_str()).collect();
    let control = Bytes::from(
        serde_json::to_string(&NodeControl::DisconnectUser {
            user_id: user_id.to_owned(),
        })
        .expect("serialises"),
    );
    for node in nodes {
        state
            .bus()
            .publish(&node_channel(node), control.clone())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, node, "disconnect publish failed");
                ApiError::unavailable("the bus is unavailable")
            })?;
    }
    Ok(DisconnectResult {
        disconnected: conns.len() as u64,
    })
}

/// `GET /analytics/connections`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct ConnectionAnalytics {
    /// Users with at least one live connection.
    pub(crate) online_users: u64,
    /// Live connections.
    pub(crate) connections: u64,
    /// Live connections per gateway node.
    pub(crate) by_node: BTreeMap<String, u64>,
    /// Connects ever logged.
    pub(crate) connects_total: i64,
    /// Disconnects ever logged.
    pub(crate) disconnects_total: i64,
    /// Room messages committed in the last 60 seconds.
    pub(crate) messages_per_minute: i64,
    /// Active rooms with a message in the last 10 minutes.
    pub(crate) active_rooms: i64,
    /// Active rooms.
    pub(crate) rooms_total: i64,
}

#[utoipa::path(get, path = "/analytics/connections", tag = "admin",
    responses((status = 200, description = "Connection and traffic figures", body = ConnectionAnalytics), (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 403, description = "Not allowed", body = ErrorEnvelope), (status = 503, description = "A dependency is unavailable", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn analytics(
    State(state): State<ApiState>,
    AdminUser(_): AdminUser,
) -> Result<Json<ConnectionAnalytics>, ApiError> {
    let presence = state.presence().summary().await?;
    let db = &state.db().read;
    let (connects_total, disconnects_total): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(event = 'connect'), 0), COALESCE(SUM(event = 'disconnect'), 0) FROM connection_logs",
    )
    .fetch_one(db)
    .await
    .map_err(db_err)?;
    let minute_ago = now() - chrono::Duration::seconds(60);
    let ten_minutes_ago = now() - chrono::Duration::minutes(10);
    let (messages_per_minute,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE room_id IS NOT NULL AND created_at >= ?",
    )
    .bind(minute_ago)
    .fetch_one(db)
    .await
    .map_err(db_err)?;
    let (active_rooms, rooms_total): (i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT COUNT(DISTINCT room_id) FROM messages WHERE room_id IS NOT NULL AND created_at >= ?),
           (SELECT COUNT(*) FROM rooms WHERE is_active = 1)",
    )
    .bind(ten_minutes_ago)
    .fetch_one(db)
    .await
    .map_err(db_err)?;
    Ok(Json(ConnectionAnalytics {
        online_users: presence.online_users,
        connections: presence.connections,
        by_node: presence.by_node,
        connects_total,
        disconnects_total,
        messages_per_minute,
        active_rooms,
        rooms_total,
    }))
}
