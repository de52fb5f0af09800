"""A rejoin whose gap is over the server's replay cap: `recovered: false`,
a `recovery` event, and live delivery continuing after the reply's seq."""

from __future__ import annotations

import asyncio

from helpers import Gate, Proxy, Recorder, Session, uname, wait_until

SERVER_ENV = {"TELEPATH_REPLAY_CAP": "3"}


async def test_gap_over_the_replay_cap_is_reported_for_paging(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api = await session.rest(uname("bob"))
    room = await ada_api.create_room(uname("room"))
    await ada.join(room.id)
    proxy = await Proxy(session.server.port).start()
    try:
        gate = Gate(bob_api.token)
        bob = session.client(gate, url=proxy.ws)
        await bob.connect(timeout=10)
        await bob.join(room.id)
        rec = Recorder(bob, "message", "recovery", "gap", "joined")
        await ada.send(room.id, "seen")
        await wait_until(lambda: len(rec.of("message")) == 1, "first at bob")

        gate.hold()
        proxy.cut()
        for i in range(5):
            await ada.send(room.id, f"missed-{i}")
        gate.release()
        recovery = await wait_until(lambda: rec.of("recovery"), "recovery", 15)
        assert recovery[0].room == room.id and recovery[0].since == 1 and recovery[0].seq == 6
        assert bob.last_seq(room.id) == 6
        await ada.send(room.id, "live")
        await wait_until(lambda: len(rec.of("message")) == 2, "live at bob")
        await asyncio.sleep(0.3)
        assert [m.body for m in rec.of("message")] == ["seen", "live"]
        assert rec.of("gap") == []
        # The app pages what it missed over REST.
        page = await bob_api.history(room.id, after=1, before=7)
        assert [m.body for m in page.messages] == [f"missed-{i}" for i in range(5)]
    finally:
        await proxy.close()
