//! Edits and deletes of DMs, by their sender. A DM has no room and no seq:
//! the change is written in place (the body replaced, or removed for a
//! delete), the DM goes back into its recipient's offline queue (so a
//! recipient who was away gets it again, as it is now, on the next
//! connect), and a `message_edited` / `message_deleted` event goes to both
//! users' channels through the `dms` outbox. One transaction for a batch's
//! DM changes.

use bytes::Bytes;
use sqlx::SqliteConnection;
use telepath_shared::bus::Outgoing;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ChangeOp, ChangeResult, ErrorCode, InternalChange, MessageDeleted, MessageEdited, ServerFrame,
    is_canonical_id, user_channel,
};

use crate::ApiState;
use crate::store::{db_err, now};

/// Applies a batch's DM changes in order; one outcome each.
pub(crate) async fn change_many(
    state: &ApiState,
    changes: Vec<Result<InternalChange, ApiError>>,
) -> Vec<Result<ChangeResult, ApiError>> {
    if changes.is_empty() {
        return Vec::new();
    }
    let ttl =
        chrono::Duration::from_std(state.config().offline_ttl).unwrap_or(chrono::Duration::days(7));
    let n = changes.len();
    let mut events = Vec::new();
    // Users whose offline queue got a changed DM back.
    let mut queued: Vec<String> = Vec::new();
    let outcomes = async {
        let mut tx = state.db().begin_write().await?;
        let mut outcomes = Vec::with_capacity(changes.len());
        for c in changes {
            outcomes.push(match c {
                Ok(c) => apply(&mut tx, &c, ttl, &mut events, &mut queued).await?,
                Err(e) => Err(e),
            });
        }
        tx.commit().await.map_err(db_err)?;
        Ok::<_, ApiError>(outcomes)
    }
    .await;
    match outcomes {
        Ok(outcomes) => {
            if !events.is_empty() {
                // The changed DMs are back in their recipients' queues.
                let users: Vec<&str> = queued.iter().map(String::as_str).collect();
                state.marks().touch(&users).await;
                state.outboxes().dms.push(events);
            }
            outcomes
        }
        Err(e) => {
            // Nothing was written; every change of the batch gets the error.
            vec![Err(e); n]
        }
    }
}

/// The DM a change names, as stored.
#[derive(sqlx::FromRow)]
struct DmTarget {
    sender_id: String,
    recipient_id: String,
    content: String,
    edited_at: Option<chrono::DateTime<chrono::Utc>>,
    deleted: bool,
}

/// One DM change inside the transaction: its outcome, its events in
/// `events`, and its recipient in `queued` when the DM went back in their queue.
async fn apply(
    conn: &mut SqliteConnection,
    c: &InternalChange,
    ttl: chrono::Duration,
    events: &mut Vec<Outgoing>,
    queued: &mut Vec<String>,
) -> Result<Result<ChangeResult, ApiError>, ApiError> {
    let id = c.dm.clone().unwrap_or_default();
    if !is_canonical_id(&id) {
        return Ok(Err(ApiError::not_found("no such direct message")));
    }
    let row: Option<DmTarget> = sqlx::query_as(
        "SELECT sender_id, recipient_id, content, edited_at, deleted_at IS NOT NULL AS deleted
         FROM messages WHERE id = ? AND recipient_id IS NOT NULL",
    )
    .bind(&id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    // Only its two users know it exists.
    let Some(DmTarget {
        sender_id: sender,
        recipient_id: recipient,
        content: body,
        edited_at,
        deleted,
    }) = row.filter(|r| r.sender_id == c.from.id || r.recipient_id == c.from.id)
    else {
        return Ok(Err(ApiError::not_found("no such direct message")));
    };
    if sender != c.from.id {
        return Ok(Err(ApiError::new(
            ErrorCode::Forbidden,
            "only its sender may change a direct message",
        )));
    }
    let mut ts = now();
    // Each edit's `edited_at` is later than the last: it names the version a
    // recipient acks (`ack` `dm` `edited_at`).
    if c.op == ChangeOp::Edit
        && let Some(last) = edited_at
        && last >= ts
    {
        ts = last + chrono::Duration::milliseconds(1);
    }
    let frame = match c.op {
        ChangeOp::Edit => {
            if deleted {
                return Ok(Err(ApiError::not_found("the message was deleted")));
            }
            let new_body = c.body.clone().unwrap_or_default();
            if new_body == body {
                return Ok(Ok(ChangeResult {
                    id: Some(id),
                    edited_at,
                    ..ChangeResult::default()
                }));
            }
            sqlx::query("UPDATE messages SET content = ?, edited_at = ? WHERE id = ?")
                .bind(&new_body)
                .bind(ts)
                .bind(&id)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
            ServerFrame::MessageEdited(MessageEdited {
                room: None,
                id: id.clone(),
                seq: None,
                body: new_body,
                edited_at: ts,
                by: c.from.clone(),
                dm: Some(id.clone()),
                to: Some(recipient.clone()),
            })
        }
        ChangeOp::Delete => {
            if deleted {
                return Ok(Ok(ChangeResult {
                    id: Some(id),
                    ..ChangeResult::default()
                }));
            }
            sqlx::query("UPDATE messages SET content = '', deleted_at = ? WHERE id = ?")
                .bind(ts)
                .bind(&id)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
            ServerFrame::MessageDeleted(MessageDeleted {
                room: None,
                id: id.clone(),
                seq: None,
                by: c.from.clone(),
                dm: Some(id.clone()),
                to: Some(recipient.clone()),
            })
        }
        ChangeOp::React | ChangeOp::Read => {
            return Ok(Err(ApiError::bad_request(
                "only edit and delete apply to DMs",
            )));
        }
    };
    // Back in the recipient's queue: the DM as it is now comes on their next
    // connect until acked (a DM already queued keeps its place).
    sqlx::query(
        "INSERT INTO dm_queue (message_id, recipient_id, queued_at, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&id)
    .bind(&recipient)
    .bind(ts)
    .bind(ts + ttl)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    queued.push(recipient.clone());
    let payload = Bytes::from(frame.to_json());
    events.push(Outgoing {
        channel: user_channel(&recipient),
        payload: payload.clone(),
        traceparent: None,
    });
    if recipient != sender {
        events.push(Outgoing {
            channel: user_channel(&sender),
            payload,
            traceparent: None,
        });
    }
    Ok(Ok(ChangeResult {
        id: Some(id),
        edited_at: (c.op == ChangeOp::Edit).then_some(ts),
        ..ChangeResult::default()
    }))
}
