//! A WebSocket test client speaking the Telepath protocol over
//! tokio-tungstenite: connect with a token, send frames, wait for replies by
//! `ref` and for events by type, observe the close code.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tokio_tungstenite::tungstenite::Error as WsError;

/// How long a test waits for any single frame.
const WAIT: Duration = Duration::from_secs(10);

/// The handshake request for `{base}/connect` with `token` in the
/// Authorization header.
fn connect_request(
    base: &str,
    token: &str,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, WsError> {
    let url = format!("{}/connect", base.replacen("http", "ws", 1));
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    Ok(req)
}

/// A connected Telepath client.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for something else.
    pending: VecDeque<Value>,
    next_ref: u64,
    /// The `welcome` frame.
    pub welcome: Value,
    /// The close code the server sent, once the connection closed.
    pub close_code: Option<u16>,
}

impl WsClient {
    /// Connects to `base` (`http://host:port`) with `token` in the Authorization
    /// header and reads the `welcome` frame.
    pub async fn connect(base: &str, token: &str) -> Result<WsClient, WsError> {
        Self::connect_request(connect_request(base, token)?).await
    }

    /// Like [`WsClient::connect`], but a connection the server closes before
    /// its `welcome` is `Err` with the close code (None: no close frame).
    pub async fn connect_or_close(base: &str, token: &str) -> Result<WsClient, Option<u16>> {
        let req = connect_request(base, token).expect("a client request");
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("the upgrade");
        let mut client = WsClient::on(ws);
        match client.next_frame().await {
            Some(welcome) if welcome["type"] == "welcome" => {
                client.welcome = welcome;
                Ok(client)
            }
            Some(other) => panic!("first frame must be welcome: {other}"),
            None => Err(client.close_code),
        }
    }

    /// Like [`WsClient::connect`], over a socket whose receive buffer is
    /// about `bytes`: a client that then stops reading fills it quickly.
    pub async fn connect_small(base: &str, token: &str, bytes: u32) -> Result<WsClient, WsError> {
        let addr: std::net::SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .expect("base is http://ip:port");
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(bytes)?;
        let tcp = socket.connect(addr).await?;
        let req = connect_request(base, token)?;
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
        let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
        Self::after_handshake(ws).await
    }

    /// Connects with a prepared handshake request.
    pub async fn connect_request(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<WsClient, WsError> {
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Self::after_handshake(ws).await
    }

    /// A client on `ws` that has read nothing yet.
    fn on(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient {
            ws,
            pending: VecDeque::new(),
            next_ref: 0,
            welcome: Value::Null,
            close_code: None,
        }
    }

    /// A client on `ws`, a WebSocket already upgraded (over TLS, say, with
    /// a connector of the test's own), once the server's `welcome` came.
    pub async fn after_handshake(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    ) -> Result<WsClient, WsError> {
        let mut client = WsClient::on(ws);
        let welcome = client.next_frame().await.expect("a welcome frame");
        assert_eq!(
            welcome["type"], "welcome",
            "first frame must be welcome: {welcome}"
        );
        client.welcome = welcome;
        Ok(client)
    }

    /// Sends one JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(WsMessage::text(frame.to_string()))
            .await
            .expect("send");
    }

    /// Sends a raw WebSocket message.
    pub async fn send_raw(&mut self, msg: WsMessage) -> Result<(), WsError> {
        self.ws.send(msg).await
    }

    /// Sends `frame` with a fresh `ref` and returns the matching reply.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        frame["ref"] = json!(reference);
        self.send(frame).await;
        self.wait_for(|f| f["type"] == "reply" && f["ref"] == reference.as_str())
            .await
    }

    /// `request` that must succeed; returns its `data`.
    pub async fn ok(&mut self, frame: Value) -> Value {
        let reply = self.request(frame.clone()).await;
        assert_eq!(reply["ok"], true, "request {frame} failed: {reply}");
        reply["data"].clone()
    }

    /// Joins `room`; returns the reply data.
    pub async fn join(&mut self, room: &str) -> Value {
        self.ok(json!({"type": "join", "room": room})).await
    }

    /// The next frame of type `ty` (earlier frames of other types are kept).
    pub async fn next_of(&mut self, ty: &str) -> Value {
        self.wait_for(|f| f["type"] == ty).await
    }

    /// The first frame (buffered or new) matching `pred`; panics when none
    /// arrived within 30 s (even if other frames keep arriving).
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching frame within {:?}; got {:?}",
                WAIT * 3,
                self.pending
            );
            let frame = self.next_frame().await.unwrap_or_else(|| {
                panic!("connection closed ({:?}) while waiting", self.close_code)
            });
            if pred(&frame) {
                return frame;
            }
            self.pending.push_back(frame);
        }
    }

    /// Whether a frame matching `pred` arrives within `within`.
    /// The matching frame is kept: a following `wait_for` returns it.
    pub async fn sees_within(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        if self.pending.iter().any(&pred) {
            return true;
        }
        tokio::time::timeout(within, async {
            loop {
                match self.next_frame().await {
                    Some(f) => {
                        let hit = pred(&f);
                        self.pending.push_back(f);
                        if hit {
                            return true;
                        }
                    }
                    None => return false,
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// The next text frame as JSON; `None` once the connection closed.
    /// Panics when none comes within the wait, however many pings arrive.
    async fn next_frame(&mut self) -> Option<Value> {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(until, self.ws.next())
                .await
                .expect("no text frame within the wait");
            match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    return Some(serde_json::from_str(&t).expect("server frames are JSON"));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    self.close_code = Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                    return None;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Reads until the server closes; returns the close code (None if the
    /// socket dropped without a close frame). Data frames are kept.
    pub async fn closed(&mut self) -> Option<u16> {
        while let Some(f) = self.next_frame().await {
            self.pending.push_back(f);
        }
        self.close_code
    }

    /// Frames received but not consumed yet.
    pub fn pending(&self) -> &VecDeque<Value> {
        &self.pending
    }

    /// The socket itself, for tests of WebSocket-level frames (pings,
    /// close handshakes) that this client otherwise handles or hides.
    /// Panics if frames were read and not consumed.
    pub fn into_raw(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        assert!(
            self.pending.is_empty(),
            "unconsumed frames: {:?}",
            self.pending
        );
        self.ws
    }
}
