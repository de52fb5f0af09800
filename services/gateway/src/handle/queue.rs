//! A connection's outbound queue: bounded, fed by many (fan-out, replies,
//! the reader's pongs), drained by one (the writer). It also carries a
//! signal: a flag any sender can raise to wake the writer without an item
//! (the session is closing, or its token's expiry moved), so the writer
//! waits on one thing, not on the queue and two `Notify`s each turn.
//!
//! Why not tokio's mpsc: it allocates its shared state (cache-line padded,
//! 512 bytes) and a first block of 32 slots (544 bytes) when the channel is
//! made, so every idle connection would hold a kilobyte of queue. flume's
//! channel allocates lazily but makes a waker hook (an `Arc`) each time the
//! receiver waits, which is once per frame on a quiet connection. This is a
//! `VecDeque` under a mutex: it holds memory only while frames are queued
//! (a few slots stay after the first, larger buffers go once drained), wakes
//! the writer once per batch, and allocates nothing per frame.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tokio::sync::Notify;

/// Slots a drained queue keeps; a larger buffer (after a burst) is freed.
const KEEP: usize = 8;

/// A queue of at most `capacity` items.
pub(crate) fn queue<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            receiver: None,
            signal_waiter: None,
            signalled: false,
            closed: false,
        }),
        room: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when a pop makes room in a full queue, and on close.
    room: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// The writer, waiting for an item or the signal.
    receiver: Option<Waker>,
    /// The writer, waiting for the signal only ([`Receiver::signalled`]).
    signal_waiter: Option<Waker>,
    /// Raised by [`Sender::signal`], lowered when [`Receiver::next`] reports it.
    signalled: bool,
    /// The receiver is gone: nothing will be read again.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().expect("queue lock poisoned")
    }
}

impl<T> State<T> {
    /// The next item, and whether the queue was full before it left.
    fn pop(&mut self) -> Option<(T, bool)> {
        let was_full = self.items.len() >= self.capacity;
        let item = self.items.pop_front()?;
        if self.items.is_empty() && self.items.capacity() > KEEP {
            self.items = VecDeque::new();
        }
        Some((item, was_full))
    }
}

/// Why [`Sender::try_push`] refused an item (it comes back).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError<T> {
    Full(T),
    Closed(T),
}

/// The producing side; clones share the queue.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender(self.0.clone())
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or closed.
    pub(crate) fn try_push(&self, item: T) -> Result<(), PushError<T>> {
        let waker = {
            let mut state = self.0.lock();
            if state.closed {
                return Err(PushError::Closed(item));
            }
            if state.items.len() >= state.capacity {
                return Err(PushError::Full(item));
            }
            state.items.push_back(item);
            state.receiver.take()
        };
        // Outside the lock; later pushes find no waker until the writer waits again.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Raises the signal and wakes the writer, whatever it waits for.
    pub(crate) fn signal(&self) {
        let (receiver, waiter) = {
            let mut state = self.0.lock();
            state.signalled = true;
            (state.receiver.take(), state.signal_waiter.take())
        };
        receiver.into_iter().chain(waiter).for_each(Waker::wake);
    }

    /// Queues `item`, waiting for room; gives it back if the queue closes.
    pub(crate) async fn push(&self, mut item: T) -> Result<(), T> {
        loop {
            // Registered before the attempt, so a pop in between is not missed.
            let mut room = pin!(self.0.room.notified());
            room.as_mut().enable();
            match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(back)) => return Err(back),
                Err(PushError::Full(back)) => {
                    item = back;
                    room.await;
                }
            }
        }
    }
}

