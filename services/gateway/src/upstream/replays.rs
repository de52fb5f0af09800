//! Join replays, read once per room: after a gateway dies, its clients all
//! join again with `since`, most of them with nearly the same one. A
//! room's replay read is shared (single flight): a join whose missing
//! messages a read in progress or just done covers takes them from it;
//! only one that it does not cover reads for itself (and others may then
//! share that read). A reconnect storm costs about one history read per
//! room instead of one per client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telepath_shared::http::ApiError;
use telepath_shared::protocol::LogEntry;
use tokio::sync::OnceCell;

use super::ApiClient;

/// How long a finished read serves later joins.
const FRESH_FOR: Duration = Duration::from_secs(2);

/// One history read of a room: the messages after `after`, up to `limit`.
struct Read {
    after: i64,
    limit: i64,
    started: Instant,
    page: OnceCell<Result<Arc<Vec<LogEntry>>, ApiError>>,
}

impl Read {
    /// Whether this read's messages run from `since + 1` at least to `upto`
    /// (once done), or could (while in flight).
    fn may_cover(&self, since: i64, upto: i64) -> bool {
        self.after <= since
            && upto - self.after <= self.limit
            && self.started.elapsed() < FRESH_FOR
            && self.page.get().is_none_or(|page| {
                page.as_ref()
                    .is_ok_and(|m| m.last().is_some_and(|last| last.seq() >= upto))
            })
    }
}

/// The latest replay read of each room; cheap to clone.
#[derive(Clone)]
pub(crate) struct Replays {
    api: ApiClient,
    reads: Arc<Mutex<HashMap<String, Arc<Read>>>>,
}

impl Replays {
    pub(crate) fn new(api: ApiClient) -> Self {
        Replays {
            api,
            reads: Arc::default(),
        }
    }

    /// The log entries (messages and changes) of `room` in `(since, upto]`, in seq order, from a
    /// shared read when one covers them. `limit` bounds a read (the replay
    /// cap); the caller checks `upto - since` against it first.
    pub(crate) async fn replay(
        &self,
        room: &str,
        since: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<LogEntry>, ApiError> {
        let read = self.read_for(room, since, upto, limit);
        let page = read
            .page
            .get_or_init(|| async {
                self.api
                    .history(room, read.after, None, read.limit)
                    .await
                    .map(|p| Arc::new(p.entries))
            })
            .await;
        match page {
            Ok(entries) if entries.last().is_some_and(|m| m.seq() >= upto) => Ok(entries
                .iter()
                .filter(|m| m.seq() > since && m.seq() <= upto)
                .cloned()
                .collect()),
            // Read before `upto` was committed: read for this join alone.
            Ok(_) => self.own(room, since, upto, limit).await,
            Err(e) => Err(e.clone()),
        }
    }

    /// A read of `room` that may cover `(since, upto]`: the latest one if
    /// it may, else a new one from `since` (which later joins may share).
    fn read_for(&self, room: &str, since: i64, upto: i64, limit: i64) -> Arc<Read> {
        let mut reads = self.reads.lock().expect("replays lock poisoned");
        if let Some(read) = reads.get(room)
            && read.may_cover(since, upto)
        {
            return read.clone();
        }
        // Forget the reads that serve no one any more.
        reads.retain(|_, r| r.started.elapsed() < FRESH_FOR);
        let read = Arc::new(Read {
            after: since,
            limit,
            started: Instant::now(),
            page: OnceCell::new(),
        });
        reads.insert(room.to_owned(), read.clone());
        read
    }

    /// A read for one join only.
    async fn own(
        &self,
        room: &str,
        since: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<LogEntry>, ApiError> {
        let page = self.api.history(room, since, None, limit).await?;
        Ok(page
            .entries
            .into_iter()
            .filter(|m| m.seq() <= upto)
            .collect())
    }
}
