//! One WebSocket session against a gateway: authentication before the
//! upgrade, malformed input, limits, keepalive, token expiry, the close
//! handshake, drain.

use std::time::Duration;

use serde_json::json;
use telepath_shared::auth::{Claims, JwtKeys};
use telepath_shared::protocol::Role;
use telepath_shared::testing::{WsClient, WsError};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{SECRET, Stack, spawn_stack, spawn_stack_with};

fn http_status(err: WsError) -> u16 {
    match err {
        WsError::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn a_missing_forged_or_expired_token_gets_401_before_any_upgrade() {
    let stack = spawn_stack(1).await;
    let url = format!("{}/connect", stack.gw(0).replacen("http", "ws", 1));
    let no_token = url.clone().into_client_request().unwrap();
    assert_eq!(
        http_status(WsClient::connect_request(no_token).await.err().unwrap()),
        401
    );
    let forged = JwtKeys::new("not-the-secret").sign(&Claims {
        sub: "x".into(),
        name: "x".into(),
        role: Role::Admin,
        exp: i64::MAX / 2,
        iat: 0,
    });
    assert_eq!(
        http_status(WsClient::connect(stack.gw(0), &forged).await.err().unwrap()),
        401
    );
    let expired = JwtKeys::new(SECRET).sign(&Claims {
        sub: "x".into(),
        name: "x".into(),
        role: Role::User,
        exp: 1,
        iat: 0,
    });
    assert_eq!(
        http_status(
            WsClient::connect(stack.gw(0), &expired)
                .await
                .err()
                .unwrap()
        ),
        401
    );
}

#[tokio::test]
async fn a_token_in_the_query_string_works_and_the_subprotocol_is_offered_back() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let url = format!(
        "{}/connect?token={}",
        stack.gw(0).replacen("http", "ws", 1),
        ada.token
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "telepath.v1".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "telepath.v1");
    drop(ws);
}

#[tokio::test]
async fn a_plain_get_on_connect_gets_426_with_the_websocket_version() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let resp = stack
        .http
        .get(format!("{}/connect", stack.gw(0)))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["sec-websocket-version"], "13");
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_keeps_working() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    for garbage in [
        "not json",
        "[1,2,3]",
        "{\"type\":\"nope\"}",
        "{\"type\":\"join\"}",
        "{\"type\":\"send\",\"room\":7}",
        "1e400",
        "\u{0}",
    ] {
        c.send_raw(WsMessage::text(garbage)).await.unwrap();
        let err = c.next_of("error").await;
        assert_eq!(err["code"], "bad_request", "for {garbage:?}");
    }
    // With a ref, the failure is a reply to that ref.
    let reply = c.request(json!({"type": "join", "room": "room:*"})).await;
    assert_eq!(
        (reply["ok"].as_bool(), reply["error"]["code"].as_str()),
        (Some(false), Some("bad_request"))
    );
    let reply = c
        .request(json!({"type": "join", "room": uuid::Uuid::now_v7().hyphenated().to_string()}))
        .await;
    assert_eq!(reply["error"]["code"], "not_found");
    let pong = c.ok(json!({"type": "ping"})).await;
    assert!(pong["pong"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn a_message_over_the_frame_limit_closes_with_1009() {
    let stack = spawn_stack_with(1, |_, gw| gw.max_frame_bytes = 1024).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    c.send_raw(WsMessage::text("x".repeat(2048))).await.unwrap();
    assert_eq!(c.closed().await, Some(1009));
}

/// A ping frame padded with spaces to exactly `len` bytes.
fn ping_of(len: usize, reference: &str) -> String {
    let frame = format!("{{\"type\":\"ping\",\"ref\":\"{reference}\"}}");
    format!("{frame:<len$}")
}

/// Sends `text` as two fragments: a text frame of its first 600 bytes and
/// a final continuation frame of the rest.
async fn send_in_two(c: &mut WsClient, text: String) {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let bytes = text.into_bytes();
    let (head, tail) = bytes.split_at(600);
    let first = Frame::message(head.to_vec(), OpCode::Data(Data::Text), false);
    let last = Frame::message(tail.to_vec(), OpCode::Data(Data::Continue), true);
    c.send_raw(WsMessage::Frame(first)).await.unwrap();
    c.send_raw(WsMessage::Frame(last)).await.unwrap();
}

#[tokio::test]
async fn a_message_of_exactly_the_limit_is_taken_and_one_byte_more_closes_with_1009() {
    let stack = spawn_stack_with(1, |_, gw| gw.max_frame_bytes = 1024).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    // One frame of exactly 1024 bytes.
    c.send_raw(WsMessage::text(ping_of(1024, "whole")))
        .await
        .unwrap();
    assert_eq!(c.wait_for(|f| f["ref"] == "whole").await["ok"], true);
    // Two fragments of 1024 bytes in all.
    send_in_two(&mut c, ping_of(1024, "split")).await;
    assert_eq!(c.wait_for(|f| f["ref"] == "split").await["ok"], true);
    // One byte more, in fragments: closed.
    send_in_two(&mut c, ping_of(1025, "over")).await;
    assert_eq!(c.closed().await, Some(1009));
    // And in one frame, on a new connection.
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    c.send_raw(WsMessage::text(ping_of(1025, "over")))
        .await
        .unwrap();
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    c.send_raw(WsMessage::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(c.closed().await, Some(1003));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_as_too_large_and_not_stored() {
    let stack = spawn_stack_with(1, |common, _| common.max_body_bytes = 10).await;
    let ada = stack.login("ada").await;
    let room = stack.room(&ada).await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    c.join(&room).await;
    let reply = c
        .request(json!({"type": "send", "room": room, "body": "this is far too long"}))
        .await;
    assert_eq!(reply["error"]["code"], "too_large");
    let ok = c
        .ok(json!({"type": "send", "room": room, "body": "short"}))
        .await;
    assert_eq!(ok["seq"], 1);
}

#[tokio::test]
async fn flooding_past_the_rate_limit_gets_rate_limited_replies() {
    let stack = spawn_stack_with(1, |_, gw| gw.max_rate_per_s = 5).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    for i in 0..20 {
        c.send(json!({"type": "ping", "ref": format!("p{i}")}))
            .await;
    }
    let limited = c
        .wait_for(|f| f["type"] == "reply" && f["ok"] == false)
        .await;
    assert_eq!(limited["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn a_flood_of_malformed_frames_is_rate_limited_and_ends_in_4008() {
    let stack = spawn_stack_with(1, |_, gw| gw.max_rate_per_s = 5).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    let garbage = |i: u32| WsMessage::text(format!("{{\"type\":\"nope\",\"ref\":\"g{i}\"}}"));
    // Past the limit: the frames that do not decode are refused like any.
    for i in 0..20 {
        c.send_raw(garbage(i)).await.unwrap();
    }
    let first = c.wait_for(|f| f["ref"] == "g0").await;
    assert_eq!(first["error"]["code"], "bad_request", "{first}");
    let limited = c
        .wait_for(|f| f["type"] == "reply" && f["error"]["code"] == "rate_limited")
        .await;
    assert!(limited["ref"].is_string(), "{limited}");
    // And a flood of them closes the connection.
    for i in 20..400 {
        if c.send_raw(garbage(i)).await.is_err() {
            break;
        }
    }
    assert_eq!(c.closed().await, Some(4008));
}

#[tokio::test]
async fn an_expiring_token_gets_bye_token_expired_and_close_4001_unless_refreshed() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let claims = JwtKeys::new(SECRET).verify_own(&ada.token).unwrap();
    let soon = |secs: i64| {
        JwtKeys::new(SECRET).sign(&Claims {
            exp: chrono::Utc::now().timestamp() + secs,
            ..claims.clone()
        })
    };

    let mut refreshed = WsClient::connect(stack.gw(0), &soon(2)).await.unwrap();
    let data = refreshed
        .ok(json!({"type": "refresh", "token": soon(3600)}))
        .await;
    assert!(data["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 3000);

    // Expired 2 s ago, inside the 5 s leeway: accepted at the upgrade, and
    // the session lives to the end of the leeway (2 to 3 s from now, as
    // `exp` is whole seconds), not a moment less.
    let mut c = WsClient::connect(stack.gw(0), &soon(-2)).await.unwrap();
    assert!(
        !c.sees_within(Duration::from_millis(1200), |f| f["type"] == "bye")
            .await,
        "closed before the leeway ran out"
    );
    let bye = c.next_of("bye").await;
    assert_eq!(bye["reason"], "token_expired");
    assert_eq!(c.closed().await, Some(4001));
    // The refreshed connection is still open.
    assert!(refreshed.ok(json!({"type": "ping"})).await["pong"].is_i64());
}

#[tokio::test]
async fn the_server_pings_and_a_client_that_answers_stays_connected() {
    let stack = spawn_stack_with(1, |common, _| common.heartbeat_ms = 200).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    // tungstenite answers pings by itself; a second of silence from us is fine.
    assert!(
        !c.sees_within(Duration::from_millis(1200), |f| f["type"] == "bye")
            .await
    );
    assert_eq!(c.close_code, None);
    assert!(c.ok(json!({"type": "ping"})).await["pong"].is_i64());
}

/// A connection as the bare socket.
type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A gateway (its settings adjusted by `tweak`) and a logged-in connection
/// to it as the bare socket, for tests of WebSocket-level frames that
/// `WsClient` answers or hides.
async fn raw_session(
    tweak: impl FnOnce(&mut telepath_shared::config::Common, &mut telepath_gateway::GatewayConfig),
) -> (Stack, RawWs) {
    let stack = spawn_stack_with(1, tweak).await;
    let ada = stack.login("ada").await;
    let ws = WsClient::connect(stack.gw(0), &ada.token)
        .await
        .unwrap()
        .into_raw();
    (stack, ws)
}

#[tokio::test]
async fn a_ping_frame_is_answered_with_its_payload_after_the_replies_queued_before_it() {
    use futures_util::{SinkExt, StreamExt};
    let (_stack, mut ws) = raw_session(|_, _| {}).await;
    // A request, then pings in the same write: the reply is queued first,
    // and the pongs (which share the outbound queue) come after it, in order.
    ws.feed(WsMessage::text(r#"{"type":"ping","ref":"r1"}"#))
        .await
        .unwrap();
    for i in 0..3u8 {
        ws.feed(WsMessage::Ping(vec![b'p', i].into()))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer within 5 s")
            .unwrap()
            .unwrap()
        {
            // The user's own presence event may come first: not a reply.
            WsMessage::Text(t) if t.contains("\"type\":\"presence\"") => {}
            WsMessage::Text(t) => seen.push(format!("text:{}", t.contains("\"r1\""))),
            WsMessage::Pong(p) => seen.push(format!("pong:{:?}", p.as_ref())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            "text:true",
            "pong:[112, 0]",
            "pong:[112, 1]",
            "pong:[112, 2]"
        ]
    );
}

#[tokio::test]
async fn a_ping_flood_is_rate_limited_like_any_frame_and_ends_in_4008() {
    use futures_util::{SinkExt, StreamExt};
    let (_stack, mut ws) = raw_session(|_, gw| gw.max_rate_per_s = 5).await;
    // Far more pings than the limit allows, read as they are answered.
    let flood = async {
        for i in 0..400u32 {
            if ws
                .send(WsMessage::Ping(i.to_be_bytes().to_vec().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), flood)
        .await
        .expect("the pings are taken");
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the gateway closes the connection")
        {
            Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    assert_eq!(code, Some(4008));
}

#[tokio::test]
async fn with_a_write_delay_writes_are_that_far_apart_and_share_what_queued_but_pongs_do_not_wait()
{
    use futures_util::{SinkExt, StreamExt};
    use std::time::Instant;
    let (_stack, mut ws) = raw_session(|_, gw| gw.write_delay_ms = 1000).await;
    async fn next(ws: &mut RawWs) -> WsMessage {
        tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .unwrap()
    }
    // Whatever text was queued at connect (the user's own presence, say)
    // is out once the connection has been quiet for longer than the delay.
    let mut texts = 0;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_millis(1500), ws.next()).await {
        assert!(frame.is_ok(), "{frame:?}");
        texts += 1;
    }
    assert!(texts <= 2, "{texts} text frames after connect");
    // After a quiet spell a reply goes out at once.
    let asked = Instant::now();
    ws.send(WsMessage::text(r#"{"type":"ping","ref":"r1"}"#))
        .await
        .unwrap();
    let first = next(&mut ws).await;
    let written = Instant::now();
    assert!(first.to_text().unwrap().contains("\"r1\""), "{first:?}");
    assert!(
        asked.elapsed() < Duration::from_millis(900),
        "the first reply came after {:?}",
        asked.elapsed()
    );
    // A WebSocket ping right after it is answered at once too: pongs do not wait.
    ws.send(WsMessage::Ping(b"now".to_vec().into()))
        .await
        .unwrap();
    match next(&mut ws).await {
        WsMessage::Pong(p) => assert_eq!(p.as_ref(), b"now"),
        other => panic!("expected the pong, got {other:?}"),
    }
    assert!(
        written.elapsed() < Duration::from_millis(900),
        "the pong came {:?} after the reply",
        written.elapsed()
    );
    // Two more requests within the delay: the first of their replies waits
    // for the rest of it, and the second, queued meanwhile, shares its write.
    ws.feed(WsMessage::text(r#"{"type":"ping","ref":"r2"}"#))
        .await
        .unwrap();
    ws.feed(WsMessage::text(r#"{"type":"ping","ref":"r3"}"#))
        .await
        .unwrap();
    ws.flush().await.unwrap();
    let second = next(&mut ws).await;
    let waited = written.elapsed();
    let third = next(&mut ws).await;
    let gap = written.elapsed() - waited;
    assert!(second.to_text().unwrap().contains("\"r2\""), "{second:?}");
    assert!(third.to_text().unwrap().contains("\"r3\""), "{third:?}");
    assert!(
        waited >= Duration::from_millis(900),
        "the second reply came {waited:?} after the first"
    );
    assert!(
        gap < Duration::from_millis(500),
        "the third came {gap:?} after the second"
    );
}

#[tokio::test]
async fn a_client_that_closes_right_after_its_sends_gets_their_replies_before_the_echo() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
    let stack = spawn_stack_with(1, |_, gw| gw.max_rate_per_s = 10_000).await;
    let ada = stack.login("ada").await;
    let room = stack.room(&ada).await;
    let mut ws = WsClient::connect(stack.gw(0), &ada.token)
        .await
        .unwrap()
        .into_raw();
    let join = json!({"type": "join", "ref": "j", "room": room});
    ws.send(WsMessage::text(join.to_string())).await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        if msg.to_text().is_ok_and(|t| t.contains("\"ref\":\"j\"")) {
            break;
        }
    }
    // Five sends and the close in one write: the close is read while the
    // sends are still with the api.
    for i in 0..5 {
        let send = json!({"type": "send", "ref": format!("s{i}"), "room": room, "body": "x"});
        ws.feed(WsMessage::text(send.to_string())).await.unwrap();
    }
    let bye = CloseFrame {
        code: WsCode::Normal,
        reason: "".into(),
    };
    ws.feed(WsMessage::Close(Some(bye))).await.unwrap();
    ws.flush().await.unwrap();
    let mut replies = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the echo within 10 s");
        match next {
            Some(Ok(WsMessage::Text(t))) => {
                let frame: serde_json::Value = serde_json::from_str(&t).unwrap();
                if frame["type"] == "reply" {
                    assert_eq!(frame["ok"], true, "{frame}");
                    replies.push(frame["ref"].as_str().unwrap().to_owned());
                }
            }
            Some(Ok(WsMessage::Close(echo))) => {
                assert_eq!(echo.map(|f| u16::from(f.code)), Some(1000));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("the connection ended without the echo: {other:?}"),
        }
    }
    assert_eq!(replies, ["s0", "s1", "s2", "s3", "s4"]);
}

#[tokio::test]
async fn a_client_close_is_echoed_with_its_code_and_ends_the_session() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let (_stack, mut ws) = raw_session(|_, _| {}).await;
    ws.send(WsMessage::Close(Some(CloseFrame {
        code: CloseCode::Library(4100),
        reason: "done".into(),
    })))
    .await
    .unwrap();
    // Events queued before the close (the user's own presence) go out first.
    let echo = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("an echo within 5 s");
    match echo {
        Some(Ok(WsMessage::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4100);
        }
        other => panic!("expected the close echo, got {other:?}"),
    }
    // Nothing after the echo: the server closes the TCP connection.
    let after = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the connection ends within 5 s");
    assert!(matches!(after, None | Some(Err(_))), "got {after:?}");
}

#[tokio::test]
async fn shutdown_says_bye_restart_and_closes_with_1012() {
    let mut stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let mut c = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    stack.gateways[0].shutdown.cancel();
    assert_eq!(c.next_of("bye").await["reason"], "restart");
    assert_eq!(c.closed().await, Some(1012));
    let task = stack.gateways[0].task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the gateway stops within the grace")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_broadcast_follows_the_body_rules_of_the_rest_route() {
    let stack = spawn_stack(1).await;
    let root = stack.admin("root").await;
    let ada = stack.login("ada").await;
    let mut admin = WsClient::connect(stack.gw(0), &root.token).await.unwrap();
    let mut a = WsClient::connect(stack.gw(0), &ada.token).await.unwrap();
    let empty = admin
        .request(json!({"type": "broadcast", "body": ""}))
        .await;
    assert_eq!(empty["error"]["code"], "bad_request", "{empty}");
    // 4097 characters in fewer than 16384 bytes: over the character limit.
    let long = admin
        .request(json!({"type": "broadcast", "body": "é".repeat(4097)}))
        .await;
    assert_eq!(long["error"]["code"], "too_large", "{long}");
    let not_admin = a.request(json!({"type": "broadcast", "body": "hi"})).await;
    assert_eq!(not_admin["error"]["code"], "forbidden");
    let sent = admin
        .ok(json!({"type": "broadcast", "body": "all hands"}))
        .await;
    assert_eq!(a.next_of("broadcast").await["id"], sent["id"]);
}
