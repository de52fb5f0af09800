//! RFC 6455 at the edge, with the raw-frame client
//! ([`telepath_shared::testing::wsraw`]): the opening handshake and frames
//! written byte for byte, against the all-in-one and against a gateway of
//! the split deployment (real processes). The cases are HOSTILE.md's 2 and
//! 4–11; each runs on a connection of its own and asserts the exact answer
//! (HTTP status, close code, frame).

use std::time::Duration;

use reqwest::Client;
use serde_json::json;
use telepath_shared::testing::wsraw::{
    self, RawFrame, RawWs, close_payload, handshake_request, handshake_request_version, header, op,
};

use crate::cluster::start_cluster_with;
use crate::helpers::{Service, create_room, login, spawn_node};

/// The message size limit every target runs with (the default).
const LIMIT: usize = 65_536;

/// Where the suite runs: a base URL, a user's token, a room they are in.
struct Target {
    base: String,
    token: String,
    room: String,
}

impl Target {
    async fn new(base: &str) -> Target {
        let http = Client::new();
        let ada = login(&http, base, "ada").await;
        let room = create_room(&http, base, &ada, "edge").await;
        Target {
            base: base.to_owned(),
            token: ada.token,
            room,
        }
    }

    fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// A fresh connection past its `welcome`.
    async fn open(&self) -> RawWs {
        let mut ws = RawWs::open(&self.base, &self.token).await;
        assert_eq!(ws.next_json().await["type"], "welcome");
        ws
    }

    /// A fresh connection that has joined the room.
    async fn joined(&self) -> RawWs {
        let mut ws = self.open().await;
        let join = json!({"type": "join", "room": self.room, "ref": "j"}).to_string();
        ws.send(&RawFrame::text(join)).await.unwrap();
        assert_eq!(ws.reply("j").await["ok"], true);
        ws
    }

    /// The status the handshake `request` gets, with the response head.
    async fn handshake(&self, request: &str) -> wsraw::Handshake {
        RawWs::handshake_raw(self.addr(), request)
            .await
            .unwrap_or_else(|e| panic!("no answer to {request:?}: {e}"))
            .0
    }

    /// Sends `frames` on a fresh connection and expects close `code`, then
    /// the end of the TCP connection within 1 s.
    async fn closes_with(&self, case: &str, frames: &[RawFrame], code: u16) {
        let mut ws = self.open().await;
        for f in frames {
            // The server may close before the last frame is written.
            let _ = ws.send(f).await;
        }
        assert_eq!(ws.close_code().await, Some(code), "{case}");
        assert!(
            ws.ends_within(Duration::from_secs(1)).await,
            "{case}: TCP still open 1 s after the close"
        );
    }
}

/// A ping request padded with spaces to exactly `len` bytes.
fn ping_of(len: usize, reference: &str) -> Vec<u8> {
    let mut frame = format!("{{\"type\":\"ping\",\"ref\":\"{reference}\"}}").into_bytes();
    frame.resize(len, b' ');
    frame
}

/// HOSTILE.md 2: malformed upgrades get 400 (or 426 for a plain request,
/// 405 for another method), never 101.
async fn malformed_upgrades(t: &Target) {
    let host = t.addr();
    let auth = format!("Bearer {}", t.token);
    let auth = ("Authorization", auth.as_str());
    let fifteen = "AAECAwQFBgcICQoLDA0O"; // base64 of 15 bytes
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "no Sec-WebSocket-Key",
            handshake_request(host, "/connect", &[auth, ("Sec-WebSocket-Key", "")]),
            400,
        ),
        (
            "a key that is not base64",
            handshake_request(
                host,
                "/connect",
                &[auth, ("Sec-WebSocket-Key", "not a key!")],
            ),
            400,
        ),
        (
            "a key of 15 bytes",
            handshake_request(host, "/connect", &[auth, ("Sec-WebSocket-Key", fifteen)]),
            400,
        ),
        (
            "version 8",
            handshake_request(host, "/connect", &[auth, ("Sec-WebSocket-Version", "8")]),
            400,
        ),
        (
            "no version",
            handshake_request(host, "/connect", &[auth, ("Sec-WebSocket-Version", "")]),
            400,
        ),
        (
            "HTTP/1.0",
            handshake_request_version(host, "/connect", "HTTP/1.0", "GET", &[auth]),
            400,
        ),
        (
            "POST",
            handshake_request_version(host, "/connect", "HTTP/1.1", "POST", &[auth]),
            405,
        ),
        (
            "keep-alive without Upgrade",
            handshake_request(
                host,
                "/connect",
                &[
                    auth,
                    ("Connection", "keep-alive"),
                    ("Upgrade", ""),
                    ("Sec-WebSocket-Key", ""),
                    ("Sec-WebSocket-Version", ""),
                ],
            ),
            426,
        ),
    ];
    for (case, request, status) in cases {
        let hs = t.handshake(&request).await;
        assert_eq!(hs.status, status, "{case}: {hs:?}");
        if status != 405 {
            assert_eq!(
                hs.header("sec-websocket-version"),
                Some("13"),
                "{case}: says which version it speaks"
            );
        }
    }
    // A bad handshake is refused before the token is looked at too.
    let hs = t
        .handshake(&handshake_request(
            host,
            "/connect",
            &[("Sec-WebSocket-Version", "8")],
        ))
        .await;
    assert_eq!(hs.status, 400, "version 8 without a token: {hs:?}");
}

