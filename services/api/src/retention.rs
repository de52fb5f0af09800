//! Data that does not grow forever: connection-log rows older than
//! `TELEPATH_CONNECTION_LOG_DAYS` (default 30; 0 keeps them) are deleted
//! every minute, in batches of [`BATCH`] rows with a pause between
//! batches, so a large backlog never holds the database's write lock for
//! long and the message writer's commits go on between them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::store::now;

/// Rows one delete removes at most.
pub(crate) const BATCH: i64 = 1000;
/// How often the cleanup runs.
const EVERY: Duration = Duration::from_secs(60);
/// The pause between two batches, for the writer.
const PAUSE: Duration = Duration::from_millis(20);

/// Runs the cleanup every minute for the life of the process (nothing when
/// `days` is 0).
pub(crate) fn spawn(pool: SqlitePool, days: u32) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            match connection_logs(&pool, days, now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, days, "old connection-log rows deleted"),
                Err(e) => tracing::warn!(error = %e, "connection-log cleanup failed"),
            }
        }
    });
}

/// Deletes the connection-log rows older than `days` before `now`, in
/// batches; returns how many.
pub(crate) async fn connection_logs(
    pool: &SqlitePool,
    days: u32,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM connection_logs WHERE id IN
               (SELECT id FROM connection_logs WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
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
