//! Redis bus: PUBLISH/SUBSCRIBE through a real redis-server.
//!
//! Two connections per node, each owned here rather than by a reconnecting
//! manager, because a connection that timed out must be thrown away: a
//! client that keeps using it pairs every later reply with the wrong
//! request once one reply went missing, and a subscription connection that
//! is open but silent never heals by itself.
//!
//! - **The subscriber** is one RESP3 connection whose pushes feed the
//!   node's bounded inbound stream. A supervisor task owns it: it carries
//!   out every SUBSCRIBE and UNSUBSCRIBE, PINGs the connection every
//!   second, and on any failure (a command or PING not answered within
//!   [`RESPONSE_TIMEOUT`], the connection closed, [`Bus::reconnect`])
//!   drops it, opens a new TCP connection with capped backoff and
//!   subscribes every wanted channel again. Each loss moves
//!   [`Bus::epoch`]: what was published meanwhile was missed, and the
//!   node catches up from the api. Pushes still arriving from a dropped
//!   connection are ignored.
//! - **The publisher** is one multiplexed connection shared by every
//!   publish (no pool checkout, no health-check round trip per publish).
//!   A publish that fails or is not answered within [`RESPONSE_TIMEOUT`]
//!   drops the connection; the next publish opens a new one.
//!
//! Raw client input never becomes a channel name here: callers pass channel
//! names built from validated ids (see `protocol::room_channel`), and this
//! module never PSUBSCRIBEs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, PushInfo, PushKind, Value, aio::MultiplexedConnection,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::inbound::{self, InboundSender};
use super::{Bus, BusError, BusMessage, Inbound, Meta, Outgoing, envelope, unix_micros};

/// How often the subscription connection is probed.
const PING_EVERY: Duration = Duration::from_secs(1);
/// A command or PING not answered within this long condemns its connection.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Backoff between attempts to open the subscription connection again.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Channels per SUBSCRIBE when a new connection takes them all back.
const RESUBSCRIBE_CHUNK: usize = 1000;

/// A node's connection to Redis pub/sub.
pub struct RedisBus {
    subscriber: mpsc::Sender<Command>,
    publisher: Publisher,
    shared: Arc<Shared>,
    supervisor: JoinHandle<()>,
}

/// What the supervisor and the bus handle both read.
struct Shared {
    healthy: AtomicBool,
    /// Losses of the subscription connection so far.
    epoch: AtomicU64,
    /// Where received messages go.
    inbound: InboundSender,
}

/// A request to the subscriber's supervisor.
enum Command {
    Subscribe(String, oneshot::Sender<Result<(), BusError>>),
    Unsubscribe(String, oneshot::Sender<Result<(), BusError>>),
    /// Drop the connection and open a new one.
    Reconnect,
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

/// A client for `url` with `TCP_NODELAY` (redis-rs leaves Nagle's algorithm
/// on): a publish written while the previous one is still unacknowledged
/// goes out at once instead of waiting for that ack.
fn client(url: &str) -> Result<redis::Client, BusError> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    Ok(redis::Client::open(info.set_tcp_settings(tcp))?)
}

/// A bus error for a command that was not answered in time.
fn timed_out(what: &str) -> BusError {
    BusError::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "redis did not answer in time",
        what.to_owned(),
    )))
}

impl RedisBus {
    /// Connects to Redis at `url` (failing if it cannot be reached now);
    /// received messages queue up to `capacity` (and 64 MiB).
    pub async fn connect(url: &str, capacity: usize) -> Result<(Self, Inbound), BusError> {
        Self::connect_bounded(url, capacity, super::DEFAULT_INBOUND_BYTES).await
    }

