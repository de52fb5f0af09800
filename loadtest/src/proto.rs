//! The two wire protocols `room-fanout` can drive: Telepath's, and Socket.IO
//! 4's (engine.io v4 over WebSocket) as `loadtest/socketio/server.js`
//! speaks it, so the same generator measures both sides of the S1
//! comparison. Only what the scenario needs: connect, join with an ack,
//! send with an ack, and the room's message events.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{Frame, Ws, connect_url};

/// Which server the generator talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Proto {
    /// Telepath's JSON frames on `/connect`.
    Telepath,
    /// Socket.IO 4 events on `/socket.io/` (no token, no persistence).
    Socketio,
}

/// What a received text frame means to the scenario.
#[derive(Debug, PartialEq)]
pub(crate) enum Event<'a> {
    /// A room message (Telepath `message`, Socket.IO `message` event).
    Message {
        room: &'a str,
        seq: i64,
        body: &'a str,
    },
    /// The answer to request `id`.
    Ack { id: u64, ok: bool },
    /// An engine.io ping: answer with [`Proto::pong`].
    Ping,
    /// Anything else.
    Other,
}

/// The fields of a Socket.IO `message` event.
#[derive(Deserialize)]
struct SioMessage<'a> {
    room: &'a str,
    seq: i64,
    body: &'a str,
}

impl Proto {
    /// Connects to `base` (as `token`'s user, for Telepath) and completes the handshake.
    pub(crate) async fn connect(self, base: &str, token: &str) -> anyhow::Result<Ws> {
        let ws_base = base.replacen("http", "ws", 1);
        match self {
            Proto::Telepath => {
                let mut ws = connect_url(&format!("{ws_base}/connect"), Some(token)).await?;
                match ws.next().await {
                    Some(Ok(WsMessage::Text(t))) if t.contains("\"type\":\"welcome\"") => Ok(ws),
                    other => bail!("expected welcome, got {other:?}"),
                }
            }
            Proto::Socketio => {
                let url = format!("{ws_base}/socket.io/?EIO=4&transport=websocket");
                let mut ws = connect_url(&url, None).await?;
                // engine.io open ("0{...}"), then connect to the main namespace.
                expect_prefix(&mut ws, "0").await?;
                ws.send(WsMessage::text("40")).await?;
                expect_prefix(&mut ws, "40").await?;
                Ok(ws)
            }
        }
    }

    /// Request `id`: join `room`.
    pub(crate) fn join(self, id: u64, room: &str) -> String {
        match self {
            Proto::Telepath => {
                json!({"type": "join", "ref": id.to_string(), "room": room}).to_string()
            }
            Proto::Socketio => format!("42{id}{}", json!(["join", {"room": room}])),
        }
    }

    /// Request `id`: send `body` to `room`.
    pub(crate) fn send(self, id: u64, room: &str, body: &str) -> String {
        match self {
            Proto::Telepath => {
                json!({"type": "send", "ref": id.to_string(), "room": room, "body": body})
                    .to_string()
            }
            Proto::Socketio => format!("42{id}{}", json!(["send", {"room": room, "body": body}])),
        }
    }

    /// The answer to an engine.io ping.
    pub(crate) fn pong(self) -> &'static str {
        "3"
    }

    /// What `text` is.
    pub(crate) fn decode(self, text: &str) -> Event<'_> {
        match self {
            Proto::Telepath => {
                let Ok(f) = serde_json::from_str::<Frame>(text) else {
                    return Event::Other;
                };
                match f.kind {
                    "message" => match (f.room, f.seq, f.body) {
                        (Some(room), Some(seq), Some(body)) => Event::Message { room, seq, body },
                        _ => Event::Other,
                    },
                    "reply" => match f.reference.and_then(|r| r.parse().ok()) {
                        Some(id) => Event::Ack {
                            id,
                            ok: f.ok == Some(true),
                        },
                        None => Event::Other,
                    },
                    _ => Event::Other,
                }
            }
            Proto::Socketio => {
                if text == "2" {
                    return Event::Ping;
                }
                if let Some(rest) = text.strip_prefix("43") {
                    let digits = rest.find('[').unwrap_or(rest.len());
                    return match rest[..digits].parse() {
                        Ok(id) => Event::Ack { id, ok: true },
                        Err(_) => Event::Other,
                    };
                }
                match text
                    .strip_prefix("42")
                    .and_then(|r| serde_json::from_str::<(&str, SioMessage)>(r).ok())
                {
                    Some(("message", m)) => Event::Message {
                        room: m.room,
                        seq: m.seq,
                        body: m.body,
                    },
                    _ => Event::Other,
                }
            }
        }
    }

    /// Sends `request` and reads until its ack (answering pings); fails on a refusal.
    pub(crate) async fn request(self, ws: &mut Ws, id: u64, request: String) -> anyhow::Result<()> {
        ws.send(WsMessage::text(request)).await?;
        while let Some(msg) = ws.next().await {
            let WsMessage::Text(t) = msg? else { continue };
            match self.decode(&t) {
                Event::Ack { id: got, ok } if got == id => {
                    return if ok {
                        Ok(())
                    } else {
                        bail!("request {id} refused: {t}")
                    };
                }
                Event::Ping => ws.send(WsMessage::text(self.pong())).await?,
                _ => {}
            }
        }
        bail!("closed before the answer to request {id}")
    }
}

/// Reads text frames until one starting with `prefix`, answering engine.io
/// pings meanwhile (socketioxide pings as soon as the connection opens).
async fn expect_prefix(ws: &mut Ws, prefix: &str) -> anyhow::Result<()> {
    loop {
        let msg = ws.next().await.context("closed during the handshake")??;
        match msg {
            WsMessage::Text(t) if t.starts_with(prefix) => return Ok(()),
            WsMessage::Text(t) if t == "2" => ws.send(WsMessage::text("3")).await?,
            other => bail!("expected {prefix}…, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_io_frames_decode_to_the_same_events_as_telepath_frames() {
        let sio = Proto::Socketio;
        assert_eq!(sio.decode("2"), Event::Ping);
        assert_eq!(
            sio.decode("437[{\"seq\":3}]"),
            Event::Ack { id: 7, ok: true }
        );
        assert_eq!(
            sio.decode(r#"42["message",{"room":"r","seq":4,"body":"b"}]"#),
            Event::Message {
                room: "r",
                seq: 4,
                body: "b"
            }
        );
        let tp = Proto::Telepath;
        assert_eq!(
            tp.decode(r#"{"type":"reply","ref":"7","ok":true,"data":{}}"#),
            Event::Ack { id: 7, ok: true }
        );
        assert_eq!(
            tp.decode(r#"{"type":"message","room":"r","seq":4,"body":"b","id":"x"}"#),
            Event::Message {
                room: "r",
                seq: 4,
                body: "b"
            }
        );
        assert!(sio.join(1, "r").starts_with("421[\"join\""));
    }
}