/// The consuming side. Dropping it closes the queue and drops what is queued.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next item, if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let popped = self.0.lock().pop();
        popped.map(|(item, was_full)| self.made_room(item, was_full))
    }

    /// The signal if it is raised (it is lowered), else the next item,
    /// waiting for either.
    pub(crate) async fn next(&mut self) -> Next<T> {
        poll_fn(|cx| {
            let mut state = self.0.lock();
            if std::mem::take(&mut state.signalled) {
                return Poll::Ready(Next::Signal);
            }
            match state.pop() {
                Some((item, was_full)) => {
                    drop(state);
                    Poll::Ready(Next::Item(self.made_room(item, was_full)))
                }
                None => {
                    register(&mut state.receiver, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Returns once the signal is raised (it stays raised for [`Receiver::next`]);
    /// items arriving meanwhile do not wake it.
    pub(crate) async fn signalled(&mut self) {
        poll_fn(|cx| {
            let mut state = self.0.lock();
            if state.signalled {
                return Poll::Ready(());
            }
            register(&mut state.signal_waiter, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// How many items are queued.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }

    fn made_room(&self, item: T, was_full: bool) -> T {
        if was_full {
            self.0.room.notify_one();
        }
        item
    }
}

/// What [`Receiver::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    Item(T),
    Signal,
}

/// Keeps `waker` in `slot`, cloning it only when it would wake another task.
fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.0.lock();
            state.closed = true;
            state.receiver = None;
            state.signal_waiter = None;
            std::mem::take(&mut state.items)
        };
        drop(items);
        self.0.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_come_out_in_order_and_a_full_queue_refuses_more() {
        let (tx, mut rx) = queue(2);
        assert_eq!(tx.try_push(1), Ok(()));
        assert_eq!(tx.clone().try_push(2), Ok(()));
        assert_eq!(tx.try_push(3), Err(PushError::Full(3)));
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(tx.try_push(3), Ok(()));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn a_dropped_receiver_closes_the_queue_and_drops_what_was_queued() {
        let (tx, rx) = queue(4);
        let item = Arc::new(());
        tx.try_push(item.clone()).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1, "the queued item was dropped");
        assert!(matches!(tx.try_push(item), Err(PushError::Closed(_))));
    }

    #[test]
    fn memory_is_taken_only_while_items_are_queued() {
        let (tx, mut rx) = queue(1024);
        let capacity = |rx: &Receiver<u64>| rx.0.lock().items.capacity();
        assert_eq!(capacity(&rx), 0, "nothing allocated for an empty queue");
        for i in 0..100 {
            tx.try_push(i).unwrap();
        }
        assert!(capacity(&rx) >= 100);
        while rx.try_recv().is_some() {}
        assert_eq!(capacity(&rx), 0, "a burst's buffer is freed once drained");
        tx.try_push(1).unwrap();
        rx.try_recv().unwrap();
        assert!(capacity(&rx) <= KEEP, "a small buffer is kept");
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_from_another_task() {
        let (tx, mut rx) = queue(4);
        let pusher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.try_push(7).unwrap();
            tx.try_push(8).unwrap();
            tx
        });
        assert_eq!(rx.next().await, Next::Item(7));
        assert_eq!(rx.next().await, Next::Item(8));
        let _tx = pusher.await.unwrap();
    }

    #[tokio::test]
    async fn a_signal_wakes_the_receiver_before_queued_items_and_only_once() {
        let (tx, mut rx) = queue(4);
        tx.try_push(1).unwrap();
        tx.signal();
        tx.signal();
        assert_eq!(rx.next().await, Next::Signal, "the signal comes first");
        assert_eq!(rx.next().await, Next::Item(1));
        let waiting = tokio::spawn(async move {
            let got = rx.next().await;
            (got, rx)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        tx.signal();
        let (got, mut rx) = waiting.await.unwrap();
        assert_eq!(
            got,
            Next::Signal,
            "a waiting receiver is woken by the signal"
        );
        // `signalled` waits through pushes and leaves the signal raised.
        let waiting = tokio::spawn(async move {
            rx.signalled().await;
            rx
        });
        tx.try_push(2).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "an item does not end the wait");
        tx.signal();
        let mut rx = waiting.await.unwrap();
        assert_eq!(rx.next().await, Next::Signal);
        assert_eq!(rx.next().await, Next::Item(2));
    }

    #[tokio::test]
    async fn push_waits_for_room_and_fails_once_the_queue_closes() {
        let (tx, mut rx) = queue(1);
        tx.try_push(1).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.push(2).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no room yet");
        assert_eq!(rx.next().await, Next::Item(1));
        assert_eq!(waiting.await.unwrap(), Ok(()), "the pop made room");
        assert_eq!(rx.try_recv(), Some(2));

        tx.try_push(3).unwrap();
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.push(4).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(blocked.await.unwrap(), Err(4), "closed while waiting");
    }
}
