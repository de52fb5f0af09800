//! The WebSocket read path: the vendored, patched fastwebsockets reading
//! what a client sent, set up as the gateway sets it up (`session::serve`
//! and `session/reader.rs`): `Role::Server`, the gateway's default message
//! bound (`TELEPATH_MAX_FRAME_BYTES` 65536, so `set_max_message_size(65537)`),
//! no automatic pong, the automatic close echo, and the read buffer
//! released between frames. The input is the byte stream from the client;
//! frames are read until an error or the end of it.
//!
//! The stream is read twice: all of it available to the first read, and
//! one byte per read with a `Pending` before each. Both must read the same
//! frames and end the same way (the patch frees and re-allocates the buffer
//! between frames, and a frame may arrive in pieces). Nothing may panic, no
//! frame may reach the bound, a header claiming the bound or more gets
//! nothing reserved for its payload, and no allocation is larger than the
//! bound plus a small multiple of the input, whatever a header claims.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use fastwebsockets::{Frame, OpCode, Role, WebSocket, WebSocketError};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The gateway's default `TELEPATH_MAX_FRAME_BYTES`.
const MAX_FRAME_BYTES: usize = 65_536;
/// What the gateway gives fastwebsockets: a frame of this many bytes or more is refused.
const MAX_MESSAGE_SIZE: usize = MAX_FRAME_BYTES + 1;
/// fastwebsockets' read buffer (`READ_BUFFER_SIZE`) and longest frame header.
const READ_BUFFER: usize = 8192;
const MAX_HEADER: usize = 14;

/// The system allocator, recording the largest single allocation made
/// while [`TRACKING`] (inside fastwebsockets' calls, not the harness's).
struct Tracking;

static TRACKING: AtomicBool = AtomicBool::new(false);
/// The largest since the start of a read of the whole input.
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// The largest since the start of one `read_frame`.
static LARGEST_IN_CALL: AtomicUsize = AtomicUsize::new(0);

fn record(size: usize) {
    if TRACKING.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
        LARGEST_IN_CALL.fetch_max(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

fuzz_target!(|data: &[u8]| {
    let whole = read_all(data, usize::MAX);
    let bytewise = read_all(data, 1);
    assert_eq!(whole, bytewise, "the same frames however the bytes arrive");
});

/// What one read saw: a frame (its opcode, fin and payload, and the frame
/// fastwebsockets asked to send back before it), or how reading ended.
#[derive(Debug, PartialEq)]
enum Event {
    Frame {
        opcode: u8,
        fin: bool,
        payload: Vec<u8>,
        echo: Option<Vec<u8>>,
    },
    End(String),
}

/// Reads frames from `data` arriving `chunk` bytes per read until an
/// error, and checks the largest allocation fastwebsockets made meanwhile.
fn read_all(data: &[u8], chunk: usize) -> Vec<Event> {
    LARGEST.store(0, Ordering::Relaxed);
    let events = read_frames(data, chunk);
    let largest = LARGEST.load(Ordering::Relaxed);
    // Its buffer holds at most what was sent plus one frame's reservation
    // (the length its header claims, under the bound, and a header); when
    // it grows it may double, which past the first 8 KiB needs a frame
    // already read whole, so a multiple of what was sent.
    let allowed = MAX_MESSAGE_SIZE + MAX_HEADER + 2 * READ_BUFFER + 4 * data.len();
    assert!(
        largest <= allowed,
        "an allocation of {largest} bytes for {} bytes of input",
        data.len()
    );
    events
}

fn read_frames(data: &[u8], chunk: usize) -> Vec<Event> {
    let stream = Feed {
        data,
        chunk,
        pend: chunk != usize::MAX,
    };
    // As `session::serve` sets the connection up.
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_max_message_size(MAX_MESSAGE_SIZE);
    ws.set_auto_pong(false);
    ws.set_auto_close(true);
    let (mut read, _write) = ws.split(|s| (s, tokio::io::sink()));
    let mut events = Vec::new();
    block_on(async {
        loop {
            // The reader frees the buffer between frames (when it holds no
            // unread byte), then waits for the next one.
            TRACKING.store(true, Ordering::Relaxed);
            read.release_buffer();
            let mut echo = None;
            // The frame fastwebsockets owes the client (the close echo).
            let mut send_fn = |frame: Frame<'_>| {
                assert_eq!(
                    frame.opcode,
                    OpCode::Close,
                    "only a close is owed (no auto pong)"
                );
                echo = Some(frame.payload.to_vec());
                async { Ok::<(), WebSocketError>(()) }
            };
            LARGEST_IN_CALL.store(0, Ordering::Relaxed);
            let frame = read.read_frame(&mut send_fn).await;
            TRACKING.store(false, Ordering::Relaxed);
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    // A header claiming the bound or more is refused before
                    // anything is reserved for its payload (below the
                    // bound, a buffer that was full may have doubled).
                    if matches!(e, WebSocketError::FrameTooLarge) {
                        let largest = LARGEST_IN_CALL.load(Ordering::Relaxed);
                        let growth = 2 * (READ_BUFFER + data.len());
                        assert!(
                            largest < MAX_MESSAGE_SIZE.max(growth),
                            "{largest} bytes allocated for a frame refused as too large"
                        );
                    }
                    events.push(Event::End(e.to_string()));
                    // What fastwebsockets answers an invalid close code with.
                    if let Some(echo) = echo {
                        assert_eq!(&echo[..2], &1002u16.to_be_bytes());
                    }
                    return;
                }
            };
            check(&frame, echo.as_deref());
            let close = frame.opcode == OpCode::Close;
            events.push(Event::Frame {
                opcode: frame.opcode as u8,
                fin: frame.fin,
                payload: frame.payload.to_vec(),
                echo,
            });
            // The reader stops at a close.
            if close {
                return;
            }
        }
    });
    events
}

/// What fastwebsockets promises of a frame it returns.
fn check(frame: &Frame<'_>, echo: Option<&[u8]>) {
    assert!(
        frame.payload.len() < MAX_MESSAGE_SIZE,
        "a frame over the bound"
    );
    match frame.opcode {
        OpCode::Text if frame.fin => {
            assert!(
                std::str::from_utf8(&frame.payload).is_ok(),
                "a whole text frame is UTF-8"
            );
        }
        OpCode::Close => {
            // Echoed as it came; empty, or a code and a UTF-8 reason.
            assert_eq!(echo, Some(&frame.payload[..]));
            assert_ne!(frame.payload.len(), 1);
            if frame.payload.len() >= 2 {
                assert!(std::str::from_utf8(&frame.payload[2..]).is_ok());
            }
        }
        OpCode::Ping | OpCode::Pong => {
            assert!(frame.fin, "control frames are not fragmented");
        }
        _ => {}
    }
    if frame.opcode != OpCode::Close {
        assert!(echo.is_none());
    }
    if frame.opcode == OpCode::Ping {
        assert!(frame.payload.len() <= 125);
    }
}

/// The client's bytes: at most `chunk` per read, each read answered
/// `Pending` first when `pend` (and woken at once).
struct Feed<'a> {
    data: &'a [u8],
    chunk: usize,
    pend: bool,
}

impl AsyncRead for Feed<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.chunk != usize::MAX {
            this.pend = !this.pend;
            if this.pend {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let n = this.data.len().min(this.chunk).min(buf.remaining());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Writes go nowhere (`after_handshake` wants a duplex stream; the
/// gateway's writes are another task's).
impl AsyncWrite for Feed<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Polls `fut` to completion. Nothing here waits on anything outside:
/// a `Pending` is only ever the feed's, which is ready on the next poll.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the read never finished");
}
