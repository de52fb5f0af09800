//! Redis bus: PUBLISH/SUBSCRIBE through a real redis-server.
//!
//! Subscriptions live on one RESP3 [`ConnectionManager`] per node with
//! automatic resubscription: when Redis restarts, the manager reconnects with
//! backoff and re-issues every SUBSCRIBE by itself. A health task PINGs that
//! connection every second; it drives reconnection while Redis is away and
//! feeds [`Bus::is_healthy`] (and so `/readyz`). PUBLISH goes through a
//! second, multiplexed [`ConnectionManager`]: unlike a pool checkout, it
//! costs no health-check round trip per publish.
//!
//! Raw client input never becomes a channel name here: callers pass channel
//! names built from validated ids (see `protocol::room_channel`), and this
//! module never PSUBSCRIBEs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::redis::{
    self, AsyncCommands, PushInfo, PushKind, Value, aio::ConnectionManager,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Bus, BusError, BusMessage, Inbound, Meta, Outgoing, envelope, unix_micros};

/// How often the subscription connection is probed.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// A node's connection to Redis pub/sub.
pub struct RedisBus {
    subscriber: ConnectionManager,
    publisher: ConnectionManager,
    healthy: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    /// Disconnections of the subscription connection so far.
    epoch: Arc<AtomicU64>,
    health_task: JoinHandle<()>,
}

/// A deadpool-redis pool for `url`, with bounded size and timeouts.
pub fn pool(url: &str) -> Result<deadpool_redis::Pool, BusError> {
    let mut cfg = deadpool_redis::Config::from_url(url);
    let mut pool_cfg = deadpool_redis::PoolConfig::new(32);
    pool_cfg.timeouts.wait = Some(Duration::from_secs(2));
    pool_cfg.timeouts.create = Some(Duration::from_secs(2));
    pool_cfg.timeouts.recycle = Some(Duration::from_secs(2));
    cfg.pool = Some(pool_cfg);
    cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .map_err(|e| {
            BusError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "pool",
                e.to_string(),
            )))
        })
}

/// `url` with `protocol=resp3`, which push-based subscriptions need.
fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// `url`'s connection settings with `TCP_NODELAY` (redis-rs leaves Nagle's
/// algorithm on): a publish written while the previous one is still
/// unacknowledged goes out at once instead of waiting for that ack.
fn nodelay(url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    Ok(info.set_tcp_settings(tcp))
}

impl RedisBus {
    /// Connects to Redis at `url`; received messages queue up to `capacity`.
    pub async fn connect(url: &str, capacity: usize) -> Result<(Self, Inbound), BusError> {
        let (tx, rx) = mpsc::channel(capacity);
        let healthy = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let epoch = Arc::new(AtomicU64::new(0));
        let push = push_sender(tx, healthy.clone(), dropped.clone(), epoch.clone());
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_push_sender(push)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(3);
        let client = redis::Client::open(nodelay(resp3_url(url).as_str())?)?;
        let subscriber = ConnectionManager::new_with_config(client, config).await?;
        healthy.store(true, Ordering::Relaxed);
        let publisher = ConnectionManager::new_with_config(
            redis::Client::open(nodelay(url)?)?,
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_max_delay(Duration::from_secs(2))
                .set_number_of_retries(3),
        )
        .await?;
        let health_task = tokio::spawn(probe(subscriber.clone(), healthy.clone()));
        Ok((
            RedisBus {
                subscriber,
                publisher,
                healthy,
                dropped,
                epoch,
                health_task,
            },
            rx,
        ))
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.health_task.abort();
    }
}