    /// Like [`RedisBus::connect`], with at most `max_bytes` of received
    /// messages waiting.
    pub async fn connect_bounded(
        url: &str,
        capacity: usize,
        max_bytes: usize,
    ) -> Result<(Self, Inbound), BusError> {
        let (inbound, rx) = inbound::inbound_bounded(capacity, max_bytes);
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            inbound,
        });
        let sub = Subscriber {
            client: client(&resp3_url(url))?,
            shared: shared.clone(),
            generation: Arc::new(AtomicU64::new(0)),
        };
        let first = sub.open(1).await?;
        shared.healthy.store(true, Ordering::Relaxed);
        let publisher = Publisher::new(client(url)?);
        publisher.connection().await?;
        let (commands, commands_rx) = mpsc::channel(64);
        let supervisor = tokio::spawn(sub.supervise(first, commands_rx));
        Ok((
            RedisBus {
                subscriber: commands,
                publisher,
                shared,
                supervisor,
            },
            rx,
        ))
    }

    /// Sends `command` to the supervisor and waits for its answer.
    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), BusError>>) -> Command,
    ) -> Result<(), BusError> {
        let (done, answer) = oneshot::channel();
        self.subscriber
            .send(command(done))
            .await
            .map_err(|_| BusError::Closed)?;
        answer.await.map_err(|_| BusError::Closed)?
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// The subscription side: the client it opens connections with, and where
/// their pushes go.
struct Subscriber {
    client: redis::Client,
    shared: Arc<Shared>,
    /// The connection whose pushes count; older ones' are ignored.
    generation: Arc<AtomicU64>,
}

/// A subscription connection, and what wakes when it reports its own
/// disconnection.
struct Live {
    conn: MultiplexedConnection,
    lost: Arc<Notify>,
}

impl Subscriber {
    /// Opens connection number `generation` (pushes from any other are
    /// ignored from now on).
    async fn open(&self, generation: u64) -> Result<Live, BusError> {
        self.generation.store(generation, Ordering::Relaxed);
        let lost = Arc::new(Notify::new());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_push_sender(push_sender(
                generation,
                self.generation.clone(),
                lost.clone(),
                self.shared.clone(),
            ));
        let open = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, open).await {
            Ok(conn) => Ok(Live { conn: conn?, lost }),
            Err(_) => Err(timed_out("connect")),
        }
    }

    /// Owns the subscription connection until the bus is dropped: carries
    /// out commands, probes, and replaces the connection whenever it fails.
    async fn supervise(self, first: Live, mut commands: mpsc::Receiver<Command>) {
        let mut wanted: HashSet<String> = HashSet::new();
        let mut conn = Some(first);
        let mut generation = 1;
        let mut backoff = BACKOFF_MIN;
        loop {
            let Some(mut live) = conn.take() else {
                // Down: answer what comes in while waiting to try again.
                let retry = tokio::time::sleep(backoff);
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        command = commands.recv() => match command {
                            None => return,
                            Some(c) => refuse(c, &mut wanted),
                        },
                        _ = &mut retry => break,
                    }
                }
                generation += 1;
                conn = match self.open(generation).await {
                    Ok(mut fresh) => match resubscribe(&mut fresh.conn, &wanted).await {
                        Ok(()) => {
                            tracing::info!(
                                channels = wanted.len(),
                                "redis bus subscription connection is back"
                            );
                            backoff = BACKOFF_MIN;
                            self.shared.healthy.store(true, Ordering::Relaxed);
                            Some(fresh)
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "resubscribing failed");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "redis bus connection attempt failed");
                        None
                    }
                };
                if conn.is_none() {
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                continue;
            };
            let why = self.serve(&mut live, &mut commands, &mut wanted).await;
            let Some(why) = why else { return };
            // Condemned: nothing it says counts any more.
            self.generation.store(0, Ordering::Relaxed);
            drop(live);
            self.shared.healthy.store(false, Ordering::Relaxed);
            self.shared.epoch.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = why, "redis bus subscription connection dropped");
        }
    }

    /// Serves one live connection; returns why it must be replaced, or
    /// `None` when the bus was dropped.
    async fn serve(
        &self,
        live: &mut Live,
        commands: &mut mpsc::Receiver<Command>,
        wanted: &mut HashSet<String>,
    ) -> Option<&'static str> {
        let Live { conn, lost } = live;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                command = commands.recv() => match command? {
                    Command::Subscribe(channel, done) => {
                        let result = answered(conn.subscribe(&channel), "SUBSCRIBE").await;
                        let failed = result.is_err();
                        if !failed {
                            wanted.insert(channel);
                        }
                        let _ = done.send(result);
                        if failed {
                            return Some("SUBSCRIBE failed");
                        }
                    }
                    Command::Unsubscribe(channel, done) => {
                        // Not wanted any more either way: a new connection
                        // will not take it back.
                        wanted.remove(&channel);
                        let result = answered(conn.unsubscribe(&channel), "UNSUBSCRIBE").await;
                        let _ = done.send(Ok(()));
                        if result.is_err() {
                            return Some("UNSUBSCRIBE failed");
                        }
                    }
                    Command::Reconnect => return Some("reconnect requested"),
                },
                _ = ping.tick() => {
                    let pong = answered(redis::cmd("PING").query_async::<Value>(conn), "PING").await;
                    if pong.is_err() {
                        return Some("PING not answered");
                    }
                }
                _ = lost.notified() => return Some("connection closed"),
            }
        }
    }
}

