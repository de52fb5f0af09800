//! Direct messages and the offline queue.
//!
//! Gateways send DMs in their batches (`POST /internal/messages`, see
//! `internal.rs`); [`store`] commits a batch's DMs together. A DM is
//! stored (a `messages` row with a recipient, no room) and queued
//! (`dm_queue`) in one transaction, then published to the recipient's and
//! the sender's `user:{id}` channels (later, through the `dms` outbox,
//! when Redis is slow or away), then acknowledged. It stays queued
//! until the recipient acks it, so a DM that reached no device is sent again
//! on the recipient's next connect, oldest first. A recipient's queue holds
//! at most `TELEPATH_OFFLINE_QUEUE_MAX` DMs: one more is refused
//! (`rate_limited`) before it is stored, so an acknowledged DM is never
//! dropped. Queued DMs expire after `TELEPATH_OFFLINE_TTL`; a cleanup job
//! removes them every minute.

mod batch;
mod change;
pub(crate) mod history;

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::SqlitePool;
use telepath_shared::http::{ApiError, JsonBody};
use telepath_shared::protocol::{
    DirectMessage, DmState, ErrorEnvelope, InternalAcks, InternalPendingDms, PendingDms,
    PendingDmsByUser, UserPendingDms, UserRef, is_canonical_id,
};

pub(crate) use batch::store;
pub(crate) use change::change_many;

use crate::ApiState;
use crate::auth::{AuthUser, Internal};
use crate::store::{db_err, now};

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
    edited_at: Option<DateTime<Utc>>,
    deleted: bool,
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
            body: if self.deleted {
                String::new()
            } else {
                self.content.clone()
            },
            ts: self.created_at,
            edited_at: self.edited_at,
            deleted: self.deleted,
        }
    }
}

const DM_COLUMNS: &str = "SELECT m.id, m.sender_id, u.username AS sender_name, m.recipient_id, m.content, m.created_at, m.delivered_at,
        EXISTS (SELECT 1 FROM dm_queue q WHERE q.message_id = m.id) AS queued,
        m.edited_at, m.deleted_at IS NOT NULL AS deleted
 FROM messages m JOIN users u ON u.id = m.sender_id";