/// Turns pushes from Redis into [`BusMessage`]s on the bounded inbound queue.
/// It runs on the connection's read path, so it never blocks: a full queue
/// drops the message and counts it.
fn push_sender(
    tx: mpsc::Sender<BusMessage>,
    healthy: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    epoch: Arc<AtomicU64>,
) -> impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static {
    move |info: PushInfo| {
        match info.kind {
            PushKind::Disconnection => {
                healthy.store(false, Ordering::Relaxed);
                epoch.fetch_add(1, Ordering::Relaxed);
            }
            PushKind::Message => {
                let mut data = info.data.into_iter();
                let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
                    return Ok(());
                };
                let Some(channel) = value_string(channel) else {
                    return Ok(());
                };
                let raw = match payload {
                    Value::BulkString(b) => Bytes::from(b),
                    Value::SimpleString(s) => Bytes::from(s),
                    _ => return Ok(()),
                };
                let (meta, payload) = envelope::decode(raw);
                if tx
                    .try_send(BusMessage {
                        channel,
                        payload,
                        meta,
                    })
                    .is_err()
                {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn value_string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// PINGs the subscription connection forever; a failure marks the bus
/// unhealthy and the next PING makes the manager reconnect (and resubscribe).
async fn probe(mut conn: ConnectionManager, healthy: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ok = tokio::time::timeout(
            HEALTH_INTERVAL * 2,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        let was = healthy.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!("redis bus connection is back");
            } else {
                tracing::warn!("redis bus connection lost");
            }
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish_counted(&self, channel: &str, payload: Bytes) -> Result<usize, BusError> {
        let raw = envelope::encode(&Meta::now(), &payload);
        let receivers: i64 = self.publisher.clone().publish(channel, &raw[..]).await?;
        Ok(usize::try_from(receivers).unwrap_or(0))
    }

    async fn publish_many(&self, messages: &[Outgoing]) -> Result<Vec<usize>, BusError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline: one round trip, and Redis runs them in this order.
        let published_us = unix_micros();
        let mut pipe = redis::pipe();
        for m in messages {
            let meta = Meta {
                published_us,
                traceparent: m.traceparent.clone(),
            };
            pipe.publish(&m.channel, &envelope::encode(&meta, &m.payload)[..]);
        }
        let receivers: Vec<i64> = pipe.query_async(&mut self.publisher.clone()).await?;
        Ok(receivers
            .into_iter()
            .map(|n| usize::try_from(n).unwrap_or(0))
            .collect())
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BusError> {
        self.subscriber.clone().subscribe(channel).await?;
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BusError> {
        self.subscriber.clone().unsubscribe(channel).await?;
        Ok(())
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    async fn recv(rx: &mut Inbound) -> BusMessage {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("message in time")
            .expect("open")
    }

    #[tokio::test]
    async fn a_message_crosses_two_nodes_through_redis() {
        let redis = RedisServer::start();
        let (a, _a_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
        let (b, mut b_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
        b.subscribe("room:r1").await.unwrap();
        a.publish("room:r1", Bytes::from_static(b"{\"x\":1}"))
            .await
            .unwrap();
        let got = recv(&mut b_rx).await;
        assert_eq!(got.channel, "room:r1");
        assert_eq!(&got.payload[..], b"{\"x\":1}");
        // Stamped at publish, within the last minute.
        assert!(unix_micros() - got.meta.published_us < 60_000_000);
    }

    #[tokio::test]
    async fn publish_many_delivers_every_message_in_order() {
        let redis = RedisServer::start();
        let (a, _a_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
        let (b, mut b_rx) = RedisBus::connect(&redis.url(), 256).await.unwrap();
        b.subscribe("room:o").await.unwrap();
        let batch: Vec<Outgoing> = (0..100)
            .map(|i| Outgoing::new("room:o".to_owned(), Bytes::from(i.to_string())))
            .collect();
        a.publish_many(&batch).await.unwrap();
        for i in 0..100 {
            assert_eq!(recv(&mut b_rx).await.payload, Bytes::from(i.to_string()));
        }
    }

    #[tokio::test]
    async fn subscriptions_come_back_after_redis_restarts() {
        let mut redis = RedisServer::start();
        let (a, _a_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
        let (b, mut b_rx) = RedisBus::connect(&redis.url(), 16).await.unwrap();
        b.subscribe("room:r2").await.unwrap();
        redis.restart();
        // Wait until b is subscribed again, then a publish must arrive.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(tokio::time::Instant::now() < deadline, "never resubscribed");
            if b.is_healthy() && redis.numsub("room:r2") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!b_rx.is_closed());
        let mut sent = false;
        for _ in 0..50 {
            if a.publish("room:r2", Bytes::from_static(b"after"))
                .await
                .is_ok()
            {
                sent = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(sent, "publish never succeeded after restart");
        assert_eq!(&recv(&mut b_rx).await.payload[..], b"after");
    }
}
