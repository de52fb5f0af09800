//! The outbox: a bounded, ordered queue in front of the bus, so that Redis
//! trouble never makes a caller wait.
//!
//! [`Outbox::push`] queues messages and returns at once; one task per
//! outbox takes them in push order, in chunks (at most
//! [`OutboxLimits::chunk`] messages and [`OutboxLimits::chunk_bytes`]
//! bytes per [`Bus::publish_many`]), and publishes each chunk until the bus
//! takes it: every attempt is bounded by [`OutboxLimits::attempt_timeout`]
//! and a failed one is retried after a capped, doubling backoff. Nothing
//! behind a chunk goes out before it, so a room's messages reach the bus in
//! seq order even across a Redis outage.
//!
//! A failed `publish_many` may have published a prefix of its chunk (and a
//! timed-out one may still complete on Redis), so a retry can repeat
//! messages. Room messages carry their seq and gateways drop repeats; DMs
//! carry their id (clients drop repeats); a repeated presence event
//! announces the same state twice.
//!
//! The queue is bounded in messages and in bytes. When a push would pass a
//! bound, the *oldest* waiting messages are dropped and counted: the newest
//! state is what receivers need (a later presence event supersedes an
//! earlier one), and a gateway that receives a room message after a dropped
//! one sees the seq jump and fetches the hole from the api. (Dropping the
//! newest instead would leave the tail of a burst unnoticed until the room's
//! next message.) Every message the outbox carries is durable elsewhere or
//! repaired by its receivers, so a drop delays a delivery but loses nothing
//! acknowledged.
//!
//! [`Outbox::close`] publishes what is queued, within a deadline, for a
//! graceful shutdown. Dropping the outbox stops its task at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Bus, Outgoing};
use crate::telemetry::register;

