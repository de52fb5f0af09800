//! One WebSocket connection: its lifecycle, its reader loop and its handle.
//!
//! fastwebsockets' `read_frame` is not cancel-safe, so a connection runs as
//! two tasks: this reader (frames in, requests handled in order) and the
//! writer in [`writer`] (outbound queue, pings, close). Anyone may close a
//! session through its [`SessionHandle`]; the first reason wins, the writer
//! sends `bye` and the close frame, and the reader gets a short grace to see
//! the client's close before the socket is dropped.

mod dispatch;
mod outbuf;
mod queue;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocket, WebSocketError};
use telepath_shared::auth::Claims;
use telepath_shared::protocol::{
    ByeReason, CloseCode, ConnectionEvent, ConnectionEventKind, Limits, PresenceReport,
    ServerFrame, Welcome, user_channel,
};
use tokio::sync::Notify;

use crate::GatewayState;
use crate::hub::ConnId;
use crate::metrics::{GatewayMetrics, OutKind};

/// The upgraded stream of one connection: the TCP stream itself (see
/// `connect.rs`), split into owned halves without a lock.
pub(crate) type Stream = tokio::net::TcpStream;

/// One frame queued to a connection: a pointer and a tag, 16 bytes a slot.
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

/// How long the reader waits for the client's close frame after we closed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a session needs shared between its reader, its writer and the hub.
struct Control {
    /// Cancelled when the session must close.
    closing: Closing,
    /// Why it closes: the first caller of [`SessionHandle::close`] wins.
    reason: Mutex<Option<(CloseCode, Option<ByeReason>)>>,
    /// Milliseconds since `started` at which the client last sent anything.
    last_seen_ms: AtomicU64,
    /// Milliseconds since `started` of the client's last data frame (pings
    /// and pongs keep a connection alive but do not make it active).
    last_active_ms: AtomicU64,
    /// Reported idle to presence (no data frame for `away_after`).
    idle: AtomicBool,
    /// The token's `exp` (Unix seconds), moved by `refresh` (which raises
    /// the outbound queue's signal, so the writer re-arms its timer).
    expiry: AtomicI64,
    /// This connection's sends waiting for the api (they are pipelined:
    /// see `dispatch`).
    sends_in_flight: AtomicU32,
    /// Signalled each time one of them is answered.
    send_answered: Notify,
    started: Instant,
    /// This connection's id and user, for the reports the writer makes.
    conn_id: String,
    user_id: String,
}

