//! The socketioxide side of the S1 comparison (`loadtest/bench-socketio.sh`
//! with `SOCKETIO_SERVER=socketioxide`): socketioxide 0.18 with
//! socketioxide-redis, the way its users deploy several nodes, doing exactly
//! what `loadtest/socketio/server.js` does for Socket.IO 4 and no more:
//!
//! ```text
//! emit("join", {room}, ack)        joins the room; ack({seq})
//! emit("send", {room, body}, ack)  emits "message" {room, seq, body} to the
//!                                  room on every node; ack({seq})
//! ```
//!
//! Messages are not persisted: the seq is a counter in the process that
//! receives the send, which is enough because each room has one publisher.
//! WebSocket transport only, TCP_NODELAY on (Node's HTTP server default).
//! Listens on 127.0.0.1:$PORT (3000) and prints one line once it does;
//! Redis at $REDIS_URL (`redis://127.0.0.1:6379`), spoken in RESP3 as the
//! adapter requires. SIGTERM exits at once with status 0.
//!
//! Order. Node handles a socket's events one after the other, in the order
//! they came, and its Redis adapter publishes without waiting for Redis and
//! delivers locally at once, so a room's messages and a socket's acks leave
//! in order. socketioxide runs each event's handler as a task of its own
//! (tokio tends to run the newest first: a send and the end marker right
//! behind it came out the other way round, and the generator stops at the
//! end marker's ack and message), and its emit waits for Redis's answer to
//! the publish before it delivers locally. So each event takes a [`Turn`]
//! while its socket reads it, and the socket's [`worker`] starts the events
//! in that order without waiting for one emit to finish before it starts
//! the next (the publishes queue on one Redis connection in order; their
//! answers, and so the local deliveries, come back in order), and acks each
//! once its emit and every earlier one is done.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{Future, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use axum::serve::ListenerExt;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::{ConnectHandler, FromMessageParts, Value};
use socketioxide::socket::Socket;
use socketioxide::{SocketIo, TransportType};
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// `join`'s data.
#[derive(Deserialize)]
struct Join {
    room: String,
}

/// `send`'s data.
#[derive(Deserialize)]
struct Send {
    room: String,
    body: String,
}

/// The `message` event.
#[derive(Serialize)]
struct Message<'a> {
    room: &'a str,
    seq: i64,
    body: &'a str,
}

/// Both acks.
#[derive(Serialize)]
struct Ack {
    seq: i64,
}

/// Each room's last seq given out by this process (`seqs` in server.js).
static SEQS: LazyLock<Mutex<HashMap<String, i64>>> = LazyLock::new(Default::default);

fn seqs() -> std::sync::MutexGuard<'static, HashMap<String, i64>> {
    SEQS.lock().unwrap_or_else(|e| e.into_inner())
}

/// An event for a socket's [`worker`].
enum Job<A: Adapter> {
    Join {
        socket: SocketRef<A>,
        room: String,
        ack: AckSender<A>,
    },
    Send {
        socket: SocketRef<A>,
        room: String,
        body: String,
        ack: AckSender<A>,
    },
}

/// What a started event leaves to do: its ack, once its emit is done.
type Started<A> = Pin<Box<dyn Future<Output = (AckSender<A>, i64)> + std::marker::Send>>;

/// A socket's events, numbered in the order it read them.
struct Order<A: Adapter> {
    next: AtomicU64,
    jobs: mpsc::UnboundedSender<(u64, Job<A>)>,
}

/// An event's number in its socket's [`Order`], taken while the socket reads
/// the event (extractors run then, in order; the handler is spawned after).
/// The last extractor of each handler, so that every number taken reaches
/// the worker.
struct Turn<A: Adapter> {
    order: Arc<Order<A>>,
    n: u64,
}

impl<A: Adapter> Turn<A> {
    fn submit(self, job: Job<A>) {
        // Fails only once the worker is gone with its socket.
        let _ = self.order.jobs.send((self.n, job));
    }
}

/// A socket without its [`Order`] (not set up by [`register`]).
#[derive(Debug)]
struct Gone;

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("socket without its worker")
    }
}

impl std::error::Error for Gone {}

