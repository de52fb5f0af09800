//! The socket write buffer of one connection, which exists only while a
//! batch of frames is being written.
//!
//! The writer writes a batch of frames and flushes once, so the frames
//! should reach the kernel in one write. A `BufWriter` would do that, but
//! keeps its buffer for the connection's whole life: 16 KiB for every idle
//! connection. This buffer grows as a batch is written into it and is
//! freed by the flush that sends it, so an idle connection holds nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// Writes larger than this go to the socket instead of into the buffer.
const LIMIT: usize = 64 * 1024;

/// A write buffer that is empty (and unallocated) between flushes.
pub(crate) struct OutBuf<W> {
    inner: W,
    buf: Vec<u8>,
    /// How much of `buf` has reached `inner` already.
    written: usize,
}

impl<W: AsyncWrite + Unpin> OutBuf<W> {
    pub(crate) fn new(inner: W) -> Self {
        OutBuf {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// Writes out what is buffered, then frees the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for OutBuf<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() + data.len() > LIMIT {
            ready!(this.poll_drain(cx))?;
            if data.len() > LIMIT {
                return Pin::new(&mut this.inner).poll_write(cx, data);
            }
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.buf.len() + total > LIMIT {
            ready!(this.poll_drain(cx))?;
            if total > LIMIT {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
        }
        // One allocation for a frame's header and payload, not one and a regrowth.
        this.buf.reserve(total);
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_batch_reaches_the_socket_on_flush_and_the_buffer_is_freed() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut out = OutBuf::new(a);
        out.write_all(b"one ").await.unwrap();
        out.write_all(b"two").await.unwrap();
        assert!(out.buf.capacity() > 0, "buffered until the flush");
        out.flush().await.unwrap();
        assert_eq!(out.buf.capacity(), 0, "nothing kept between batches");
        let mut got = [0u8; 7];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
        // Larger than the limit: straight through, in order after what was buffered.
        out.write_all(b"x").await.unwrap();
        let big = vec![7u8; LIMIT + 1];
        out.write_all(&big).await.unwrap();
        out.flush().await.unwrap();
        let mut got = vec![0u8; LIMIT + 2];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], b'x');
        assert!(got[1..].iter().all(|&v| v == 7));
    }
}