impl Control {
    fn new(conn_id: String, user_id: String, expiry: i64) -> Self {
        Control {
            closing: Closing::default(),
            reason: Mutex::new(None),
            last_seen_ms: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(0),
            idle: AtomicBool::new(false),
            expiry: AtomicI64::new(expiry),
            sends_in_flight: AtomicU32::new(0),
            send_answered: Notify::new(),
            started: Instant::now(),
            conn_id,
            user_id,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Returns once fewer than `below` of the connection's sends wait for the api.
    async fn sends_answered(&self, below: u32) {
        loop {
            // Registered before the check, so an answer in between wakes it.
            let mut answered = std::pin::pin!(self.send_answered.notified());
            answered.as_mut().enable();
            if self.sends_in_flight.load(Ordering::Acquire) < below {
                return;
            }
            answered.await;
        }
    }
}

/// A once-only signal that the session must close: a flag and a `Notify`
/// inside [`Control`], where tokio-util's `CancellationToken` would be a
/// separate 112-byte allocation per connection (a node of a token tree that
/// sessions do not use).
#[derive(Default)]
struct Closing {
    set: AtomicBool,
    notify: Notify,
}

impl Closing {
    fn cancel(&self) {
        if !self.set.swap(true, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Returns once [`Closing::cancel`] has been called.
    async fn cancelled(&self) {
        loop {
            // Registered before the check, so a cancel in between wakes it.
            let mut notified = std::pin::pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A cheap handle to queue frames to a session or close it.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    tx: queue::Sender<Outbound>,
    control: Arc<Control>,
}

impl SessionHandle {
    /// Queues a text frame without waiting; false when the queue is full
    /// (the caller closes the session as a slow consumer).
    pub(crate) fn push(&self, frame: Outbound) -> bool {
        match self.tx.try_push(frame) {
            Ok(()) => true,
            Err(queue::PushError::Full(_)) => false,
            // Already closed: nothing to do, and not a slow consumer.
            Err(queue::PushError::Closed(_)) => true,
        }
    }

    /// Queues one frame; a full queue closes the session as a slow consumer
    /// (`bye` slow_consumer, 1013), counted in `metrics`. Returns whether
    /// the frame was queued. Every frame for a client goes through here.
    pub(crate) fn deliver(&self, frame: Outbound, metrics: &GatewayMetrics) -> bool {
        if self.push(frame) {
            return true;
        }
        self.close_slow(metrics);
        false
    }

    /// Closes the session as a slow consumer: it cannot keep up.
    pub(crate) fn close_slow(&self, metrics: &GatewayMetrics) {
        metrics.slow_consumers.inc();
        self.close(CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer));
    }

    /// Closes the session with `code`, sending `bye` first when `bye` is set.
    pub(crate) fn close(&self, code: CloseCode, bye: Option<ByeReason>) {
        let mut reason = self.control.reason.lock().expect("session lock poisoned");
        if reason.is_none() {
            *reason = Some((code, bye));
        }
        drop(reason);
        self.end();
    }

    /// Marks the session closing (with whatever reason was given first) and
    /// wakes the writer, which waits on its queue, to close.
    fn end(&self) {
        self.control.closing.cancel();
        self.tx.signal();
    }

    /// A handle on a queue of `capacity` frames, for unit tests of the hub.
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (SessionHandle, queue::Receiver<Outbound>) {
        let (tx, rx) = queue::queue(capacity);
        let control = Arc::new(Control::new(String::new(), String::new(), i64::MAX));
        (SessionHandle { tx, control }, rx)
    }

    /// Why the session is closing, if it is.
    #[cfg(test)]
    pub(crate) fn close_reason(&self) -> Option<(CloseCode, Option<ByeReason>)> {
        *self.control.reason.lock().expect("session lock poisoned")
    }

    /// The session's token now expires at `exp` (Unix seconds).
    fn set_expiry(&self, exp: i64) {
        self.control.expiry.store(exp, Ordering::Relaxed);
        // The writer re-reads the expiry when its queue is signalled.
        self.tx.signal();
    }

    /// The client sent something: it is alive.
    fn touch(&self) {
        self.control
            .last_seen_ms
            .store(self.control.now_ms(), Ordering::Relaxed);
    }

    /// The client sent a data frame: it is active. Returns true when the
    /// connection was idle until now (the caller reports it active again).
    fn activity(&self) -> bool {
        self.control
            .last_active_ms
            .store(self.control.now_ms(), Ordering::Relaxed);
        self.control.idle.swap(false, Ordering::Relaxed)
    }
}

/// Where a connection comes from, for the connection log.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) ip: String,
    pub(crate) user_agent: Option<String>,
}

/// Everything the reader knows about its connection.
pub(crate) struct Session {
    pub(crate) id: ConnId,
    pub(crate) claims: Claims,
    pub(crate) handle: SessionHandle,
    pub(crate) state: GatewayState,
    /// Rooms this connection has joined.
    pub(crate) rooms: std::collections::HashSet<String>,
    pub(crate) limiter: governor::DefaultDirectRateLimiter,
    /// Consecutive frames refused by the rate limiter.
    pub(crate) strikes: u32,
    pub(crate) client: ClientInfo,
    /// A join's gate to release once its reply and replay are queued: (channel, latest seq).
    pub(crate) ungate: Option<(String, i64)>,
}

impl Session {
    /// This connection's id, as clients and presence know it.
    pub(crate) fn conn_id(&self) -> &str {
        &self.handle.control.conn_id
    }

    /// Queues a frame made on this node; a full queue closes the session as
    /// a slow consumer (1013). Returns whether it was queued.
    pub(crate) fn send(&self, frame: &ServerFrame) -> bool {
        send_to(&self.handle, &self.state, frame)
    }
}

/// Queues `frame` on `handle` and counts it; a full queue closes the session.
fn send_to(handle: &SessionHandle, state: &GatewayState, frame: &ServerFrame) -> bool {
    let metrics = &state.inner.metrics;
    metrics.frames_out(OutKind::of_type(frame.name()), 1);
    handle.deliver(Outbound::local(Bytes::from(frame.to_json())), metrics)
}

/// How the reader saw the connection end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent a close frame with this code (1005 when it gave none).
    Closed(u16),
    /// The connection went away without a close frame.
    Gone,
    /// The client broke the protocol; we close with this code.
    Violation(CloseCode),
}

/// Serves one upgraded connection until it closes: sets the session up
/// now and returns its life as a future. Not an `async fn`: that would keep
/// room for the arguments (the socket, the claims) beside the session
/// built from them, in every idle connection.
pub(crate) fn serve(
    mut ws: WebSocket<Stream>,
    state: GatewayState,
    claims: Claims,
    id: ConnId,
    client: ClientInfo,
) -> impl Future<Output = ()> + Send + 'static {
    let cfg = &state.inner.config;
    ws.set_max_message_size(cfg.max_frame_bytes);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let (read, write) = ws.split(|s| {
        let (r, w) = s.into_split();
        (r, outbuf::OutBuf::new(w))
    });

    // Everything the writer writes, in order: text frames, and the pongs and
    // close echo the reader owes the client (those wait for room, so a client
    // that floods pings without reading is slowed down, not buffered).
    let (tx, rx) = queue::queue::<Outbound>(cfg.outbound_queue);
    let conn_id = uuid::Uuid::now_v7().hyphenated().to_string();
    let control = Arc::new(Control::new(
        conn_id.clone(),
        claims.sub.clone(),
        claims.exp,
    ));
    let handle = SessionHandle {
        tx,
        control: control.clone(),
    };
    let quota = governor::Quota::per_second(
        std::num::NonZeroU32::new(cfg.max_rate_per_s.max(1)).expect("max(1) is non-zero"),
    );

    // The welcome is queued before the session becomes visible to the hub, so it is always first.
    send_to(
        &handle,
        &state,
        &ServerFrame::Welcome(Welcome {
            conn_id,
            user: claims.user(),
            node: cfg.common.node_id.clone(),
            heartbeat_ms: cfg.heartbeat_ms,
            limits: Limits {
                max_frame_bytes: cfg.max_frame_bytes,
                max_rate_per_s: cfg.max_rate_per_s,
                max_body_bytes: cfg.max_body_bytes,
                max_rooms_per_conn: cfg.max_rooms_per_conn,
            },
        }),
    );
    let writer = tokio::spawn(writer::run(write, rx, control.clone(), state.clone()));

    let session = Session {
        id,
        claims,
        handle,
        state: state.clone(),
        rooms: Default::default(),
        limiter: governor::RateLimiter::direct(quota),
        strikes: 0,
        client,
        ungate: None,
    };
    live(session, read, writer, control, state)
}

/// A session from its registration to its end. `control` and `state` are
/// the session's own, held apart so that the select below can wait on them
/// while the reader borrows the session.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
fn live(
    mut session: Session,
    read: fastwebsockets::WebSocketRead<tokio::net::tcp::OwnedReadHalf>,
    mut writer: tokio::task::JoinHandle<()>,
    control: Arc<Control>,
    state: GatewayState,
) -> impl Future<Output = ()> + Send + 'static {
    // An async block, not an async fn: an async fn moves each argument into
    // a local first, so its future would hold every argument twice.
    async move {
        // Boxed, like every large future that runs once: an await inline keeps
        // its space in the session's future for the connection's whole life.
        Box::pin(register(&session)).await;

        let closing = &control.closing;
        let end = tokio::select! {
            // The reader ends on the client's close, an error, or EOF.
            end = read_loop(read, &mut session) => {
                if let End::Violation(code) = end {
                    session.handle.close(code, None);
                }
                Some(end)
            }
            // We are closing: give the client a moment to answer the close frame.
            _ = async { closing.cancelled().await; tokio::time::sleep(CLOSE_GRACE).await } => None,
            // Server shutdown: tell the client to reconnect elsewhere.
            _ = state.inner.shutdown.cancelled() => {
                session.handle.close(CloseCode::Restart, Some(ByeReason::Restart));
                let _ = tokio::time::timeout(CLOSE_GRACE, closing.cancelled()).await;
                None
            }
        };
        session.handle.end();
        // The writer may be stuck writing to a client that stopped reading: bound the wait.
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        let server_close = *control.reason.lock().expect("session lock poisoned");
        let (code, reason) = disconnect_label(server_close, end);
        Box::pin(unregister(&session, code, reason)).await;
    }
}

/// The close code and reason a disconnect is counted and logged under: the
/// server's own reason when it closed, else what the client did.
fn disconnect_label(
    server_close: Option<(CloseCode, Option<ByeReason>)>,
    end: Option<End>,
) -> (u16, &'static str) {
    if let Some((code, bye)) = server_close {
        let reason = match (code, bye) {
            (CloseCode::Restart, _) => "restart",
            (_, Some(ByeReason::SlowConsumer)) => "slow_consumer",
            (CloseCode::TokenExpired, _) => "token_expired",
            (CloseCode::Admin, _) => "admin",
            (CloseCode::RateLimit, _) => "rate_limit",
            // The writer closes a client that stopped answering pings with 1011.
            (CloseCode::Internal, None) => "timeout",
            (
                CloseCode::ProtocolError
                | CloseCode::UnsupportedData
                | CloseCode::InvalidPayload
                | CloseCode::TooBig,
                _,
            ) => "protocol",
            _ => "server",
        };
        return (code.code(), reason);
    }
    match end {
        Some(End::Closed(code)) => (code, "client_closed"),
        _ => (1006, "client_gone"),
    }
}

/// Makes the session reachable: its user channel and presence.
async fn register(session: &Session) {
    let state = &session.state;
    state.inner.metrics.connects.inc();
    state.inner.metrics.connections.inc();
    let user = session.claims.user_ref();
    state
        .inner
        .hub
        .join(&user_channel(&user.id), session.id, session.handle.clone())
        .await;
    deliver_pending_dms(session).await;
    let connected = log_event(session, ConnectionEventKind::Connect, None);
    state.inner.logs.log(connected);
    state.inner.presence.report(PresenceReport::Connect {
        conn_id: session.conn_id().to_owned(),
        user,
        node: state.inner.config.common.node_id.clone(),
    });
}

/// Sends the DMs waiting in the user's offline queue, oldest first. The
/// user channel is subscribed already, so a DM sent meanwhile may arrive
/// twice; clients drop repeats by id.
async fn deliver_pending_dms(session: &Session) {
    match session
        .state
        .inner
        .api
        .pending_dms(&session.claims.sub)
        .await
    {
        Ok(pending) => {
            for dm in pending.messages {
                if !session.send(&ServerFrame::Dm(dm)) {
                    return;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "reading the offline queue failed; the DMs stay queued")
        }
    }
}

/// Removes every trace of the session from this node and reports the disconnect.
async fn unregister(session: &Session, code: u16, reason: &'static str) {
    let state = &session.state;
    let hub = &state.inner.hub;
    for room in &session.rooms {
        hub.leave(&telepath_shared::protocol::room_channel(room), session.id);
    }
    hub.leave(&user_channel(&session.claims.sub), session.id);
    state.inner.presence.report(PresenceReport::Disconnect {
        conn_id: session.conn_id().to_owned(),
        user_id: session.claims.sub.clone(),
    });
    let disconnected = log_event(
        session,
        ConnectionEventKind::Disconnect,
        Some(code.to_string()),
    );
    state.inner.logs.log(disconnected);
    state.inner.metrics.disconnected(code, reason);
    tracing::debug!(conn_id = %session.conn_id(), code, reason, "disconnected");
}

/// The connection log entry for this session.
fn log_event(
    session: &Session,
    event: ConnectionEventKind,
    reason: Option<String>,
) -> ConnectionEvent {
    ConnectionEvent {
        event,
        conn_id: session.conn_id().to_owned(),
        user: session.claims.user_ref(),
        node: session.state.inner.config.common.node_id.clone(),
        ip: Some(session.client.ip.clone()),
        user_agent: session.client.user_agent.clone(),
        reason,
        at: chrono::Utc::now(),
    }
}

/// Reads frames until the connection ends, and says how it ended.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
fn read_loop(
    mut read: fastwebsockets::WebSocketRead<tokio::net::tcp::OwnedReadHalf>,
    session: &mut Session,
) -> impl Future<Output = End> + Send + '_ {
    // An async block, not an async fn: see `live`.
    async move {
        let max = session.state.inner.config.max_frame_bytes;
        // A fragmented text message being collected (browsers rarely fragment).
        let mut partial: Option<Vec<u8>> = None;
        // The pongs and close echo fastwebsockets owes the client go to the
        // writer. The echo waits (a little) for the replies to the client's
        // sends still with the api: they go out before it.
        let tx = session.handle.tx.clone();
        let control = session.handle.control.clone();
        let mut send_fn = |frame: Frame<'_>| {
            let op = match frame.opcode {
                OpCode::Close => Some(Op::CloseEcho),
                OpCode::Pong => Some(Op::Pong),
                _ => None,
            };
            let out = op.map(|op| Outbound::new(Bytes::copy_from_slice(&frame.payload), 0, op));
            let (tx, control) = (tx.clone(), control.clone());
            async move {
                let Some(out) = out else { return Ok(()) };
                if out.op == Op::CloseEcho {
                    let _ = tokio::time::timeout(CLOSE_GRACE, control.sends_answered(1)).await;
                }
                tx.push(out)
                    .await
                    .map_err(|_| WebSocketError::ConnectionClosed)
            }
        };
        loop {
            // Between frames, wait for the next one without holding a read
            // buffer (8 KiB per idle connection otherwise; see
            // vendor/fastwebsockets/PATCHES.md). The peek consumes nothing.
            if read.release_buffer() {
                match read.get_mut().peek(&mut [0u8; 1]).await {
                    Ok(0) | Err(_) => return End::Gone,
                    Ok(_) => {}
                }
            }
            // Boxed: the read's future (with the wait for room for a pong)
            // would otherwise be part of every idle connection's session.
            let frame = match Box::pin(read.read_frame(&mut send_fn)).await {
                Ok(frame) => frame,
                Err(e) => return error_close(e),
            };
            session.handle.touch();
            let data = matches!(
                frame.opcode,
                OpCode::Text | OpCode::Binary | OpCode::Continuation
            );
            if data {
                session
                    .state
                    .inner
                    .metrics
                    .bytes_in
                    .inc_by(frame.payload.len() as u64);
            }
            if data && session.handle.activity() {
                session.state.inner.presence.report(PresenceReport::Idle {
                    conn_id: session.conn_id().to_owned(),
                    user_id: session.claims.sub.clone(),
                    idle: false,
                });
            }
            match frame.opcode {
                OpCode::Close => return End::Closed(client_close_code(&frame.payload)),
                OpCode::Pong | OpCode::Ping => continue,
                OpCode::Binary => return End::Violation(CloseCode::UnsupportedData),
                OpCode::Text if frame.fin && partial.is_none() => {
                    // Boxed: handling a request awaits the api, and that future
                    // is large; inline it would sit in every idle connection.
                    Box::pin(dispatch::handle_text(session, &frame.payload)).await;
                }
                OpCode::Text if partial.is_none() => partial = Some(frame.payload.to_vec()),
                OpCode::Continuation => {
                    let Some(buf) = partial.as_mut() else {
                        return End::Violation(CloseCode::ProtocolError);
                    };
                    if buf.len() + frame.payload.len() >= max {
                        return End::Violation(CloseCode::TooBig);
                    }
                    buf.extend_from_slice(&frame.payload);
                    if frame.fin {
                        let buf = partial.take().expect("checked above");
                        if std::str::from_utf8(&buf).is_err() {
                            return End::Violation(CloseCode::InvalidPayload);
                        }
                        Box::pin(dispatch::handle_text(session, &buf)).await;
                    }
                }
                // A new data frame while a fragmented message is open.
                OpCode::Text => return End::Violation(CloseCode::ProtocolError),
            }
            if session.handle.control.closing.is_cancelled() {
                return End::Gone;
            }
        }
    }
}

