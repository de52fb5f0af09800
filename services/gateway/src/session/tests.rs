//! The memory every idle connection pays for, pinned: the session's future
//! (the reader's side, spawned by `connect.rs`) and the writer's future are
//! alive for the connection's whole life, so a change that grows either
//! grows benchmark S2 (memory per idle connection) by as much, times every
//! connection. The tricks that keep them small (async blocks instead of
//! async fns, boxed one-off futures, the lazily allocated queue and write
//! buffer, `Closing` instead of a CancellationToken) are guarded here: undo
//! one and a bound below fails. The bounds are the sizes in a test build;
//! lower them when a change makes the futures smaller.

use std::mem::{size_of, size_of_val};
use std::sync::Arc;

use fastwebsockets::{Role, WebSocket};
use telepath_shared::auth::Claims;
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::config::Common;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::GatewayConfig;

/// The session's future, as `connect.rs` spawns it, in bytes.
const SESSION_FUTURE: usize = 864;
/// The writer's future, in bytes.
const WRITER_FUTURE: usize = 520;
/// What the reader keeps about its connection.
const SESSION: usize = 264;

fn state() -> GatewayState {
    let (bus, inbound) = MemoryBroker::new().connect(16);
    let config = GatewayConfig::for_tests("http://127.0.0.1:9");
    let registry = prometheus::Registry::new();
    GatewayState::build(
        Common::for_tests("s"),
        config,
        Arc::new(bus),
        inbound,
        registry,
    )
}

/// A server-side socket of a loopback connection, and its client end.
async fn socket() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    (listener.accept().await.unwrap().0, client)
}

fn claims() -> Claims {
    Claims {
        sub: "u".into(),
        name: "ada".into(),
        role: Default::default(),
        exp: i64::MAX,
        iat: 0,
    }
}

#[tokio::test]
async fn per_connection_futures_keep_their_size() {
    let state = state();
    let (server, _client) = socket().await;
    let ws = WebSocket::after_handshake(server, Role::Server);
    let client = ClientInfo {
        ip: "127.0.0.1".into(),
        user_agent: None,
    };
    let conn_id = uuid::Uuid::now_v7().hyphenated().to_string();
    let session = serve(ws, state.clone(), claims(), 1, conn_id, client, None);
    let size = size_of_val(&session);
    assert!(
        size <= SESSION_FUTURE,
        "the session future is {size} bytes (was {SESSION_FUTURE})"
    );

    let (server, _client) = socket().await;
    let (_read, write) = WebSocket::after_handshake(server, Role::Server).split(|s| {
        let (r, w) = s.into_split();
        (r, outbuf::OutBuf::new(w))
    });
    let (handle, rx) = SessionHandle::new(4, "c".into(), claims().user_ref(), i64::MAX);
    let writer = writer::run(write, rx, handle.control().clone(), state);
    let size = size_of_val(&writer);
    assert!(
        size <= WRITER_FUTURE,
        "the writer future is {size} bytes (was {WRITER_FUTURE})"
    );

    let size = size_of::<Session>();
    assert!(size <= SESSION, "Session is {size} bytes (was {SESSION})");
}

#[test]
fn disconnects_are_labelled_by_who_closed_and_why() {
    let server = |code, bye| disconnect_label(Some((code, bye)), None);
    assert_eq!(
        server(CloseCode::Restart, Some(ByeReason::Restart)),
        (1012, "restart")
    );
    assert_eq!(
        server(CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer)),
        (1013, "slow_consumer")
    );
    assert_eq!(server(CloseCode::Internal, None), (1011, "timeout"));
    assert_eq!(server(CloseCode::TooBig, None), (1009, "protocol"));
    assert_eq!(
        disconnect_label(None, Some(End::Closed(1000))),
        (1000, "client_closed")
    );
    assert_eq!(
        disconnect_label(None, Some(End::Gone)),
        (1006, "client_gone")
    );
    assert_eq!(disconnect_label(None, None), (1006, "client_gone"));
    assert_eq!(reader::client_close_code(&[0x03, 0xe8]), 1000);
    assert_eq!(reader::client_close_code(&[]), 1005);
}
