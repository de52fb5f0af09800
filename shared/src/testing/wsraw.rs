//! A raw WebSocket client for conformance tests (RFC 6455): it writes the
//! opening handshake and frames byte for byte, exactly as told (masked or
//! not, any FIN, RSV bits, opcode, declared length, in split writes), and
//! reads back what the server answers, the close code and when the TCP
//! connection ends. Where [`WsClient`](super::WsClient) is a well-behaved
//! client, this one breaks the rules on purpose.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opcodes (RFC 6455 5.2).
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The mask every masked frame of this client uses.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame to write.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub fin: bool,
    /// RSV1..RSV3 as the three bits under FIN (0b100 is RSV1).
    pub rsv: u8,
    pub opcode: u8,
    /// `None` writes the frame unmasked (which a client must never do).
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// A final, masked frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        RawFrame {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(MASK),
            payload: payload.into(),
        }
    }

    /// A final, masked text frame.
    pub fn text(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(op::TEXT, payload)
    }

    /// This frame with FIN cleared.
    pub fn more(mut self) -> Self {
        self.fin = false;
        self
    }

    /// This frame with the reserved bits `rsv` (0..=7, RSV1 is 4).
    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    /// This frame unmasked.
    pub fn unmasked(mut self) -> Self {
        self.mask = None;
        self
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = header(
            self.fin,
            self.rsv,
            self.opcode,
            self.mask,
            self.payload.len() as u64,
        );
        match self.mask {
            Some(mask) => out.extend(
                self.payload
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4]),
            ),
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A frame header declaring `len` payload bytes (in the shortest form, as
/// RFC 6455 asks), followed by the mask key when there is one.
pub fn header(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f)];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    out
}

/// A close frame's payload: the code, then the reason's bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason);
    out
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The code of a close frame (1005 when it carries none).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == op::CLOSE).then(|| match self.payload[..] {
            [hi, lo, ..] => u16::from_be_bytes([hi, lo]),
            _ => 1005,
        })
    }

    /// The payload as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The answer to an opening handshake.
#[derive(Debug)]
pub struct Handshake {
    pub status: u16,
    /// The response head, header names lowercased, `name: value` per line.
    pub head: String,
}

impl Handshake {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }
}

/// A valid `Sec-WebSocket-Key` (the base64 of 16 bytes).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An opening handshake for `path` on `host`, with `headers` replacing the
/// defaults of the same name (an empty value leaves the header out).
pub fn handshake_request(host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    handshake_request_version(host, path, "HTTP/1.1", "GET", headers)
}

