//! Opening the SQLite database: WAL, a single-connection write pool next to a
//! read pool, the embedded migrations from `migrations/`, and the
//! checkpointer.
//!
//! A checkpoint copies the WAL into the database file and syncs both; on
//! the writer's connection, SQLite's automatic one stalls whichever group
//! commit crosses its threshold for as long as that takes (tens of
//! milliseconds on a busy disk). A connection of its own runs a passive
//! checkpoint every [`CHECKPOINT_EVERY`] instead, beside the writer, which
//! keeps appending. That alone never lets the WAL start over while writes
//! keep coming: SQLite rewinds it only when a write finds every frame
//! copied back, and the writer appends more while the checkpointer copies.
//! So once the WAL holds [`RESTART_PAGES`], the checkpointer finishes the
//! job on the writer's connection, right after its own pass: it copies
//! only what was appended during that pass, the writer waits for that
//! short step alone, and its next write starts the WAL over. The writer's
//! own automatic checkpoint is only a backstop ([`BACKSTOP_PAGES`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL pages after which the checkpointer lets the WAL start over: about
/// 40 MB.
const RESTART_PAGES: i64 = 10_000;
/// WAL pages after which the writer checkpoints itself, should the
/// checkpointer fall behind.
const BACKSTOP_PAGES: i64 = 4 * RESTART_PAGES;
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
    let wal = Wal {
        every: CHECKPOINT_EVERY,
        restart_pages: RESTART_PAGES,
        backstop_pages: BACKSTOP_PAGES,
    };
    open_with(url, wal, max_bytes).await
}

/// When the WAL is copied back and started over.
#[derive(Clone, Copy)]
struct Wal {
    /// How often the checkpointer runs.
    every: Duration,
    /// WAL pages after which the checkpointer lets the WAL start over.
    restart_pages: i64,
    /// WAL pages after which the writer checkpoints itself.
    backstop_pages: i64,
}

/// [`open`], with its WAL settings.
async fn open_with(url: &str, wal: Wal, max_bytes: Option<u64>) -> anyhow::Result<Pools> {
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
                .pragma("wal_autocheckpoint", wal.backstop_pages.to_string())
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
    tokio::spawn(checkpoint(checkpointer.clone(), write.clone(), wal));
    Ok(Pools {
        read,
        write,
        checkpoint: checkpointer,
    })
}

