//! A connection's handle: what the hub, the relay and the send pipe hold to
//! queue frames to one connection or close it, and the state its reader and
//! writer share ([`Control`]).
//!
//! "Queue" is the one verb for giving a connection a frame:
//! [`SessionHandle::queue`] never waits (fan-out must not wait on a client),
//! and a full queue closes the connection as a slow consumer (`bye`
//! slow_consumer, 1013). Only the frames the reader owes the client (pongs,
//! the close echo) wait for room instead ([`SessionHandle::queue_when_room`]).
//!
//! Every connection holds one of these for its life, so their sizes are
//! pinned by tests (see `session.rs`): a handle is two pointers, a queued
//! frame a pointer and a tag.

pub(crate) mod outbound;
pub(crate) mod queue;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use telepath_shared::protocol::{ByeReason, CloseCode, ServerFrame, UserRef};
use tokio::sync::Notify;

use crate::metrics::{GatewayMetrics, OutKind};
pub(crate) use outbound::{Op, Outbound};

/// A connection's id on this node (the hub's key; clients and presence know
/// the connection by its `conn_id` string instead).
pub(crate) type ConnId = u64;

/// Why a session closes: the close code, and the `bye` sent before it.
pub(crate) type CloseReason = (CloseCode, Option<ByeReason>);

/// A cheap handle to queue frames to a connection or close it.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    tx: queue::Sender<Outbound>,
    control: Arc<Control>,
}

/// What a session's reader, its writer and its handles share.
pub(crate) struct Control {
    /// Set once the session must close.
    pub(crate) closing: Closing,
    /// Why it closes: the first caller of [`SessionHandle::close`] wins.
    reason: Mutex<Option<CloseReason>>,
    /// Milliseconds since `started` at which the client last sent anything.
    last_seen_ms: AtomicU64,
    /// Milliseconds since `started` of the client's last data frame (pings
    /// and pongs keep a connection alive but do not make it active).
    last_active_ms: AtomicU64,
    /// Reported idle to presence (no data frame for `away_after`).
    idle: AtomicBool,
    /// The token's `exp` (Unix seconds), moved by `refresh` (which raises
    /// the outbound queue's signal, so the writer re-arms its timer).
    expiry: AtomicI64,
    /// This connection's requests waiting for the api in the send pipe
    /// (sends and DMs: see `session/request.rs`).
    pipelined: AtomicU32,
    /// Signalled each time one of them is answered.
    answered: Notify,
    pub(crate) started: Instant,
    /// This connection's id as clients and presence know it.
    pub(crate) conn_id: String,
    /// Whose connection it is.
    pub(crate) user: UserRef,
}

/// A once-only signal that the session must close: a flag and a `Notify`
/// inside [`Control`], where tokio-util's `CancellationToken` would be a
/// separate 112-byte allocation per connection (a node of a token tree that
/// sessions do not use).
#[derive(Default)]
pub(crate) struct Closing {
    set: AtomicBool,
    notify: Notify,
}

