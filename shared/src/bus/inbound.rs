//! A node's inbound queue: what its subscription delivered, waiting for
//! the node's dispatcher. The bus fills it on its connection's read path,
//! so it never waits: past its bound in messages or in bytes a message is
//! dropped, counted, and its channel remembered, so the node can read that
//! channel's losses back from the api ([`Inbound::take_lost`]) instead of
//! losing them silently.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use super::BusMessage;

/// How many received messages may wait for the node's dispatcher.
pub const DEFAULT_INBOUND_CAPACITY: usize = 65_536;
/// How many bytes of received messages may wait for it.
pub const DEFAULT_INBOUND_BYTES: usize = 64 * 1024 * 1024;

/// What the two ends share.
struct Gauge {
    bytes: AtomicUsize,
    max_bytes: usize,
    dropped: AtomicU64,
    /// Channels that lost a message to a full queue since the last look.
    lost: Mutex<HashSet<String>>,
}

/// The receiving end: what this node subscribed to.
pub struct Inbound {
    rx: mpsc::Receiver<BusMessage>,
    gauge: Arc<Gauge>,
}

/// The bus's end.
pub(crate) struct InboundSender {
    tx: mpsc::Sender<BusMessage>,
    gauge: Arc<Gauge>,
}

/// The receiver went away.
pub(crate) struct Closed;

/// A queue of at most `capacity` messages and [`DEFAULT_INBOUND_BYTES`].
pub(crate) fn inbound(capacity: usize) -> (InboundSender, Inbound) {
    inbound_bounded(capacity, DEFAULT_INBOUND_BYTES)
}

/// A queue of at most `capacity` messages and `max_bytes` bytes of them.
pub(crate) fn inbound_bounded(capacity: usize, max_bytes: usize) -> (InboundSender, Inbound) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let gauge = Arc::new(Gauge {
        bytes: AtomicUsize::new(0),
        max_bytes,
        dropped: AtomicU64::new(0),
        lost: Mutex::new(HashSet::new()),
    });
    (
        InboundSender {
            tx,
            gauge: gauge.clone(),
        },
        Inbound { rx, gauge },
    )
}

/// What a message weighs in the byte bound.
fn weight(msg: &BusMessage) -> usize {
    msg.payload.len() + msg.channel.len()
}

impl InboundSender {
    /// Queues `msg`, or drops it (counted, its channel remembered) when the
    /// queue is full in messages or in bytes.
    pub(crate) fn offer(&self, msg: BusMessage) -> Result<(), Closed> {
        if self.tx.is_closed() {
            return Err(Closed);
        }
        let size = weight(&msg);
        let before = self.gauge.bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > self.gauge.max_bytes {
            self.gauge.bytes.fetch_sub(size, Ordering::Relaxed);
            self.lose(msg.channel);
            return Ok(());
        }
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msg)) => {
                self.gauge.bytes.fetch_sub(size, Ordering::Relaxed);
                self.lose(msg.channel);
                Ok(())
            }
            Err(TrySendError::Closed(_)) => {
                self.gauge.bytes.fetch_sub(size, Ordering::Relaxed);
                Err(Closed)
            }
        }
    }

    fn lose(&self, channel: String) {
        self.gauge.dropped.fetch_add(1, Ordering::Relaxed);
        self.gauge
            .lost
            .lock()
            .expect("inbound lock")
            .insert(channel);
    }

    /// Messages dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.gauge.dropped.load(Ordering::Relaxed)
    }
}

impl Inbound {
    /// The next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        let msg = self.rx.recv().await?;
        self.gauge.bytes.fetch_sub(weight(&msg), Ordering::Relaxed);
        Some(msg)
    }

    /// Waits for a message, then takes up to `limit` of those waiting into
    /// `buf`; returns how many (0 once the bus is gone).
    pub async fn recv_many(&mut self, buf: &mut Vec<BusMessage>, limit: usize) -> usize {
        let start = buf.len();
        let n = self.rx.recv_many(buf, limit).await;
        let bytes: usize = buf[start..].iter().map(weight).sum();
        self.gauge.bytes.fetch_sub(bytes, Ordering::Relaxed);
        n
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Result<BusMessage, TryRecvError> {
        let msg = self.rx.try_recv()?;
        self.gauge.bytes.fetch_sub(weight(&msg), Ordering::Relaxed);
        Ok(msg)
    }

    /// Whether the bus is gone.
    pub fn is_closed(&self) -> bool {
        self.rx.is_closed()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Bytes of messages waiting.
    pub fn bytes(&self) -> usize {
        self.gauge.bytes.load(Ordering::Relaxed)
    }

    /// The channels that lost a message to a full queue since the last call.
    pub fn take_lost(&self) -> Vec<String> {
        let mut lost = self.gauge.lost.lock().expect("inbound lock");
        lost.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::bus::Meta;

    fn msg(channel: &str, len: usize) -> BusMessage {
        BusMessage {
            channel: channel.to_owned(),
            payload: Bytes::from(vec![b'x'; len]),
            meta: Meta::default(),
        }
    }

    #[tokio::test]
    async fn bounded_in_messages_and_in_bytes_and_losses_name_their_channels() {
        let (tx, mut rx) = inbound_bounded(3, 250);
        assert!(tx.offer(msg("room:a", 94)).is_ok()); // 100 bytes
        assert!(tx.offer(msg("room:b", 94)).is_ok()); // 200
        // 300 bytes would be over the bound: dropped, though a slot is free.
        assert!(tx.offer(msg("room:c", 94)).is_ok());
        assert!(tx.offer(msg("room:d", 44)).is_ok()); // 250: fits
        // The slots are full now.
        assert!(tx.offer(msg("user:e", 1)).is_ok());
        assert_eq!(tx.dropped(), 2);
        let mut lost = rx.take_lost();
        lost.sort();
        assert_eq!(lost, ["room:c", "user:e"]);
        assert!(rx.take_lost().is_empty(), "taken once");
        assert_eq!((rx.len(), rx.bytes()), (3, 250));
        assert_eq!(rx.recv().await.unwrap().channel, "room:a");
        assert_eq!(rx.bytes(), 150);
        assert!(tx.offer(msg("room:f", 94)).is_ok());
        assert_eq!((rx.len(), rx.bytes(), tx.dropped()), (3, 250, 2));
        drop(rx);
        assert!(tx.offer(msg("room:g", 1)).is_err());
    }
}
