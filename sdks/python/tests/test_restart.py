"""The server restarts (SIGKILL, or SIGTERM with bye restart and close 1012)
on the same port and database: clients reconnect by themselves, resume every
room with since, and nothing is lost or repeated."""

from __future__ import annotations

import asyncio
import signal

from helpers import Gate, Recorder, Server, Session, assert_contiguous, uname, wait_until
from telepath import Backoff, TelepathClient, TelepathRest

# Rooms of this module; each test restarts the module's server.
SERVER_ENV: dict[str, str] = {}


async def _restart_scenario(session: Session, server: Server, sig: int) -> None:
    owner = await session.rest(uname("own"))
    room_a = await owner.create_room(uname("ra"))
    room_b = await owner.create_room(uname("rb"))
    ada_api = await session.rest(uname("ada"))
    bob_api = await session.rest(uname("bob"))
    # Ada logs in anew on every (re)connect. Bob's reconnect is held until
    # messages were sent after the restart, so they reach him through the
    # since replay, not live.
    logins = 0

    async def ada_token() -> str:
        nonlocal logins
        logins += 1
        async with TelepathRest(server.base) as api:
            return (await api.login(ada_api.user.name)).token

    ada = session.client(ada_token, reconnect=Backoff(initial_delay=0.05, max_delay=0.3))
    gate = Gate(bob_api.token)
    bob = session.client(gate)
    ada_states = Recorder(ada, "state")
    bob_rec = Recorder(bob, "message", "joined", "state", "bye")
    ada_rec = Recorder(ada, "message")
    await ada.connect(timeout=10)
    await bob.connect(timeout=10)
    for room in (room_a, room_b):
        await ada.join(room.id)
        await bob.join(room.id)
    for i in range(3):
        await ada.send(room_a.id, f"a-before-{i}")
        await ada.send(room_b.id, f"b-before-{i}")
    await wait_until(lambda: len(bob_rec.of("message")) == 6, "6 before at bob")

    gate.hold()
    await server.akill(sig)
    await wait_until(lambda: ada.state == "reconnecting" and bob.state == "reconnecting", "both reconnecting")
    # Queued at Ada while the server is down.
    down = [asyncio.create_task(ada.send(room_a.id, f"a-down-{i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    assert ada.pending() == 3

    await server.astart()
    down_replies = await asyncio.wait_for(asyncio.gather(*down), 20)
    assert [r.seq for r in down_replies] == [4, 5, 6]
    # Sent over REST by someone else before Bob is back.
    for i in range(2):
        await owner.send_message(room_b.id, f"b-after-{i}")
    assert bob.state == "reconnecting"
    gate.release()
    await wait_until(lambda: len([j for j in bob_rec.of("joined") if j.rejoin]) == 2, "bob rejoined both", 20)
    rejoins = {j.room: j for j in bob_rec.of("joined") if j.rejoin}
    assert rejoins[room_a.id].since == 3 and rejoins[room_a.id].seq == 6
    assert rejoins[room_b.id].since == 3 and rejoins[room_b.id].seq == 5
    assert all(j.recovered for j in rejoins.values())

    await ada.send(room_a.id, "a-live")
    await ada.send(room_b.id, "b-live")
    await wait_until(lambda: len(bob_rec.of("message")) == 13, "13 at bob", 15)
    await wait_until(lambda: len(ada_rec.of("message")) == 13, "13 at ada", 15)
    await asyncio.sleep(0.3)
    for rec, who in ((bob_rec, "bob"), (ada_rec, "ada")):
        a = [m for m in rec.of("message") if m.room == room_a.id]
        b = [m for m in rec.of("message") if m.room == room_b.id]
        assert [m.body for m in a] == [f"a-before-{i}" for i in range(3)] + [f"a-down-{i}" for i in range(3)] + [
            "a-live"
        ], who
        assert [m.body for m in b] == [f"b-before-{i}" for i in range(3)] + [f"b-after-{i}" for i in range(2)] + [
            "b-live"
        ], who
        assert_contiguous(a, f"{who} room a")
        assert_contiguous(b, f"{who} room b")
    # Stored once each.
    page = await owner.history(room_a.id)
    assert [m.body for m in page.messages].count("a-down-0") == 1 and len(page.messages) == 7
    closes = [s.code for s in bob_rec.of("state") if s.state == "reconnecting"]
    if sig == signal.SIGTERM:
        assert closes[0] == 1012, closes
        assert [b.reason for b in bob_rec.of("bye")] == ["restart"]
    assert any(s.state == "reconnecting" for s in ada_states.items)
    assert logins >= 2


async def test_restart_sigkill_resumes_without_loss_or_repeat(session: Session, server: Server) -> None:
    await _restart_scenario(session, server, signal.SIGKILL)


async def test_restart_sigterm_1012_resumes_without_loss_or_repeat(session: Session, server: Server) -> None:
    await _restart_scenario(session, server, signal.SIGTERM)


async def test_connect_waits_for_a_server_that_is_down(session: Session, server: Server) -> None:
    api = await session.rest(uname("ada"))
    await server.akill(signal.SIGKILL)
    tp: TelepathClient = session.client(api.token)
    connecting = asyncio.create_task(tp.connect(timeout=20))
    await wait_until(lambda: tp.state == "reconnecting", "retrying")
    await server.astart()
    welcome = await connecting
    assert welcome.user.name == api.user.name and tp.state == "open"
