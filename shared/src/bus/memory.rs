//! In-memory bus: every node of one process shares a [`MemoryBroker`].
//!
//! Used by the all-in-one binary (one node, no Redis) and by tests that run
//! several nodes in one process. Delivery is synchronous into each
//! subscriber's bounded inbound queue; a full queue drops the message and
//! counts it, exactly like a Redis subscriber that falls behind.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::inbound::{self, InboundSender};
use super::{Bus, BusError, BusMessage, Inbound, Meta, Outgoing, unix_micros};

/// Routes published messages to subscribed [`MemoryBus`] nodes.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Mutex<BrokerState>>,
}

#[derive(Default)]
struct BrokerState {
    next_id: u64,
    /// channel -> ids of the nodes subscribed to it.
    channels: HashMap<String, HashSet<u64>>,
    /// node id -> its inbound queue.
    nodes: HashMap<u64, Node>,
}

struct Node {
    inbox: Arc<InboundSender>,
}

impl MemoryBroker {
    /// A broker with no nodes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects a new node whose inbound queue holds `capacity` messages.
    pub fn connect(&self, capacity: usize) -> (MemoryBus, Inbound) {
        let (inbox, rx) = inbound::inbound(capacity);
        self.join(inbox, rx)
    }

    /// Like [`MemoryBroker::connect`], with at most `max_bytes` of messages waiting.
    pub fn connect_bounded(&self, capacity: usize, max_bytes: usize) -> (MemoryBus, Inbound) {
        let (inbox, rx) = inbound::inbound_bounded(capacity, max_bytes);
        self.join(inbox, rx)
    }

    fn join(&self, inbox: InboundSender, rx: Inbound) -> (MemoryBus, Inbound) {
        let inbox = Arc::new(inbox);
        let mut state = self.inner.lock().expect("broker lock poisoned");
        state.next_id += 1;
        let id = state.next_id;
        state.nodes.insert(
            id,
            Node {
                inbox: inbox.clone(),
            },
        );
        (
            MemoryBus {
                broker: self.clone(),
                id,
                inbox,
            },
            rx,
        )
    }
}

/// One node's handle on a [`MemoryBroker`].
pub struct MemoryBus {
    broker: MemoryBroker,
    id: u64,
    inbox: Arc<InboundSender>,
}

impl MemoryBus {
    /// Queues `payload` to every node subscribed to `channel`; returns how many there were.
    fn deliver(&self, channel: &str, payload: Bytes, meta: Meta) -> usize {
        let mut state = self.broker.inner.lock().expect("broker lock poisoned");
        let Some(subscribers) = state.channels.get(channel) else {
            return 0;
        };
        let receivers = subscribers.len();
        let mut gone = Vec::new();
        for id in subscribers {
            let Some(node) = state.nodes.get(id) else {
                continue;
            };
            let msg = BusMessage {
                channel: channel.to_owned(),
                payload: payload.clone(),
                meta: meta.clone(),
            };
            if node.inbox.offer(msg).is_err() {
                gone.push(*id);
            }
        }
        // Nodes whose receiver was dropped leave the broker.
        for id in gone {
            state.nodes.remove(&id);
            for subs in state.channels.values_mut() {
                subs.remove(&id);
            }
        }
        receivers
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish_counted(&self, channel: &str, payload: Bytes) -> Result<usize, BusError> {
        Ok(self.deliver(channel, payload, Meta::now()))
    }

    async fn publish_many(&self, messages: &[Outgoing]) -> Result<Vec<usize>, BusError> {
        let published_us = unix_micros();
        let receivers = messages.iter().map(|m| {
            let meta = Meta {
                published_us,
                traceparent: m.traceparent.clone(),
            };
            self.deliver(&m.channel, m.payload.clone(), meta)
        });
        Ok(receivers.collect())
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BusError> {
        let mut state = self.broker.inner.lock().expect("broker lock poisoned");
        if !state.nodes.contains_key(&self.id) {
            return Err(BusError::Closed);
        }
        state
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(self.id);
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BusError> {
        let mut state = self.broker.inner.lock().expect("broker lock poisoned");
        if let Some(subs) = state.channels.get_mut(channel) {
            subs.remove(&self.id);
            if subs.is_empty() {
                state.channels.remove(channel);
            }
        }
        Ok(())
    }

    fn is_healthy(&self) -> bool {
        true
    }

    fn dropped(&self) -> u64 {
        self.inbox.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_reaches_every_subscribed_node_and_no_other() {
        let broker = MemoryBroker::new();
        let (a, mut a_rx) = broker.connect(8);
        let (b, mut b_rx) = broker.connect(8);
        let (_c, mut c_rx) = broker.connect(8);
        a.subscribe("room:1").await.unwrap();
        b.subscribe("room:1").await.unwrap();
        a.publish("room:1", Bytes::from_static(b"hi"))
            .await
            .unwrap();
        assert_eq!(a_rx.recv().await.unwrap().payload, "hi");
        let got = b_rx.recv().await.unwrap();
        assert_eq!(
            (got.channel.as_str(), &got.payload[..]),
            ("room:1", &b"hi"[..])
        );
        assert!(c_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn after_unsubscribe_nothing_arrives() {
        let broker = MemoryBroker::new();
        let (a, mut rx) = broker.connect(8);
        a.subscribe("x").await.unwrap();
        a.unsubscribe("x").await.unwrap();
        a.publish("x", Bytes::from_static(b"1")).await.unwrap();
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_inbound_queue_drops_and_counts() {
        let broker = MemoryBroker::new();
        let (a, _rx) = broker.connect(2);
        a.subscribe("x").await.unwrap();
        for _ in 0..5 {
            a.publish("x", Bytes::from_static(b"1")).await.unwrap();
        }
        assert_eq!(a.dropped(), 3);
    }
}
