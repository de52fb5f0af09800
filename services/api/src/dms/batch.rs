//! Storing a gateway's batch of DMs: one `BEGIN IMMEDIATE` transaction for
//! all of them, then one ordered publish.
//!
//! Each DM is decided in order inside the transaction: a `client_id` the
//! sender used before (for a DM: its first result, nothing stored; for a
//! room message: `conflict`), an unknown recipient (`not_found`), a full
//! offline queue (`rate_limited`, counted with the DMs of this batch). The
//! accepted ones are written in two multi-row `INSERT`s (the message, its
//! queue entry) and committed together; a database error aborts the batch
//! (every DM of it gets `internal`), so a DM is queued exactly when it is
//! stored. After the commit every new DM goes out in one pipeline: to the
//! recipient's `user:` channel (the number of nodes there says whether the
//! recipient is connected: `delivered`) and to the sender's (their other
//! devices). That pipeline is tried at once only when the `dms` outbox is
//! empty, for at most [`DM_PUBLISH_WITHIN`]; otherwise, or when it fails or
//! times out, the DMs queue in the outbox behind the earlier ones and the
//! reply says `delivered: false` (the DMs are in the offline queue either
//! way).

use std::collections::HashMap;

use bytes::Bytes;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use telepath_shared::bus::Outgoing;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    DirectMessage, DmResult, ErrorCode, InternalDm, Role, ServerFrame, is_canonical_id,
    user_channel,
};
use telepath_shared::telemetry;

use super::{DM_COLUMNS, DmRow};
use crate::ApiState;
use crate::outbox::DM_PUBLISH_WITHIN;
use crate::store::{self, db_err, now};

/// Rows per `INSERT` statement (7 parameters each, far below SQLite's limit).
const INSERT_ROWS: usize = 500;

/// What deciding one DM came to.
enum Decided {
    /// Stored now: published after the commit.
    Fresh(DirectMessage),
    /// A repeat of a DM stored before (its `client_id`): answered as it was.
    Earlier(DmResult),
    /// A repeat of a DM of this batch (index of the first).
    Repeat(usize),
    Refused(ApiError),
}