impl<A: Adapter> FromMessageParts<A> for Turn<A> {
    type Error = Gone;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Gone> {
        let order = socket.extensions.get::<Arc<Order<A>>>().ok_or(Gone)?;
        let n = order.next.fetch_add(1, Ordering::Relaxed);
        Ok(Turn { order, n })
    }
}

/// Starts a socket's events in their order, several emits at once, and
/// sends their acks in the same order.
async fn worker<A: Adapter>(mut jobs: mpsc::UnboundedReceiver<(u64, Job<A>)>) {
    let mut early = BTreeMap::new();
    let mut next = 0;
    let mut started: FuturesOrdered<Started<A>> = FuturesOrdered::new();
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some((n, job)) = job else { break };
                early.insert(n, job);
                while let Some(job) = early.remove(&next) {
                    next += 1;
                    started.push_back(start(job));
                }
            }
            Some((ack, seq)) = started.next(), if !started.is_empty() => {
                ack.send(&Ack { seq }).ok();
            }
        }
    }
}

fn start<A: Adapter>(job: Job<A>) -> Started<A> {
    match job {
        Job::Join { socket, room, ack } => {
            socket.join(room.clone());
            let seq = seqs().get(&room).copied().unwrap_or(0);
            Box::pin(ready((ack, seq)))
        }
        Job::Send {
            socket,
            room,
            body,
            ack,
        } => {
            let seq = {
                let mut seqs = seqs();
                let seq = seqs.entry(room.clone()).or_insert(0);
                *seq += 1;
                *seq
            };
            // First polled in the order started: the publish queues on
            // the Redis connection then; local delivery once Redis answers.
            Box::pin(async move {
                let message = Message {
                    room: &room,
                    seq,
                    body: &body,
                };
                // Every member, the sender too (`io.to(room)` in server.js).
                socket
                    .within(room.clone())
                    .emit("message", &message)
                    .await
                    .ok();
                (ack, seq)
            })
        }
    }
}

/// Sets the socket up: its worker and its event handlers. A connect
/// middleware, because socketioxide sends the namespace's connect packet
/// after its middlewares but before it spawns the connect handler: a client
/// that emits as soon as it is connected (the generator joins at once)
/// would otherwise race the handlers' registration and lose its first
/// event. Node registers them before it reads anything more from the socket.
async fn register<A: Adapter>(socket: SocketRef<A>) -> Result<(), Gone> {
    let (jobs, rx) = mpsc::unbounded_channel();
    socket.extensions.insert(Arc::new(Order::<A> {
        next: AtomicU64::new(0),
        jobs,
    }));
    tokio::spawn(worker(rx));
    socket.on("join", on_join);
    socket.on("send", on_send);
    Ok(())
}

/// Nothing left to do once connected.
async fn connected<A: Adapter>(_: SocketRef<A>) {}

async fn on_join<A: Adapter>(
    socket: SocketRef<A>,
    Data(join): Data<Join>,
    ack: AckSender<A>,
    turn: Turn<A>,
) {
    turn.submit(Job::Join {
        socket,
        room: join.room,
        ack,
    });
}

async fn on_send<A: Adapter>(
    socket: SocketRef<A>,
    Data(send): Data<Send>,
    ack: AckSender<A>,
    turn: Turn<A>,
) {
    turn.submit(Job::Send {
        socket,
        room: send.room,
        body: send.body,
        ack,
    });
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse()?,
        Err(_) => 3000,
    };
    let mut url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if !url.contains("protocol=") {
        url.push_str(if url.contains('?') { "&" } else { "?" });
        url.push_str("protocol=resp3");
    }
    let client = redis::Client::open(url)?;
    let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
    let (layer, io) = SocketIo::builder()
        .transports([TransportType::Websocket])
        .with_adapter::<RedisAdapter<_>>(adapter)
        .build_layer();
    io.ns("/", connected.with(register)).await?;
    let app = axum::Router::new().layer(layer);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let listener = listener.tap_io(|tcp| {
        tcp.set_nodelay(true).ok();
    });
    let mut sigterm = signal(SignalKind::terminate())?;
    println!("socketioxide node on 127.0.0.1:{port}");
    tokio::select! {
        served = axum::serve(listener, app) => served?,
        _ = sigterm.recv() => {}
    }
    std::process::exit(0)
}
