//! `telepath backup --to FILE`: an online copy of the SQLite database that
//! `DATABASE_URL` names, consistent as of one moment, taken while the api
//! (or the all-in-one) keeps writing.
//!
//! SQLite's `VACUUM INTO` reads the whole database in one read transaction
//! (in WAL mode a snapshot: commits made meanwhile are not in it, and the
//! writer never waits for it) and writes it out as a new, compact database
//! file. The copy goes to a temporary file beside FILE, is synced and
//! checked (`PRAGMA integrity_check`), and only then takes FILE's name, so
//! FILE is a whole backup or absent, never half of one.
//!
//! It does not restore: that is stopping the api and putting the file in
//! the database's place (docs/OPERATIONS.md, "Backup and restore").

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

/// `telepath backup --to FILE [--force]`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy: a complete SQLite database file.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace FILE if it exists (otherwise an existing FILE is an error).
    #[arg(long)]
    pub force: bool,
}

/// What a backup wrote.
#[derive(Debug)]
pub struct Summary {
    /// The database that was copied.
    pub from: PathBuf,
    /// The file written.
    pub to: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rooms and messages (room messages and DMs) in the copy.
    pub rooms: i64,
    pub messages: i64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {}: {} bytes, {} rooms, {} messages; a consistent copy of {} (integrity_check: ok)",
            self.to.display(),
            self.bytes,
            self.rooms,
            self.messages,
            self.from.display()
        )
    }
}

/// How long the copy waits for a lock (only a checkpoint that truncates
/// the WAL holds one against readers, briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies the database at `database_url` to `args.to`.
pub async fn run(database_url: &str, args: &BackupArgs) -> anyhow::Result<Summary> {
    let source = SqliteConnectOptions::from_str(database_url)
        .context("DATABASE_URL is not an SQLite URL")?
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let from = source.get_filename().to_path_buf();
    if !from.is_file() {
        bail!(
            "no database file at {} (DATABASE_URL={database_url})",
            from.display()
        );
    }
    if args.to.exists() && !args.force {
        bail!("{} exists (--force replaces it)", args.to.display());
    }
    let partial = Partial::beside(&args.to)?;

    // One statement, one read transaction: the snapshot.
    let mut conn = source
        .connect()
        .await
        .with_context(|| format!("opening {}", from.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(partial.path.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .with_context(|| format!("copying {} (VACUUM INTO)", from.display()))?;
    drop(conn);
    reindex(&partial.path).await?;

    File::open(&partial.path)?.sync_all()?;
    let (rooms, messages) = check(&partial.path).await?;
    let bytes = std::fs::metadata(&partial.path)?.len();
    partial.install(&args.to, args.force)?;
    Ok(Summary {
        from,
        to: args.to.clone(),
        bytes,
        rooms,
        messages,
    })
}

/// Rebuilds the copy's search index. It is keyed by the messages' rowids,
/// which `VACUUM` may renumber (the messages table has a text primary key),
/// so the copy's index is built again from the copy's own rows.
async fn reindex(path: &Path) -> anyhow::Result<()> {
    let mut conn: SqliteConnection = SqliteConnectOptions::new().filename(path).connect().await?;
    let has_index: bool =
        sqlx::query_scalar("SELECT count(*) > 0 FROM sqlite_master WHERE name = 'messages_fts'")
            .fetch_one(&mut conn)
            .await?;
    if has_index {
        sqlx::query("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
            .execute(&mut conn)
            .await
            .context("rebuilding the copy's search index")?;
    }
    Ok(())
}

/// Opens the copy at `path` read-only, checks its integrity, and counts
/// its rooms and messages.
async fn check(path: &Path) -> anyhow::Result<(i64, i64)> {
    let mut conn: SqliteConnection = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    if verdict != "ok" {
        bail!("the copy failed its integrity check: {verdict}");
    }
    let rooms = sqlx::query_scalar("SELECT count(*) FROM rooms")
        .fetch_one(&mut conn)
        .await?;
    let messages = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&mut conn)
        .await?;
    Ok((rooms, messages))
}

/// The copy while it is written, beside its destination (same file system,
/// so it can be renamed there); removed on drop unless installed.
struct Partial {
    path: PathBuf,
    installed: bool,
}

impl Partial {
    /// A fresh temporary name in `to`'s directory.
    fn beside(to: &Path) -> anyhow::Result<Partial> {
        let name = to
            .file_name()
            .with_context(|| format!("--to {} names no file", to.display()))?;
        let mut partial = name.to_os_string();
        partial.push(format!(".partial-{}", std::process::id()));
        let path = to.with_file_name(partial);
        // A leftover of an earlier run with the same pid: VACUUM INTO wants no file.
        let _ = std::fs::remove_file(&path);
        Ok(Partial {
            path,
            installed: false,
        })
    }

    /// Gives the copy its final name: replacing `to` when `force`, else
    /// only if `to` still does not exist (a hard link fails if it does).
    fn install(mut self, to: &Path, force: bool) -> anyhow::Result<()> {
        if force {
            std::fs::rename(&self.path, to)?;
        } else {
            std::fs::hard_link(&self.path, to).with_context(|| {
                format!("{} appeared meanwhile (--force replaces it)", to.display())
            })?;
            std::fs::remove_file(&self.path)?;
        }
        self.installed = true;
        // The new name is durable once its directory is synced.
        let dir = match to.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
