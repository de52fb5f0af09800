//! The single writer: group commit of each room's log (messages, and the
//! edits, deletes and reaction changes that take seqs like them) and of read
//! cursors.
//!
//! Handlers queue [`Job`]s; one task takes as many as are waiting (up to
//! `TELEPATH_COMMIT_BATCH`, default 256), persists them in one
//! `BEGIN IMMEDIATE` transaction of a few statements ([`batch`]; a refused
//! job does not sink the batch, a database error does), commits, answers
//! its callers, then pushes each new message for `room:{id}` to the `rooms`
//! outbox in seq order: the outbox publishes later, and Redis being slow or
//! away never delays a reply. One task means commits
//! and pushes happen in one order, and the outbox keeps it, so every
//! subscriber sees a room's messages in seq order.
//!
//! Each job remembers its caller's trace; when traces are exported, its
//! message gets a `message.commit` span in that trace, and the message goes
//! on the bus in it, so the trace continues on every gateway that relays it.
//! [`WriterHandle::close`] stops taking jobs and commits what is queued: the
//! api's graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::SqlitePool;
use telepath_shared::bus::Outgoing;
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ChangeResult, InternalChange, InternalSend, LogEntry, Message, Receipt, room_channel,
};
use telepath_shared::telemetry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::ApiMetrics;
use crate::outbox::Outbox;

mod batch;
pub(crate) mod receipts;

/// Jobs that may wait for the writer before callers get `unavailable`.
const QUEUE: usize = 8192;
/// How long a caller waits for a place in the queue.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// One job for the writer: a room message, or a change (an edit, a delete,
/// a reaction, a read cursor), with where its outcome goes.
pub(crate) struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Done, ApiError>>,
    /// The caller's trace (when traces are exported).
    trace: Option<String>,
}

/// What a [`Job`] asks for.
pub(crate) enum Work {
    /// A room message; `server`: sent by an application backend (the
    /// server API), which needs no participant as sender.
    Send {
        room: String,
        send: InternalSend,
        server: bool,
    },
    Change(InternalChange),
}

/// What a [`Job`] made.
pub(crate) enum Done {
    Message(Message),
    Change(ChangeResult),
}
/// Handle to queue work for the writer task.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Job>,
    /// Cancelled by [`WriterHandle::close`].
    stop: CancellationToken,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

/// A send checked and ready for the writer (see [`WriterHandle::send_many`]).
pub(crate) struct Queued {
    pub(crate) room: String,
    pub(crate) send: InternalSend,
    /// The sender's trace, when traces are exported.
    pub(crate) trace: Option<String>,
    /// Sent through the server API: the sender need not be a participant
    /// (nor is held to a mute).
    pub(crate) server: bool,
}