/// HOSTILE.md 4: no extension is ever agreed, and a frame with RSV1 set
/// (a compressed one) closes with 1002.
async fn compression(t: &Target) {
    let (hs, mut ws) = RawWs::open_with(
        &t.base,
        &t.token,
        &[(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        )],
    )
    .await;
    assert_eq!(hs.header("sec-websocket-extensions"), None, "{hs:?}");
    assert_eq!(ws.next_json().await["type"], "welcome");
    // A deflated payload (zeros) with RSV1 set, as permessage-deflate
    // would send it: refused without being inflated.
    let bomb = RawFrame::text(vec![0x63, 0x60, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x00, 0x00]).rsv(4);
    ws.send(&bomb).await.unwrap();
    assert_eq!(ws.close_code().await, Some(1002), "RSV1");
}

/// HOSTILE.md 5: a length bomb closes at once with 1009; exactly the limit
/// is taken, in one frame or in fragments; one byte more closes with 1009.
async fn lengths(t: &Target) {
    let mut ws = t.open().await;
    ws.write(&header(true, 0, op::TEXT, Some(wsraw::MASK), (1 << 63) - 1))
        .await
        .unwrap();
    assert_eq!(ws.close_code().await, Some(1009), "2^63-1 declared");

    let mut ws = t.open().await;
    ws.send(&RawFrame::text(ping_of(LIMIT, "whole")))
        .await
        .unwrap();
    assert_eq!(ws.reply("whole").await["ok"], true, "exactly the limit");
    let split = ping_of(LIMIT, "split");
    let (head, tail) = split.split_at(LIMIT / 3);
    ws.send(&RawFrame::text(head).more()).await.unwrap();
    ws.send(&RawFrame::new(op::CONTINUATION, tail))
        .await
        .unwrap();
    assert_eq!(
        ws.reply("split").await["ok"],
        true,
        "the limit in fragments"
    );

    t.closes_with(
        "one byte over the limit",
        &[RawFrame::text(ping_of(LIMIT + 1, "over"))],
        1009,
    )
    .await;
    let over = ping_of(LIMIT + 1, "over");
    let (head, tail) = over.split_at(100);
    t.closes_with(
        "one byte over the limit, in fragments",
        &[
            RawFrame::text(head).more(),
            RawFrame::new(op::CONTINUATION, tail),
        ],
        1009,
    )
    .await;
    // Empty continuations cost a client 6 bytes each: capped.
    let mut endless = vec![RawFrame::text(&b"{"[..]).more()];
    endless.extend((0..1100).map(|_| RawFrame::new(op::CONTINUATION, Vec::new()).more()));
    t.closes_with("endless empty continuations", &endless, 1009)
        .await;
}

