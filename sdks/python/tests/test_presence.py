"""Typing and presence events, status re-applied after a reconnect, the
async iterator and wait_for."""

from __future__ import annotations

import asyncio

from helpers import Proxy, Recorder, Session, uname, wait_until
from telepath import Presence, Typing

# Announce offline soon after the last connection closes; typing times out fast.
SERVER_ENV = {"TELEPATH_PRESENCE_GRACE_MS": "1000", "TELEPATH_TYPING_TTL_MS": "1500"}


async def test_typing_events(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api, bob = await session.user(uname("bob"))
    room = await ada_api.create_room(uname("room"))
    await ada.join(room.id)
    await bob.join(room.id)

    async with ada.events("typing") as stream:
        bob.typing(room.id)
        bob.typing(room.id)  # throttled: one frame
        ev = await stream.get(timeout=5)
        assert isinstance(ev, Typing) and ev.active is True
        assert ev.room == room.id and ev.user.name == bob_api.user.name
        bob.typing(room.id, active=False)
        ev = await stream.get(timeout=5)
        assert ev.active is False
        # Without a refresh the server says active:false after its TTL.
        bob.typing(room.id)
        assert (await stream.get(timeout=5)).active is True
        assert (await stream.get(timeout=5)).active is False
        assert stream.pending() == 0


async def test_presence_status_and_offline(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api = await session.rest(uname("bob"))
    proxy = await Proxy(session.server.port).start()
    try:
        bob = session.client(bob_api.token, url=proxy.ws)
        await bob.connect(timeout=10)
        room = await ada_api.create_room(uname("room"))
        await ada.join(room.id)
        await bob.join(room.id)
        rec = Recorder(ada, "presence")

        def bob_presence(status: str):
            return lambda ev: ev.user.id == bob_api.user.id and ev.status == status

        async def seen(status: str) -> Presence:
            found = await wait_until(lambda: [e for e in rec.items if bob_presence(status)(e)], status, 5)
            return found[-1]

        # wait_for registers before the action, so it cannot miss the event.
        busy = asyncio.create_task(ada.wait_for("presence", bob_presence("busy"), timeout=5))
        await asyncio.sleep(0)
        assert (await bob.status("busy", "in a meeting")).status == "busy"
        ev = await busy
        assert isinstance(ev, Presence) and ev.text == "in a meeting" and ev.last_seen

        online = await ada_api.online()
        mine = [u for u in online if u.id == bob_api.user.id]
        assert mine and mine[0].connections == 1

        # A drop and a quick reconnect: the chosen status is applied again
        # and nobody is told Bob went offline (presence's grace).
        proxy.cut()
        await wait_until(lambda: bob.state == "reconnecting", "bob reconnecting")
        await wait_until(lambda: bob.state == "open", "bob back")
        await asyncio.sleep(1.5)
        assert not [e for e in rec.items if e.user.id == bob_api.user.id and e.status == "offline"]

        assert (await bob.status("online")).status == "online"
        await seen("online")
        await bob.close()
        ev = await seen("offline")
        assert ev.user.name == bob_api.user.name
    finally:
        await proxy.close()


async def test_event_callbacks_sync_and_async(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    room = await ada_api.create_room(uname("room"))
    await ada.join(room.id)
    sync_seen: list[str] = []
    async_seen: list[str] = []
    everything: list[str] = []

    async def on_async(m) -> None:
        await asyncio.sleep(0)
        async_seen.append(m.body)

    off = ada.on("message", lambda m: sync_seen.append(m.body))
    ada.on("message", on_async)
    ada.on("*", lambda e: everything.append(e.type))
    await ada.send(room.id, "one")
    await wait_until(lambda: async_seen == ["one"] and sync_seen == ["one"], "both callbacks")
    off()
    await ada.send(room.id, "two")
    await wait_until(lambda: async_seen == ["one", "two"], "async callback again")
    assert sync_seen == ["one"]
    assert "message" in everything
