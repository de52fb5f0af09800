//! The writer half of a session: the only task that writes to the socket.
//!
//! It drains the outbound queue in batches (one flush per batch), which
//! also carries the pongs and close echo the reader owes the client (so a
//! connection has one queue, not two), pings on the heartbeat,
//! closes clients that went silent, and closes with 4001 when the token
//! expires. On close it sends `bye` (when there is a reason to give) and the
//! close frame. A write that cannot finish because the client stopped
//! reading (its socket buffer full) does not stop those timers: a write
//! still blocked `2 × heartbeat` after it began, or at the token's expiry,
//! ends the connection without another frame (there is no room for one). With `TELEPATH_WRITE_DELAY_MS` a connection's writes are at
//! least that far apart: a text frame that comes sooner after the last
//! write waits, and the frames arriving meanwhile share its write (fewer
//! writes for a busy connection, no added latency for a quiet one).
//! It measures what only it can see: bytes written, the queue depth it
//! finds, and each bus frame's publish-to-write latency (observed once per
//! batch, and no histogram kept per connection).

use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketWrite};
use telepath_shared::bus::unix_micros;
use telepath_shared::protocol::{Bye, ByeReason, CloseCode, PresenceReport, ServerFrame};

use crate::GatewayState;
use crate::handle::queue::{Next, Receiver};
use crate::handle::{Control, Op, Outbound};
use crate::metrics::OutKind;

/// Frames written before one flush.
const BATCH: usize = 64;

/// Bus frames in a batch above which their latencies are summed locally.
const LOCAL_AFTER: usize = 4;

/// The write half, buffered per batch: a batch of frames becomes one write.
type Writer = WebSocketWrite<super::outbuf::OutBuf<tokio::net::tcp::OwnedWriteHalf>>;

/// Runs until the session closes or the socket fails.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
pub(super) fn run(
    mut ws: Writer,
    mut out: Receiver<Outbound>,
    control: Arc<Control>,
    state: GatewayState,
) -> impl Future<Output = ()> + Send + 'static {
    // An async block, not an async fn: an async fn moves each argument into
    // a local first, so its future would hold every argument twice.
    async move {
        // Frames of any size are written as header and payload slices into the
        // batch buffer: below the threshold fastwebsockets would first copy
        // each frame into a scratch buffer that it keeps for the connection's life.
        ws.set_writev_threshold(0);
        let heartbeat = state.common().heartbeat();
        // One timer for the next ping and the token's expiry, whichever is
        // first. Made once, not on every turn of the loop: a fresh sleep would
        // re-arm a timer for every frame written. The close and a refresh
        // arrive as the queue's signal, so each turn waits on the queue and
        // this timer only.
        let mut next_ping = tokio::time::Instant::now() + heartbeat;
        let mut expires = until_unix(control.expiry());
        let timer = tokio::time::sleep_until(next_ping.min(expires));
        tokio::pin!(timer);
        // The last batch stopped at BATCH with frames left: they have waited already.
        let mut cut = false;
        // When the last batch was written, for the write delay.
        let mut last_write: Option<tokio::time::Instant> = None;
        let delay = state.config().write_delay();
        let result: Result<(), WebSocketError> = async {
            loop {
                tokio::select! {
                    biased;
                    next = out.next() => {
                        let first = match next {
                            Next::Item(first) if !control.closing.is_cancelled() => first,
                            Next::Item(first) => return Box::pin(closing(&mut ws, &mut out, Some(first))).await,
                            Next::Signal if control.closing.is_cancelled() => {
                                return Box::pin(closing(&mut ws, &mut out, None)).await;
                            }
                            // A refresh moved the expiry.
                            Next::Signal => {
                                expires = until_unix(control.expiry());
                                timer.as_mut().reset(next_ping.min(expires));
                                continue;
                            }
                        };
                        // Within the write delay of the last write: wait for the rest of it.
                        let hold = last_write
                            .map(|at| at + delay)
                            .filter(|until| !cut && *until > tokio::time::Instant::now());
                        // Boxed: the batch's timestamps (half a KiB) exist only while it is written.
                        let write = write_batch(&mut ws, &mut out, first, hold, &state);
                        cut = Box::pin(bounded(write, timer.as_mut(), expires, heartbeat * 2, &control)).await?;
                        if !delay.is_zero() {
                            last_write = Some(tokio::time::Instant::now());
                        }
                    }
                    _ = &mut timer => {
                        let now = tokio::time::Instant::now();
                        if now >= expires {
                            let exp = control.expiry();
                            if valid_for_ms(exp) == 0 {
                                control.close((CloseCode::TokenExpired, Some(ByeReason::TokenExpired)));
                                return Ok(());
                            }
                            // Woken early (the wait is capped): wait for the rest.
                            expires = until_unix(exp);
                        }
                        if now >= next_ping {
                            check_idle(&control, &state);
                            if control.silent_for() > heartbeat * 2 {
                                control.close((CloseCode::Internal, None));
                                return Ok(());
                            }
                            let ping = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"hb"));
                            let write = write_one(&mut ws, ping);
                            Box::pin(bounded(write, timer.as_mut(), expires, heartbeat * 2, &control)).await?;
                            // Late ticks are not caught up: the next ping is a heartbeat from now.
                            next_ping = now + heartbeat;
                        }
                        timer.as_mut().reset(next_ping.min(expires));
                    }
                }
            }
        }
        .await;
        if result.is_ok() {
            let _ = Box::pin(close(&mut ws, &control, &state)).await;
        }
    }
}

