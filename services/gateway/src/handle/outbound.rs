//! One frame queued to a connection: a pointer and a tag, 16 bytes a queue
//! slot, whatever the frame's size. Fan-out queues the same [`Outbound`] to
//! every member of a room: the serialised frame is shared, never copied.

use std::sync::Arc;

use bytes::Bytes;

/// One frame queued to a connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outbound {
    shared: Arc<Shared>,
    pub(crate) op: Op,
}

/// What every connection a frame goes to shares.
#[derive(Debug, PartialEq)]
struct Shared {
    frame: Bytes,
    /// When it was published on the bus (Unix µs), for the fan-out latency;
    /// 0 for frames made on this node (replies, replays).
    published_us: u64,
}

/// How an [`Outbound`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Text,
    /// The answer to a client's ping.
    Pong,
    /// The echo of a client's close frame: the last frame written.
    CloseEcho,
}

impl Outbound {
    /// A text frame made on this node.
    pub(crate) fn local(frame: Bytes) -> Self {
        Self::new(frame, 0, Op::Text)
    }

    /// A text frame from the bus, published at `published_us`.
    pub(crate) fn bus(frame: Bytes, published_us: u64) -> Self {
        Self::new(frame, published_us, Op::Text)
    }

    /// A control frame (`Pong`, `CloseEcho`) owed to the client.
    pub(crate) fn control(payload: Bytes, op: Op) -> Self {
        Self::new(payload, 0, op)
    }

    fn new(frame: Bytes, published_us: u64, op: Op) -> Self {
        Outbound {
            shared: Arc::new(Shared {
                frame,
                published_us,
            }),
            op,
        }
    }

    /// The frame's payload.
    pub(crate) fn frame(&self) -> &Bytes {
        &self.shared.frame
    }

    /// When it was published on the bus (Unix µs); 0 when made on this node.
    pub(crate) fn published_us(&self) -> u64 {
        self.shared.published_us
    }
}