/// Answers a command that came while the subscription connection is down.
fn refuse(command: Command, wanted: &mut HashSet<String>) {
    match command {
        Command::Subscribe(_, done) => {
            let _ = done.send(Err(BusError::Closed));
        }
        Command::Unsubscribe(channel, done) => {
            wanted.remove(&channel);
            let _ = done.send(Ok(()));
        }
        Command::Reconnect => {}
    }
}

/// Subscribes a new connection to every wanted channel.
async fn resubscribe(
    conn: &mut MultiplexedConnection,
    wanted: &HashSet<String>,
) -> Result<(), BusError> {
    let all: Vec<&String> = wanted.iter().collect();
    for chunk in all.chunks(RESUBSCRIBE_CHUNK) {
        answered(conn.subscribe(chunk), "SUBSCRIBE").await?;
    }
    Ok(())
}

/// `request`'s result, or an error if it took longer than [`RESPONSE_TIMEOUT`].
async fn answered<T>(
    request: impl Future<Output = redis::RedisResult<T>>,
    what: &str,
) -> Result<T, BusError> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, request).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(timed_out(what)),
    }
}

/// Turns pushes from subscription connection `mine` into [`BusMessage`]s on
/// the bounded inbound queue, while it is the current one. It runs on the
/// connection's read path, so it never blocks: a full queue drops the
/// message and counts it.
fn push_sender(
    mine: u64,
    current: Arc<AtomicU64>,
    lost: Arc<Notify>,
    shared: Arc<Shared>,
) -> impl Fn(PushInfo) -> Result<(), redis::aio::SendError> + Send + Sync + 'static {
    move |info: PushInfo| {
        if current.load(Ordering::Relaxed) != mine {
            return Ok(());
        }
        match info.kind {
            PushKind::Disconnection => lost.notify_one(),
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
                // A gone receiver: the node is shutting down.
                let _ = shared.inbound.offer(BusMessage {
                    channel,
                    payload,
                    meta,
                });
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

/// The publishing connection: opened on first use, replaced after a failure.
struct Publisher {
    client: redis::Client,
    /// The current connection and its number.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Held while opening, so concurrent publishes open one connection.
    opening: tokio::sync::Mutex<u64>,
}

impl Publisher {
    fn new(client: redis::Client) -> Self {
        Publisher {
            client,
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(0),
        }
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current.lock().expect("publisher lock").clone()
    }

    /// The current connection, opening one if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), BusError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let mut opened = self.opening.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let open = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, open).await {
            Ok(conn) => conn?,
            Err(_) => return Err(timed_out("connect")),
        };
        *opened += 1;
        let fresh = (*opened, conn);
        *self.current.lock().expect("publisher lock") = Some(fresh.clone());
        Ok(fresh)
    }

    /// Runs `request` on the current connection; a failure or a timeout
    /// drops that connection so the next call opens a new one.
    async fn run<T: redis::FromRedisValue>(
        &self,
        request: &redis::Pipeline,
        what: &str,
    ) -> Result<T, BusError> {
        let (number, mut conn) = self.connection().await?;
        let result = answered(request.query_async::<T>(&mut conn), what).await;
        if result.is_err() {
            let mut current = self.current.lock().expect("publisher lock");
            if current.as_ref().is_some_and(|(n, _)| *n == number) {
                *current = None;
            }
        }
        result
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish_counted(&self, channel: &str, payload: Bytes) -> Result<usize, BusError> {
        let raw = envelope::encode(&Meta::now(), &payload);
        let mut pipe = redis::pipe();
        pipe.publish(channel, &raw[..]);
        let (receivers,): (i64,) = self.publisher.run(&pipe, "PUBLISH").await?;
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
        let receivers: Vec<i64> = self.publisher.run(&pipe, "PUBLISH").await?;
        Ok(receivers
            .into_iter()
            .map(|n| usize::try_from(n).unwrap_or(0))
            .collect())
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BusError> {
        self.ask(|done| Command::Subscribe(channel.to_owned(), done))
            .await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BusError> {
        self.ask(|done| Command::Unsubscribe(channel.to_owned(), done))
            .await
    }

    fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    fn dropped(&self) -> u64 {
        self.shared.inbound.dropped()
    }

    fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Relaxed)
    }

    fn reconnect(&self) {
        let _ = self.subscriber.try_send(Command::Reconnect);
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests;