/// Awaits `write`, but not past `limit` after it began nor past the
/// token's expiry (`expires`): a client that stopped reading blocks the
/// write, and is then closed without another frame (for the logs: a slow
/// consumer, or an expired token). `timer` is the writer's one timer; it is
/// only re-armed when a write is still blocked when it fires.
async fn bounded<T>(
    write: impl Future<Output = Result<T, WebSocketError>>,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    expires: tokio::time::Instant,
    limit: Duration,
    control: &Control,
) -> Result<T, WebSocketError> {
    let began = tokio::time::Instant::now();
    tokio::pin!(write);
    loop {
        tokio::select! {
            biased;
            written = &mut write => return written,
            _ = timer.as_mut() => {
                let now = tokio::time::Instant::now();
                let reason = if now >= expires {
                    (CloseCode::TokenExpired, Some(ByeReason::TokenExpired))
                } else if now >= began + limit {
                    (CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer))
                } else {
                    timer.as_mut().reset((began + limit).min(expires));
                    continue;
                };
                tracing::debug!(conn_id = %control.conn_id, "a write stayed blocked: closing");
                control.close(reason);
                return Err(WebSocketError::ConnectionClosed);
            }
        }
    }
}

/// The WebSocket frame an [`Outbound`] is written as.
fn frame_of(out: &Outbound) -> Frame<'_> {
    let opcode = match out.op {
        Op::Text => OpCode::Text,
        Op::Pong => OpCode::Pong,
        Op::CloseEcho => OpCode::Close,
    };
    Frame::new(true, opcode, None, Payload::Borrowed(out.frame()))
}

/// The session is closing. A close echo among `first` and what is queued
/// answers the client's close: what was queued before it (replies to the
/// client's last requests, say) goes out, then the echo, and the writer
/// stops without a close frame of its own (`Err`). Otherwise what is
/// queued is dropped and the writer sends `bye` and its close frame (`Ok`).
async fn closing(
    ws: &mut Writer,
    out: &mut Receiver<Outbound>,
    first: Option<Outbound>,
) -> Result<(), WebSocketError> {
    let mut before = Vec::new();
    let mut next = first.or_else(|| out.try_recv());
    while let Some(frame) = next {
        if frame.op == Op::CloseEcho {
            for queued in &before {
                ws.write_frame(frame_of(queued)).await?;
            }
            write_one(ws, frame_of(&frame)).await?;
            return Err(WebSocketError::ConnectionClosed);
        }
        before.push(frame);
        next = out.try_recv();
    }
    Ok(())
}

/// Writes and flushes one frame. Boxed where it is called: a write's future
/// inline would be part of every idle connection's writer.
async fn write_one(ws: &mut Writer, frame: Frame<'_>) -> Result<(), WebSocketError> {
    ws.write_frame(frame).await?;
    ws.flush().await
}