/// The code in a client's close frame (1005, "no status", when it has none).
fn client_close_code(payload: &[u8]) -> u16 {
    match payload {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 1005,
    }
}

/// How a read error ends the connection.
fn error_close(e: WebSocketError) -> End {
    match e {
        WebSocketError::FrameTooLarge => End::Violation(CloseCode::TooBig),
        WebSocketError::InvalidUTF8 => End::Violation(CloseCode::InvalidPayload),
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed
        | WebSocketError::SendError(_) => End::Gone,
        _ => End::Violation(CloseCode::ProtocolError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client text frame.
    fn client_frame(text: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x80 | text.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// The patched fastwebsockets (vendor/fastwebsockets/PATCHES.md): the
    /// read buffer is freed only when no unread byte is in it, and frames
    /// still parse across a release and across split arrivals.
    #[tokio::test]
    async fn the_read_buffer_is_released_only_between_frames() {
        use tokio::io::AsyncWriteExt;
        let (server, mut client) = tokio::io::duplex(4096);
        let (r, w) = tokio::io::split(server);
        let (mut read, _write) =
            fastwebsockets::after_handshake_split(r, w, fastwebsockets::Role::Server);
        let mut send_fn = |_: Frame<'_>| async { Ok::<(), WebSocketError>(()) };
        assert!(read.release_buffer(), "nothing read yet: nothing to keep");
        // Two frames in one write: after the first, the second is buffered.
        let mut two = client_frame(b"one");
        two.extend(client_frame(b"two"));
        client.write_all(&two).await.unwrap();
        let f = read.read_frame(&mut send_fn).await.unwrap();
        assert_eq!(&f.payload[..], b"one");
        assert!(!read.release_buffer(), "the second frame is in the buffer");
        let f = read.read_frame(&mut send_fn).await.unwrap();
        assert_eq!(&f.payload[..], b"two");
        assert!(read.release_buffer(), "empty between frames");
        // A frame that arrives in pieces after a release.
        let three = client_frame(b"three");
        let reader = tokio::spawn(async move {
            let mut send_fn = |_: Frame<'_>| async { Ok::<(), WebSocketError>(()) };
            let f = read.read_frame(&mut send_fn).await.unwrap();
            (f.payload.to_vec(), read.release_buffer())
        });
        client.write_all(&three[..1]).await.unwrap();
        tokio::task::yield_now().await;
        client.write_all(&three[1..4]).await.unwrap();
        tokio::task::yield_now().await;
        client.write_all(&three[4..]).await.unwrap();
        let (payload, released) = reader.await.unwrap();
        assert_eq!(payload, b"three");
        assert!(released);
    }

    #[tokio::test]
    async fn closing_wakes_every_waiter_before_and_after_the_cancel() {
        let closing = Arc::new(Closing::default());
        let early: Vec<_> = (0..3)
            .map(|_| {
                let c = closing.clone();
                tokio::spawn(async move { c.cancelled().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!closing.is_cancelled());
        assert!(
            early.iter().all(|t| !t.is_finished()),
            "nothing cancelled yet"
        );
        closing.cancel();
        closing.cancel();
        assert!(closing.is_cancelled());
        for t in early {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("a waiter from before the cancel wakes")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), closing.cancelled())
            .await
            .expect("a wait after the cancel returns at once");
    }

    #[test]
    fn disconnects_are_labelled_by_who_closed_and_why() {
        let server = |code, bye| disconnect_label(Some((code, bye)), None);
        assert_eq!(
            server(CloseCode::Restart, Some(ByeReason::Restart)),
            (1012, "restart")
        );
        assert_eq!(
            server(CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer)),
            (1013, "slow_consumer")
        );
        assert_eq!(server(CloseCode::Internal, None), (1011, "timeout"));
        assert_eq!(server(CloseCode::TooBig, None), (1009, "protocol"));
        assert_eq!(
            disconnect_label(None, Some(End::Closed(1000))),
            (1000, "client_closed")
        );
        assert_eq!(
            disconnect_label(None, Some(End::Gone)),
            (1006, "client_gone")
        );
        assert_eq!(disconnect_label(None, None), (1006, "client_gone"));
        assert_eq!(client_close_code(&[0x03, 0xe8]), 1000);
        assert_eq!(client_close_code(&[]), 1005);
    }
}
