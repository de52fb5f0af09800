"""DMs: live between two clients, to an offline user delivered on connect and
acked (so not delivered again), the sender's echo dropped by id, edits."""

from __future__ import annotations

import asyncio

from helpers import Recorder, Session, uname, wait_until
from telepath import DirectMessage


async def test_live_dm_between_two_clients(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api, bob = await session.user(uname("bob"))
    ada_rec = Recorder(ada, "dm", "dm_updated", "message_edited")
    bob_rec = Recorder(bob, "dm", "dm_updated", "message_edited")

    reply = await ada.dm(bob_api.user.name, "psst")
    assert reply.delivered is True and reply.client_id
    got = await wait_until(lambda: bob_rec.of("dm"), "dm at bob")
    assert isinstance(got[0], DirectMessage)
    assert got[0].id == reply.id and got[0].body == "psst" and got[0].from_.name == ada_api.user.name
    assert got[0].to == bob_api.user.id
    # The sender's own connection gets the DM too, once.
    await wait_until(lambda: ada_rec.of("dm"), "echo at ada")

    # The same client_id again: the first DM, nothing new stored.
    again = await ada.dm(bob_api.user.id, "psst", client_id=reply.client_id)
    assert again.id == reply.id

    edited = await ada.edit_dm(reply.id, "psst!")
    assert edited.id == reply.id and edited.seq is None
    await wait_until(lambda: bob_rec.of("message_edited"), "edit at bob")
    assert bob_rec.of("message_edited")[0].dm == reply.id

    # Bob's client acked it: it left his offline queue.
    await wait_until(lambda: _queued(bob_api, reply.id, False), "acked")
    await asyncio.sleep(0.2)
    assert len(bob_rec.of("dm")) == 1 and len(ada_rec.of("dm")) == 1

    page = await bob_api.dm_history(ada_api.user.name)
    assert [m.body for m in page.messages] == ["psst!"] and page.messages[0].edited_at


async def _queued(api, dm_id: str, want: bool) -> bool:
    return (await api.dm_state(dm_id)).queued is want


async def test_dms_to_an_offline_user_arrive_on_connect_and_are_acked(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob_api = await session.rest(uname("bob"))
    replies = [await ada.dm(bob_api.user.id, f"while you were out {i}") for i in range(3)]
    assert all(r.delivered is False for r in replies)
    assert [m.id for m in await bob_api.pending_dms()] == [r.id for r in replies]
    assert (await bob_api.dm_state(replies[0].id)).queued is True

    # Bob connects: the queue comes right after welcome, oldest first, and his client acks each.
    bob = session.client(bob_api.token)
    rec = Recorder(bob, "dm")
    await bob.connect(timeout=10)
    await wait_until(lambda: len(rec.of("dm")) == 3, "3 DMs at bob")
    assert [d.id for d in rec.of("dm")] == [r.id for r in replies]
    await wait_until(lambda: _pending_empty(bob_api), "offline queue empty")
    state = await bob_api.dm_state(replies[2].id)
    assert state.queued is False and state.delivered is True
    await bob.close()

    # A new connection gets nothing again.
    bob2 = session.client(bob_api.token)
    rec2 = Recorder(bob2, "dm")
    await bob2.connect(timeout=10)
    await asyncio.sleep(0.5)
    assert rec2.of("dm") == []
    await bob2.close()

    # Manual acks: with auto_ack off the DM stays queued until ack_dm().
    bob3 = session.client(bob_api.token, auto_ack=False)
    rec3 = Recorder(bob3, "dm")
    await bob3.connect(timeout=10)
    r = await ada.dm(bob_api.user.id, "ack me yourself")
    await wait_until(lambda: rec3.of("dm"), "dm at bob3")
    assert (await bob_api.dm_state(r.id)).queued is True
    await bob3.ack_dm(r.id)
    assert (await bob_api.dm_state(r.id)).queued is False

    # An ack naming the version received leaves an edit made since queued.
    r2 = await ada.dm(bob_api.user.id, "first")
    await wait_until(lambda: len(rec3.of("dm")) == 2, "the second DM at bob3")
    edited = await ada.edit_dm(r2.id, "second")
    await bob3.ack_dm(r2.id, deleted=False)
    assert (await bob_api.dm_state(r2.id)).queued is True
    await bob3.ack_dm(r2.id, edited_at=edited.edited_at)
    assert (await bob_api.dm_state(r2.id)).queued is False


async def _pending_empty(api) -> bool:
    return await api.pending_dms() == []
