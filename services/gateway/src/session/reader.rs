//! The reader half of a session (the mirror of `writer.rs`): reads frames
//! until the connection ends, reassembles fragmented messages within the
//! size limit, hands each complete text message to [`request`](super::request),
//! and says how the connection ended.
//!
//! It queues nothing itself except what fastwebsockets owes the client (the
//! pong to a ping, the echo of a close), and those wait for room in the
//! queue: a client that floods pings without reading is slowed down, not
//! buffered. Between frames it holds no read buffer (see
//! vendor/fastwebsockets/PATCHES.md).

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use telepath_shared::protocol::{CloseCode, PresenceReport};

use super::{CLOSE_GRACE, Session, request};
use crate::handle::{Op, Outbound};

/// The read half of a connection.
pub(super) type Read = WebSocketRead<tokio::net::tcp::OwnedReadHalf>;

/// The most frames one message may come in: past it the connection closes
/// with 1009, like a message over the size limit (docs/PROTOCOL.md, limits).
pub(crate) const MAX_FRAGMENTS: usize = 1024;

/// How the reader saw the connection end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The client sent a close frame with this code (1005 when it gave none).
    Closed(u16),
    /// The connection went away without a close frame.
    Gone,
    /// The client broke the protocol; we close with this code.
    Violation(CloseCode),
}

/// Reads frames until the connection ends, and says how it ended.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
pub(super) fn read_loop(
    mut read: Read,
    session: &mut Session,
) -> impl Future<Output = End> + Send + '_ {
    // An async block, not an async fn: see `session::live`.
    async move {
        let max = session.state.config().max_frame_bytes;
        // A fragmented text message being collected (browsers rarely
        // fragment), and how many frames it came in so far.
        let mut partial: Option<Vec<u8>> = None;
        let mut fragments = 0usize;
        // The close echo fastwebsockets owes the client goes to the writer.
        // It waits (a little) for the replies to the client's sends still
        // with the api: they go out before it.
        let handle = session.handle.clone();
        let mut send_fn = |frame: Frame<'_>| {
            let out = (frame.opcode == OpCode::Close)
                .then(|| Outbound::control(Bytes::copy_from_slice(&frame.payload), Op::CloseEcho));
            let handle = handle.clone();
            async move {
                let Some(out) = out else { return Ok(()) };
                let answered = handle.control().pipelined_below(1);
                let _ = tokio::time::timeout(CLOSE_GRACE, answered).await;
                handle
                    .queue_when_room(out)
                    .await
                    .map_err(|_| WebSocketError::ConnectionClosed)
            }
        };
        loop {
            // Between frames, wait for the next one without holding a read
            // buffer (8 KiB per idle connection otherwise). The peek consumes nothing.
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
                let metrics = session.state.metrics();
                metrics.bytes_in.inc_by(frame.payload.len() as u64);
            }
            if data && session.handle.activity() {
                session.state.presence().report(PresenceReport::Idle {
                    conn_id: session.conn_id().to_owned(),
                    user_id: session.claims.sub.clone(),
                    idle: false,
                });
            }
            match frame.opcode {
                OpCode::Close => return End::Closed(client_close_code(&frame.payload)),
                // Counted like any frame (a flood of them ends in 4008); a
                // ping is answered with its payload, after what is queued.
                OpCode::Ping => {
                    request::admit(session);
                    let pong = Outbound::control(Bytes::copy_from_slice(&frame.payload), Op::Pong);
                    if Box::pin(session.handle.queue_when_room(pong))
                        .await
                        .is_err()
                    {
                        return End::Gone;
                    }
                }
                OpCode::Pong => {
                    request::admit(session);
                }
                OpCode::Binary => return End::Violation(CloseCode::UnsupportedData),
                OpCode::Text if frame.fin && partial.is_none() => {
                    // Boxed: handling a request awaits the api, and that future
                    // is large; inline it would sit in every idle connection.
                    Box::pin(request::handle_text(session, &frame.payload)).await;
                }
                OpCode::Text if partial.is_none() => {
                    partial = Some(frame.payload.to_vec());
                    fragments = 1;
                }
                OpCode::Continuation => {
                    let Some(buf) = partial.as_mut() else {
                        return End::Violation(CloseCode::ProtocolError);
                    };
                    // Empty continuations cost nothing to send and would
                    // otherwise keep a message open for ever.
                    fragments += 1;
                    if fragments > MAX_FRAGMENTS || buf.len() + frame.payload.len() > max {
                        return End::Violation(CloseCode::TooBig);
                    }
                    buf.extend_from_slice(&frame.payload);
                    if frame.fin {
                        let buf = partial.take().expect("checked above");
                        if std::str::from_utf8(&buf).is_err() {
                            return End::Violation(CloseCode::InvalidPayload);
                        }
                        Box::pin(request::handle_text(session, &buf)).await;
                    }
                }
                // A new data frame while a fragmented message is open.
                OpCode::Text => return End::Violation(CloseCode::ProtocolError),
            }
            if session.handle.control().closing.is_cancelled() {
                return End::Gone;
            }
        }
    }
}

/// The code in a client's close frame (1005, "no status", when it has none).
pub(super) fn client_close_code(payload: &[u8]) -> u16 {
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
}
