//! `GET /connect`: authenticate, then upgrade to WebSocket and start a session.
//!
//! Everything that can refuse a client happens before the upgrade, as a plain
//! HTTP error in the JSON shape: 401 for a missing or bad token, 403 for a
//! browser origin that may not connect (`TELEPATH_ALLOWED_ORIGINS`), 426 for
//! a request that is not a WebSocket upgrade, 429 (with `Retry-After`) for
//! a client address over `TELEPATH_IP_CONNECT_RATE_PER_S`, 503 while
//! draining and when the node holds `TELEPATH_MAX_CONNS` connections. After the upgrade and
//! before the `welcome`, a connection over its user's cap
//! (`TELEPATH_MAX_CONNS_PER_USER`, counted by presence across gateways) is
//! closed with 4009.

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fastwebsockets::{Role, WebSocket};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use telepath_shared::auth::{Claims, bearer};
use telepath_shared::http::ApiError;
use telepath_shared::protocol::{CloseCode, ErrorCode};
use tokio::net::TcpStream;

use crate::{GatewayState, session};

/// Longest a connect waits for a starting node to read the revocations.
const REVOCATIONS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The subprotocol offered back when a client asks for it.
const SUBPROTOCOL: &str = "telepath.v1";

#[derive(Deserialize)]
struct ConnectQuery {
    token: Option<String>,
    ticket: Option<String>,
}

/// How the client says who it is.
enum Credential {
    /// A token, from the `Authorization` header or `?token=`.
    Token(String),
    /// `?ticket=` (`POST /auth/ticket`).
    Ticket(String),
}

/// The credential of `req`: the header's token first, then `?token=`, then
/// `?ticket=`.
fn credential(req: &Request) -> Result<Credential, ApiError> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    if let Some(token) = from_header {
        return Ok(Credential::Token(token.to_owned()));
    }
    let query = Query::<ConnectQuery>::try_from_uri(req.uri())
        .map(|q| q.0)
        .map_err(|_| ApiError::unauthorized())?;
    match (query.token, query.ticket) {
        (Some(token), _) => Ok(Credential::Token(token)),
        // Tickets are 43 characters: a longer one is not worth asking about.
        (None, Some(ticket)) if ticket.len() <= 64 => Ok(Credential::Ticket(ticket)),
        (None, Some(_)) => Err(ApiError::unauthorized()),
        (None, None) => Err(ApiError::unauthorized()),
    }
}

/// The verified claims of `credential`. A ticket is redeemed by the api
/// (once: it is used up even when the connect fails later) for the token it
/// was issued for, which is then checked like any other.
async fn authenticate(state: &GatewayState, credential: Credential) -> Result<Claims, ApiError> {
    let token = match credential {
        Credential::Token(token) => token,
        Credential::Ticket(ticket) => state.api().redeem_ticket(&ticket).await.map_err(|e| {
            if e.status() == StatusCode::NOT_FOUND {
                ApiError::new(ErrorCode::Unauthorized, "unknown, used or expired ticket")
            } else {
                e
            }
        })?,
    };
    state
        .keys()
        .verify(&token)
        .await
        .map_err(|e| ApiError::unauthorized_because(&e))
}

/// What RFC 6455 (4.2.1) asks of an opening handshake beyond the `Upgrade`
/// and `Connection` headers: HTTP/1.1, version 13, and a key that is the
/// base64 of 16 bytes. `Err` says what is wrong; the request gets 400.
fn check_handshake(req: &Request) -> Result<(), &'static str> {
    use base64::Engine as _;
    let headers = req.headers();
    // No WebSocket headers at all: a plain request, answered 426 below.
    if !headers.contains_key(header::SEC_WEBSOCKET_KEY)
        && !headers.contains_key(header::SEC_WEBSOCKET_VERSION)
        && !headers.contains_key(header::UPGRADE)
    {
        return Ok(());
    }
    if req.version() != axum::http::Version::HTTP_11 {
        return Err("a WebSocket handshake must be HTTP/1.1");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key,
        (None, _) => return Err("Sec-WebSocket-Key is missing"),
        (Some(_), Some(_)) => return Err("more than one Sec-WebSocket-Key"),
    };
    match base64::engine::general_purpose::STANDARD.decode(key.as_bytes()) {
        Ok(nonce) if nonce.len() == 16 => Ok(()),
        _ => Err("Sec-WebSocket-Key must be the base64 of 16 bytes"),
    }
}

fn refuse(state: &GatewayState, reason: &str, err: ApiError) -> Response {
    state.metrics().refused.with_label_values(&[reason]).inc();
    err.into_response()
}

