//! The bus: at-most-once publish/subscribe between Telepath nodes.
//!
//! A node publishes already-serialised frames to channels (`room:{id}`,
//! `user:{id}`, `broadcast`, `node:{id}`) and receives the channels it has
//! subscribed to on one bounded inbound stream. Two implementations:
//! [`memory::MemoryBroker`] for the all-in-one binary and fast tests, and
//! [`redis::RedisBus`] for a cluster of nodes.
//!
//! Every message travels with its [`Meta`]: when it was published (for the
//! fan-out latency histogram) and the publisher's trace context (so a trace
//! follows a message from the api through the bus to every gateway). The
//! Redis wire form of that envelope is in [`envelope`].
//!
//! The bus does not persist, order across channels, or retry: anything
//! published while a subscriber is disconnected is lost, and the layers
//! above repair gaps by `seq` from the api.

pub mod admit;
pub mod envelope;
pub mod inbound;
pub mod memory;
pub mod outbox;
pub mod pending;
pub mod rate;
pub mod redis;
pub mod script;

use async_trait::async_trait;
use bytes::Bytes;

/// One message received from the bus.
#[derive(Debug, Clone)]
pub struct BusMessage {
    /// The channel it was published to.
    pub channel: String,
    /// The payload exactly as published.
    pub payload: Bytes,
    /// When and in which trace it was published.
    pub meta: Meta,
}

/// What travels with a payload besides the payload itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Unix time of the publish in microseconds; 0 when unknown (a
    /// publisher that does not stamp its messages).
    pub published_us: u64,
    /// The publisher's W3C `traceparent`, when it exports traces.
    pub traceparent: Option<String>,
}

impl Meta {
    /// Stamped now, in the current span's trace (if traces are exported).
    pub fn now() -> Self {
        Self::in_trace(crate::telemetry::traceparent())
    }

    /// Stamped now, in the trace of `traceparent`.
    pub fn in_trace(traceparent: Option<String>) -> Self {
        Meta {
            published_us: unix_micros(),
            traceparent,
        }
    }
}

/// The current Unix time in microseconds.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One message to publish with [`Bus::publish_many`].
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: String,
    pub payload: Bytes,
    /// The trace it belongs to (each message of a batch may have its own).
    pub traceparent: Option<String>,
}

impl Outgoing {
    /// A message in the current span's trace.
    pub fn new(channel: String, payload: Bytes) -> Self {
        Outgoing {
            channel,
            payload,
            traceparent: crate::telemetry::traceparent(),
        }
    }
}

pub use inbound::{DEFAULT_INBOUND_BYTES, DEFAULT_INBOUND_CAPACITY, Inbound};

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("bus closed")]
    Closed,
}

/// A node's connection to the bus.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Delivers `payload` to every node subscribed to `channel` right now,
    /// at most once, stamped with [`Meta::now`].
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        self.publish_counted(channel, payload).await.map(|_| ())
    }
    /// Like `publish`, and says how many nodes were subscribed to `channel`
    /// (for a `user:{id}` channel: whether the user has a live connection).
    async fn publish_counted(&self, channel: &str, payload: Bytes) -> Result<usize, BusError>;
    /// Publishes every message in order, in as few round trips as the bus
    /// allows, each in its own trace, and says how many nodes were
    /// subscribed to each one's channel; on error some prefix of them may
    /// have been published.
    async fn publish_many(&self, messages: &[Outgoing]) -> Result<Vec<usize>, BusError>;
    /// After this returns `Ok`, messages published to `channel` reach this node's
    /// inbound stream, also after the bus reconnects. Idempotent.
    async fn subscribe(&self, channel: &str) -> Result<(), BusError>;
    /// Stops delivery of `channel` to this node. Idempotent.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BusError>;
    /// Whether the subscription connection is up right now.
    fn is_healthy(&self) -> bool;
    /// Messages received but dropped because the inbound stream was full.
    fn dropped(&self) -> u64;
    /// Goes up each time the subscription connection was lost (messages
    /// published meanwhile were missed). Always 0 for a bus that cannot lose them.
    fn epoch(&self) -> u64 {
        0
    }
    /// Drops the subscription connection and opens a new one (every channel
    /// subscribed again), as when it failed: for a node that sees its
    /// subscription deliver nothing though the connection seems up. A bus
    /// that cannot go deaf ignores it.
    fn reconnect(&self) {}
}
