//! Opening the SQLite database: WAL, a single-connection write pool next to a
//! read pool, and the embedded migrations from `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Opens `url` (creating the file if needed), migrates it, and returns
/// `(read pool, write pool)`.
pub(crate) async fn open(url: &str) -> anyhow::Result<(SqlitePool, SqlitePool)> {
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
        .connect_with(opts.clone())
        .await?;
    sqlx::migrate!("../../migrations").run(&write).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(opts.read_only(true))
        .await?;
    Ok((read, write))
}
