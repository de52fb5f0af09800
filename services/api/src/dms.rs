//! Direct messages and the offline queue.
//!
//! Gateways send DMs in their batches (`POST /internal/messages`, see
//! `internal.rs`); each is handled by [`store`]. A DM is stored (a `messages` row with a recipient, no room) and queued
//! (`dm_queue`) in one transaction, then published to the recipient's and
//! the sender's `user:{id}` channels, then acknowledged. It stays queued
//! until the recipient acks it, so a DM that reached no device is sent again
//! on the recipient's next connect, oldest first. A recipient's queue holds
//! at most `TELEPATH_OFFLINE_QUEUE_MAX` DMs: one more is refused
//! (`rate_limited`) before it is stored, so an acknowledged DM is never
//! dropped. Queued DMs expire after `TELEPATH_OFFLINE_TTL`; a cleanup job
//! removes them every minute.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::{SqliteConnection, SqlitePool};
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    DirectMessage, DmResult, DmState, ErrorCode, ErrorEnvelope, InternalAcks, InternalDm,
    PendingDms, Role, ServerFrame, UserRef, is_canonical_id, user_channel,
};
use telepath_shared::telemetry;
use tracing::Instrument;

use crate::ApiState;
use crate::auth::{AuthUser, Internal};
use crate::store::{self, db_err, now};

/// How often expired queue entries are removed.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// A stored DM as a row.
#[derive(sqlx::FromRow)]
struct DmRow {
    id: String,
    sender_id: String,
    sender_name: String,
    recipient_id: String,
    content: String,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    queued: bool,
}

impl DmRow {
    fn message(&self) -> DirectMessage {
        DirectMessage {
            id: self.id.clone(),
            from: UserRef {
                id: self.sender_id.clone(),
                name: self.sender_name.clone(),
            },
            to: self.recipient_id.clone(),
            body: self.content.clone(),
            ts: self.created_at,
        }
    }
}

const DM_COLUMNS: &str = "SELECT m.id, m.sender_id, u.username AS sender_name, m.recipient_id, m.content, m.created_at, m.delivered_at,
        EXISTS (SELECT 1 FROM dm_queue q WHERE q.message_id = m.id) AS queued
 FROM messages m JOIN users u ON u.id = m.sender_id";

/// The recipient's user id, from an id or a username.
async fn recipient(conn: &mut SqliteConnection, to: &str) -> Result<String, ApiError> {
    let found: Option<(String,)> = if is_canonical_id(to) {
        sqlx::query_as("SELECT id FROM users WHERE id = ?")
            .bind(to)
            .fetch_optional(&mut *conn)
            .await
    } else {
        sqlx::query_as("SELECT id FROM users WHERE username = ?")
            .bind(to)
            .fetch_optional(&mut *conn)
            .await
    }
    .map_err(db_err)?;
    found
        .map(|(id,)| id)
        .ok_or_else(|| ApiError::not_found("no such user"))
}

