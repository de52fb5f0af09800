"""Connect tickets, refused credentials, 4001 (revoked) with and without a
refresh callback, proactive token refresh, and 4009 (too many connections)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest

from helpers import SECRET, Proxy, Recorder, Session, uname, wait_until
from telepath import Backoff, TelepathError

SERVER_ENV = {"TELEPATH_MAX_CONNS_PER_USER": "2"}


def sign(user_id: str, name: str, ttl: float, role: str = "user") -> str:
    """An HS256 token signed with the test server's secret."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": user_id, "name": name, "role": role, "iat": now, "exp": int(now + ttl)}).encode())
    sig = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(sig)}"


async def test_ticket_connect_and_reconnect_with_fresh_tickets(session: Session) -> None:
    api = await session.rest(uname("ada"))
    proxy = await Proxy(session.server.port).start()
    try:
        tp = session.client(api.token, url=proxy.ws, auth="ticket")
        welcome = await tp.connect(timeout=10)
        assert welcome.user.id == api.user.id
        room = await api.create_room(uname("room"))
        await tp.join(room.id)
        # A ticket is single use: the reconnect asks for a new one.
        proxy.cut()
        await wait_until(lambda: tp.state == "reconnecting", "reconnecting")
        await wait_until(lambda: tp.state == "open", "open again")
        assert proxy.connections == 2
        assert (await tp.send(room.id, "via ticket")).seq == 1
    finally:
        await proxy.close()


async def test_a_used_ticket_is_refused(session: Session) -> None:
    api = await session.rest(uname("ada"))
    ticket = await api.ticket()
    assert len(ticket.ticket) == 43 and ticket.expires_in == 30
    first = session.client(ticket=ticket.ticket)
    assert (await first.connect(timeout=10)).user.id == api.user.id
    await first.close()

    again = session.client(ticket=ticket.ticket)
    with pytest.raises(TelepathError) as err:
        await again.connect(timeout=10)
    assert err.value.status == 401 and err.value.code == "unauthorized"
    assert "ticket" in err.value.message
    assert again.state == "closed"


async def test_a_bad_token_is_refused_before_the_upgrade(session: Session) -> None:
    tp = session.client("not-a-token")
    with pytest.raises(TelepathError) as err:
        await tp.connect(timeout=10)
    assert err.value.status == 401 and err.value.code == "unauthorized"


async def test_revoked_token_4001_stops_a_static_token(session: Session) -> None:
    admin = await session.rest(uname("root"), role="admin")
    api = await session.rest(uname("bob"))
    tp = session.client(api.token)
    states = Recorder(tp, "state", "bye")
    await tp.connect(timeout=10)
    await admin.request("POST", f"/admin/users/{api.user.id}/revoke")
    await wait_until(lambda: tp.state == "closed", "closed")
    closed = [s for s in states.of("state") if s.state == "closed"][0]
    assert closed.code == 4001
    assert [b.reason for b in states.of("bye")] == ["token_revoked"]
    with pytest.raises(TelepathError) as err:
        await tp.ping()
    assert err.value.code == "closed"


async def test_revoked_token_4001_calls_the_refresh_callback(session: Session) -> None:
    admin = await session.rest(uname("root"), role="admin")
    api = await session.rest(uname("bob"))
    room = await api.create_room(uname("room"))
    calls = 0

    async def fresh_token() -> str:
        nonlocal calls
        calls += 1
        # Tokens issued in the second of the revocation may still be refused.
        await asyncio.sleep(1.1)
        return (await api.login(api.user.name, remember=False)).token

    tp = session.client(api.token, on_token_expired=fresh_token)
    rec = Recorder(tp, "state", "joined", "message")
    await tp.connect(timeout=10)
    await tp.join(room.id)
    await tp.send(room.id, "before")
    await admin.request("POST", f"/admin/users/{api.user.id}/revoke")
    await wait_until(lambda: [s for s in rec.of("state") if s.state == "reconnecting" and s.code == 4001], "4001")
    await wait_until(lambda: len([j for j in rec.of("joined") if j.rejoin]) == 1, "rejoined", 15)
    assert calls == 1 and tp.state == "open"
    await tp.send(room.id, "after")
    await wait_until(lambda: len(rec.of("message")) == 2, "2 messages")
    assert [m.body for m in rec.of("message")] == ["before", "after"]


async def test_a_token_callable_is_refreshed_before_it_expires(session: Session) -> None:
    api = await session.rest(uname("ada"))
    made = 0

    def short_token() -> str:
        nonlocal made
        made += 1
        return sign(api.user.id, api.user.name, ttl=3)

    tp = session.client(short_token)
    rec = Recorder(tp, "state")
    await tp.connect(timeout=10)
    # Without refresh the server would close at exp + 5 s (4001).
    await asyncio.sleep(9)
    assert tp.state == "open"
    assert [s.state for s in rec.of("state")] == ["connecting", "open"]
    assert made >= 3
    assert await tp.ping() > 0


async def test_too_many_connections_4009_waits_and_retries(session: Session) -> None:
    api = await session.rest(uname("ada"))
    first = session.client(api.token)
    second = session.client(api.token)
    await first.connect(timeout=10)
    await second.connect(timeout=10)
    third = session.client(api.token, reconnect=Backoff(initial_delay=0.05, max_delay=0.5))
    rec = Recorder(third, "state")
    connecting = asyncio.create_task(third.connect(timeout=20))
    got = await wait_until(lambda: [s for s in rec.of("state") if s.code == 4009], "4009")
    assert got[0].state == "reconnecting" and got[0].delay >= 0.5
    await first.close()
    welcome = await connecting
    assert welcome.user.id == api.user.id


async def test_disconnected_by_an_admin_4003_stops(session: Session) -> None:
    admin = await session.rest(uname("root"), role="admin")
    api = await session.rest(uname("bob"))
    tp = session.client(api.token)
    rec = Recorder(tp, "state", "bye")
    await tp.connect(timeout=10)
    result = await admin.request("POST", "/admin/disconnect", json={"user_id": api.user.id})
    assert result["disconnected"] == 1
    await wait_until(lambda: tp.state == "closed", "closed")
    assert [s.code for s in rec.of("state") if s.state == "closed"] == [4003]
    assert [b.reason for b in rec.of("bye")] == ["admin"]
    assert not [s for s in rec.of("state") if s.state == "reconnecting"]
