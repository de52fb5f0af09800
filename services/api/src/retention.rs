//! Data that does not grow forever: connection-log rows older than
//! `TELEPATH_CONNECTION_LOG_DAYS` (default 30; 0 keeps them), and messages
//! older than their room's retention (`PATCH /rooms/{id}` `retention`, else
//! `TELEPATH_RETENTION_DAYS`; neither: kept) are deleted every minute
//! (`TELEPATH_RETENTION_EVERY_MS`), in
//! batches of [`BATCH`] rows with a pause between batches, so a large
//! backlog never holds the database's write lock for long and the message
//! writer's commits go on between them.
//!
//! A room's history is deleted as a prefix, by seq: every message up to the
//! newest seq below which all messages are older than the cutoff (with the
//! reactions on them, the changes to them, their full-text entries), and the
//! room remembers that seq (`pruned_seq`), so seqs stay continuous above it
//! and a client resuming from below it is told `recovered:false`. DMs older
//! than `TELEPATH_RETENTION_DAYS` go too, except those still waiting in an
//! offline queue.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::store::now;

/// Rows one delete removes at most.
pub(crate) const BATCH: i64 = 1000;
/// Pages one merge step of the full-text index writes at most.
const MERGE_PAGES: i64 = 500;
/// Merge steps after one cleanup at most.
const MERGE_STEPS: usize = 16;
/// The pause between two batches, for the writer.
const PAUSE: Duration = Duration::from_millis(20);

/// Runs the cleanup every minute for the life of the process:
/// connection logs past `log_days` (0: kept), messages past their room's
/// retention or `default_days`.
pub(crate) fn spawn(pool: SqlitePool, log_days: u32, default_days: Option<u32>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if log_days > 0 {
                match connection_logs(&pool, log_days, now()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(
                            deleted = n,
                            days = log_days,
                            "old connection-log rows deleted"
                        )
                    }
                    Err(e) => tracing::warn!(error = %e, "connection-log cleanup failed"),
                }
            }
            match messages(&pool, default_days, now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "messages past their retention deleted"),
                Err(e) => tracing::warn!(error = %e, "message retention failed"),
            }
        }
    });
}

/// Deletes the messages past their retention at `now` (rooms: their own
/// retention, else `default_days`; DMs: `default_days`), in batches;
/// returns how many.
pub(crate) async fn messages(
    pool: &SqlitePool,
    default_days: Option<u32>,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let default_days = default_days.map(i64::from);
    let rooms: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, COALESCE(retention_days, ?) AS days FROM rooms
         WHERE COALESCE(retention_days, ?) IS NOT NULL AND last_seq > pruned_seq",
    )
    .bind(default_days)
    .bind(default_days)
    .fetch_all(pool)
    .await?;
    let mut deleted = 0;
    for (room, days) in rooms {
        deleted += room_history(pool, &room, now - chrono::Duration::days(days)).await?;
    }
    if let Some(days) = default_days {
        deleted += dms(pool, now - chrono::Duration::days(days)).await?;
    }
    if deleted > 0 {
        compact_index(pool).await?;
    }
    Ok(deleted)
}

/// Deletes `room`'s history up to the newest seq below which every message
/// is older than `cutoff`.
async fn room_history(
    pool: &SqlitePool,
    room: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    // The first message kept: the lowest seq at or after the cutoff.
    let (last, pruned, kept): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT r.last_seq, r.pruned_seq,
                (SELECT MIN(m.seq) FROM messages m WHERE m.room_id = r.id AND m.created_at >= ?)
         FROM rooms r WHERE r.id = ?",
    )
    .bind(cutoff)
    .bind(room)
    .fetch_one(pool)
    .await?;
    let upto = kept.map_or(last, |k| k - 1);
    let mut deleted = 0;
    let mut from = pruned;
    while from < upto {
        let to = (from + BATCH).min(upto);
        let mut tx = crate::db::begin_write(pool).await?;
        sqlx::query(
            "DELETE FROM reactions WHERE message_id IN
               (SELECT id FROM messages WHERE room_id = ? AND seq > ? AND seq <= ?)",
        )
        .bind(room)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM room_events WHERE room_id = ? AND seq > ? AND seq <= ?")
            .bind(room)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM messages WHERE room_id = ? AND seq > ? AND seq <= ?")
            .bind(room)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        deleted += done.rows_affected();
        sqlx::query("UPDATE rooms SET pruned_seq = MAX(pruned_seq, ?) WHERE id = ?")
            .bind(to)
            .bind(room)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        from = to;
        tokio::time::sleep(PAUSE).await;
    }
    Ok(deleted)
}