#[utoipa::path(post, path = "/internal/acks", tag = "internal", request_body = InternalAcks,
    responses((status = 204, description = "Recorded"), (status = 400, description = "Invalid input", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn ack(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(acks): JsonBody<InternalAcks>,
) -> Result<StatusCode, ApiError> {
    acks.check()?;
    let at = now();
    let mut tx = state.db().begin_write().await?;
    let mut delivered = Vec::new();
    for id in &acks.dms {
        // Only the recipient's ack counts.
        let done = sqlx::query("DELETE FROM dm_queue WHERE message_id = ? AND recipient_id = ?")
            .bind(id)
            .bind(&acks.user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() > 0 {
            delivered.push(id.as_str());
        }
    }
    for v in &acks.dm_versions {
        // Only if the DM is still as the recipient got it: an edit or a
        // delete committed after that version was queued again and must
        // stay queued (their ack of the older version can arrive later).
        let done = sqlx::query(
            "DELETE FROM dm_queue WHERE message_id = ? AND recipient_id = ?
             AND EXISTS (SELECT 1 FROM messages m WHERE m.id = ? AND CASE WHEN ?
                 THEN m.deleted_at IS NOT NULL
                 ELSE m.deleted_at IS NULL AND m.edited_at IS ? END)",
        )
        .bind(&v.id)
        .bind(&acks.user_id)
        .bind(&v.id)
        .bind(v.deleted)
        .bind(v.edited_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() > 0 {
            delivered.push(v.id.as_str());
        }
    }
    // What left the queue was delivered (the first time it did).
    for id in delivered {
        sqlx::query("UPDATE messages SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
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
        invites: Vec::new(),
        announcements: Vec::new(),
    })
}

/// The queued, unexpired DMs of each of `user_ids`, oldest first, at most
/// `limit` each, in one statement; users with none are absent.
async fn pending_of_many(
    pool: &SqlitePool,
    user_ids: &[String],
    limit: i64,
) -> Result<HashMap<String, Vec<DirectMessage>>, ApiError> {
    // User ids are canonical UUIDs (checked by the caller), safe in JSON.
    let ids = crate::store::json_array(&user_ids);
    let sql = sqlx::AssertSqlSafe(format!(
        "{DM_COLUMNS} JOIN dm_queue q2 ON q2.message_id = m.id WHERE q2.recipient_id IN (SELECT value FROM json_each(?)) AND q2.expires_at > ? ORDER BY q2.recipient_id, q2.queued_at, m.id"
    ));
    let rows: Vec<DmRow> = sqlx::query_as(sql)
        .bind(ids)
        .bind(now())
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let mut by_user: HashMap<String, Vec<DirectMessage>> = HashMap::new();
    for row in &rows {
        let queue = by_user.entry(row.recipient_id.clone()).or_default();
        if (queue.len() as i64) < limit {
            queue.push(row.message());
        }
    }
    Ok(by_user)
}

/// `?user_id=` of the internal pending route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PendingQuery {
    user_id: String,
}

#[utoipa::path(get, path = "/internal/dms/pending", tag = "internal", params(PendingQuery),
    responses((status = 200, description = "Queued DMs, oldest first, and pending room invitations", body = PendingDms), (status = 400, description = "Invalid input", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn pending_internal(
    State(state): State<ApiState>,
    _: Internal,
    query: Result<Query<PendingQuery>, QueryRejection>,
) -> Result<Json<PendingDms>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // Read before the offline read: a mark made with it is stale if
    // anything was touched meanwhile (see crate::marks).
    let snapshot = state.marks().snapshot(&q.user_id).await;
    let pending = pending_of(
        &state.db().read,
        &q.user_id,
        state.config().offline_queue_max,
    )
    .await?;
    let pending = connect_extras(&state, &q.user_id, pending).await?;
    if let Some(snapshot) = snapshot
        && nothing_pending(&pending)
    {
        state.marks().mark_clean(&q.user_id, &snapshot).await;
    }
    Ok(Json(pending))
}

/// What a connect reads besides the DMs: the user's pending invitations
/// and the active announcements they have not dismissed.
async fn connect_extras(
    state: &ApiState,
    user_id: &str,
    mut pending: PendingDms,
) -> Result<PendingDms, ApiError> {
    pending.announcements = crate::announcements::pending(state, user_id).await?;
    // Most users have no invitation waiting: their connect reads nothing more.
    if let Some(version) = state.invitees().may_have(user_id) {
        let mut conn = state.db().read.acquire().await.map_err(db_err)?;
        pending.invites = crate::manage::invites::pending(&mut conn, user_id).await?;
        if pending.invites.is_empty() {
            state.invitees().none_for(user_id, version);
        }
    }
    Ok(pending)
}

/// Whether a connect's read found nothing to send.
fn nothing_pending(pending: &PendingDms) -> bool {
    pending.messages.is_empty() && pending.invites.is_empty() && pending.announcements.is_empty()
}

/// The offline queues of several users at once: the connects arriving
/// together at a gateway (`connect`), or a gateway catching up after its
/// bus subscription came back.
#[utoipa::path(post, path = "/internal/dms/pending", tag = "internal", request_body = InternalPendingDms,
    responses((status = 200, description = "One entry per user id asked about, in order: their queued DMs, oldest first, as GET /internal/dms/pending returns them (with `connect`, their invitations and announcements too)", body = PendingDmsByUser), (status = 400, description = "Invalid input: more than 100 user ids, or one that is not a lowercase UUID", body = ErrorEnvelope),
        (status = 401, description = "Missing internal token", body = ErrorEnvelope), (status = 413, description = "Body too large", body = ErrorEnvelope)),
    security(("internal" = [])))]
pub(crate) async fn pending_internal_many(
    State(state): State<ApiState>,
    _: Internal,
    JsonBody(req): JsonBody<InternalPendingDms>,
) -> Result<Json<PendingDmsByUser>, ApiError> {
    req.check()?;
    let limit = state.config().offline_queue_max;
    // Read before the offline read, as for one user (see crate::marks).
    let snapshots = if req.connect {
        futures_util::future::join_all(req.user_ids.iter().map(|u| state.marks().snapshot(u))).await
    } else {
        Vec::new()
    };
    let by_user = pending_of_many(&state.db().read, &req.user_ids, limit).await?;
    let mut users = Vec::with_capacity(req.user_ids.len());
    let mut clean = Vec::new();
    for (i, user_id) in req.user_ids.into_iter().enumerate() {
        let mut pending = PendingDms {
            messages: by_user.get(&user_id).cloned().unwrap_or_default(),
            invites: Vec::new(),
            announcements: Vec::new(),
        };
        if req.connect {
            pending = connect_extras(&state, &user_id, pending).await?;
            if let Some(Some(snapshot)) = snapshots.get(i)
                && nothing_pending(&pending)
            {
                clean.push((user_id.clone(), snapshot));
            }
        }
        users.push(UserPendingDms {
            user_id,
            messages: pending.messages,
            invites: pending.invites,
            announcements: pending.announcements,
        });
    }
    futures_util::future::join_all(
        clean
            .iter()
            .map(|(user_id, snapshot)| state.marks().mark_clean(user_id, snapshot)),
    )
    .await;
    Ok(Json(PendingDmsByUser { users }))
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
