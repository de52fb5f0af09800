//! What every WebSocket scenario needs: users (tokens signed here from the
//! deployment's secret, with the ids dev login would give them, so no login
//! requests are on the clock), rooms over REST, and a connected Telepath
//! WebSocket with a cheap frame decoder.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use telepath_shared::auth::JwtKeys;
use telepath_shared::protocol::{Role, UserInfo, user_id_for};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One WebSocket connection.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The fields of a server frame the scenarios read, borrowed from the text.
#[derive(Debug, Deserialize)]
pub(crate) struct Frame<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    #[serde(rename = "ref")]
    pub(crate) reference: Option<&'a str>,
    pub(crate) ok: Option<bool>,
    pub(crate) room: Option<&'a str>,
    pub(crate) seq: Option<i64>,
    pub(crate) body: Option<&'a str>,
}

/// Where a WebSocket scenario's cluster is, and how to sign its tokens.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Cluster {
    /// Base URL for REST (the api, the load balancer or an all-in-one).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) api: String,
    /// Gateway base URLs, comma-separated; clients are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub(crate) gateways: Vec<String>,
    /// JWT secret of the deployment: tokens are signed here.
    #[arg(long, env = "TELEPATH_JWT_SECRET", default_value = telepath_shared::config::DEV_JWT_SECRET)]
    pub(crate) secret: String,
}

impl Cluster {
    /// The REST base URL without a trailing slash.
    pub(crate) fn api(&self) -> String {
        self.api.trim_end_matches('/').to_owned()
    }

    /// The gateway client `i` connects to (round robin).
    pub(crate) fn gateway(&self, i: usize) -> String {
        self.gateways[i % self.gateways.len()].clone()
    }
}

/// Signs tokens for users of the deployment whose secret it holds.
pub(crate) struct Users {
    keys: JwtKeys,
}

impl Users {
    pub(crate) fn new(secret: &str) -> Self {
        Users {
            keys: JwtKeys::new(secret),
        }
    }

    /// A one-hour token for `name` (its id is what dev login would give it).
    pub(crate) fn token(&self, name: &str) -> String {
        let user = UserInfo {
            id: user_id_for(name),
            name: name.to_owned(),
            role: Role::User,
        };
        self.keys.mint(&user, 3600)
    }
}

/// Creates a public room as `token`'s user; returns its id.
pub(crate) async fn create_room(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<String> {
    let room: Value = http
        .post(format!("{base}/rooms"))
        .bearer_auth(token)
        .json(&json!({"name": name, "max_participants": 100_000}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(room["id"].as_str().context("room id")?.to_owned())
}

/// Connects to `base`'s `/connect` with `token` and reads `welcome`.
pub(crate) async fn connect(base: &str, token: &str) -> anyhow::Result<Ws> {
    let url = format!("{}/connect", base.replacen("http", "ws", 1));
    let mut ws = connect_url(&url, Some(token)).await?;
    match ws.next().await {
        Some(Ok(WsMessage::Text(t))) if t.contains("\"type\":\"welcome\"") => Ok(ws),
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// Opens a WebSocket to `url` (with `token` as a bearer token, if any).
pub(crate) async fn connect_url(url: &str, token: Option<&str>) -> anyhow::Result<Ws> {
    let mut req = url.into_client_request()?;
    if let Some(token) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    // tungstenite zero-fills its read buffer up to its size on every read:
    // 4 KiB, not the default 128 KiB, keeps that off the generator's profile.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true).await?;
    Ok(ws)
}

/// Sends `frame` with `ref` and reads until its reply; returns the reply.
/// Frames before it go to `other`.
pub(crate) async fn request(
    ws: &mut Ws,
    mut frame: Value,
    reference: &str,
    mut other: impl FnMut(&Frame<'_>),
) -> anyhow::Result<Value> {
    frame["ref"] = json!(reference);
    ws.send(WsMessage::text(frame.to_string())).await?;
    while let Some(msg) = ws.next().await {
        let WsMessage::Text(t) = msg? else { continue };
        let Ok(f) = serde_json::from_str::<Frame>(&t) else {
            continue;
        };
        if f.kind == "reply" && f.reference == Some(reference) {
            let reply: Value = serde_json::from_str(&t)?;
            if f.ok != Some(true) {
                bail!("{} failed: {reply}", frame["type"]);
            }
            return Ok(reply["data"].clone());
        }
        other(&f);
    }
    bail!("closed before the reply to {reference}")
}

/// Closes `ws` with the handshake: sends the close frame and reads until the
/// server's. A socket closed with frames still unread is reset by the
/// kernel, and the server then loses whatever it had received but not yet
/// read (a client's last acks, say).
pub(crate) async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}

/// The current time in Unix microseconds (what timed bodies carry).
pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A body of `bytes` bytes starting with the send time in µs.
pub(crate) fn timed_body(bytes: usize) -> String {
    let mut body = format!("{}|", now_us());
    body.extend(std::iter::repeat_n('x', bytes.saturating_sub(body.len())));
    body
}

/// The send time a [`timed_body`] carries.
pub(crate) fn sent_at(body: &str) -> Option<i64> {
    body.split('|').next().and_then(|s| s.parse().ok())
}