/// Writes `first` and whatever else is already queued (up to [`BATCH`]),
/// flushes once, then records the batch's bytes and latencies. Returns
/// whether the batch stopped at [`BATCH`] (more may be queued). A close echo
/// ends the batch and the writer: the client closed, nothing more goes out.
///
/// With `hold` (the end of the write delay, `TELEPATH_WRITE_DELAY_MS`, that
/// began at the connection's last write), a text frame first waits until
/// then (or until the queue's signal), so the frames arriving meanwhile
/// share its write. Pongs and the close echo are not held back, nor is a
/// batch that is full already.
async fn write_batch(
    ws: &mut Writer,
    out: &mut Receiver<Outbound>,
    first: Outbound,
    hold: Option<tokio::time::Instant>,
    state: &GatewayState,
) -> Result<bool, WebSocketError> {
    if let Some(until) = hold
        && first.op == Op::Text
        && out.len() + 1 < BATCH
    {
        // Until then, or until the queue's signal (the session may be closing).
        tokio::select! {
            biased;
            _ = out.signalled() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
    let metrics = state.metrics();
    metrics.queue_depth.observe((out.len() + 1) as f64);
    let mut published = [0u64; BATCH];
    let mut bytes = 0;
    let mut n = 0;
    let mut next = Some(first);
    let mut echoed = false;
    while let Some(frame) = next.take() {
        ws.write_frame(frame_of(&frame)).await?;
        match frame.op {
            Op::Text => bytes += frame.frame().len(),
            Op::Pong => {}
            Op::CloseEcho => {
                echoed = true;
                break;
            }
        }
        published[n] = frame.published_us();
        n += 1;
        if n < BATCH {
            next = out.try_recv();
        }
    }
    ws.flush().await?;
    metrics.bytes_out.inc_by(bytes as u64);
    let now = unix_micros();
    let bus_frames = published[..n].iter().filter(|&&at| at > 0);
    let latencies = bus_frames
        .clone()
        .map(|&at| now.saturating_sub(at) as f64 / 1e6);
    // A few go straight into the shared histogram; a long batch is summed
    // locally first, so it touches the shared one once per bucket.
    if bus_frames.count() <= LOCAL_AFTER {
        latencies.for_each(|s| metrics.fanout_latency.observe(s));
    } else {
        let local = metrics.fanout_latency.local();
        latencies.for_each(|s| local.observe(s));
        local.flush();
    }
    if echoed {
        return Err(WebSocketError::ConnectionClosed);
    }
    Ok(n == BATCH)
}

/// Reports the connection idle once it has sent no data frame for `away_after`.
fn check_idle(control: &Control, state: &GatewayState) {
    if control.inactive_for() >= state.config().away_after() && control.become_idle() {
        state.presence().report(PresenceReport::Idle {
            conn_id: control.conn_id.clone(),
            user_id: control.user.id.clone(),
            idle: true,
        });
    }
}

/// Sends `bye` (if any) and the close frame for the session's close reason.
async fn close(
    ws: &mut Writer,
    control: &Control,
    state: &GatewayState,
) -> Result<(), WebSocketError> {
    let (code, bye) = control.reason().unwrap_or((CloseCode::Normal, None));
    if let Some(reason) = bye {
        state.metrics().frames_out(OutKind::Bye, 1);
        let frame = ServerFrame::Bye(Bye { reason }).to_json();
        ws.write_frame(Frame::text(Payload::Borrowed(frame.as_bytes())))
            .await?;
    }
    ws.write_frame(Frame::close(code.code(), b"")).await?;
    ws.flush().await
}

/// Milliseconds until a token with this `exp` (Unix seconds) stops being
/// valid, which is `exp` plus the clock-skew leeway that verification allows.
fn valid_for_ms(exp: i64) -> u64 {
    let now = chrono::Utc::now().timestamp_millis();
    let end = exp
        .saturating_add(telepath_shared::auth::LEEWAY_SECS as i64)
        .saturating_mul(1000);
    end.saturating_sub(now).max(0) as u64
}

/// When to check a token with this `exp` again: when it stops being valid,
/// or in a day at most (so no `exp` overflows the timer).
fn until_unix(exp: i64) -> tokio::time::Instant {
    let wait = valid_for_ms(exp).min(86_400_000);
    tokio::time::Instant::now() + Duration::from_millis(wait)
}
