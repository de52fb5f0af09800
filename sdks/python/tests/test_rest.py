"""The REST client against the real server: rooms, REST send, history,
participants, DMs, search, notifications, presence, tickets, and how errors
map to TelepathError (404, 400, 401, 409, 429 with Retry-After)."""

from __future__ import annotations

import httpx
import pytest

from helpers import Recorder, Server, Session, uname, wait_until
from telepath import Message, Participant, Room, TelepathError, TelepathRest


async def test_login_rooms_join_leave_participants(session: Session) -> None:
    ada = await session.rest(uname("ada"))
    bob = await session.rest(uname("bob"))
    assert ada.token and ada.user is not None and ada.user.role == "user"

    room = await ada.create_room(uname("room"), description="about things", max_participants=5)
    assert isinstance(room, Room) and room.role == "owner" and room.member_count == 1
    assert room.description == "about things" and room.max_participants == 5
    private = await ada.create_room(uname("secret"), private=True)

    listed = {r.id: r for r in await bob.list_rooms()}
    assert room.id in listed and private.id not in listed

    part = await bob.join_room(room.id)
    assert isinstance(part, Participant) and part.user.id == bob.user.id and part.role == "member"
    people = await ada.participants(room.id)
    assert [p.user.name for p in people] == [ada.user.name, bob.user.name]
    assert (await ada.get_room(room.id)).member_count == 2

    await bob.leave_room(room.id)
    with pytest.raises(TelepathError) as err:
        await bob.participants(room.id)
    assert err.value.status == 404 and err.value.code == "not_found"
    # The owner may not leave an open room.
    with pytest.raises(TelepathError) as err:
        await ada.leave_room(room.id)
    assert err.value.status == 409 and err.value.code == "conflict"

    await ada.close_room(room.id)
    assert room.id not in {r.id for r in await ada.list_rooms()}