/// The outbox's bounds and pace.
#[derive(Debug, Clone)]
pub struct OutboxLimits {
    /// Most messages waiting (the chunk being published not counted).
    pub max_messages: usize,
    /// Most bytes (payloads and channel names) waiting.
    pub max_bytes: usize,
    /// Most messages per `publish_many`.
    pub chunk: usize,
    /// Most bytes per `publish_many` (a larger single message goes alone).
    pub chunk_bytes: usize,
    /// How long one publish attempt may take before it counts as failed.
    pub attempt_timeout: Duration,
    /// The wait after the first failed attempt; it doubles with each
    /// further failure, up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for OutboxLimits {
    /// 100,000 messages and 64 MiB waiting; chunks of 256 messages and
    /// 1 MiB; 2 s per attempt; retries after 50 ms doubling to 1 s.
    fn default() -> Self {
        OutboxLimits {
            max_messages: 100_000,
            max_bytes: 64 << 20,
            chunk: 256,
            chunk_bytes: 1 << 20,
            attempt_timeout: Duration::from_secs(2),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// One outbox's gauges and counters.
#[derive(Debug, Clone)]
pub struct OutboxMetrics {
    /// Messages waiting, the chunk being published included.
    pub messages: IntGauge,
    /// Bytes waiting, the chunk being published included.
    pub bytes: IntGauge,
    /// Messages dropped: the oldest, when the outbox was full, and what was
    /// left when a close passed its deadline.
    pub dropped: IntCounter,
    /// Publish attempts that failed or timed out (each one is retried).
    pub failures: IntCounter,
}

impl OutboxMetrics {
    /// Metrics registered nowhere (tests, or an outbox nobody scrapes).
    pub fn detached() -> Self {
        let gauge = |name: &str| IntGauge::new(name, name).expect("valid metric");
        let counter = |name: &str| IntCounter::new(name, name).expect("valid metric");
        OutboxMetrics {
            messages: gauge("outbox_messages"),
            bytes: gauge("outbox_bytes"),
            dropped: counter("outbox_dropped_total"),
            failures: counter("outbox_publish_failures_total"),
        }
    }
}

/// A service's outbox metrics, registered with its other metrics: one
/// family per metric under the service's prefix, one series per outbox
/// (label `outbox`).
#[derive(Clone)]
pub struct OutboxMetricFamilies {
    messages: IntGaugeVec,
    bytes: IntGaugeVec,
    dropped: IntCounterVec,
    failures: IntCounterVec,
}

impl OutboxMetricFamilies {
    /// Registers `{prefix}_outbox_messages`, `{prefix}_outbox_bytes`,
    /// `{prefix}_outbox_dropped_total` and `{prefix}_publish_failures_total`
    /// in `registry` (panics if registered twice).
    pub fn register(registry: &Registry, prefix: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(format!("{prefix}_{name}"), help);
        let gauge = |name, help| {
            register(
                registry,
                IntGaugeVec::new(opts(name, help), &["outbox"]).expect("valid metric"),
            )
        };
        let counter = |name, help| {
            register(
                registry,
                IntCounterVec::new(opts(name, help), &["outbox"]).expect("valid metric"),
            )
        };
        OutboxMetricFamilies {
            messages: gauge(
                "outbox_messages",
                "Messages waiting in the outbox for the bus",
            ),
            bytes: gauge("outbox_bytes", "Bytes waiting in the outbox for the bus"),
            dropped: counter(
                "outbox_dropped_total",
                "Messages the outbox dropped: the oldest when full, the rest at a shutdown deadline",
            ),
            failures: counter(
                "publish_failures_total",
                "Bus publish attempts that failed or timed out (the outbox retries them)",
            ),
        }
    }

    /// The series of the outbox called `name` (present from now on, at 0).
    pub fn outbox(&self, name: &str) -> OutboxMetrics {
        OutboxMetrics {
            messages: self.messages.with_label_values(&[name]),
            bytes: self.bytes.with_label_values(&[name]),
            dropped: self.dropped.with_label_values(&[name]),
            failures: self.failures.with_label_values(&[name]),
        }
    }
}

/// A bounded, ordered queue of messages for the bus, with the task that
/// publishes them. See the module's documentation.
pub struct Outbox {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What the outbox's handle and its task share.
struct Shared {
    bus: Arc<dyn Bus>,
    queue: Mutex<Queue>,
    /// Raised by pushes and by close; holds one permit, so no raise is lost.
    wake: Notify,
    limits: OutboxLimits,
    metrics: OutboxMetrics,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Outgoing>,
    /// Bytes of `waiting`.
    bytes: usize,
    /// Messages and bytes of the chunk the task is publishing.
    in_flight: usize,
    in_flight_bytes: usize,
    /// Set by close: the task ends once nothing is left.
    closing: bool,
    /// The task has ended (or was stopped): pushes are dropped.
    ended: bool,
    /// Dropping since the queue was last empty (logged once per episode).
    overflowing: bool,
}

impl Queue {
    fn publish_gauges(&self, metrics: &OutboxMetrics) {
        metrics
            .messages
            .set((self.waiting.len() + self.in_flight) as i64);
        metrics
            .bytes
            .set((self.bytes + self.in_flight_bytes) as i64);
    }

    /// Moves the next chunk from `waiting` into `chunk`.
    fn take_chunk(&mut self, limits: &OutboxLimits, chunk: &mut Vec<Outgoing>) {
        let mut bytes = 0;
        while chunk.len() < limits.chunk {
            let Some(next) = self.waiting.front() else {
                break;
            };
            let size = size(next);
            if !chunk.is_empty() && bytes + size > limits.chunk_bytes {
                break;
            }
            bytes += size;
            chunk.push(self.waiting.pop_front().expect("front exists"));
        }
        self.bytes -= bytes;
        self.in_flight = chunk.len();
        self.in_flight_bytes = bytes;
    }
}

/// What a message weighs against the byte bounds.
fn size(m: &Outgoing) -> usize {
    m.channel.len() + m.payload.len()
}

impl Outbox {
    /// An outbox publishing on `bus`, with its task started (call inside a
    /// tokio runtime).
    pub fn new(bus: Arc<dyn Bus>, limits: OutboxLimits, metrics: OutboxMetrics) -> Self {
        let shared = Arc::new(Shared {
            bus,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            limits,
            metrics,
        });
        let task = tokio::spawn(run(shared.clone()));
        Outbox {
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues `messages` behind everything pushed before, without waiting.
    /// When the queue passes a bound, its oldest messages are dropped and
    /// counted; after [`Outbox::close`] every message is.
    pub fn push(&self, messages: impl IntoIterator<Item = Outgoing>) {
        let limits = &self.shared.limits;
        let mut dropped = 0;
        let mut first_drop = false;
        {
            let mut q = self.queue();
            for m in messages {
                if q.ended {
                    dropped += 1;
                    continue;
                }
                q.bytes += size(&m);
                q.waiting.push_back(m);
            }
            while q.waiting.len() > limits.max_messages || q.bytes > limits.max_bytes {
                let oldest = q.waiting.pop_front().expect("over a bound, so not empty");
                q.bytes -= size(&oldest);
                dropped += 1;
            }
            if dropped > 0 && !q.ended && !q.overflowing {
                q.overflowing = true;
                first_drop = true;
            }
            q.publish_gauges(&self.shared.metrics);
        }
        if dropped > 0 {
            self.shared.metrics.dropped.inc_by(dropped);
            if first_drop {
                tracing::warn!(
                    max_messages = limits.max_messages,
                    max_bytes = limits.max_bytes,
                    "outbox full: dropping its oldest messages until the bus catches up"
                );
            }
        }
        self.shared.wake.notify_one();
    }

    /// Whether nothing is waiting or being published.
    pub fn is_idle(&self) -> bool {
        let q = self.queue();
        q.waiting.is_empty() && q.in_flight == 0
    }

    /// Publishes `messages` at once when nothing is queued ahead of them,
    /// and says how many nodes each one reached, if the bus answers within
    /// `within`. Otherwise (a backlog, a failure, no answer in time) they
    /// are pushed behind the backlog and this returns `None`. A publish
    /// that failed or timed out may have reached the bus in part, so the
    /// queued copy can repeat some of them.
    pub async fn publish_or_push(
        &self,
        messages: Vec<Outgoing>,
        within: Duration,
    ) -> Option<Vec<usize>> {
        if self.is_idle() {
            let attempt = self.shared.bus.publish_many(&messages);
            match tokio::time::timeout(within, attempt).await {
                Ok(Ok(receivers)) => return Some(receivers),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "direct publish failed; queued in the outbox");
                }
                Err(_) => {
                    tracing::debug!(?within, "direct publish timed out; queued in the outbox")
                }
            }
            self.shared.metrics.failures.inc();
        }
        self.push(messages);
        None
    }

    /// Publishes everything queued, then stops the task; gives up after
    /// `deadline` (what is left is dropped and counted). Pushes from now on
    /// are dropped once the queue is empty.
    pub async fn close(&self, deadline: Duration) {
        self.queue().closing = true;
        self.shared.wake.notify_one();
        let task = self.task.lock().expect("outbox lock poisoned").take();
        let Some(mut task) = task else {
            return;
        };
        if tokio::time::timeout(deadline, &mut task).await.is_ok() {
            return;
        }
        task.abort();
        let left = {
            let mut q = self.queue();
            q.ended = true;
            let left = q.waiting.len() + q.in_flight;
            q.waiting.clear();
            (q.bytes, q.in_flight, q.in_flight_bytes) = (0, 0, 0);
            q.publish_gauges(&self.shared.metrics);
            left
        };
        self.shared.metrics.dropped.inc_by(left as u64);
        tracing::warn!(
            left,
            ?deadline,
            "the outbox could not publish everything before its deadline"
        );
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().expect("outbox lock poisoned")
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().expect("outbox lock poisoned").take() {
            task.abort();
        }
    }
}

/// The outbox's task: takes the next chunk in order, publishes it until the
/// bus takes it, and again; ends when closing and nothing is left.
async fn run(shared: Arc<Shared>) {
    let mut chunk = Vec::with_capacity(shared.limits.chunk);
    loop {
        {
            let mut q = shared.queue.lock().expect("outbox lock poisoned");
            q.take_chunk(&shared.limits, &mut chunk);
            if chunk.is_empty() {
                q.overflowing = false;
                if q.closing {
                    q.ended = true;
                    return;
                }
            }
        }
        if chunk.is_empty() {
            shared.wake.notified().await;
            continue;
        }
        publish(&shared, &chunk).await;
        chunk.clear();
        let mut q = shared.queue.lock().expect("outbox lock poisoned");
        (q.in_flight, q.in_flight_bytes) = (0, 0);
        q.publish_gauges(&shared.metrics);
    }
}

/// Publishes `chunk` until the bus takes it, each attempt bounded, failures
/// followed by a capped, doubling backoff. Logs the start and the end of an
/// outage, not every failure.
async fn publish(shared: &Shared, chunk: &[Outgoing]) {
    let limits = &shared.limits;
    let mut backoff = limits.min_backoff;
    let mut failures = 0u64;
    loop {
        let attempt = shared.bus.publish_many(chunk);
        let error = match tokio::time::timeout(limits.attempt_timeout, attempt).await {
            Ok(Ok(_)) => break,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", limits.attempt_timeout),
        };
        shared.metrics.failures.inc();
        failures += 1;
        if failures == 1 {
            tracing::warn!(%error, messages = chunk.len(), "bus publish failed; the outbox retries");
        } else {
            tracing::debug!(%error, failures, "bus publish failed again");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(limits.max_backoff);
    }
    if failures > 0 {
        tracing::info!(failures, "the outbox is publishing again");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::bus::memory::{MemoryBroker, MemoryBus};
    use crate::bus::{BusError, Inbound};

    /// How [`Faulty`] answers a publish.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Mode {
        Up,
        /// Publishes the first half of a batch, then fails (a pipeline cut short).
        Failing,
        /// Never answers (a stalled Redis).
        Stalled,
    }

    /// A bus in front of a memory bus that fails or stalls on demand.
    struct Faulty {
        inner: MemoryBus,
        mode: Mutex<Mode>,
        attempts: AtomicUsize,
    }

    impl Faulty {
        fn set(&self, mode: Mode) {
            *self.mode.lock().unwrap() = mode;
        }
    }

    #[async_trait]
    impl Bus for Faulty {
        async fn publish_counted(&self, channel: &str, payload: Bytes) -> Result<usize, BusError> {
            let n = self
                .publish_many(&[Outgoing::new(channel.into(), payload)])
                .await?;
            Ok(n[0])
        }

        async fn publish_many(&self, messages: &[Outgoing]) -> Result<Vec<usize>, BusError> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let mode = *self.mode.lock().unwrap();
            match mode {
                Mode::Up => self.inner.publish_many(messages).await,
                Mode::Failing => {
                    self.inner
                        .publish_many(&messages[..messages.len() / 2])
                        .await?;
                    Err(BusError::Closed)
                }
                Mode::Stalled => std::future::pending().await,
            }
        }

        async fn subscribe(&self, channel: &str) -> Result<(), BusError> {
            self.inner.subscribe(channel).await
        }

        async fn unsubscribe(&self, channel: &str) -> Result<(), BusError> {
            self.inner.unsubscribe(channel).await
        }

        fn is_healthy(&self) -> bool {
            true
        }

        fn dropped(&self) -> u64 {
            0
        }
    }

    /// Limits that make a test's outages short: 100 ms per attempt,
    /// retries after 5 ms doubling to 50 ms.
    fn fast() -> OutboxLimits {
        OutboxLimits {
            attempt_timeout: Duration::from_millis(100),
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..OutboxLimits::default()
        }
    }

    /// An outbox over a [`Faulty`] bus in `mode`, and a node listening to `room:r`.
    async fn rig(mode: Mode, limits: OutboxLimits) -> (Outbox, Arc<Faulty>, Inbound) {
        let broker = MemoryBroker::new();
        let (bus, _) = broker.connect(1);
        let (listener, rx) = broker.connect(1 << 16);
        listener.subscribe("room:r").await.unwrap();
        let bus = Arc::new(Faulty {
            inner: bus,
            mode: Mutex::new(mode),
            attempts: AtomicUsize::new(0),
        });
        let outbox = Outbox::new(bus.clone(), limits, OutboxMetrics::detached());
        (outbox, bus, rx)
    }

    fn numbered(range: std::ops::Range<u32>) -> Vec<Outgoing> {
        range
            .map(|i| Outgoing::new("room:r".into(), Bytes::from(i.to_string())))
            .collect()
    }

    /// The next `n` payloads received, as numbers, repeats dropped as a
    /// gateway drops repeated seqs (a number at or below the last one).
    async fn receive(rx: &mut Inbound, n: usize) -> Vec<u32> {
        let mut got: Vec<u32> = Vec::new();
        while got.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("in time")
                .unwrap();
            let i: u32 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
            if got.last().is_none_or(|last| i > *last) {
                got.push(i);
            }
        }
        got
    }

    /// Waits (up to 10 s) until `cond` holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn pushes_reach_the_bus_in_order_in_chunks() {
        let (outbox, bus, mut rx) = rig(Mode::Up, OutboxLimits::default()).await;
        outbox.push(numbered(0..300));
        outbox.push(numbered(300..1000));
        assert_eq!(receive(&mut rx, 1000).await, (0..1000).collect::<Vec<_>>());
        // 1000 messages in chunks of at most 256.
        assert!(bus.attempts.load(Ordering::Relaxed) >= 4);
        until("idle", || outbox.is_idle()).await;
        assert_eq!(outbox.shared.metrics.messages.get(), 0);
    }

    #[tokio::test]
    async fn failures_are_retried_and_keep_the_order() {
        let (outbox, bus, mut rx) = rig(Mode::Failing, fast()).await;
        outbox.push(numbered(0..100));
        outbox.push(numbered(100..200));
        let metrics = &outbox.shared.metrics;
        until("five failures", || metrics.failures.get() >= 5).await;
        assert_eq!(metrics.messages.get(), 200);
        bus.set(Mode::Up);
        // Every failed attempt published the chunk's first half again: the
        // repeats go, the order stays.
        assert_eq!(receive(&mut rx, 200).await, (0..200).collect::<Vec<_>>());
        until("idle", || outbox.is_idle()).await;
    }

    #[tokio::test]
    async fn retries_back_off_to_the_cap() {
        let (outbox, bus, _rx) = rig(Mode::Failing, fast()).await;
        outbox.push(numbered(0..2));
        // 5 + 10 + 20 + 40 ms, then one attempt every 50 ms: about 23 in a
        // second. Without the cap there would be 8, without a backoff thousands.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let attempts = bus.attempts.load(Ordering::Relaxed);
        assert!((12..=25).contains(&attempts), "{attempts}");
    }

    #[tokio::test]
    async fn a_stalled_bus_never_blocks_a_push_and_each_attempt_times_out() {
        let (outbox, bus, mut rx) = rig(Mode::Stalled, fast()).await;
        let started = std::time::Instant::now();
        for i in 0..100 {
            outbox.push(numbered(i * 100..(i + 1) * 100));
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        let metrics = &outbox.shared.metrics;
        until("two attempts timed out", || metrics.failures.get() >= 2).await;
        assert_eq!(metrics.messages.get(), 10_000);
        bus.set(Mode::Up);
        assert_eq!(
            receive(&mut rx, 10_000).await,
            (0..10_000).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_full_outbox_drops_its_oldest_messages_and_counts_them() {
        let limits = OutboxLimits {
            max_messages: 1000,
            chunk: 10,
            ..fast()
        };
        let (outbox, bus, mut rx) = rig(Mode::Stalled, limits).await;
        outbox.push(numbered(0..10));
        until("the chunk in flight", || outbox.queue().in_flight == 10).await;
        outbox.push(numbered(10..1510));
        let metrics = &outbox.shared.metrics;
        assert_eq!(metrics.dropped.get(), 500);
        assert_eq!(metrics.messages.get(), 1010);
        bus.set(Mode::Up);
        let got = receive(&mut rx, 1010).await;
        // The chunk in flight, then the newest thousand: a seq jump, repaired by its receivers.
        let expected: Vec<u32> = (0..10).chain(510..1510).collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn the_byte_bound_holds_too() {
        let limits = OutboxLimits {
            max_bytes: 10_000,
            ..fast()
        };
        let (outbox, bus, mut rx) = rig(Mode::Stalled, limits).await;
        // 1000 bytes each, with the channel's 6.
        let messages =
            (0..50).map(|i: u32| Outgoing::new("room:r".into(), Bytes::from(format!("{i:0>994}"))));
        outbox.push(messages);
        let metrics = &outbox.shared.metrics;
        assert_eq!(metrics.dropped.get(), 40);
        assert_eq!(metrics.bytes.get(), 10_000);
        bus.set(Mode::Up);
        assert_eq!(receive(&mut rx, 10).await, (40..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn close_publishes_what_is_queued() {
        let (outbox, _bus, mut rx) = rig(Mode::Up, OutboxLimits::default()).await;
        outbox.push(numbered(0..500));
        outbox.close(Duration::from_secs(5)).await;
        assert_eq!(receive(&mut rx, 500).await, (0..500).collect::<Vec<_>>());
        // Closed: a later push goes nowhere.
        outbox.push(numbered(500..501));
        assert_eq!(outbox.shared.metrics.dropped.get(), 1);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn close_gives_up_at_its_deadline_and_counts_what_is_left() {
        let (outbox, _bus, _rx) = rig(Mode::Stalled, fast()).await;
        outbox.push(numbered(0..500));
        let started = std::time::Instant::now();
        outbox.close(Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(outbox.shared.metrics.dropped.get(), 500);
        assert_eq!(outbox.shared.metrics.messages.get(), 0);
    }

    #[tokio::test]
    async fn publish_or_push_publishes_at_once_only_when_nothing_waits() {
        let (outbox, bus, mut rx) = rig(Mode::Up, fast()).await;
        let within = Duration::from_millis(300);
        let reached = outbox.publish_or_push(numbered(0..2), within).await;
        assert_eq!(reached, Some(vec![1, 1]));
        // A stalled bus: the attempt gives up and the messages wait in the outbox.
        bus.set(Mode::Stalled);
        let started = std::time::Instant::now();
        assert_eq!(outbox.publish_or_push(numbered(2..3), within).await, None);
        let took = started.elapsed();
        assert!(took >= within && took < within * 3, "{took:?}");
        // Behind a backlog they queue at once, even when the bus is back.
        bus.set(Mode::Up);
        assert!(!outbox.is_idle());
        let started = std::time::Instant::now();
        assert_eq!(outbox.publish_or_push(numbered(3..4), within).await, None);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(receive(&mut rx, 4).await, vec![0, 1, 2, 3]);
    }
}
