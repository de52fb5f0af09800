"""Dropped connections (cut by a TCP proxy): a send in flight is written again
with the same client_id and stored once; rooms resume with since; requests
and timeouts."""

from __future__ import annotations

import asyncio

import pytest

from helpers import Gate, Proxy, Recorder, Session, assert_contiguous, uname, wait_until
from telepath import TelepathError


@pytest.fixture
async def proxy(session: Session):
    p = await Proxy(session.server.port).start()
    try:
        yield p
    finally:
        await p.close()


async def test_send_in_flight_across_a_drop_is_stored_once(session: Session, proxy: Proxy) -> None:
    owner_api, watcher = await session.user(uname("watch"))
    ada_api = await session.rest(uname("ada"))
    room = await owner_api.create_room(uname("room"))
    await watcher.join(room.id)
    ada = session.client(ada_api.token, url=proxy.ws)
    states = Recorder(ada, "state")
    await ada.connect(timeout=10)
    await ada.join(room.id)
    seen = Recorder(watcher, "message")

    # The server commits the send but its reply never reaches Ada.
    proxy.drop = lambda f: f.get("type") == "reply"
    task = asyncio.create_task(ada.send(room.id, "in flight", client_id="cid-inflight-1"))
    await wait_until(lambda: seen.bodies() == ["in flight"], "the message at the watcher")
    await wait_until(lambda: proxy.dropped, "the reply lost")
    assert not task.done() and ada.pending() == 1

    # The connection drops with the send unanswered; the client reconnects
    # and writes it again with the same client_id: the server answers with
    # the message it stored the first time.
    proxy.drop = None
    assert proxy.cut() == 1
    reply = await asyncio.wait_for(task, 15)
    assert reply.client_id == "cid-inflight-1"
    assert any(s.state == "reconnecting" for s in states.items)
    assert ada.pending() == 0

    page = await owner_api.history(room.id)
    assert [m.body for m in page.messages] == ["in flight"]
    assert page.messages[0].id == reply.id and page.messages[0].seq == reply.seq
    await asyncio.sleep(0.3)
    assert seen.bodies() == ["in flight"]


async def test_sends_queued_while_down_go_out_in_order_once(session: Session, proxy: Proxy) -> None:
    owner_api, watcher = await session.user(uname("watch"))
    ada_api = await session.rest(uname("ada"))
    room = await owner_api.create_room(uname("room"))
    await watcher.join(room.id)
    seen = Recorder(watcher, "message")
    # The reconnect is held so the sends below are made while disconnected.
    gate = Gate(ada_api.token)
    ada = session.client(gate, url=proxy.ws)
    await ada.connect(timeout=10)
    await ada.join(room.id)
    await ada.send(room.id, "before")
    gate.hold()
    proxy.cut()
    await wait_until(lambda: ada.state == "reconnecting", "reconnecting")
    sends = [asyncio.create_task(ada.send(room.id, f"queued-{i}")) for i in range(5)]
    await asyncio.sleep(0.2)
    assert ada.pending() == 5 and not any(t.done() for t in sends)
    gate.release()
    replies = await asyncio.wait_for(asyncio.gather(*sends), 15)
    assert [r.seq for r in replies] == [2, 3, 4, 5, 6]
    await wait_until(lambda: len(seen.bodies()) == 6, "6 at the watcher")
    assert seen.bodies() == ["before"] + [f"queued-{i}" for i in range(5)]
    assert_contiguous(seen.of("message"), "watcher")


async def test_resume_with_since_after_a_drop(session: Session, proxy: Proxy) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api = await session.rest(uname("bob"))
    room = await ada_api.create_room(uname("room"))
    await ada.join(room.id)
    gate = Gate(bob_api.token)
    bob = session.client(gate, url=proxy.ws)
    await bob.connect(timeout=10)
    await bob.join(room.id)
    rec = Recorder(bob, "message", "joined")
    for i in range(3):
        await ada.send(room.id, f"a{i}")
    await wait_until(lambda: len(rec.of("message")) == 3, "3 at bob")

    gate.hold()
    proxy.cut()
    # Sent while Bob is away: the rejoin's replay brings them.
    for i in range(3, 7):
        await ada.send(room.id, f"a{i}")
    gate.release()
    await wait_until(lambda: len(rec.of("message")) == 7, "7 at bob", timeout=15)
    rejoin = [j for j in rec.of("joined") if j.rejoin]
    assert rejoin and rejoin[0].since == 3 and rejoin[0].seq == 7 and rejoin[0].recovered
    await ada.send(room.id, "live")
    await wait_until(lambda: len(rec.of("message")) == 8, "8 at bob")
    await asyncio.sleep(0.2)
    msgs = rec.of("message")
    assert [m.body for m in msgs] == [f"a{i}" for i in range(7)] + ["live"]
    assert_contiguous(msgs, "bob")


async def test_request_timeout_and_disconnected(session: Session, proxy: Proxy) -> None:
    api = await session.rest(uname("ada"))
    tp = session.client(api.token, url=proxy.ws, request_timeout=0.5)
    await tp.connect(timeout=10)
    proxy.drop = lambda f: f.get("type") == "reply"
    with pytest.raises(TelepathError) as err:
        await tp.ping()
    assert err.value.code == "timeout"
    # A plain request written before a drop fails with `disconnected` (it is not resent).
    tp.request_timeout = 10
    task = asyncio.create_task(tp.ping())
    await wait_until(lambda: len(proxy.dropped) >= 2, "the second reply lost")
    proxy.drop = None
    proxy.cut()
    with pytest.raises(TelepathError) as err:
        await task
    assert err.value.code == "disconnected"
    await wait_until(lambda: tp.state == "open", "open again")
    assert await tp.ping() > 0


async def test_close_fails_what_waits_and_ends_streams(session: Session) -> None:
    api = await session.rest(uname("ada"))
    tp = session.client(api.token)
    stream = tp.events()
    # Never connected: the send waits in the queue.
    task = asyncio.create_task(tp.send("00000000-0000-4000-8000-000000000000", "x"))
    await asyncio.sleep(0.05)
    await tp.close()
    with pytest.raises(TelepathError) as err:
        await task
    assert err.value.code == "closed"
    events = [e async for e in stream]
    assert [e.state for e in events] == ["closed"]
    with pytest.raises(TelepathError):
        await tp.send("00000000-0000-4000-8000-000000000000", "y")