async def test_rest_send_history_and_idempotency(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob = await session.rest(uname("bob"))
    room = await ada_api.create_room(uname("room"))
    await bob.join_room(room.id)
    await ada.join(room.id)
    live = Recorder(ada, "message")

    first = await bob.send_message(room.id, "over rest", client_id="rest-cid-1")
    assert isinstance(first, Message) and first.seq == 1 and first.from_.id == bob.user.id
    assert first.body == "over rest" and first.kind == "text" and first.ts
    again = await bob.send_message(room.id, "over rest", client_id="rest-cid-1")
    assert again.id == first.id and again.seq == 1
    second = await bob.send_message(room.id, "a reply", kind="note", reply_to=first.id)
    assert second.seq == 2 and second.kind == "note" and second.reply_to == first.id

    # Published like any message: the websocket client sees each once.
    await wait_until(lambda: len(live.of("message")) == 2, "2 live")
    assert [m.id for m in live.of("message")] == [first.id, second.id]

    page = await ada_api.history(room.id)
    assert [m.seq for m in page.messages] == [1, 2] and page.has_more is False
    assert [m.seq for m in (await ada_api.history(room.id, after=1)).messages] == [2]
    older = await ada_api.history(room.id, before=2, limit=1)
    assert [m.seq for m in older.messages] == [1]
    thread = await ada_api.thread(room.id, first.id)
    assert thread.parent.id == first.id and [m.id for m in thread.messages] == [second.id]

    # A client_id used for a DM cannot name a room message.
    await bob.request("GET", "/dms")  # any authenticated route works through request()
    ws_dm = await ada.dm(bob.user.id, "dm with a key", client_id="shared-key")
    assert ws_dm.id
    with pytest.raises(TelepathError) as err:
        await ada_api.send_message(room.id, "clash", client_id="shared-key")
    assert err.value.status == 409 and err.value.code == "conflict"


async def test_dms_search_notifications_presence_ticket(session: Session) -> None:
    ada_api, ada = await session.user(uname("ada"))
    bob = await session.rest(uname("bob"))
    room = await ada_api.create_room(uname("room"))
    await bob.join_room(room.id)

    await ada.dm(bob.user.name, "zebra crossing at noon")
    await ada.dm(bob.user.name, "second note")
    dms = await bob.dm_history(ada_api.user.name)
    assert [m.body for m in dms.messages] == ["zebra crossing at noon", "second note"]
    assert dms.messages[0].from_.id == ada_api.user.id and dms.messages[0].to == bob.user.id
    convs = await bob.dm_conversations()
    assert convs[0].user.id == ada_api.user.id and convs[0].unread == 2
    pending = await bob.pending_dms()
    assert len(pending) == 2

    await ada_api.send_message(room.id, f"hey @{bob.user.name} zebras everywhere")
    hits = await bob.search("zebra")
    kinds = sorted((h.room is not None, h.with_ is not None) for h in hits.results)
    assert kinds == [(False, True), (True, False)]
    assert all("«" in h.snippet for h in hits.results)
    only_room = await bob.search("zebra", room=room.id)
    assert len(only_room.results) == 1 and only_room.results[0].seq == 1

    notes = await wait_until(lambda: _unread(bob), "a mention notification")
    mention = [n for n in notes.notifications if n.kind == "mention"]
    assert mention and mention[0].room == room.id and mention[0].from_.id == ada_api.user.id
    read = await bob.mark_notifications_read(up_to=notes.notifications[0].id)
    assert read.unread == 0

    online = await bob.online()
    assert ada_api.user.id in {u.id for u in online}

    ticket = await bob.ticket()
    assert ticket.expires_in == 30 and len(ticket.ticket) == 43


async def _unread(api: TelepathRest):
    page = await api.notifications(unread=True)
    return page if page.unread >= 1 else None


async def test_errors_map_to_telepath_error(session: Session) -> None:
    ada = await session.rest(uname("ada"))
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(TelepathError) as err:
        await ada.history(missing)
    assert (err.value.status, err.value.code) == (404, "not_found")
    assert err.value.message == "no such room"
    assert str(err.value) == "HTTP 404 not_found: no such room"

    room = await ada.create_room(uname("room"))
    # An unknown field: 400 with the server's explanation.
    with pytest.raises(TelepathError) as err:
        await ada.request("POST", f"/rooms/{room.id}/messages", json={"body": "x", "bogus": 1})
    assert (err.value.status, err.value.code) == (400, "bad_request")
    assert "bogus" in err.value.message
    # A malformed id is 400 too; an empty body 400.
    with pytest.raises(TelepathError) as err:
        await ada.send_message("not-a-uuid", "x")
    assert err.value.status == 400 and err.value.code == "bad_request"
    with pytest.raises(TelepathError) as err:
        await ada.send_message(room.id, "")
    assert err.value.status == 400
    with pytest.raises(TelepathError) as err:
        await ada.send_message(room.id, "x" * 5000)
    assert (err.value.status, err.value.code) == (413, "too_large")
    # No token: 401; an unknown route: 404 in the same shape.
    anon = TelepathRest(session.server.base)
    session.rests.append(anon)
    with pytest.raises(TelepathError) as err:
        await anon.list_rooms()
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    with pytest.raises(TelepathError) as err:
        await ada.request("GET", "/no/such/route")
    assert (err.value.status, err.value.code) == (404, "not_found")
    assert err.value.retry_after is None


async def test_network_error(session: Session) -> None:
    from helpers import free_port

    api = TelepathRest(f"http://127.0.0.1:{free_port()}", token="t")
    session.rests.append(api)
    with pytest.raises(TelepathError) as err:
        await api.list_rooms()
    assert err.value.code == "network" and err.value.status is None


async def test_429_carries_retry_after() -> None:
    """A server of its own with the login rate limit on (1 a second, burst 2)."""
    srv = Server({"TELEPATH_IP_LOGIN_RATE_PER_S": "1"})
    srv.start()
    try:
        async with TelepathRest(srv.base) as api:
            with pytest.raises(TelepathError) as err:
                for _ in range(10):
                    await api.login(uname("burst"))
            assert (err.value.status, err.value.code) == (429, "rate_limited")
            assert err.value.retry_after is not None and 0 < err.value.retry_after <= 5
    finally:
        srv.stop()


async def test_error_body_and_retry_after_parsing_without_a_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rooms":
            return httpx.Response(
                429,
                json={"error": {"code": "rate_limited", "message": "slow down"}},
                headers={"Retry-After": "3"},
            )
        if request.url.path == "/presence/online":
            return httpx.Response(502, text="bad gateway")
        return httpx.Response(200, text="not json")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        api = TelepathRest("http://telepath.test", token=lambda: "tok", client=http)
        with pytest.raises(TelepathError) as err:
            await api.list_rooms()
        assert (err.value.status, err.value.code, err.value.message, err.value.retry_after) == (
            429,
            "rate_limited",
            "slow down",
            3.0,
        )
        with pytest.raises(TelepathError) as err:
            await api.online()
        assert (err.value.status, err.value.code) == (502, "internal")
        with pytest.raises(TelepathError) as err:
            await api.me()
        assert err.value.code == "bad_response"
