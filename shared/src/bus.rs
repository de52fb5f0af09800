//! The bus: at-most-once publish/subscribe between Telepath nodes.
//!
//! A node publishes already-serialised frames to channels (`room:{id}`,
//! `user:{id}`, `broadcast`, `node:{id}`) and receives the channels it has
//! subscribed to on one bounded inbound stream. Two implementations:
//! [`memory::MemoryBroker`] for the all-in-one binary and fast tests, and
//! [`redis::RedisBus`] for a cluster of nodes.
//!
//! The bus does not persist, order across channels, or retry: anything
//! published while a subscriber is disconnected is lost, and the layers
//! above repair gaps by `seq` from the api.

pub mod memory;
pub mod redis;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// One message received from the bus.
#[derive(Debug, Clone)]
pub struct BusMessage {
    /// The channel it was published to.
    pub channel: String,
    /// The payload exactly as published.
    pub payload: Bytes,
}

/// The receiving end of a bus connection: what this node subscribed to.
pub type Inbound = mpsc::Receiver<BusMessage>;

/// How many received messages may wait for the node's dispatcher before the
/// bus drops new ones (counted by [`Bus::dropped`]).
pub const DEFAULT_INBOUND_CAPACITY: usize = 65_536;

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
    /// Delivers `payload` to every node subscribed to `channel` right now, at most once.
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError>;
    /// Like `publish`, and says how many nodes were subscribed to `channel`
    /// (for a `user:{id}` channel: whether the user has a live connection).
    async fn publish_counted(&self, channel: &str, payload: Bytes) -> Result<usize, BusError>;
    /// Publishes every message in order, in as few round trips as the bus
    /// allows; on error some prefix of them may have been published.
    async fn publish_many(&self, messages: &[(String, Bytes)]) -> Result<(), BusError> {
        for (channel, payload) in messages {
            self.publish(channel, payload.clone()).await?;
        }
        Ok(())
    }
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
}
