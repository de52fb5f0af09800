//! Opening the SQLite database: WAL, a single-connection write pool next to a
//! read pool, the embedded migrations from `migrations/`, and the
//! checkpointer.
//!
//! The writer never checkpoints (`wal_autocheckpoint = 0`): a checkpoint
//! copies the WAL into the database file and syncs it, and on the writer's
//! connection that would stall whichever group commit crossed the WAL's
//! threshold (several milliseconds every few hundred commits under load).
//! A connection of its own runs a passive checkpoint every
//! [`CHECKPOINT_EVERY`] instead, beside the writer, which keeps appending.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
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
    /// Closes every connection; the last to close checkpoints the WAL.
    pub(crate) async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
        self.checkpoint.close().await;
    }
}

/// Opens `url` (creating the file if needed), migrates it, starts the
/// checkpointer, and returns the pools.
pub(crate) async fn open(url: &str) -> anyhow::Result<Pools> {
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
        .connect_with(
            opts.clone()
                .pragma("wal_autocheckpoint", "0")
                .pragma("journal_size_limit", WAL_SIZE_LIMIT),
        )
        .await?;
    sqlx::migrate!("../../migrations").run(&write).await?;
    let checkpointer = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(opts.clone())
        .await?;
    tokio::spawn(checkpoint(checkpointer.clone()));
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(opts.read_only(true))
        .await?;
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
