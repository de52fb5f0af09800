//! Read receipts, coalesced. A reader's cursor can move many times a second
//! (every message they see); the room hears about it at most once per
//! [`WINDOW`] per reader: the first move at once, the later ones within the
//! window folded into one `receipt` with the latest seq, published when the
//! window ends. Receipts are not in the room's log (they carry no seq of
//! their own); the cursor itself is committed before the `read` is answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use telepath_shared::bus::Outgoing;
use telepath_shared::protocol::{Receipt, ServerFrame, room_channel};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// At most one receipt per reader and room in this long.
pub(crate) const WINDOW: Duration = Duration::from_millis(250);

/// Most (room, reader) pairs remembered; beyond, the oldest windows are
/// forgotten (their pending receipt published first).
const MAX_TRACKED: usize = 100_000;

/// The coalescer; cheap to clone.
#[derive(Clone)]
pub(crate) struct Receipts {
    inner: Arc<Mutex<State>>,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct State {
    /// (room, user id) -> when its last receipt went out, and the one waiting.
    readers: HashMap<(String, String), Reader>,
}

struct Reader {
    sent_at: Instant,
    waiting: Option<Receipt>,
}

impl Receipts {
    /// Starts the task that publishes the receipts held back; it ends with `stop`.
    pub(crate) fn spawn(outbox: Arc<Outbox>, stop: CancellationToken) -> Self {
        let receipts = Receipts {
            inner: Arc::default(),
            outbox,
        };
        let ticker = receipts.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WINDOW / 2);
            loop {
                tokio::select! {
                    _ = tick.tick() => ticker.flush(false),
                    _ = stop.cancelled() => return ticker.flush(true),
                }
            }
        });
        receipts
    }

    /// Cursors that moved in a commit: each goes out now, or when its
    /// reader's window ends.
    pub(crate) fn moved(&self, receipts: Vec<Receipt>) {
        if receipts.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut state = self.inner.lock().expect("receipts lock poisoned");
            for r in receipts {
                let key = (r.room.clone(), r.user.id.clone());
                match state.readers.get_mut(&key) {
                    Some(reader) if now.duration_since(reader.sent_at) < WINDOW => {
                        reader.waiting = Some(r);
                    }
                    Some(reader) => {
                        reader.sent_at = now;
                        reader.waiting = None;
                        out.push(r);
                    }
                    None => {
                        if state.readers.len() >= MAX_TRACKED {
                            // Forget the quiet ones; what they held goes out now.
                            state.readers.retain(|_, reader| {
                                if let Some(w) = reader.waiting.take() {
                                    out.push(w);
                                }
                                false
                            });
                        }
                        state.readers.insert(
                            key,
                            Reader {
                                sent_at: now,
                                waiting: None,
                            },
                        );
                        out.push(r);
                    }
                }
            }
        }
        self.publish(out);
    }

    /// Publishes the receipts whose window ended (all of them when `all`),
    /// and forgets readers quiet for a whole window.
    fn flush(&self, all: bool) {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut state = self.inner.lock().expect("receipts lock poisoned");
            state.readers.retain(|_, reader| {
                let ended = all || now.duration_since(reader.sent_at) >= WINDOW;
                if !ended {
                    return true;
                }
                match reader.waiting.take() {
                    Some(w) => {
                        out.push(w);
                        reader.sent_at = now;
                        true
                    }
                    None => false,
                }
            });
        }
        self.publish(out);
    }

    fn publish(&self, receipts: Vec<Receipt>) {
        if receipts.is_empty() {
            return;
        }
        let out: Vec<Outgoing> = receipts
            .into_iter()
            .map(|r| Outgoing {
                channel: room_channel(&r.room),
                payload: Bytes::from(ServerFrame::Receipt(r).to_json()),
                traceparent: None,
            })
            .collect();
        self.outbox.push(out);
    }
}