/// Like [`handshake_request`] with the HTTP version and method given.
pub fn handshake_request_version(
    host: &str,
    path: &str,
    version: &str,
    method: &str,
    headers: &[(&str, &str)],
) -> String {
    let defaults = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ];
    let mut out = format!("{method} {path} {version}\r\n");
    for (name, value) in defaults {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in headers {
        if !value.is_empty() {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("\r\n");
    out
}

/// A connection written to byte for byte.
pub struct RawWs {
    stream: TcpStream,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
}

/// How long a read waits by default.
const READ_WITHIN: Duration = Duration::from_secs(5);

impl RawWs {
    /// Connects to `addr` (`host:port`) and sends `request` as is; returns the
    /// response head and the connection (usable as a WebSocket after a 101).
    pub async fn handshake_raw(addr: &str, request: &str) -> io::Result<(Handshake, RawWs)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        ws.stream.write_all(request.as_bytes()).await?;
        let end = loop {
            if let Some(at) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if ws.buf.len() > 64 * 1024 {
                return Err(io::Error::other("response head over 64 KiB"));
            }
            if ws.fill(READ_WITHIN).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a response head",
                ));
            }
        };
        let head: Vec<u8> = ws.buf.drain(..end + 4).collect();
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no status line in {head:?}")))?;
        let head = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| format!("{}: {}\n", n.to_ascii_lowercase(), v.trim()))
            .collect();
        Ok((Handshake { status, head }, ws))
    }

    /// Opens a WebSocket to `base` (`http://host:port`) at `/connect` with
    /// `token`; panics unless the answer is 101.
    pub async fn open(base: &str, token: &str) -> RawWs {
        Self::open_with(base, token, &[]).await.1
    }

    /// Like [`open`](Self::open) with extra headers; returns the 101's head too.
    pub async fn open_with(
        base: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> (Handshake, RawWs) {
        let addr = base.trim_start_matches("http://");
        let auth = format!("Bearer {token}");
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let request = handshake_request(addr, "/connect", &all);
        let (hs, ws) = Self::handshake_raw(addr, &request)
            .await
            .expect("handshake");
        assert_eq!(hs.status, 101, "handshake refused: {hs:?}");
        (hs, ws)
    }

    /// Writes `bytes` in one write.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes `bytes` in writes of `chunk` bytes, pausing between them so
    /// the server sees each one on its own.
    pub async fn write_split(&mut self, bytes: &[u8], chunk: usize) -> io::Result<()> {
        for piece in bytes.chunks(chunk.max(1)) {
            self.stream.write_all(piece).await?;
            self.stream.flush().await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Writes a frame.
    pub async fn send(&mut self, frame: &RawFrame) -> io::Result<()> {
        self.write(&frame.encode()).await
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    async fn fill(&mut self, within: Duration) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(within, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "nothing to read"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next frame from the server; `Ok(None)` when the connection ended.
    pub async fn next_frame(&mut self, within: Duration) -> io::Result<Option<ServerFrame>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((frame, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.fill(left).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next text frame's JSON, skipping other frames; panics on a close.
    pub async fn next_json(&mut self) -> serde_json::Value {
        loop {
            let frame = self
                .next_frame(READ_WITHIN)
                .await
                .expect("a frame")
                .expect("the connection is open");
            match frame.opcode {
                op::TEXT => return serde_json::from_slice(&frame.payload).expect("JSON"),
                op::CLOSE => panic!("closed with {:?}", frame.close_code()),
                _ => {}
            }
        }
    }

    /// The next JSON frame whose `ref` is `r`, skipping others.
    pub async fn reply(&mut self, r: &str) -> serde_json::Value {
        loop {
            let v = self.next_json().await;
            if v["ref"] == r {
                return v;
            }
        }
    }

    /// The code of the server's close frame, skipping the frames before it;
    /// `None` when the connection ended without one (or nothing came within 5 s).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_frame(READ_WITHIN).await {
                Ok(Some(frame)) if frame.opcode == op::CLOSE => return frame.close_code(),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Whether the server ends the TCP connection (FIN or reset) within
    /// `within`, skipping any frames it sends first.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            self.buf.clear();
            match self.fill(left).await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
    }
}

/// One server frame from the front of `buf`, and how many bytes it took.
fn parse(buf: &[u8]) -> io::Result<Option<(ServerFrame, usize)>> {
    let [b0, b1, ..] = buf[..] else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(io::Error::other("a server frame is masked"));
    }
    let (len, at) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len).map_err(io::Error::other)?;
    if buf.len() < at + len {
        return Ok(None);
    }
    let frame = ServerFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload: buf[at..at + len].to_vec(),
    };
    Ok(Some((frame, at + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(header(true, 0, op::TEXT, None, 125), vec![0x81, 125]);
        assert_eq!(
            header(true, 0, op::TEXT, None, 126),
            vec![0x81, 126, 0, 126]
        );
        assert_eq!(
            header(false, 4, op::BINARY, Some([1, 2, 3, 4]), 65536),
            vec![0x42, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn a_masked_frame_unmasks_to_its_payload() {
        let f = RawFrame::text("hello").encode();
        let unmasked: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % 4])
            .collect();
        assert_eq!(unmasked, b"hello");
        assert_eq!(f[1], 0x80 | 5);
    }
}