/// The DM `sender_id` sent earlier with `client_id`, if any.
async fn earlier(
    conn: &mut SqliteConnection,
    sender_id: &str,
    client_id: &str,
) -> Result<Option<DmRow>, ApiError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "{DM_COLUMNS} WHERE m.sender_id = ? AND m.client_id = ? AND m.recipient_id IS NOT NULL"
    ));
    sqlx::query_as(sql)
        .bind(sender_id)
        .bind(client_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

/// Whether any message of `sender_id` has `client_id` (after [`earlier`]
/// found no DM: a room message).
async fn key_taken(
    conn: &mut SqliteConnection,
    sender_id: &str,
    client_id: &str,
) -> Result<bool, ApiError> {
    sqlx::query_scalar::<_, i64>("SELECT 1 FROM messages WHERE sender_id = ? AND client_id = ?")
        .bind(sender_id)
        .bind(client_id)
        .fetch_optional(&mut *conn)
        .await
        .map(|found| found.is_some())
        .map_err(db_err)
}

/// Stores, queues and publishes one DM of a gateway's batch (see
/// `internal::send_batch`). When traces are exported, it is a `dm.store`
/// span in the sender's trace.
pub(crate) async fn store(state: &ApiState, req: InternalDm) -> Result<DmResult, ApiError> {
    let span = match &req.traceparent {
        Some(tp) if telemetry::tracing_enabled() => {
            let span = tracing::info_span!(parent: None, "dm.store", otel.kind = "internal");
            telemetry::adopt_traceparent(&span, tp);
            span
        }
        _ => tracing::Span::none(),
    };
    store_in(state, req).instrument(span).await
}

async fn store_in(state: &ApiState, req: InternalDm) -> Result<DmResult, ApiError> {
    req.check(state.common().max_body_bytes)?;
    let cfg = state.config();
    let mut tx = state
        .db()
        .write
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db_err)?;
    store::ensure_user(&mut tx, &req.from, Role::User).await?;
    if let Some(client_id) = &req.client_id {
        if let Some(first) = earlier(&mut tx, &req.from.id, client_id).await? {
            return Ok(DmResult {
                id: first.id,
                ts: first.created_at,
                delivered: first.delivered_at.is_some(),
            });
        }
        // DMs and room messages share the idempotency index.
        if key_taken(&mut tx, &req.from.id, client_id).await? {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "client_id already names a room message of this sender",
            ));
        }
    }
    let to = recipient(&mut tx, &req.to).await?;
    let (queued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM dm_queue WHERE recipient_id = ?")
        .bind(&to)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    if queued >= cfg.offline_queue_max {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "the recipient's offline queue is full; try later",
        ));
    }
    let dm = DirectMessage {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        from: req.from.clone(),
        to: to.clone(),
        body: req.body,
        ts: now(),
    };
    sqlx::query("INSERT INTO messages (id, recipient_id, sender_id, content, kind, client_id, created_at) VALUES (?, ?, ?, ?, 'text', ?, ?)")
        .bind(&dm.id)
        .bind(&to)
        .bind(&dm.from.id)
        .bind(&dm.body)
        .bind(&req.client_id)
        .bind(dm.ts)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let expires =
        dm.ts + chrono::Duration::from_std(cfg.offline_ttl).unwrap_or(chrono::Duration::days(7));
    sqlx::query("INSERT INTO dm_queue (message_id, recipient_id, queued_at, expires_at) VALUES (?, ?, ?, ?)")
        .bind(&dm.id)
        .bind(&to)
        .bind(dm.ts)
        .bind(expires)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    // Committed: publish to every connection of the recipient, and to the sender's other devices.
    let frame = Bytes::from(ServerFrame::Dm(dm.clone()).to_json());
    let delivered = match state
        .bus()
        .publish_counted(&user_channel(&to), frame.clone())
        .await
    {
        Ok(n) => n > 0,
        Err(e) => {
            tracing::warn!(error = %e, "DM publish failed; it stays queued");
            false
        }
    };
    if to != dm.from.id
        && let Err(e) = state.bus().publish(&user_channel(&dm.from.id), frame).await
    {
        tracing::warn!(error = %e, "DM publish to the sender's devices failed");
    }
    Ok(DmResult {
        id: dm.id,
        ts: dm.ts,
        delivered,
    })
}