impl WriterHandle {
    /// Persists several room messages, queued in this order (so a room's
    /// share of them gets its seqs in this order); one outcome each, in
    /// order. Sends that failed their checks keep their error.
    pub(crate) async fn send_many(
        &self,
        sends: Vec<Result<Queued, ApiError>>,
    ) -> Vec<Result<Message, ApiError>> {
        let work = sends.into_iter().map(|s| {
            s.map(|q| {
                (
                    Work::Send {
                        room: q.room,
                        send: q.send,
                        server: q.server,
                    },
                    q.trace,
                )
            })
        });
        self.run_many(work.collect())
            .await
            .into_iter()
            .map(|r| match r {
                Ok(Done::Message(m)) => Ok(m),
                Ok(Done::Change(_)) => Err(ApiError::internal("a send made a change")),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Applies several changes, queued in this order after anything queued
    /// before; one outcome each, in order.
    pub(crate) async fn change_many(
        &self,
        changes: Vec<Result<InternalChange, ApiError>>,
    ) -> Vec<Result<ChangeResult, ApiError>> {
        let work = changes.into_iter().map(|c| {
            c.map(|c| {
                let trace = c.traceparent.clone();
                (Work::Change(c), trace)
            })
        });
        self.run_many(work.collect())
            .await
            .into_iter()
            .map(|r| match r {
                Ok(Done::Change(c)) => Ok(c),
                Ok(Done::Message(_)) => Err(ApiError::internal("a change made a message")),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Queues every job (in order) and waits for each outcome.
    async fn run_many(
        &self,
        work: Vec<Result<(Work, Option<String>), ApiError>>,
    ) -> Vec<Result<Done, ApiError>> {
        let mut waiting = Vec::with_capacity(work.len());
        for w in work {
            let queued = match w {
                Ok((work, trace)) => {
                    let (reply, rx) = oneshot::channel();
                    let job = Job { work, reply, trace };
                    self.enqueue(job).await.map(|()| rx)
                }
                Err(e) => Err(e),
            };
            waiting.push(queued);
        }
        let mut outcomes = Vec::with_capacity(waiting.len());
        for w in waiting {
            outcomes.push(match w {
                Ok(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(ApiError::unavailable("the message writer stopped"))),
                Err(e) => Err(e),
            });
        }
        outcomes
    }

    async fn enqueue(&self, job: Job) -> Result<(), ApiError> {
        self.tx
            .send_timeout(job, ENQUEUE_TIMEOUT)
            .await
            .map_err(|_| ApiError::unavailable("the message writer is overloaded"))
    }

    /// Stops taking jobs, commits (and pushes to the outbox and answers)
    /// every job already queued, and returns once the writer task has finished.
    pub(crate) async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("writer lock poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Starts the writer task on `pool` (the single-connection write pool),
/// committed messages going to `outbox`. `max_batch` bounds the messages
/// of one transaction (1 turns group commit off).
pub(crate) fn spawn(
    pool: SqlitePool,
    outbox: Arc<Outbox>,
    unread: crate::notifications::UnreadSync,
    webhooks: crate::webhooks::Webhooks,
    metrics: ApiMetrics,
    max_batch: usize,
) -> WriterHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    let stop = CancellationToken::new();
    let receipts = receipts::Receipts::spawn(outbox.clone(), stop.clone());
    let task = tokio::spawn(run(
        rx,
        pool,
        Sinks {
            outbox,
            receipts,
            unread,
            webhooks,
        },
        metrics,
        max_batch.max(1),
        stop.clone(),
    ));
    WriterHandle {
        tx,
        stop,
        task: Arc::new(std::sync::Mutex::new(Some(task))),
    }
}

/// Runs until every [`WriterHandle`] is dropped, or until `stop`: then it
/// refuses new jobs and commits the queued ones before returning.
async fn run(
    mut rx: mpsc::Receiver<Job>,
    pool: SqlitePool,
    sinks: Sinks,
    metrics: ApiMetrics,
    max_batch: usize,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, max_batch) => n,
            _ = stop.cancelled() => {
                // Closing keeps what is queued readable; recv_many then ends with 0.
                rx.close();
                rx.recv_many(&mut batch, max_batch).await
            }
        };
        if n == 0 {
            break;
        }
        metrics.writer_queue.set(rx.len() as i64);
        commit_batch(&pool, &sinks, &metrics, std::mem::take(&mut batch)).await;
    }
    metrics.writer_queue.set(0);
    tracing::debug!("message writer stopped");
}

/// Where committed work goes: log entries to the `rooms` outbox, read
/// cursors that moved to the receipts' coalescer.
struct Sinks {
    outbox: Arc<Outbox>,
    receipts: receipts::Receipts,
    /// Users notified: their unread counts for gateways.
    unread: crate::notifications::UnreadSync,
    /// Message events for webhooks, queued in the batch's transaction.
    webhooks: crate::webhooks::Webhooks,
}

/// What persisting one job produced.
struct Persisted {
    /// The caller's answer; `None` for a new message, whose answer is the
    /// message itself, moved out of `entry` once it is queued for the bus.
    done: Option<Done>,
    /// The new log entry, when it made one (a repeated `client_id`, and a
    /// change that changed nothing, make none: nothing is published).
    entry: Option<LogEntry>,
    /// A read cursor that moved.
    receipt: Option<Receipt>,
}

impl Persisted {
    fn into_done(self) -> Result<Done, ApiError> {
        match (self.done, self.entry) {
            (Some(done), _) => Ok(done),
            (None, Some(LogEntry::Message(m))) => Ok(Done::Message(m)),
            (None, _) => Err(ApiError::internal("a new message went missing")),
        }
    }
}

async fn commit_batch(pool: &SqlitePool, sinks: &Sinks, metrics: &ApiMetrics, batch: Vec<Job>) {
    let started = Instant::now();
    let spans = commit_spans(&batch);
    let (outcomes, notified, hooked) = match persist_all(pool, &sinks.webhooks, &batch).await {
        Ok(persisted) => persisted,
        Err(e) => {
            // The transaction failed as a whole: nothing was committed (a
            // full database: `unavailable`, and the next batch tries again).
            let err = crate::store::db_err(e);
            for job in batch {
                let _ = job.reply.send(Err(err.clone()));
            }
            return;
        }
    };
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_size.observe(batch.len() as f64);
    // Every new log entry of the batch goes to the outbox in seq order, each in its trace.
    let mut fresh: Vec<(&LogEntry, Option<String>)> = Vec::new();
    let mut receipts = Vec::new();
    for (o, span) in outcomes.iter().zip(&spans) {
        if let Ok(p) = o {
            if let Some(entry) = &p.entry {
                fresh.push((entry, span.as_ref().and_then(telemetry::traceparent_of)));
            }
            if let Some(r) = &p.receipt {
                receipts.push(r.clone());
            }
        }
    }
    let messages = fresh
        .iter()
        .filter(|(e, _)| matches!(e, LogEntry::Message(_)))
        .count();
    metrics.messages_persisted.inc_by(messages as u64);
    let mut outgoing = outgoing(&fresh);
    outgoing.extend(crate::notifications::outgoing(&notified));
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        // The caller may have gone away; the work is committed regardless.
        let _ = job.reply.send(outcome.and_then(Persisted::into_done));
    }
    // After the answers: the outbox's task, woken by the push, then
    // publishes while they are written rather than before.
    sinks.outbox.push(outgoing);
    sinks.receipts.moved(receipts);
    sinks.unread.touch(notified.iter().map(|(user, _)| user));
    if hooked {
        sinks.webhooks.wake();
    }
}

/// One `message.commit` span per job in its caller's trace, when traces
/// are exported (none otherwise: this is the hot path).
fn commit_spans(batch: &[Job]) -> Vec<Option<tracing::Span>> {
    batch
        .iter()
        .map(|job| {
            let tp = job.trace.as_deref()?;
            let span = tracing::info_span!(
                parent: None,
                "message.commit",
                otel.kind = "internal",
                batch = batch.len()
            );
            telemetry::adopt_traceparent(&span, tp);
            Some(span)
        })
        .collect()
}

/// Committed log entries as the bus carries them, in seq order, for the
/// outbox. The outbox retries while Redis is away; an entry it drops when
/// full is safe in SQLite and reaches members through gap repair and resume.
fn outgoing(entries: &[(&LogEntry, Option<String>)]) -> Vec<Outgoing> {
    entries
        .iter()
        .map(|(e, trace)| Outgoing {
            channel: room_channel(e.room()),
            payload: Bytes::from(e.to_json()),
            traceparent: trace.clone(),
        })
        .collect()
}

/// What one batch's transaction produced: each job's outcome, the users
/// notified, and whether it queued webhook deliveries.
type Committed = (Vec<Result<Persisted, ApiError>>, batch::Notified, bool);

/// Persists the batch in one transaction (see [`batch`]), with the webhook
/// deliveries of its log entries (none unless a webhook wants them).
async fn persist_all(
    pool: &SqlitePool,
    webhooks: &crate::webhooks::Webhooks,
    batch: &[Job],
) -> Result<Committed, sqlx::Error> {
    let mut tx = crate::db::begin_write(pool).await?;
    let (outcomes, notified) = batch::persist(&mut tx, batch).await?;
    let events = webhook_events(webhooks, &outcomes);
    let hooked = !events.is_empty() && webhooks.record(&mut tx, &events).await?;
    tx.commit().await?;
    Ok((outcomes, notified, hooked))
}

/// The webhook events of the batch's new log entries (reactions are not
/// webhook events), for the kinds some webhook wants.
fn webhook_events(
    webhooks: &crate::webhooks::Webhooks,
    outcomes: &[Result<Persisted, ApiError>],
) -> Vec<crate::webhooks::Event> {
    use crate::webhooks::Event;
    use telepath_shared::protocol::WebhookEvent;
    let wants = [
        WebhookEvent::MessageCreated,
        WebhookEvent::MessageEdited,
        WebhookEvent::MessageDeleted,
    ]
    .map(|e| webhooks.wants(e));
    if !wants.contains(&true) {
        return Vec::new();
    }
    outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok()?.entry.as_ref())
        .filter_map(|entry| match entry {
            LogEntry::Message(m) if wants[0] => Event::new(WebhookEvent::MessageCreated, m),
            LogEntry::MessageEdited(e) if wants[1] => Event::new(WebhookEvent::MessageEdited, e),
            LogEntry::MessageDeleted(e) if wants[2] => Event::new(WebhookEvent::MessageDeleted, e),
            _ => None,
        })
        .collect()
}