/// Stores, queues and publishes a batch's DMs; one outcome each, in order.
pub(crate) async fn store(
    state: &ApiState,
    dms: Vec<InternalDm>,
) -> Vec<Result<DmResult, ApiError>> {
    if dms.is_empty() {
        return Vec::new();
    }
    let spans = store_spans(&dms);
    let decided = match persist(state, dms).await {
        Ok(decided) => decided,
        Err(e) => {
            // The transaction failed as a whole: nothing was stored.
            return spans.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let delivered = publish(state, &decided, &spans).await;
    notify_offline(state, &decided, &delivered);
    let mut results: Vec<Result<DmResult, ApiError>> = Vec::with_capacity(decided.len());
    for (i, d) in decided.into_iter().enumerate() {
        let result = match d {
            Decided::Fresh(dm) => Ok(DmResult {
                id: dm.id,
                ts: dm.ts,
                delivered: delivered.get(&i).copied().unwrap_or(false),
            }),
            Decided::Earlier(result) => Ok(result),
            Decided::Repeat(first) => results[first].clone(),
            Decided::Refused(e) => Err(e),
        };
        results.push(result);
    }
    results
}

/// One `dm.store` span per DM in its sender's trace, when traces are
/// exported (none otherwise).
fn store_spans(dms: &[InternalDm]) -> Vec<Option<tracing::Span>> {
    dms.iter()
        .map(|dm| {
            let tp = dm
                .traceparent
                .as_deref()
                .filter(|_| telemetry::tracing_enabled())?;
            let span = tracing::info_span!(parent: None, "dm.store", otel.kind = "internal");
            telemetry::adopt_traceparent(&span, tp);
            Some(span)
        })
        .collect()
}

/// Decides and writes every DM in one transaction.
async fn persist(state: &ApiState, dms: Vec<InternalDm>) -> Result<Vec<Decided>, ApiError> {
    let max_body = state.common().max_body_bytes;
    let cfg = state.config();
    let mut tx = state.db().begin_write().await?;
    let mut batch = Batch::default();
    let mut decided = Vec::with_capacity(dms.len());
    for (i, dm) in dms.into_iter().enumerate() {
        let d = match dm.check(max_body) {
            Err(e) => Decided::Refused(e.into()),
            Ok(()) => batch.decide(&mut tx, i, dm, cfg.offline_queue_max).await?,
        };
        decided.push(d);
    }
    let ttl = chrono::Duration::from_std(cfg.offline_ttl).unwrap_or(chrono::Duration::days(7));
    let fresh: Vec<&DirectMessage> = decided
        .iter()
        .filter_map(|d| match d {
            Decided::Fresh(dm) => Some(dm),
            _ => None,
        })
        .collect();
    insert(&mut tx, &fresh, &batch.client_ids, ttl).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(decided)
}

/// What one transaction has learnt so far, so each sender, recipient and
/// queue is read once per batch.
#[derive(Default)]
struct Batch {
    /// Senders whose user row exists.
    senders: HashMap<String, Result<(), ApiError>>,
    /// `to` (id or name) -> the recipient's id.
    recipients: HashMap<String, Result<String, ApiError>>,
    /// Recipient id -> DMs in their queue, this batch's included.
    queued: HashMap<String, i64>,
    /// (sender, client_id) -> index of the DM of this batch that has it.
    keys: HashMap<(String, String), usize>,
    /// DM id -> its `client_id`, for the insert.
    client_ids: HashMap<String, String>,
}

impl Batch {
    /// Decides DM number `i` (checked already).
    async fn decide(
        &mut self,
        conn: &mut SqliteConnection,
        i: usize,
        req: InternalDm,
        queue_max: i64,
    ) -> Result<Decided, ApiError> {
        if !self.senders.contains_key(&req.from.id) {
            let ensured = store::ensure_user(conn, &req.from, Role::User).await;
            self.senders.insert(req.from.id.clone(), ensured);
        }
        if let Some(Err(e)) = self.senders.get(&req.from.id) {
            return refused_or_failed(e.clone());
        }
        if let Some(client_id) = &req.client_id {
            let key = (req.from.id.clone(), client_id.clone());
            if let Some(first) = self.keys.get(&key) {
                return Ok(Decided::Repeat(*first));
            }
            if let Some(first) = earlier(conn, &req.from.id, client_id).await? {
                return Ok(Decided::Earlier(DmResult {
                    id: first.id,
                    ts: first.created_at,
                    delivered: first.delivered_at.is_some(),
                }));
            }
            // DMs and room messages share the idempotency index.
            if key_taken(conn, &req.from.id, client_id).await? {
                return Ok(Decided::Refused(ApiError::new(
                    ErrorCode::Conflict,
                    "client_id already names a room message of this sender",
                )));
            }
        }
        if !self.recipients.contains_key(&req.to) {
            let found = recipient(conn, &req.to).await;
            self.recipients.insert(req.to.clone(), found);
        }
        let to = match &self.recipients[&req.to] {
            Ok(to) => to.clone(),
            Err(e) => return refused_or_failed(e.clone()),
        };
        let queued = match self.queued.get(&to) {
            Some(n) => *n,
            None => queue_length(conn, &to).await?,
        };
        if queued >= queue_max {
            self.queued.insert(to, queued);
            return Ok(Decided::Refused(ApiError::new(
                ErrorCode::RateLimited,
                "the recipient's offline queue is full; try later",
            )));
        }
        self.queued.insert(to.clone(), queued + 1);
        let dm = DirectMessage {
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            from: req.from,
            to,
            body: req.body,
            ts: now(),
            edited_at: None,
            deleted: false,
        };
        if let Some(client_id) = req.client_id {
            self.keys.insert((dm.from.id.clone(), client_id.clone()), i);
            self.client_ids.insert(dm.id.clone(), client_id);
        }
        Ok(Decided::Fresh(dm))
    }
}

/// A refusal of this DM, or (a database failure) of the whole batch.
fn refused_or_failed(e: ApiError) -> Result<Decided, ApiError> {
    if e.code == ErrorCode::Internal {
        Err(e)
    } else {
        Ok(Decided::Refused(e))
    }
}

/// Writes the new DMs and their queue entries, a few hundred rows per statement.
async fn insert(
    conn: &mut SqliteConnection,
    fresh: &[&DirectMessage],
    client_ids: &HashMap<String, String>,
    ttl: chrono::Duration,
) -> Result<(), ApiError> {
    for chunk in fresh.chunks(INSERT_ROWS) {
        // OR FAIL: no statement journal (see the room writer's insert).
        let mut messages: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT OR FAIL INTO messages (id, recipient_id, sender_id, content, kind, client_id, created_at) ",
        );
        messages.push_values(chunk.iter(), |mut row, dm| {
            row.push_bind(&dm.id)
                .push_bind(&dm.to)
                .push_bind(&dm.from.id)
                .push_bind(&dm.body)
                .push_bind("text")
                .push_bind(client_ids.get(&dm.id))
                .push_bind(dm.ts);
        });
        messages.build().execute(&mut *conn).await.map_err(db_err)?;
        let ids: Vec<&str> = chunk.iter().map(|dm| dm.id.as_str()).collect();
        store::index_new(conn, &ids).await.map_err(db_err)?;
        let mut queue: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO dm_queue (message_id, recipient_id, queued_at, expires_at) ",
        );
        queue.push_values(chunk.iter(), |mut row, dm| {
            row.push_bind(&dm.id)
                .push_bind(&dm.to)
                .push_bind(dm.ts)
                .push_bind(dm.ts + ttl);
        });
        queue.build().execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// Publishes the batch's new DMs in one pipeline, in order: each to its
/// recipient's and its sender's other devices. Returns, by DM index,
/// whether the recipient had a live connection, when the pipeline went out
/// at once; when it was queued in the outbox instead, none (`delivered:
/// false`). A DM the outbox drops stays in the offline queue (it comes on
/// the recipient's next connect).
async fn publish(
    state: &ApiState,
    decided: &[Decided],
    spans: &[Option<tracing::Span>],
) -> HashMap<usize, bool> {
    let mut messages = Vec::new();
    // (DM index, position of its recipient's publish in `messages`)
    let mut recipients = Vec::new();
    for (i, d) in decided.iter().enumerate() {
        let Decided::Fresh(dm) = d else { continue };
        let payload = Bytes::from(ServerFrame::Dm(dm.clone()).to_json());
        let traceparent = spans[i].as_ref().and_then(telemetry::traceparent_of);
        recipients.push((i, messages.len()));
        messages.push(Outgoing {
            channel: user_channel(&dm.to),
            payload: payload.clone(),
            traceparent: traceparent.clone(),
        });
        if dm.to != dm.from.id {
            messages.push(Outgoing {
                channel: user_channel(&dm.from.id),
                payload,
                traceparent,
            });
        }
    }
    if messages.is_empty() {
        return HashMap::new();
    }
    // Queued for their recipients: their connects must read the queue.
    let queued: Vec<&str> = decided
        .iter()
        .filter_map(|d| match d {
            Decided::Fresh(dm) => Some(dm.to.as_str()),
            _ => None,
        })
        .collect();
    state.marks().touch(&queued).await;
    let outbox = &state.outboxes().dms;
    match outbox.publish_or_push(messages, DM_PUBLISH_WITHIN).await {
        Some(receivers) => recipients
            .into_iter()
            .map(|(i, at)| (i, receivers.get(at).is_some_and(|n| *n > 0)))
            .collect(),
        None => HashMap::new(),
    }
}

/// A `dm` notification for each new DM whose recipient had no live
/// connection when it was published (known only when the publish went out
/// at once). Written after the DMs' commit, in a task of its own: the
/// DM's answer does not wait for it.
fn notify_offline(state: &ApiState, decided: &[Decided], delivered: &HashMap<usize, bool>) {
    use crate::notifications::{NewNotification, excerpt};
    let new: Vec<NewNotification> = decided
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d {
            Decided::Fresh(dm) if delivered.get(&i) == Some(&false) && dm.to != dm.from.id => {
                Some(NewNotification {
                    user_id: dm.to.clone(),
                    kind: telepath_shared::protocol::NotificationKind::Dm,
                    app_key: None,
                    room: None,
                    message_id: Some(dm.id.clone()),
                    from: Some(dm.from.clone()),
                    text: excerpt(&dm.body),
                })
            }
            _ => None,
        })
        .collect();
    if new.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let written = async {
            let mut tx = state.db().begin_write().await?;
            let written = crate::notifications::insert(&mut tx, new, now())
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok::<_, ApiError>(written)
        };
        match written.await {
            Ok(written) => crate::notifications::publish(&state, &written),
            Err(e) => tracing::warn!(error = %e.message, "a DM's notification was not written"),
        }
    });
}

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

/// DMs waiting in `recipient`'s offline queue.
async fn queue_length(conn: &mut SqliteConnection, recipient: &str) -> Result<i64, ApiError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM dm_queue WHERE recipient_id = ?")
        .bind(recipient)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)
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