pub(crate) async fn connect(
    State(state): State<GatewayState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
) -> Response {
    if state.shutdown().is_cancelled() {
        return refuse(
            &state,
            "draining",
            ApiError::unavailable("this node is restarting; reconnect"),
        );
    }
    let max = state.config().max_conns;
    if max > 0 && state.sessions().len() >= max {
        // Checked before any other work: a full node sheds load cheaply. A
        // burst of simultaneous handshakes may overshoot by the few in flight.
        let mut resp = refuse(
            &state,
            "node_full",
            ApiError::unavailable("this node is full; try another or retry"),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    if let Err(why) = state.common().allowed_origins.check(req.headers()) {
        return refuse(&state, "origin", ApiError::forbidden(why));
    }
    let ip = state
        .common()
        .trusted_proxies
        .client_ip(peer.ip(), req.headers());
    if state.connects().rate().is_on()
        && let Err(take) = state.connects().check(&ip.to_string()).await
    {
        return refuse(
            &state,
            "rate_limited",
            ApiError::rate_limited(take.retry_after_secs()),
        );
    }
    if let Err(why) = check_handshake(&req) {
        let mut resp = refuse(&state, "bad_handshake", ApiError::bad_request(why));
        resp.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return resp;
    }
    let credential = match credential(&req) {
        Ok(c) => c,
        Err(e) => return refuse(&state, "unauthorized", e),
    };
    let claims = match authenticate(&state, credential).await {
        Ok(c) => c,
        Err(e) => return refuse(&state, "unauthorized", e),
    };
    // A node that has not read the revocations yet cannot tell a revoked
    // token: it waits a little for them, then asks the client to retry.
    if !state.revocations().loaded_within(REVOCATIONS_WAIT).await {
        return refuse(
            &state,
            "starting",
            ApiError::unavailable("this node is starting; reconnect"),
        );
    }
    if state.revocations().is_revoked(&claims) {
        return refuse(&state, "unauthorized", ApiError::unauthorized());
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let mut resp = refuse(
            &state,
            "not_upgrade",
            ApiError::new(ErrorCode::BadRequest, "expected a WebSocket upgrade"),
        );
        *resp.status_mut() = StatusCode::UPGRADE_REQUIRED;
        resp.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return resp;
    }
    let wants_subprotocol = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    // The upgrade itself is awaited here, not through fastwebsockets'
    // future: the connection comes back as the plain TcpStream (below).
    let upgrade = hyper::upgrade::on(&mut req);
    let (mut resp, _unused) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            return refuse(
                &state,
                "bad_handshake",
                ApiError::bad_request(format!("bad WebSocket handshake: {e}")),
            );
        }
    };
    if wants_subprotocol {
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    let client = session::ClientInfo {
        ip: ip.to_string(),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect()),
    };
    let id = state.next_conn_id();
    let tracker = state.sessions().clone();
    // What the session is built from, boxed: a value the task's future
    // captures keeps its room in the future for the session's whole life,
    // even after it has been moved into the session.
    let setup = Box::new((state, claims, client));
    tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "upgrade did not complete"),
        };
        // Served by `serve_http1`, so the IO under the upgrade is the
        // TcpStream: take it back and drop hyper's read buffer (16 KiB that
        // would otherwise live as long as the WebSocket).
        let tcp = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) if parts.read_buf.is_empty() => parts.io.into_inner(),
            Ok(_) => {
                // RFC 6455 4.1: a client sends nothing before the 101.
                return tracing::debug!("client sent data before the handshake completed");
            }
            Err(_) => return tracing::error!("upgraded connection is not a TcpStream"),
        };
        // Moved out of the capture first, so the box is freed here and not
        // when the session ends.
        let (state, claims, client) = {
            let setup = setup;
            *setup
        };
        find_dead_peers(&tcp, state.common().heartbeat());
        let mut ws = WebSocket::after_handshake(tcp, Role::Server);
        let conn_id = uuid::Uuid::now_v7().hyphenated().to_string();
        // Boxed, as the refusal below: the task's future keeps room for
        // every future it awaits for the connection's whole life.
        // The admission and the welcome's unread count: one answer from
        // Redis, else asked of presence and the api together.
        let ((admitted, counted), unread) = Box::pin(async {
            if state.admitter().counts_unread() {
                (state.admitter().admit(&conn_id, &claims.sub).await, None)
            } else {
                tokio::join!(
                    state.admitter().admit(&conn_id, &claims.sub),
                    state.unread().unread(&claims.sub)
                )
            }
        })
        .await;
        let unread = counted.or(unread);
        if !admitted {
            state
                .metrics()
                .refused
                .with_label_values(&["too_many_connections"])
                .inc();
            return Box::pin(refuse_upgraded(&mut ws)).await;
        }
        session::serve(ws, state, claims, id, conn_id, client, unread).await
    });
    resp.into_response()
}

/// Closes a connection over its user's cap with 4009 before any other
/// frame, and waits a little for the client's close so the close frame is
/// read before the TCP connection ends.
async fn refuse_upgraded(ws: &mut WebSocket<TcpStream>) {
    let code = CloseCode::TooManyConnections as u16;
    let close = fastwebsockets::Frame::close(code, b"too many connections for this user");
    if ws.write_frame(close).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(frame) = ws.read_frame().await {
            if frame.opcode == fastwebsockets::OpCode::Close {
                break;
            }
        }
    })
    .await;
}

/// Lets the kernel give up on a peer that is gone without a word: data
/// unacknowledged for two heartbeats ends the connection
/// (`TCP_USER_TIMEOUT`), and an idle one is probed from one heartbeat on
/// (keepalive), so a half-open connection is found even when the writer is
/// blocked on it.
fn find_dead_peers(tcp: &TcpStream, heartbeat: std::time::Duration) {
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(heartbeat)
        .with_interval(heartbeat / 3)
        .with_retries(3);
    if let Err(e) = socket
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| socket.set_tcp_user_timeout(Some(heartbeat * 2)))
    {
        tracing::debug!(error = %e, "could not set the socket's dead-peer timeouts");
    }
}