impl Closing {
    fn cancel(&self) {
        if !self.set.swap(true, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Returns once [`Closing::cancel`] has been called.
    pub(crate) async fn cancelled(&self) {
        loop {
            // Registered before the check, so a cancel in between wakes it.
            let mut notified = std::pin::pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl Control {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Why the session closes, if it does.
    pub(crate) fn reason(&self) -> Option<CloseReason> {
        *self.reason.lock().expect("session lock poisoned")
    }

    /// Records `reason` unless one was given first, and marks the session closing.
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut slot = self.reason.lock().expect("session lock poisoned");
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.closing.cancel();
    }

    /// The token's `exp` (Unix seconds).
    pub(crate) fn expiry(&self) -> i64 {
        self.expiry.load(Ordering::Relaxed)
    }

    /// Time since the client last sent anything.
    pub(crate) fn silent_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Time since the client's last data frame.
    pub(crate) fn inactive_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Marks the connection idle; true when it was not idle until now.
    pub(crate) fn become_idle(&self) -> bool {
        !self.idle.swap(true, Ordering::Relaxed)
    }

    /// Whether the connection is idle (as last reported to presence).
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// Returns once fewer than `below` of the connection's requests wait in the send pipe.
    pub(crate) async fn pipelined_below(&self, below: u32) {
        loop {
            // Registered before the check, so an answer in between wakes it.
            let mut answered = std::pin::pin!(self.answered.notified());
            answered.as_mut().enable();
            if self.pipelined.load(Ordering::Acquire) < below {
                return;
            }
            answered.await;
        }
    }

    /// One more request of this connection waits in the send pipe.
    pub(crate) fn pipeline_started(&self) {
        self.pipelined.fetch_add(1, Ordering::AcqRel);
    }

    /// One of them was answered.
    pub(crate) fn pipeline_answered(&self) {
        self.pipelined.fetch_sub(1, Ordering::AcqRel);
        self.answered.notify_waiters();
    }
}

impl SessionHandle {
    /// A new connection's handle, its queue of `capacity` frames (the
    /// receiver is the writer's), for `user` with a token expiring at `exp`.
    pub(crate) fn new(
        capacity: usize,
        conn_id: String,
        user: UserRef,
        exp: i64,
    ) -> (SessionHandle, queue::Receiver<Outbound>) {
        let (tx, rx) = queue::queue(capacity);
        let control = Arc::new(Control {
            closing: Closing::default(),
            reason: Mutex::new(None),
            last_seen_ms: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(0),
            idle: AtomicBool::new(false),
            expiry: AtomicI64::new(exp),
            pipelined: AtomicU32::new(0),
            answered: Notify::new(),
            started: Instant::now(),
            conn_id,
            user,
        });
        (SessionHandle { tx, control }, rx)
    }

    /// The state this connection's reader and writer share.
    pub(crate) fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Queues `frame` without waiting; a full queue closes the session as
    /// a slow consumer. Returns whether the frame was queued (a session
    /// that is closing already takes nothing, and that is no failure).
    pub(crate) fn queue(&self, frame: Outbound) -> bool {
        match self.tx.try_push(frame) {
            Ok(()) | Err(queue::PushError::Closed(_)) => true,
            Err(queue::PushError::Full(_)) => {
                self.close_slow();
                false
            }
        }
    }

    /// Serialises `frame`, counts it, and queues it (see [`SessionHandle::queue`]).
    pub(crate) fn queue_frame(&self, frame: &ServerFrame, metrics: &GatewayMetrics) -> bool {
        metrics.frames_out(OutKind::of_type(frame.name()), 1);
        self.queue(Outbound::local(Bytes::from(frame.to_json())))
    }

    /// Queues a frame the reader owes the client (a pong, the close echo),
    /// waiting for room: a client that floods pings without reading is
    /// slowed down, not buffered. Fails once the writer is gone.
    pub(crate) async fn queue_when_room(&self, frame: Outbound) -> Result<(), Outbound> {
        self.tx.push(frame).await
    }

    /// Closes the session as a slow consumer: it cannot keep up.
    pub(crate) fn close_slow(&self) {
        self.close(CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer));
    }

    /// Closes the session with `code`, sending `bye` first when `bye` is set.
    pub(crate) fn close(&self, code: CloseCode, bye: Option<ByeReason>) {
        self.control.close((code, bye));
        self.tx.signal();
    }

    /// Marks the session closing (with whatever reason was given first) and
    /// wakes the writer, which waits on its queue, to close.
    pub(crate) fn end(&self) {
        self.control.closing.cancel();
        self.tx.signal();
    }

    /// The session's token now expires at `exp` (Unix seconds).
    pub(crate) fn set_expiry(&self, exp: i64) {
        self.control.expiry.store(exp, Ordering::Relaxed);
        // The writer re-reads the expiry when its queue is signalled.
        self.tx.signal();
    }

    /// The client sent something: it is alive.
    pub(crate) fn touch(&self) {
        let now = self.control.now_ms();
        self.control.last_seen_ms.store(now, Ordering::Relaxed);
    }

    /// The client sent a data frame: it is active. Returns true when the
    /// connection was idle until now (the caller reports it active again).
    pub(crate) fn activity(&self) -> bool {
        let now = self.control.now_ms();
        self.control.last_active_ms.store(now, Ordering::Relaxed);
        self.control.idle.swap(false, Ordering::Relaxed)
    }

    /// A handle on a queue of `capacity` frames with no session behind it,
    /// for unit tests of the hub.
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (SessionHandle, queue::Receiver<Outbound>) {
        let user = UserRef {
            id: "u".into(),
            name: "u".into(),
        };
        Self::new(capacity, "c".into(), user, i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn closing_wakes_every_waiter_before_and_after_the_cancel() {
        let closing = Arc::new(Closing::default());
        let early: Vec<_> = (0..3)
            .map(|_| {
                let c = closing.clone();
                tokio::spawn(async move { c.cancelled().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!closing.is_cancelled());
        assert!(
            early.iter().all(|t| !t.is_finished()),
            "nothing cancelled yet"
        );
        closing.cancel();
        closing.cancel();
        assert!(closing.is_cancelled());
        for t in early {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("a waiter from before the cancel wakes")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), closing.cancelled())
            .await
            .expect("a wait after the cancel returns at once");
    }

    #[test]
    fn the_first_close_reason_wins_and_a_full_queue_closes_as_slow_consumer() {
        let (handle, _rx) = SessionHandle::detached(1);
        assert!(handle.queue(Outbound::local(Bytes::from_static(b"1"))));
        assert!(!handle.queue(Outbound::local(Bytes::from_static(b"2"))));
        let slow = (CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer));
        assert_eq!(handle.control().reason(), Some(slow));
        handle.close(CloseCode::Admin, Some(ByeReason::Admin));
        assert_eq!(
            handle.control().reason(),
            Some(slow),
            "the first reason stays"
        );
        assert!(handle.control().closing.is_cancelled());
    }

    /// What every connection holds for its life: a pointer and a tag per
    /// queued frame, two pointers per handle, one flag and Notify for the
    /// close (a CancellationToken would allocate a tree node).
    #[test]
    fn per_connection_types_keep_their_size() {
        use std::mem::size_of;
        assert_eq!(size_of::<Outbound>(), 16);
        assert_eq!(size_of::<SessionHandle>(), 16);
        assert_eq!(size_of::<Closing>(), 40, "a flag and a Notify");
        assert!(
            size_of::<Control>() <= 208,
            "Control is {} bytes",
            size_of::<Control>()
        );
    }
}
