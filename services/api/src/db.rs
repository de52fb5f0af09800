//! Opening the SQLite database: WAL, a single-connection write pool next to a
//! read pool, the embedded migrations from `migrations/`, and the
//! checkpointer.
//!
//! A checkpoint copies the WAL into the database file and syncs it; on the
//! writer's connection, SQLite's default (every 1,000 WAL pages) stalls
//! whichever group commit crosses that threshold, several milliseconds
//! every few hundred commits under load. A connection of its own runs a
//! passive checkpoint every [`CHECKPOINT_EVERY`] instead, beside the
//! writer, which keeps appending. That alone never lets the WAL start over
//! while writes keep coming (SQLite rewinds it only when a write finds every
//! frame copied back), so the writer still checkpoints, rarely
//! ([`WRITER_CHECKPOINT_PAGES`]), and has little left to copy when it does.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL pages after which the writer checkpoints itself (and the WAL starts
/// over): about 40 MB.
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;
/// The WAL file is cut back to this size when it restarts.
const WAL_SIZE_LIMIT: &str = "67108864";

/// The api's connections to its database.
pub(crate) struct Pools {
    /// Readers: history pages, room lists. Several connections.
    pub(crate) read: SqlitePool,
    /// The single writer connection (SQLite allows one writer at a time).
    pub(crate) write: SqlitePool,
    /// The checkpointer's connection; closing it stops the checkpointer.
    pub(crate) checkpoint: SqlitePool,
}

impl Pools {
    /// [`begin_write`] on the writer connection; a failure is an internal error.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<Transaction<'static, Sqlite>, telepath_shared::http::ApiError> {
        begin_write(&self.write).await.map_err(crate::store::db_err)
    }

    /// Closes every connection; the last to close checkpoints the WAL.
    pub(crate) async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
        self.checkpoint.close().await;
    }
}

/// A write transaction that takes SQLite's write lock at once (`BEGIN
/// IMMEDIATE`), so it waits for the lock up front instead of failing
/// half-way when a read turns into a write.
///
/// A write that failed inside SQLite (a full database) can leave the
/// connection believing a transaction is still open after SQLite rolled it
/// back itself; `BEGIN` is then refused on it for good. Such a connection is
/// closed here and the pool opens a fresh one, so writes work again once
/// space returns.
pub(crate) async fn begin_write(
    pool: &SqlitePool,
) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    match pool.begin_with("BEGIN IMMEDIATE").await {
        Err(sqlx::Error::InvalidSavePointStatement) => {
            tracing::warn!("the writer connection was left in a failed transaction: reopening it");
            pool.acquire().await?.close().await?;
            pool.begin_with("BEGIN IMMEDIATE").await
        }
        began => began,
    }
}

/// Opens `url` (creating the file if needed), migrates it, starts the
/// checkpointer, and returns the pools.
/// `max_bytes` bounds the file (`PRAGMA max_page_count` on the writer).
pub(crate) async fn open(url: &str, max_bytes: Option<u64>) -> anyhow::Result<Pools> {
    open_with(url, WRITER_CHECKPOINT_PAGES, max_bytes).await
}

/// [`open`], with the writer checkpointing after `writer_pages` WAL pages.
async fn open_with(url: &str, writer_pages: u32, max_bytes: Option<u64>) -> anyhow::Result<Pools> {
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL still survives an application crash; only an OS
        // crash can lose the last transactions.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    // One writer: SQLite serialises writers anyway, and a single connection
    // makes every write transaction wait its turn instead of failing "locked".
    // No liveness ping when a connection is taken from a pool: an SQLite
    // connection is in-process and cannot hang up, and the ping would be one
    // more round trip to the connection's thread before every query.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        // The size bound is per connection: set on each writer connection
        // (readers never grow the file).
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if let Some(max) = max_bytes {
                    use sqlx::Executor as _;
                    let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
                        .fetch_one(&mut *conn)
                        .await?;
                    let pages = max / page_size.max(512) as u64;
                    let pragma = format!("PRAGMA max_page_count = {pages}");
                    conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(pragma)))
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with(
            opts.clone()
                .pragma("wal_autocheckpoint", writer_pages.to_string())
                .pragma("journal_size_limit", WAL_SIZE_LIMIT),
        )
        .await?;
    sqlx::migrate!("../../migrations").run(&write).await?;
    let checkpointer = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(opts.clone())
        .await?;
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(opts.read_only(true))
        .await?;
    tokio::spawn(checkpoint(checkpointer.clone()));
    Ok(Pools {
        read,
        write,
        checkpoint: checkpointer,
    })
}

/// Copies the WAL into the database file every [`CHECKPOINT_EVERY`] on its
/// own connection, without waiting for readers or the writer (`PASSIVE`),
/// until that connection's pool is closed.
async fn checkpoint(own: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = own.close_event() => return,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&own)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL file's size in pages (its frames are a page and a 24-byte header).
    fn wal_pages(dir: &std::path::Path) -> u64 {
        let wal = std::fs::metadata(dir.join("t.db-wal")).map_or(0, |m| m.len());
        wal / (4096 + 24)
    }

    #[tokio::test]
    async fn the_wal_starts_over_while_writes_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        // A low threshold, so a few thousand pages show what 10,000 would.
        let pools = open_with(&url, 200, None).await.unwrap();
        sqlx::query("CREATE TABLE scratch (b BLOB)")
            .execute(&pools.write)
            .await
            .unwrap();
        // Back-to-back commits of about a page each, about 3,000 pages in
        // all, with the checkpointer running beside them: without the
        // writer's own checkpoints the WAL would hold every one of them.
        for _ in 0..1500 {
            sqlx::query("INSERT INTO scratch VALUES (zeroblob(3500))")
                .execute(&pools.write)
                .await
                .unwrap();
        }
        let pages = wal_pages(dir.path());
        assert!(pages > 0, "the WAL is in use");
        assert!(pages < 1000, "the WAL grew to {pages} pages");
        pools.close().await;
    }
}