/// HOSTILE.md 6: text that is not UTF-8 closes with 1007; a character split
/// across fragments arrives whole.
async fn utf8(t: &Target) {
    let bad: [(&str, &[u8]); 4] = [
        ("overlong C0 AF", b"\xc0\xaf"),
        ("surrogate ED A0 80", b"\xed\xa0\x80"),
        ("5-byte sequence", b"\xf8\x88\x80\x80\x80"),
        ("lone continuation byte", b"\x80"),
    ];
    for (case, bytes) in bad {
        t.closes_with(case, &[RawFrame::text(bytes)], 1007).await;
    }
    t.closes_with(
        "invalid sequence across fragments",
        &[
            RawFrame::text(&b"\"\xed"[..]).more(),
            RawFrame::new(op::CONTINUATION, &b"\xa0\x80\""[..]),
        ],
        1007,
    )
    .await;

    // 🚀 (F0 9F 9A 80) split after its second byte.
    let mut ws = t.joined().await;
    let send = json!({"type": "send", "room": t.room, "body": "go 🚀 go", "ref": "s"}).to_string();
    let bytes = send.as_bytes();
    let cut = send.find('🚀').unwrap() + 2;
    ws.send(&RawFrame::text(&bytes[..cut]).more())
        .await
        .unwrap();
    ws.send(&RawFrame::new(op::CONTINUATION, &bytes[cut..]))
        .await
        .unwrap();
    let mut got = None;
    let mut replied = false;
    while got.is_none() || !replied {
        let v = ws.next_json().await;
        if v["ref"] == "s" {
            assert_eq!(v["ok"], true, "{v}");
            replied = true;
        } else if v["type"] == "message" {
            got = Some(v["body"].clone());
        }
    }
    assert_eq!(got.unwrap(), "go 🚀 go");
}

/// HOSTILE.md 7: control-frame rules.
async fn control_frames(t: &Target) {
    t.closes_with(
        "ping of 126 bytes",
        &[RawFrame::new(op::PING, vec![b'p'; 126])],
        1002,
    )
    .await;
    t.closes_with(
        "pong of 126 bytes",
        &[RawFrame::new(op::PONG, vec![b'p'; 126])],
        1002,
    )
    .await;
    t.closes_with(
        "close of 126 bytes",
        &[RawFrame::new(op::CLOSE, close_payload(1000, &[b'r'; 124]))],
        1002,
    )
    .await;
    t.closes_with(
        "fragmented ping",
        &[RawFrame::new(op::PING, &b"p"[..]).more()],
        1002,
    )
    .await;

    // A ping between two fragments: its pong first, then the message whole.
    // An unsolicited pong is ignored.
    let mut ws = t.open().await;
    let ping = ping_of(40, "between");
    ws.send(&RawFrame::new(op::PONG, &b"unasked"[..]))
        .await
        .unwrap();
    ws.send(&RawFrame::text(&ping[..10]).more()).await.unwrap();
    ws.send(&RawFrame::new(op::PING, &b"mid"[..]))
        .await
        .unwrap();
    ws.send(&RawFrame::new(op::CONTINUATION, &ping[10..]))
        .await
        .unwrap();
    let pong = ws
        .next_frame(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("open");
    assert_eq!((pong.opcode, &pong.payload[..]), (op::PONG, &b"mid"[..]));
    assert_eq!(ws.reply("between").await["ok"], true);
}

/// HOSTILE.md 8: fragmentation state, opcodes and reserved bits.
async fn framing(t: &Target) {
    t.closes_with(
        "continuation with nothing started",
        &[RawFrame::new(op::CONTINUATION, &b"x"[..])],
        1002,
    )
    .await;
    t.closes_with(
        "a new text frame inside a fragmented message",
        &[RawFrame::text(&b"{"[..]).more(), RawFrame::text(&b"{}"[..])],
        1002,
    )
    .await;
    for opcode in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        t.closes_with(
            &format!("opcode {opcode:#x}"),
            &[RawFrame::new(opcode, &b"x"[..])],
            1002,
        )
        .await;
    }
    for (rsv, name) in [(2u8, "RSV2"), (1, "RSV3")] {
        t.closes_with(name, &[RawFrame::text(&b"{}"[..]).rsv(rsv)], 1002)
            .await;
    }
    // A valid frame written one byte at a time is read whole.
    let mut ws = t.open().await;
    let frame = RawFrame::text(ping_of(48, "bytewise")).encode();
    ws.write_split(&frame, 1).await.unwrap();
    assert_eq!(ws.reply("bytewise").await["ok"], true);
}

