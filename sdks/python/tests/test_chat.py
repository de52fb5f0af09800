"""Two clients chatting in a room, live changes, request/reply, dedupe of
repeated seqs, and a hole in the seqs filled from REST history."""

from __future__ import annotations

import asyncio

import pytest

from helpers import Proxy, Recorder, Session, assert_contiguous, uname, wait_until
from telepath import Joined, Member, Message, TelepathError


async def test_two_clients_chat_in_a_room(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api, bob = await session.user(uname("bob"))
    assert ada.state == "open" and ada.user is not None and ada.user.name == ada_api.user.name
    assert ada.welcome is not None and ada.welcome.limits.max_frame_bytes > 0

    room = await ada_api.create_room(uname("room"))
    ada_rec = Recorder(ada, "message", "member")
    bob_rec = Recorder(bob, "message")

    joined = await ada.join(room.id)
    assert joined.room == room.id and joined.seq == 0
    await bob.join(room.id)
    # Ada (subscribed) sees Bob become a participant.
    member = await wait_until(lambda: ada_rec.of("member"), "member joined")
    assert isinstance(member[0], Member) and member[0].action == "joined" and member[0].user.name == bob_api.user.name

    r1 = await ada.send(room.id, "hello bob")
    r2 = await bob.send(room.id, "hi ada", kind="text")
    r3 = await ada.send(room.id, "reply", reply_to=r2.id)
    assert (r1.seq, r2.seq, r3.seq) == (1, 2, 3)
    assert r1.client_id and r1.client_id != r2.client_id

    for rec, who in ((ada_rec, "ada"), (bob_rec, "bob")):
        await wait_until(lambda rec=rec: len(rec.of("message")) >= 3, f"3 messages at {who}")
        msgs = rec.of("message")
        assert [m.body for m in msgs] == ["hello bob", "hi ada", "reply"]
        assert_contiguous(msgs, who)
        assert isinstance(msgs[0], Message)
        assert msgs[0].from_.name == ada_api.user.name and msgs[1].from_.name == bob_api.user.name
        assert msgs[2].reply_to == r2.id
    assert ada.last_seq(room.id) == 3 and bob.last_seq(room.id) == 3

    # The same log over REST.
    page = await bob_api.history(room.id)
    assert [m.seq for m in page.messages] == [1, 2, 3] and page.messages[0].id == r1.id


async def test_edit_delete_react_read_and_replies(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api, bob = await session.user(uname("bob"))
    room = await ada_api.create_room(uname("room"))
    await ada.join(room.id)
    await bob.join(room.id)
    bob_rec = Recorder(bob, "message", "message_edited", "message_deleted", "reaction", "receipt")

    sent = await ada.send(room.id, "first draft")
    edited = await ada.edit(room.id, sent.id, "final text")
    assert edited.id == sent.id and edited.seq == 2
    reacted = await bob.react(room.id, sent.id, "👍")
    assert reacted.count == 1 and reacted.seq == 3
    other = await ada.send(room.id, "to delete")
    deleted = await ada.delete(room.id, other.id)
    assert deleted.seq == 5
    read = await bob.read(room.id, 5)
    assert read.seq == 5
    # Below the confirmed cursor: answered locally.
    assert (await bob.read(room.id, 2)).seq == 5

    await wait_until(lambda: len(bob_rec.of("message_deleted")) == 1, "delete at bob")
    log = [e for e in bob_rec.items if e.type != "receipt"]
    assert [(e.type, e.seq) for e in log] == [
        ("message", 1),
        ("message_edited", 2),
        ("reaction", 3),
        ("message", 4),
        ("message_deleted", 5),
    ]
    assert log[1].body == "final text" and log[2].emoji == "👍" and log[2].on is True

    # Errors come back as TelepathError with the server's code.
    with pytest.raises(TelepathError) as err:
        await bob.edit(room.id, sent.id, "not mine")
    assert err.value.code == "forbidden"
    with pytest.raises(TelepathError) as err:
        await ada.join("00000000-0000-4000-8000-000000000000")
    assert err.value.code == "not_found"
    with pytest.raises(TelepathError) as err:
        await ada.send(room.id, "x" * 5000)
    assert err.value.code == "too_large"
    assert await ada.ping() > 0


async def test_repeated_seqs_are_dropped(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    room = await ada_api.create_room(uname("room"))
    await ada.join(room.id)
    rec = Recorder(ada, "message")
    frames = Recorder(ada, "frame")
    for i in range(5):
        await ada.send(room.id, f"m{i}")
    await wait_until(lambda: len(rec.of("message")) == 5, "5 messages")

    # A raw join with since=0 on the same connection makes the server replay
    # seqs 1..5 again: the client sees the frames but emits nothing new.
    reply = await ada.request({"type": "join", "room": room.id, "since": 0})
    assert reply["seq"] == 5 and reply["recovered"] is True
    await wait_until(lambda: len([f for f in frames.of("message")]) >= 10, "the replayed frames")
    await ada.send(room.id, "after")
    await wait_until(lambda: len(rec.of("message")) == 6, "6 messages")
    await asyncio.sleep(0.2)
    msgs = rec.of("message")
    assert [m.body for m in msgs] == ["m0", "m1", "m2", "m3", "m4", "after"]
    assert_contiguous(msgs, "ada")


async def test_a_lost_message_is_fetched_from_history(session: Session) -> None:
    """The proxy loses one message frame on the way to Bob: the next one
    reveals the hole, the client reads it over REST and delivers in order."""
    ada_api, ada = await session.user(uname("ada"))
    bob_api = await session.rest(uname("bob"))
    proxy = await Proxy(session.server.port).start()
    try:
        bob = session.client(bob_api.token, url=proxy.ws)
        await bob.connect(timeout=10)
        room = await ada_api.create_room(uname("room"))
        await ada.join(room.id)
        await bob.join(room.id)
        rec = Recorder(bob, "message", "gap")
        proxy.drop = lambda f: f.get("type") == "message" and f.get("body") == "lost"
        for body in ("one", "lost", "three", "four"):
            await ada.send(room.id, body)
        await wait_until(lambda: len(rec.of("message")) == 4, "4 messages at bob")
        assert len(proxy.dropped) == 1
        msgs = rec.of("message")
        assert [m.body for m in msgs] == ["one", "lost", "three", "four"]
        assert_contiguous(msgs, "bob")
        gaps = [(g.action, g.after, g.before) for g in rec.of("gap")]
        assert gaps[0] == ("fetch", 1, 3) and ("filled", 1, 3) in gaps
        # Bob acked up to 4 (never past the hole while it was open): a new
        # connection joining without since replays nothing from his cursor.
        await asyncio.sleep(1.0)
        bob2 = session.client(bob_api.token)
        await bob2.connect(timeout=10)
        rec2 = Recorder(bob2, "message")
        again = await bob2.join(room.id)
        assert again.seq == 4
        await asyncio.sleep(0.3)
        assert rec2.of("message") == []
    finally:
        await proxy.close()


async def test_joined_events_and_leave(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api, bob = await session.user(uname("bob"))
    room = await ada_api.create_room(uname("room"))
    joined = Recorder(bob, "joined")
    await bob.join(room.id)
    assert isinstance(joined.items[0], Joined) and joined.items[0].rejoin is False
    assert room.id in bob.rooms
    assert (await bob.leave(room.id)) == {"room": room.id}
    assert room.id not in bob.rooms
    # The owner may not leave an open room: the room is joined again.
    await ada.join(room.id)
    with pytest.raises(TelepathError) as err:
        await ada.leave(room.id)
    assert err.value.code == "conflict"
    await wait_until(lambda: room.id in ada.rooms, "ada rejoined")