/// Merges the full-text index's segments a bounded amount at a time, so
/// the entries of deleted messages (kept as delete markers until a merge)
/// leave it and its pages are reused: without it the index grows with
/// every message ever written, deleted or not.
async fn compact_index(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    for _ in 0..MERGE_STEPS {
        let before: i64 = sqlx::query_scalar("SELECT total_changes()")
            .fetch_one(pool)
            .await?;
        sqlx::query("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)")
            .bind(MERGE_PAGES)
            .execute(pool)
            .await?;
        let after: i64 = sqlx::query_scalar("SELECT total_changes()")
            .fetch_one(pool)
            .await?;
        // Nothing more to merge.
        if after - before <= 1 {
            return Ok(());
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok(())
}

/// Deletes DMs older than `cutoff` that no offline queue holds.
async fn dms(pool: &SqlitePool, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    in_batches(
        pool,
        "DELETE FROM messages WHERE id IN
           (SELECT m.id FROM messages m
            WHERE m.recipient_id IS NOT NULL AND m.created_at < ?
              AND NOT EXISTS (SELECT 1 FROM dm_queue q WHERE q.message_id = m.id)
            LIMIT ?)",
        cutoff,
    )
    .await
}

/// Deletes the connection-log rows older than `days` before `now`, in
/// batches; returns how many.
pub(crate) async fn connection_logs(
    pool: &SqlitePool,
    days: u32,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    in_batches(
        pool,
        "DELETE FROM connection_logs WHERE id IN
           (SELECT id FROM connection_logs WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        now - chrono::Duration::days(i64::from(days)),
    )
    .await
}

/// Runs `delete` (parameters: the cutoff, then the batch size) until it
/// deletes fewer than [`BATCH`] rows, pausing between batches; returns how
/// many it deleted.
async fn in_batches(
    pool: &SqlitePool,
    delete: &'static str,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let done = sqlx::query(delete)
            .bind(cutoff)
            .bind(BATCH)
            .execute(pool)
            .await?;
        deleted += done.rows_affected();
        if done.rows_affected() < BATCH as u64 {
            return Ok(deleted);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn insert(pool: &SqlitePool, n: usize, at: DateTime<Utc>) {
        for i in 0..n {
            sqlx::query(
                "INSERT INTO connection_logs (user_id, conn_id, node_id, event, created_at)
                 VALUES ('u', ?, 'n', 'connect', ?)",
            )
            .bind(format!("c{i}"))
            .bind(at)
            .execute(pool)
            .await
            .unwrap();
        }
    }

    async fn count(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM connection_logs")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn rows_past_the_window_go_in_batches_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = crate::db::open(&url, None).await.unwrap();
        let now = now();
        // Two and a half batches of old rows, some just inside the window.
        insert(
            &db.write,
            2 * BATCH as usize + 500,
            now - chrono::Duration::days(31),
        )
        .await;
        insert(&db.write, 7, now - chrono::Duration::days(29)).await;
        insert(&db.write, 3, now).await;
        let deleted = connection_logs(&db.write, 30, now).await.unwrap();
        assert_eq!(deleted, 2 * BATCH as u64 + 500);
        assert_eq!(count(&db.write).await, 10);
        // Nothing more to do: the next run deletes nothing.
        assert_eq!(connection_logs(&db.write, 30, now).await.unwrap(), 0);
        // A day later the rows of 29 days ago are past 30 days.
        let later = now + chrono::Duration::days(2);
        assert_eq!(connection_logs(&db.write, 30, later).await.unwrap(), 7);
        assert_eq!(count(&db.write).await, 3);
    }
}