/// Copies the WAL into the database file every [`Wal::every`] on its own
/// connection, without waiting for readers or the writer (`PASSIVE`); once
/// the WAL holds [`Wal::restart_pages`], copies the rest on the writer's
/// connection, so the next write starts the WAL over. Runs until its own
/// pool is closed.
async fn checkpoint(own: SqlitePool, write: SqlitePool, wal: Wal) {
    let mut tick = tokio::time::interval(wal.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = own.close_event() => return,
        }
        let frames = match passive_checkpoint(&own).await {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                continue;
            }
        };
        if frames < wal.restart_pages || write.is_closed() {
            continue;
        }
        // What the writer appended during the pass above: holding its
        // connection, so nothing is appended meanwhile.
        match passive_checkpoint(&write).await {
            Err(_) if write.is_closed() => return,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint on the writer's connection failed")
            }
            Ok(_) => {}
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)` on a connection of `pool`: the WAL's
/// size in pages when it ran (`-1` if another checkpoint was running).
async fn passive_checkpoint(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    let (_busy, frames, _copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL file's size in pages (its frames are a page and a 24-byte header).
    fn wal_pages(dir: &std::path::Path) -> u64 {
        let wal = std::fs::metadata(dir.join("t.db-wal")).map_or(0, |m| m.len());
        wal / (4096 + 24)
    }

    /// Back-to-back commits of about a page each, about 3,000 pages in all,
    /// on a database opened with `wal`: the WAL's largest size in pages.
    async fn wal_after_writes(wal: Wal) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pools = open_with(&url, wal, None).await.unwrap();
        sqlx::query("CREATE TABLE scratch (b BLOB)")
            .execute(&pools.write)
            .await
            .unwrap();
        for _ in 0..1500 {
            sqlx::query("INSERT INTO scratch VALUES (zeroblob(3500))")
                .execute(&pools.write)
                .await
                .unwrap();
        }
        let pages = wal_pages(dir.path());
        assert!(pages > 0, "the WAL is in use");
        pools.close().await;
        pages
    }

    #[tokio::test]
    async fn the_checkpointer_starts_the_wal_over_while_writes_keep_coming() {
        // Low thresholds, so a few thousand pages show what 10,000 would;
        // the writer's own checkpoint out of reach. The checkpointer copies
        // beside the writer, which keeps appending, so only its last step
        // on the writer's connection lets the WAL start over.
        let pages = wal_after_writes(Wal {
            every: Duration::from_millis(5),
            restart_pages: 200,
            backstop_pages: 1_000_000,
        })
        .await;
        assert!(pages < 1000, "the WAL grew to {pages} pages");
    }

    #[tokio::test]
    async fn the_writer_checkpoints_itself_when_the_checkpointer_falls_behind() {
        let pages = wal_after_writes(Wal {
            every: Duration::from_secs(3600),
            restart_pages: 1_000_000,
            backstop_pages: 200,
        })
        .await;
        assert!(pages < 1000, "the WAL grew to {pages} pages");
    }

    /// The migration that rebuilt the messages table with deferred foreign keys.
    const DEFERRED_KEYS: i64 = 20261212000001;

    /// A database at the schema before [`DEFERRED_KEYS`], with a user, a
    /// room, a room message, a DM and its queue entry, all indexed.
    async fn before_deferred_keys(url: &str) {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::from_str(url)
                    .unwrap()
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        sqlx::migrate!("../../migrations")
            .run_to(DEFERRED_KEYS - 1, &pool)
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO users (id, username, created_at) VALUES ('u1', 'ann', '2026-12-01T00:00:00Z'), ('u2', 'bob', '2026-12-01T00:00:00Z');
             INSERT INTO rooms (id, name, created_by, created_at, last_seq) VALUES ('r1', 'lobby', 'u1', '2026-12-01T00:00:00Z', 1);
             INSERT INTO messages (rowid, id, room_id, sender_id, content, seq, created_at, reply_count)
                 VALUES (7, 'm1', 'r1', 'u1', 'apricot jam', 1, '2026-12-01T00:00:01Z', 2);
             INSERT INTO messages (rowid, id, recipient_id, sender_id, content, created_at)
                 VALUES (9, 'd1', 'u2', 'u1', 'blueberry pie', '2026-12-01T00:00:02Z');
             INSERT INTO dm_queue (message_id, recipient_id, queued_at, expires_at)
                 VALUES ('d1', 'u2', '2026-12-01T00:00:02Z', '2026-12-08T00:00:02Z');
             INSERT INTO messages_fts (rowid, content) SELECT rowid, content FROM messages;",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    #[tokio::test]
    async fn deferred_keys_keep_every_message_and_still_refuse_a_missing_sender() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        before_deferred_keys(&url).await;
        let pools = open(&url, None).await.unwrap();
        let w = &pools.write;

        // Every message, its rowid (the full-text index's key) and columns kept.
        let rows: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT rowid, id, reply_count FROM messages ORDER BY rowid")
                .fetch_all(w)
                .await
                .unwrap();
        assert_eq!(rows, [(7, "m1".to_owned(), 2), (9, "d1".to_owned(), 0)]);
        let found: Vec<(i64,)> =
            sqlx::query_as("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'blue*'")
                .fetch_all(w)
                .await
                .unwrap();
        assert_eq!(found, [(9,)]);
        // The indexes and triggers are back, and the index follows an edit.
        let objects: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_schema WHERE tbl_name = 'messages' AND type IN ('index', 'trigger')
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        )
        .fetch_all(w)
        .await
        .unwrap();
        let objects: Vec<&str> = objects.iter().map(|(n,)| n.as_str()).collect();
        assert_eq!(
            objects,
            [
                "messages_by_recipient",
                "messages_dm_by_sender",
                "messages_fts_delete",
                "messages_fts_update",
                "messages_idempotency",
                "messages_room_by_time",
                "messages_room_seq",
                "messages_thread"
            ]
        );
        sqlx::query("UPDATE messages SET content = 'cherry tart' WHERE id = 'm1'")
            .execute(w)
            .await
            .unwrap();
        let found: Vec<(i64,)> = sqlx::query_as(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'cherry OR apricot'",
        )
        .fetch_all(w)
        .await
        .unwrap();
        assert_eq!(found, [(7,)]);

        // Keys are on again, deferred: a message from no user passes its
        // INSERT and fails the commit, leaving nothing behind.
        let (on,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
            .fetch_one(w)
            .await
            .unwrap();
        assert_eq!(on, 1);
        let mut tx = begin_write(w).await.unwrap();
        sqlx::query(
            "INSERT OR FAIL INTO messages (id, room_id, sender_id, content, seq, created_at)
             VALUES ('m2', 'r1', 'nobody', 'x', 2, '2026-12-01T00:00:03Z')",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let refused = tx.commit().await.unwrap_err();
        assert!(
            refused.to_string().contains("FOREIGN KEY"),
            "the commit failed for another reason: {refused}"
        );
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
            .fetch_one(w)
            .await
            .unwrap();
        assert_eq!(count, 2);
        // dm_queue still refers to messages (its key is immediate).
        let refused = sqlx::query("DELETE FROM messages WHERE id = 'd1'")
            .execute(w)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("FOREIGN KEY"), "{refused}");
        pools.close().await;
    }
}
