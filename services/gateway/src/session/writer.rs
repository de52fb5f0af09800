//! The writer half of a session: the only task that writes to the socket.
//!
//! It drains the outbound queue in batches (one flush per batch), which
//! also carries the pongs and close echo the reader owes the client (so a
//! connection has one queue, not two), pings on the heartbeat,
//! closes clients that went silent, and closes with 4001 when the token
//! expires. On close it sends `bye` (when there is a reason to give) and the
//! close frame. It measures what only it can see: bytes written, the queue
//! depth it finds, and each bus frame's publish-to-write latency (kept in a
//! local histogram and flushed once per batch).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketWrite};
use prometheus::local::LocalHistogram;
use telepath_shared::bus::unix_micros;
use telepath_shared::protocol::{Bye, ByeReason, CloseCode, PresenceReport, ServerFrame};
use tokio::sync::{mpsc, watch};

use super::{Control, Op, Outbound};
use crate::GatewayState;
use crate::metrics::OutKind;

/// Frames written before one flush.
const BATCH: usize = 64;

/// The write half, buffered per batch: a batch of frames becomes one write.
pub(super) type Writer = WebSocketWrite<super::outbuf::OutBuf<tokio::net::tcp::OwnedWriteHalf>>;

/// Runs until the session closes or the socket fails.
pub(super) async fn run(
    mut ws: Writer,
    mut out: mpsc::Receiver<Outbound>,
    control: Arc<Control>,
    mut expiry: watch::Receiver<i64>,
    state: GatewayState,
) {
    let heartbeat = state.inner.config.heartbeat();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latency = state.inner.metrics.fanout_latency.local();
    // Made once, not on every turn of the loop: a fresh `cancelled()` would
    // lock the token's waiter list and a fresh sleep would re-arm a timer
    // for every frame written.
    let closing = control.closing.cancelled();
    tokio::pin!(closing);
    let token_expiry = tokio::time::sleep_until(until_unix(*expiry.borrow()));
    tokio::pin!(token_expiry);
    let result: Result<(), WebSocketError> = async {
        loop {
            tokio::select! {
                biased;
                _ = &mut closing => {
                    // A close echo still queued answers the client's close:
                    // send it (and nothing queued before it) and stop.
                    while let Ok(next) = out.try_recv() {
                        if next.op == Op::CloseEcho {
                            ws.write_frame(frame_of(&next)).await?;
                            ws.flush().await?;
                            return Err(WebSocketError::ConnectionClosed);
                        }
                    }
                    return Ok(());
                }
                first = out.recv() => {
                    let Some(first) = first else { return Ok(()) };
                    // Boxed: the batch's timestamps (half a KiB) exist only while it is written.
                    Box::pin(write_batch(&mut ws, &mut out, first, &state, &mut latency)).await?;
                }
                _ = ping.tick() => {
                    check_idle(&control, &state);
                    if silent_for(&control) > heartbeat * 2 {
                        close_with(&control, CloseCode::Internal, None);
                        return Ok(());
                    }
                    ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"hb"))).await?;
                    ws.flush().await?;
                }
                _ = &mut token_expiry => {
                    close_with(&control, CloseCode::TokenExpired, Some(ByeReason::TokenExpired));
                    return Ok(());
                }
                // A refresh moved the expiry.
                Ok(()) = expiry.changed() => {
                    token_expiry.as_mut().reset(until_unix(*expiry.borrow()));
                }
            }
        }
    }
    .await;
    if result.is_ok() {
        let _ = Box::pin(close(&mut ws, &control, &state)).await;
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

/// Writes `first` and whatever else is already queued (up to [`BATCH`]),
/// flushes once, then records the batch's bytes and latencies. A close echo
/// ends the batch and the writer: the client closed, nothing more goes out.
async fn write_batch(
    ws: &mut Writer,
    out: &mut mpsc::Receiver<Outbound>,
    first: Outbound,
    state: &GatewayState,
    latency: &mut LocalHistogram,
) -> Result<(), WebSocketError> {
    let metrics = &state.inner.metrics;
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
            next = out.try_recv().ok();
        }
    }
    ws.flush().await?;
    metrics.bytes_out.inc_by(bytes as u64);
    let now = unix_micros();
    for &at in published[..n].iter().filter(|&&at| at > 0) {
        latency.observe(now.saturating_sub(at) as f64 / 1e6);
    }
    latency.flush();
    if echoed {
        return Err(WebSocketError::ConnectionClosed);
    }
    Ok(())
}

/// Reports the connection idle once it has sent no data frame for `away_after`.
fn check_idle(control: &Control, state: &GatewayState) {
    let away_after = Duration::from_millis(state.inner.config.away_after_ms);
    let last = Duration::from_millis(control.last_active_ms.load(Ordering::Relaxed));
    let inactive = control.started.elapsed().saturating_sub(last);
    if inactive >= away_after && !control.idle.swap(true, Ordering::Relaxed) {
        state.inner.presence.report(PresenceReport::Idle {
            conn_id: control.conn_id.clone(),
            user_id: control.user_id.clone(),
            idle: true,
        });
    }
}

/// Time since the client last sent anything.
fn silent_for(control: &Control) -> Duration {
    let last = Duration::from_millis(control.last_seen_ms.load(Ordering::Relaxed));
    control.started.elapsed().saturating_sub(last)
}

fn close_with(control: &Control, code: CloseCode, bye: Option<ByeReason>) {
    let mut reason = control.reason.lock().expect("session lock poisoned");
    if reason.is_none() {
        *reason = Some((code, bye));
    }
    drop(reason);
    control.closing.cancel();
}

/// Sends `bye` (if any) and the close frame for the session's close reason.
async fn close(
    ws: &mut Writer,
    control: &Control,
    state: &GatewayState,
) -> Result<(), WebSocketError> {
    let reason = *control.reason.lock().expect("session lock poisoned");
    let (code, bye) = reason.unwrap_or((CloseCode::Normal, None));
    if let Some(reason) = bye {
        state.inner.metrics.frames_out(OutKind::Bye, 1);
        let frame = ServerFrame::Bye(Bye { reason }).to_json();
        ws.write_frame(Frame::text(Payload::Borrowed(frame.as_bytes())))
            .await?;
    }
    ws.write_frame(Frame::close(code.code(), b"")).await?;
    ws.flush().await
}

/// When a token with this `exp` (Unix seconds) stops being valid: `exp`
/// plus the clock-skew leeway that verification allows.
fn until_unix(exp: i64) -> tokio::time::Instant {
    let now = chrono::Utc::now().timestamp_millis();
    let end = (exp + telepath_shared::auth::LEEWAY_SECS as i64) * 1000;
    let wait = (end - now).max(0) as u64;
    tokio::time::Instant::now() + Duration::from_millis(wait)
}