#[utoipa::path(post, path = "/internal/acks", tag = "internal", request_body = InternalAcks,
    responses((status = 204, description = "Recorded"), (status = 400, description = "Invalid input", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn ack(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(acks): JsonBody<InternalAcks>,
) -> Result<StatusCode, ApiError> {
    if acks.user_id.is_empty()
        || acks.user_id.chars().count() > 64
        || acks.dms.len() > 1000
        || acks.cursors.len() > 1000
        || acks
            .cursors
            .iter()
            .any(|c| !is_canonical_id(&c.room) || c.seq < 0)
    {
        return Err(ApiError::bad_request("bad acks"));
    }
    let at = now();
    let mut tx = state
        .db()
        .write
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db_err)?;
    for id in &acks.dms {
        // Only the recipient's ack counts.
        let done = sqlx::query("DELETE FROM dm_queue WHERE message_id = ? AND recipient_id = ?")
            .bind(id)
            .bind(&acks.user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() > 0 {
            sqlx::query(
                "UPDATE messages SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
    }
    for c in &acks.cursors {
        // Only a participant's cursor moves: after a leave the user has none.
        sqlx::query("UPDATE room_participants SET delivered_seq = MAX(delivered_seq, ?) WHERE room_id = ? AND user_id = ? AND is_active = 1")
            .bind(c.seq)
            .bind(&c.room)
            .bind(&acks.user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The queued, unexpired DMs of `user_id`, oldest first. (`LIMIT CAST(?
/// AS INTEGER)`: a bare `LIMIT ?` makes SQLite re-prepare the cached
/// statement on every call, see `store::page`.)
async fn pending_of(pool: &SqlitePool, user_id: &str, limit: i64) -> Result<PendingDms, ApiError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "{DM_COLUMNS} JOIN dm_queue q2 ON q2.message_id = m.id WHERE q2.recipient_id = ? AND q2.expires_at > ? ORDER BY q2.queued_at, m.id LIMIT CAST(? AS INTEGER)"
    ));
    let rows: Vec<DmRow> = sqlx::query_as(sql)
        .bind(user_id)
        .bind(now())
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    Ok(PendingDms {
        messages: rows.iter().map(DmRow::message).collect(),
    })
}

/// `?user_id=` of the internal pending route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PendingQuery {
    user_id: String,
}

#[utoipa::path(get, path = "/internal/dms/pending", tag = "internal", params(PendingQuery),
    responses((status = 200, description = "Queued DMs, oldest first", body = PendingDms), (status = 400, description = "Invalid input", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn pending_internal(
    State(state): State<ApiState>,
    _: Internal,
    query: Result<Query<PendingQuery>, QueryRejection>,
) -> Result<Json<PendingDms>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(
        pending_of(
            &state.db().read,
            &q.user_id,
            state.config().offline_queue_max,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/dms/pending", tag = "dms",
    responses((status = 200, description = "The caller's DMs not acked yet, oldest first", body = PendingDms), (status = 401, description = "Missing or bad token", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn pending(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<PendingDms>, ApiError> {
    Ok(Json(
        pending_of(
            &state.db().read,
            &claims.sub,
            state.config().offline_queue_max,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/dms/{id}", tag = "dms",
    params(("id" = String, Path, description = "DM id", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "Where the DM stands", body = DmState), (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 401, description = "Missing or bad token", body = ErrorEnvelope), (status = 404, description = "No such DM (or not the caller's)", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn state_of(
    State(state): State<ApiState>,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<DmState>, ApiError> {
    if !is_canonical_id(&id) {
        return Err(ApiError::bad_request("DM ids are lowercase UUIDs"));
    }
    let sql = sqlx::AssertSqlSafe(format!(
        "{DM_COLUMNS} WHERE m.id = ? AND m.recipient_id IS NOT NULL AND (m.sender_id = ? OR m.recipient_id = ?)"
    ));
    let row: Option<DmRow> = sqlx::query_as(sql)
        .bind(&id)
        .bind(&claims.sub)
        .bind(&claims.sub)
        .fetch_optional(&state.db().read)
        .await
        .map_err(db_err)?;
    let row = row.ok_or_else(|| ApiError::not_found("no such DM"))?;
    Ok(Json(DmState {
        id: row.id.clone(),
        from: UserRef {
            id: row.sender_id.clone(),
            name: row.sender_name.clone(),
        },
        to: row.recipient_id.clone(),
        ts: row.created_at,
        delivered: row.delivered_at.is_some(),
        delivered_at: row.delivered_at,
        queued: row.queued,
    }))
}

/// Removes expired queue entries every minute, for the life of the process.
pub(crate) fn spawn_cleanup(pool: SqlitePool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CLEANUP_EVERY);
        loop {
            tick.tick().await;
            match sqlx::query("DELETE FROM dm_queue WHERE expires_at <= ?")
                .bind(now())
                .execute(&pool)
                .await
            {
                Ok(done) if done.rows_affected() > 0 => tracing::info!(
                    expired = done.rows_affected(),
                    "expired DMs left the offline queue"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "offline queue cleanup failed"),
            }
        }
    });
}