/// HOSTILE.md 9: close frames.
async fn close_frames(t: &Target) {
    t.closes_with(
        "1-byte close payload",
        &[RawFrame::new(op::CLOSE, &b"\x03"[..])],
        1002,
    )
    .await;
    for code in [999u16, 1004, 1005, 1006, 1015, 5000] {
        t.closes_with(
            &format!("close code {code}"),
            &[RawFrame::new(op::CLOSE, close_payload(code, b""))],
            1002,
        )
        .await;
    }
    t.closes_with(
        "close reason that is not UTF-8",
        &[RawFrame::new(op::CLOSE, close_payload(1000, b"\xff\xfe"))],
        1007,
    )
    .await;
    // 1000 is echoed, data after it is ignored, and the TCP connection ends.
    let mut ws = t.open().await;
    ws.send(&RawFrame::new(op::CLOSE, close_payload(1000, b"bye")))
        .await
        .unwrap();
    let _ = ws.send(&RawFrame::text(ping_of(48, "after"))).await;
    let mut frames = Vec::new();
    let ended = loop {
        match ws.next_frame(Duration::from_secs(1)).await {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    assert!(
        ended,
        "the TCP connection ends within 1 s of the echo: {frames:?}"
    );
    assert_eq!(
        frames.last().and_then(|f| f.close_code()),
        Some(1000),
        "the close is echoed: {frames:?}"
    );
    assert!(
        !frames.iter().any(|f| f.text().contains("after")),
        "data after the close is not answered: {frames:?}"
    );
}

/// HOSTILE.md 10 and 11: an unmasked frame closes with 1002, a binary
/// frame with 1003.
async fn masking_and_binary(t: &Target) {
    t.closes_with(
        "unmasked text frame",
        &[RawFrame::text(ping_of(48, "plain")).unmasked()],
        1002,
    )
    .await;
    t.closes_with(
        "unmasked ping",
        &[RawFrame::new(op::PING, &b"p"[..]).unmasked()],
        1002,
    )
    .await;
    t.closes_with(
        "binary frame",
        &[RawFrame::new(op::BINARY, &b"{}"[..])],
        1003,
    )
    .await;
}

/// Every case, in turn.
async fn suite(t: &Target) {
    malformed_upgrades(t).await;
    compression(t).await;
    lengths(t).await;
    utf8(t).await;
    control_frames(t).await;
    framing(t).await;
    close_frames(t).await;
    masking_and_binary(t).await;
    // The node is still well: a fresh connection works.
    let mut ws = t.open().await;
    ws.send(&RawFrame::text(ping_of(48, "still")))
        .await
        .unwrap();
    assert_eq!(ws.reply("still").await["ok"], true);
}

#[tokio::test]
async fn the_all_in_one_follows_rfc_6455_frame_by_frame() {
    let node = spawn_node(|c| {
        c.gateway.max_frame_bytes = LIMIT;
        // Many short connections from one user, none idle for long.
        c.common.heartbeat_ms = 10_000;
    })
    .await;
    suite(&Target::new(&node.url).await).await;
}

#[tokio::test]
async fn a_gateway_of_the_split_deployment_follows_rfc_6455_frame_by_frame() {
    let cluster = start_cluster_with(
        1,
        1,
        &[
            ("TELEPATH_HEARTBEAT_MS", "10000".into()),
            ("TELEPATH_MAX_FRAME_BYTES", LIMIT.to_string()),
        ],
    )
    .await;
    let gw = &cluster.gateways[0].url;
    let t = Target::new(&cluster.api.url).await;
    let t = Target {
        base: gw.clone(),
        ..t
    };
    suite(&t).await;
}

/// Whether the server ends the connection `tcp` within `within` (reading
/// and discarding whatever it sends first); `trickle` writes one header
/// line a second meanwhile, as a slowloris does.
async fn ended_within(tcp: &mut tokio::net::TcpStream, within: Duration, trickle: bool) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            read = tcp.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            _ = tick.tick(), if trickle => {
                if tcp.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return true;
                }
            }
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

/// The api, presence and a gateway each: a request head trickled a line a
/// second is cut off within the 10 s header timeout, so is a keep-alive
/// connection left idle, and past `TELEPATH_MAX_HTTP_CONNS` a connection
/// waits until another one ends.
#[tokio::test]
async fn every_service_times_out_slow_clients_and_bounds_its_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    const CAP: usize = 4;
    let cluster = start_cluster_with(1, 1, &[]).await;
    // One more of each with a small cap, that no other service calls (the
    // cluster's own services keep pooled connections to each other).
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("capped.db").display());
    let cap = ("TELEPATH_MAX_HTTP_CONNS", CAP.to_string());
    let redis = ("REDIS_URL", cluster.redis.url());
    let presence_url = (
        "TELEPATH_PRESENCE_URL",
        cluster.presence[0].internal_url.clone(),
    );
    let capped = [
        Service::start(
            "telepath-api",
            &[
                cap.clone(),
                redis.clone(),
                presence_url.clone(),
                ("DATABASE_URL", db),
            ],
        )
        .await,
        Service::start("telepath-presence", &[cap.clone(), redis.clone()]).await,
        Service::start(
            "telepath-gateway",
            &[
                cap.clone(),
                redis.clone(),
                presence_url.clone(),
                ("TELEPATH_API_URL", cluster.api.internal_url.clone()),
            ],
        )
        .await,
    ];
    let services = [
        ("api", cluster.api.url.clone(), capped[0].url.clone()),
        (
            "presence",
            cluster.presence[0].url.clone(),
            capped[1].url.clone(),
        ),
        (
            "gateway",
            cluster.gateways[0].url.clone(),
            capped[2].url.clone(),
        ),
    ];
    let checks = services.iter().map(|(name, url, capped)| async move {
        let addr = url.trim_start_matches("http://").to_owned();
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        // A slowloris and an idle keep-alive connection.
        let mut slow = TcpStream::connect(&addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(&addr).await.unwrap();
        idle.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        idle.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "{name}");
        let (slow_ended, idle_ended) = tokio::join!(
            ended_within(&mut slow, Duration::from_secs(13), true),
            ended_within(&mut idle, Duration::from_secs(13), false),
        );
        assert!(slow_ended, "{name}: a trickled head is cut off");
        assert!(
            idle_ended,
            "{name}: an idle keep-alive connection is closed"
        );

        // CAP silent connections hold every slot: one more is not served...
        let addr = capped.trim_start_matches("http://").to_owned();
        let mut holders = Vec::new();
        for _ in 0..CAP {
            holders.push(TcpStream::connect(&addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut waiting = TcpStream::connect(&addr).await.unwrap();
        waiting.write_all(request.as_bytes()).await.unwrap();
        let mut first = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_secs(1), waiting.read(&mut first)).await;
        assert!(early.is_err(), "{name}: served past the connection cap");
        // ...until one of them ends.
        drop(holders.pop());
        let served = tokio::time::timeout(Duration::from_secs(3), waiting.read_exact(&mut head))
            .await
            .expect("served once a slot is free")
            .map(|_| head);
        assert_eq!(&served.unwrap(), b"HTTP/1.1 200", "{name}");
    });
    futures_util::future::join_all(checks).await;
}

/// HOSTILE.md 3: an oversized request head (one 1 MB header value, or
/// 10,000 headers) gets 431 or a close, at once, on every kind of service,
/// and the service goes on answering others.
#[tokio::test]
async fn an_oversized_request_head_is_refused_and_the_service_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = start_cluster_with(1, 1, &[]).await;
    let targets = [
        cluster.api.url.clone(),
        cluster.presence[0].url.clone(),
        cluster.gateways[0].url.clone(),
    ];
    let huge_value = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..10_000)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for base in &targets {
        let addr = base.trim_start_matches("http://");
        for (case, head) in [
            ("a 1 MB header", &huge_value),
            ("10,000 headers", &many_headers),
        ] {
            let started = std::time::Instant::now();
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            // The server may stop reading (and close) before all of it is written.
            let _ = tcp.write_all(head.as_bytes()).await;
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
            assert!(read.is_ok(), "{base}, {case}: the connection is not ended");
            let text = String::from_utf8_lossy(&answer);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 431"),
                "{base}, {case}: {text}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{base}, {case}");
        }
        // Still serving.
        let status = Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{base}");
    }
}

/// HOSTILE.md 36 and 37: a client that never answers the server's pings
/// (or vanished without a FIN) is closed within two heartbeats.
#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_within_two_heartbeats() {
    let cluster = start_cluster_with(1, 1, &[]).await;
    let heartbeat = cluster.heartbeat();
    let t = Target::new(&cluster.api.url).await;
    let t = Target {
        base: cluster.gateways[0].url.clone(),
        ..t
    };
    let mut ws = t.open().await;
    let started = std::time::Instant::now();
    // Read what comes (pings among it) and answer nothing.
    let mut pings = 0;
    let code = loop {
        match ws.next_frame(heartbeat * 4).await {
            Ok(Some(f)) if f.opcode == op::PING => pings += 1,
            Ok(Some(f)) if f.opcode == op::CLOSE => break f.close_code(),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break None,
        }
    };
    let took = started.elapsed();
    assert!(pings >= 1, "the server pinged");
    assert_eq!(code, Some(1011));
    assert!(
        took <= heartbeat * 3,
        "closed after {took:?} (heartbeat {heartbeat:?})"
    );
}
