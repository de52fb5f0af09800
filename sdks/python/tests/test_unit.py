"""Pieces that need no server: backoff, frame decoding, errors, URLs."""

from __future__ import annotations

import pytest

from telepath import (
    Backoff,
    DirectMessage,
    Message,
    TelepathClient,
    TelepathError,
    UnknownFrame,
    Welcome,
    parse_frame,
)
from telepath._util import http_base, jwt_claims, parse_retry_after, ws_url


def test_backoff_grows_caps_and_jitters_down() -> None:
    b = Backoff(initial_delay=0.25, max_delay=10, factor=2, jitter=0, random=lambda: 0.999)
    assert [b.delay(n) for n in range(1, 8)] == [0.25, 0.5, 1, 2, 4, 8, 10]
    assert b.delay(10_000) == 10
    j = Backoff(initial_delay=1, max_delay=4, jitter=0.5, random=lambda: 1.0)
    assert j.delay(1) == 0.5 and j.delay(3) == 2
    real = Backoff()
    for n in range(1, 20):
        d = real.delay(n)
        cap = min(10, 0.25 * 2 ** (n - 1))
        assert cap * 0.5 <= d <= cap


def test_frames_decode_to_dataclasses_and_keep_unknown_fields() -> None:
    w = parse_frame(
        {
            "type": "welcome",
            "conn_id": "c1",
            "user": {"id": "u1", "name": "ada", "role": "admin"},
            "node": "gw1",
            "heartbeat_ms": 15000,
            "limits": {
                "max_frame_bytes": 65536,
                "max_rate_per_s": 50,
                "max_body_bytes": 16384,
                "max_rooms_per_conn": 100,
                "new_limit": 7,
            },
            "future_field": True,
        }
    )
    assert isinstance(w, Welcome) and w.user.role == "admin" and w.limits.max_rate_per_s == 50
    assert w.limits.extra == {"new_limit": 7} and w.extra == {"future_field": True}
    assert w.notifications_unread is None

    m = parse_frame(
        {
            "type": "message",
            "room": "r",
            "id": "m",
            "seq": 3,
            "from": {"id": "u", "name": "bob"},
            "kind": "text",
            "ts": "2026-01-01T00:00:00Z",
            "reactions": [{"emoji": "👍", "count": 2}],
            "deleted": True,
        }
    )
    assert isinstance(m, Message) and m.from_.name == "bob" and m.body is None and m.deleted
    assert m.reactions[0].count == 2 and m.raw["seq"] == 3

    d = parse_frame({"type": "dm", "id": "d", "from": {"id": "u", "name": "bob"}, "to": "me", "body": "hi", "ts": "t"})
    assert isinstance(d, DirectMessage) and d.to == "me"

    unknown = parse_frame({"type": "from_the_future", "x": 1})
    assert isinstance(unknown, UnknownFrame) and unknown.raw == {"type": "from_the_future", "x": 1}
    with pytest.raises(TypeError):
        parse_frame({"type": "message", "room": "r"})


def test_error_text() -> None:
    e = TelepathError("not_found", "no such room", status=404)
    assert str(e) == "HTTP 404 not_found: no such room" and e.message == "no such room"
    assert "status=404" in repr(e)
    assert TelepathError("timeout").message == "timeout"


def test_urls_and_headers() -> None:
    assert ws_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/connect"
    assert ws_url("https://chat.example/") == "wss://chat.example/connect"
    assert ws_url("ws://h:1/connect") == "ws://h:1/connect"
    assert http_base("wss://chat.example/connect") == "https://chat.example"
    assert parse_retry_after("2") == 2.0 and parse_retry_after(None) is None
    assert parse_retry_after("nonsense") is None
    assert jwt_claims("a.eyJleHAiOjF9.c") == {"exp": 1} and jwt_claims("nope") is None


async def test_client_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        TelepathClient("ws://127.0.0.1:1/connect")
    with pytest.raises(ValueError):
        TelepathClient("ws://127.0.0.1:1/connect", ticket="t", auth="ticket")
    tp = TelepathClient("ws://127.0.0.1:1/connect", token="t")
    with pytest.raises(ValueError):
        tp.on("no_such_event", print)
    assert tp.state == "idle" and tp.rooms == [] and tp.pending() == 0
    await tp.close()
    assert tp.state == "closed"
