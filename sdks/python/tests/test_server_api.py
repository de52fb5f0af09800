"""The server API (TelepathServer, API keys) against the real all-in-one:
keys made by the admin routes and by `telepath apikey create`; publishing as
a bot to a connected client, idempotent by client_id, in a batch with one
item refused (outside the key's room prefix), and to an offline user (the DM
arrives on connect); presence of users and of a room; a room created with
members added; disconnect (the client stops with 4003); scopes (403),
revoked and unknown keys, user tokens on /api/ and keys on user routes (401);
the key kept out of repr, errors and logs."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from typing import Any

import httpx
import pytest

from helpers import BIN, Recorder, Server, Session, uname, wait_until
from telepath import (
    AddedMembers,
    ApiKeyInfo,
    ApiPresence,
    CreatedApiKey,
    DirectMessage,
    DisconnectResult,
    DmResult,
    Message,
    PublishItem,
    PublishOutcome,
    Room,
    TelepathError,
    TelepathRest,
    TelepathServer,
)

# Presence forgets a closed connection's user soon.
SERVER_ENV = {"TELEPATH_PRESENCE_GRACE_MS": "1000"}

NOBODY = "00000000-0000-4000-8000-000000000000"


async def cli(server: Server, *args: str) -> str:
    """`telepath apikey ARGS` on the test server's database (while it runs); its stdout."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": server.env()["DATABASE_URL"],
        "RUST_LOG": "warn",
    }
    proc = await asyncio.create_subprocess_exec(
        BIN,
        "apikey",
        *args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except BaseException:
        if proc.returncode is None:
            proc.kill()  # ours, by pid
            await proc.wait()
        raise
    assert proc.returncode == 0, f"telepath apikey {args}: {err.decode(errors='replace')}"
    return out.decode()


async def cli_key(server: Server, name: str, scopes: str, rooms: str | None = None) -> str:
    args = ["create", "--name", name, "--scope", scopes]
    if rooms is not None:
        args += ["--rooms", rooms]
    out = await cli(server, *args)
    key = out.splitlines()[0].strip()
    assert key.startswith("tpk_") and len(key) == 47, out
    return key


class Servers:
    """TelepathServer clients made by one test, closed at the end."""

    def __init__(self, server: Server) -> None:
        self.base = server.base
        self.made: list[TelepathServer] = []

    def __call__(self, key: Any) -> TelepathServer:
        srv = TelepathServer(self.base, key)
        self.made.append(srv)
        return srv

    async def close(self) -> None:
        for srv in self.made:
            await srv.aclose()


@pytest.fixture
async def servers(server: Server) -> Any:
    s = Servers(server)
    try:
        yield s
    finally:
        await s.close()


async def admin_key(session: Session, scopes: list[str], room_prefix: str | None = None) -> CreatedApiKey:
    root = await session.rest(uname("root"), role="admin")
    return await root.create_api_key(uname("key"), scopes, room_prefix=room_prefix)  # type: ignore[arg-type]


async def refused(aw: Any) -> TelepathError:
    with pytest.raises(TelepathError) as err:
        await aw
    return err.value


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


async def test_admin_creates_lists_and_revokes_keys(session: Session, servers: Servers) -> None:
    root = await session.rest(uname("root"), role="admin")
    made = await root.create_api_key("billing backend", ["publish", "presence"], room_prefix="billing-")
    assert isinstance(made, CreatedApiKey) and isinstance(made, ApiKeyInfo)
    assert made.key.startswith("tpk_") and len(made.key) == 47
    assert made.name == "billing backend" and made.scopes == ["publish", "presence"]
    assert made.room_prefix == "billing-" and made.created_at and made.revoked_at is None
    # The secret stays out of repr (and so out of logs that print the object).
    assert made.key not in repr(made) and made.key[4:] not in str(made)

    other = await root.create_api_key(uname("ops"), ["rooms", "users"])
    assert other.room_prefix is None and other.key != made.key

    listed = await root.list_api_keys()
    assert all(isinstance(k, ApiKeyInfo) and not isinstance(k, CreatedApiKey) for k in listed)
    by_id = {k.id: k for k in listed}
    assert by_id[made.id].name == "billing backend" and by_id[made.id].scopes == ["publish", "presence"]
    assert by_id[made.id].room_prefix == "billing-"
    assert [k.id for k in listed].index(other.id) < [k.id for k in listed].index(made.id), "newest first"
    raw = await root.request("GET", "/admin/api-keys")
    assert made.key[4:] not in str(raw) and other.key[4:] not in str(raw), "no secret listed"

    # The key works until revoked, then 401 revoked_api_key.
    srv = servers(other.key)
    room = await srv.create_room(uname("ops-room"))
    assert isinstance(room, Room)
    await root.revoke_api_key(other.id)
    err = await refused(srv.create_room(uname("ops-room")))
    assert (err.status, err.code, err.message) == (401, "unauthorized", "revoked_api_key")
    revoked = {k.id: k for k in await root.list_api_keys()}[other.id]
    assert revoked.revoked_at

    err = await refused(root.revoke_api_key(NOBODY))
    assert (err.status, err.code) == (404, "not_found")
    err = await refused(root.create_api_key("x", ["admin"]))  # type: ignore[list-item]
    assert (err.status, err.code) == (400, "bad_request")
    err = await refused(root.create_api_key("x", []))
    assert err.status == 400

    # Not an admin: no key management.
    ada = await session.rest(uname("ada"))
    for aw in (ada.list_api_keys(), ada.create_api_key("mine", ["publish"]), ada.revoke_api_key(made.id)):
        err = await refused(aw)
        assert (err.status, err.code) == (403, "forbidden")


async def test_cli_key_is_printed_once_and_listed_without_its_secret(session: Session, servers: Servers) -> None:
    name = uname("cli")
    key = await cli_key(session.server, name, "presence")
    listed = await cli(session.server, "list")
    assert name in listed and key[4:] not in listed
    root = await session.rest(uname("root"), role="admin")
    mine = [k for k in await root.list_api_keys() if k.name == name]
    assert len(mine) == 1 and mine[0].scopes == ["presence"] and mine[0].room_prefix is None
    presence = await servers(key).presence([NOBODY])
    assert presence.offline == [NOBODY]


# ---------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------


async def test_publish_as_a_bot_reaches_connected_clients_idempotently(session: Session, servers: Servers) -> None:
    prefix = f"{uname('bill')}-"
    key = await cli_key(session.server, uname("billing"), "publish,presence", rooms=prefix)
    srv = servers(key)
    ada_api, ada = await session.user(uname("ada"))
    bob_api, bob = await session.user(uname("bob"))
    room = await ada_api.create_room(f"{prefix}alerts")
    other = await ada_api.create_room(uname("random"))
    await bob_api.join_room(room.id)
    await ada.join(room.id)
    await bob.join(room.id)
    await ada.join(other.id)
    at_ada = Recorder(ada, "message")
    at_bob = Recorder(bob, "message")
    bot = uname("billing-bot")

    m = await srv.publish(room.id, "invoice paid", as_user=bot, client_id="inv-1")
    assert isinstance(m, Message) and m.room == room.id and m.seq == 1
    assert m.from_.name == bot and m.body == "invoice paid" and m.kind == "text" and m.ts
    for rec, who in ((at_ada, "ada"), (at_bob, "bob")):
        got = await wait_until(lambda rec=rec: rec.of("message"), f"the bot's message at {who}")
        assert isinstance(got[0], Message) and (got[0].id, got[0].seq) == (m.id, m.seq)
        assert got[0].from_.name == bot and got[0].body == "invoice paid"

    # The same client_id and sender: the message stored first, no new seq.
    again = await srv.publish(room.id, "invoice paid", as_user=bot, client_id="inv-1")
    assert (again.id, again.seq) == (m.id, m.seq)
    # As the system user, with a kind.
    sys = await srv.publish(room.id, "maintenance at 5", kind="notice")
    assert sys.from_.name == "system" and sys.kind == "notice"
    assert sys.seq == m.seq + 1, "the repeat took no seq"

    # A batch: one outcome per item in order; the one outside the prefix refused alone.
    results = await srv.publish_batch(
        [
            PublishItem(room=room.id, body="one"),
            PublishItem(room=other.id, body="outside the prefix"),
            {"room": room.id, "body": "two", "as": bot, "client_id": "inv-2"},
        ]
    )
    assert [type(r) for r in results] == [PublishOutcome] * 3
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].message is not None and results[0].message.body == "one"
    assert results[0].message.from_.name == "system"
    assert results[1].message is None and results[1].error is not None
    assert results[1].error.code == "forbidden" and "prefix" in results[1].error.message
    assert results[2].message is not None and results[2].message.from_.name == bot
    assert results[2].message.seq == results[0].message.seq + 1

    want = ["invoice paid", "maintenance at 5", "one", "two"]
    for rec, who in ((at_ada, "ada"), (at_bob, "bob")):
        await wait_until(lambda rec=rec: len(rec.of("message")) >= 4, f"4 messages at {who}")
        await asyncio.sleep(0.2)
        assert rec.bodies() == want, who
        assert [x.seq for x in rec.of("message")] == [1, 2, 3, 4]
    assert [x.body for x in (await bob_api.history(room.id)).messages] == want
    assert (await ada_api.history(other.id)).messages == []

    # Outside the prefix on its own: 403; a closed or unknown room: 404.
    err = await refused(srv.publish(other.id, "x"))
    assert (err.status, err.code) == (403, "forbidden") and "prefix" in err.message
    err = await refused(srv.publish(NOBODY, "x"))
    assert (err.status, err.code) == (404, "not_found")
    # Scopes this key lacks.
    err = await refused(srv.create_room(f"{prefix}new"))
    assert (err.status, err.code, err.message) == (403, "forbidden", "missing scope: rooms")
    err = await refused(srv.add_members(room.id, [bob_api.user.id]))
    assert (err.status, err.message) == (403, "missing scope: rooms")
    err = await refused(srv.disconnect(bob_api.user.id))
    assert (err.status, err.message) == (403, "missing scope: users")
    # A presence-only key may not publish.
    reader = servers(await cli_key(session.server, uname("reader"), "presence"))
    err = await refused(reader.publish(room.id, "x"))
    assert (err.status, err.message) == (403, "missing scope: publish")
    err = await refused(reader.publish_batch([PublishItem(room=room.id, body="x")]))
    assert (err.status, err.message) == (403, "missing scope: publish")
    err = await refused(reader.publish_to_user(bob_api.user.id, "x"))
    assert (err.status, err.message) == (403, "missing scope: publish")
    # ...nor may a publish-only key read presence.
    writer = servers((await admin_key(session, ["publish"])).key)
    err = await refused(writer.room_presence(room.id))
    assert (err.status, err.message) == (403, "missing scope: presence")


async def test_publish_bad_input(session: Session, servers: Servers) -> None:
    srv = servers((await admin_key(session, ["publish", "presence"])).key)
    ada = await session.rest(uname("ada"))
    room = await ada.create_room(uname("room"))
    for aw in (
        srv.publish(room.id, ""),
        srv.publish(room.id, "x", as_user="not a name"),
        srv.publish("not-a-room", "x"),
        srv.request("POST", f"/api/rooms/{room.id}/publish", json={"body": "x", "room": room.id}),
        srv.publish_batch([]),
        srv.publish_batch([PublishItem(room=room.id, body=str(i)) for i in range(101)]),
        srv.presence([]),
        srv.presence(["nope"]),
        srv.publish_to_user("nope", "x"),
    ):
        err = await refused(aw)
        assert (err.status, err.code) == (400, "bad_request"), err
    err = await refused(srv.publish_to_user(NOBODY, "x"))
    assert (err.status, err.code) == (404, "not_found")
    # 100 items is the bound.
    many = await srv.publish_batch([PublishItem(room=room.id, body=str(i)) for i in range(100)])
    assert [r.message.seq for r in many if r.message] == list(range(1, 101))


async def test_dm_to_an_offline_user_is_delivered_on_connect(session: Session, servers: Servers) -> None:
    srv = servers((await admin_key(session, ["publish"])).key)
    cy = await session.rest(uname("cy"))
    bot = uname("notify-bot")

    dm = await srv.publish_to_user(cy.user.id, "your invoice", as_user=bot, client_id="dm-1")
    assert isinstance(dm, DmResult) and dm.id and dm.ts and dm.delivered is False
    again = await srv.publish_to_user(cy.user.id, "your invoice", as_user=bot, client_id="dm-1")
    assert again.id == dm.id, "idempotent by client_id"
    assert [m.id for m in await cy.pending_dms()] == [dm.id]

    tp = session.client(cy.token)
    rec = Recorder(tp, "dm")
    await tp.connect(timeout=15)
    got = await wait_until(lambda: rec.of("dm"), "the queued DM at cy")
    assert isinstance(got[0], DirectMessage) and got[0].id == dm.id
    assert got[0].body == "your invoice" and got[0].from_.name == bot and got[0].to == cy.user.id
    # The client acked it: it left the offline queue.
    await wait_until(lambda: _no_pending(cy), "offline queue empty")

    # Online now: delivered live, from the system user by default.
    live = await srv.publish_to_user(cy.user.id, "hello again")
    assert live.delivered is True
    got = await wait_until(lambda: [d for d in rec.of("dm") if d.id == live.id], "the live DM")
    assert got[0].from_.name == "system"
    await asyncio.sleep(0.2)
    assert len(rec.of("dm")) == 2


async def _no_pending(api: TelepathRest) -> bool:
    return await api.pending_dms() == []


# ---------------------------------------------------------------------------
# Presence
# ---------------------------------------------------------------------------


async def test_presence_of_users_and_of_a_room(session: Session, servers: Servers) -> None:
    prefix = f"{uname('pres')}-"
    srv = servers((await admin_key(session, ["presence"], room_prefix=prefix)).key)
    ada_api, ada = await session.user(uname("ada"))
    bob = await session.rest(uname("bob"))
    room = await ada_api.create_room(f"{prefix}lobby")
    await bob.join_room(room.id)
    outside = await ada_api.create_room(uname("elsewhere"))

    await wait_until(lambda: _online(srv, room.id, {ada_api.user.id}), "ada online")
    p = await srv.room_presence(room.id)
    assert isinstance(p, ApiPresence)
    assert [u.id for u in p.online] == [ada_api.user.id] and p.offline == [bob.user.id]
    assert p.online[0].name == ada_api.user.name and p.online[0].connections == 1
    assert p.online[0].status == "online" and p.online[0].last_seen

    await ada.status("busy", "in a meeting")
    p = await wait_until(lambda: _status_is(srv, ada_api.user.id, "busy"), "busy in presence")
    assert p.online[0].text == "in a meeting"

    both = await srv.presence([ada_api.user.id, bob.user.id, NOBODY])
    assert [u.id for u in both.online] == [ada_api.user.id]
    assert both.offline == [bob.user.id, NOBODY]
    one = await srv.presence(bob.user.id)  # one id as a plain string
    assert one.online == [] and one.offline == [bob.user.id]

    # Bob connects: online; closes: offline again.
    tp = session.client(bob.token)
    await tp.connect(timeout=15)
    await wait_until(lambda: _online(srv, room.id, {ada_api.user.id, bob.user.id}), "both online")
    await tp.close()
    await wait_until(lambda: _online(srv, room.id, {ada_api.user.id}), "bob offline again")

    err = await refused(srv.room_presence(outside.id))
    assert (err.status, err.code) == (403, "forbidden")
    err = await refused(srv.room_presence(NOBODY))
    assert err.status == 404


async def _status_is(srv: TelepathServer, user: str, status: str) -> ApiPresence | None:
    p = await srv.presence([user])
    return p if p.online and p.online[0].status == status else None


async def _online(srv: TelepathServer, room: str, ids: set[str]) -> bool:
    return {u.id for u in (await srv.room_presence(room)).online} == ids


# ---------------------------------------------------------------------------
# Rooms, members, disconnect
# ---------------------------------------------------------------------------


async def test_create_room_add_members_and_disconnect(session: Session, servers: Servers) -> None:
    made = await admin_key(session, ["rooms", "users", "publish"])
    srv = servers(made.key)
    bob_api, bob = await session.user(uname("bob"))
    cy_api, cy = await session.user(uname("cy"))
    at_bob = Recorder(bob, "message")

    name = uname("war-room")
    room = await srv.create_room(name, description="ops only", max_participants=10, private=True)
    assert isinstance(room, Room) and room.name == name and room.private is True
    assert room.description == "ops only" and room.max_participants == 10 and room.is_active
    system = (await srv.publish(room.id, "opened")).from_
    assert system.name == "system" and room.created_by == system.id
    # Private: not listed, not joinable by others.
    assert room.id not in {r.id for r in await bob_api.list_rooms()}
    err = await refused(bob_api.join_room(room.id))
    assert err.status == 404

    added = await srv.add_members(room.id, [bob_api.user.id, cy_api.user.id])
    assert isinstance(added, AddedMembers) and sorted(added.added) == sorted([bob_api.user.id, cy_api.user.id])
    assert (await srv.add_members(room.id, [bob_api.user.id])).added == [], "already a participant"
    assert room.id in {r.id for r in await bob_api.list_rooms()}
    names = {p.user.name for p in await bob_api.participants(room.id)}
    assert {bob_api.user.name, cy_api.user.name} <= names

    # Bob is a participant now: he joins over the socket and gets what the application publishes.
    await bob.join(room.id)
    later = await srv.publish(room.id, "welcome aboard", as_user=uname("ops-bot"))
    got = await wait_until(lambda: [m for m in at_bob.of("message") if m.id == later.id], "the publish at bob")
    assert got[0].body == "welcome aboard"

    err = await refused(srv.add_members(room.id, [NOBODY]))
    assert (err.status, err.code) == (404, "not_found")
    err = await refused(srv.add_members(room.id, ["not-an-id"]))
    assert err.status == 400
    err = await refused(srv.add_members(NOBODY, [bob_api.user.id]))
    assert err.status == 404

    # Disconnect: cy's client is told bye (admin) and closed with 4003; it stops.
    at_cy = Recorder(cy, "state", "bye")
    res = await srv.disconnect(cy_api.user.id)
    assert isinstance(res, DisconnectResult) and res.disconnected == 1
    await wait_until(lambda: cy.state == "closed", "cy closed")
    assert [s.code for s in at_cy.of("state") if s.state == "closed"] == [4003]
    assert [b.reason for b in at_cy.of("bye")] == ["admin"]
    await asyncio.sleep(0.5)
    assert cy.state == "closed" and not [s for s in at_cy.of("state") if s.state == "reconnecting"]
    # Bob was not touched; someone offline has nothing to close.
    assert bob.state == "open"
    assert (await srv.disconnect(NOBODY)).disconnected == 0


async def test_room_prefix_bounds_room_creation(session: Session, servers: Servers) -> None:
    prefix = f"{uname('team')}-"
    srv = servers((await admin_key(session, ["rooms"], room_prefix=prefix)).key)
    room = await srv.create_room(f"{prefix}general")
    assert room.name == f"{prefix}general" and room.private is False
    err = await refused(srv.create_room(uname("general")))
    assert (err.status, err.code) == (403, "forbidden")
    ada = await session.rest(uname("ada"))
    outside = await ada.create_room(uname("outside"))
    err = await refused(srv.add_members(outside.id, [ada.user.id]))
    assert (err.status, err.code) == (403, "forbidden")


# ---------------------------------------------------------------------------
# Refused credentials, and the key kept secret
# ---------------------------------------------------------------------------


async def test_refused_keys_and_tokens(session: Session, servers: Servers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    made = await admin_key(session, ["publish", "presence"])
    ada = await session.rest(uname("ada"))
    room = await ada.create_room(uname("room"))

    # A user token on /api/.
    err = await refused(servers(ada.token).publish(room.id, "x"))
    assert (err.status, err.code, err.message) == (401, "unauthorized", "not_an_api_key")
    assert err.retry_after is None and err.close_code is None
    # No key at all, a made-up one.
    err = await refused(servers("").presence([NOBODY]))
    assert (err.status, err.message) == (401, "missing_api_key")
    made_up = "tpk_" + "A" * 43
    err = await refused(servers(made_up).presence([NOBODY]))
    assert (err.status, err.message) == (401, "unknown_api_key")
    assert made_up not in str(err) and made_up not in repr(err)
    # A key on a user route.
    as_user = TelepathRest(session.server.base, made.key)
    try:
        err = await refused(as_user.list_rooms())
        assert (err.status, err.code) == (401, "unauthorized")
    finally:
        await as_user.aclose()

    # A key from a callable (sync or async), asked for on each request.
    calls = 0

    async def rotating() -> str:
        nonlocal calls
        calls += 1
        return made.key

    srv = servers(rotating)
    assert (await srv.presence([NOBODY])).offline == [NOBODY]
    assert (await srv.publish(room.id, "via a callable")).seq == 1
    assert calls == 2
    assert (await servers(lambda: made.key).presence([NOBODY])).offline == [NOBODY]

    # Revoked: refused from then on.
    root = await session.rest(uname("root"), role="admin")
    await root.revoke_api_key(made.id)
    err = await refused(srv.publish(room.id, "after revoke"))
    assert (err.status, err.code, err.message) == (401, "unauthorized", "revoked_api_key")
    assert [m.body for m in (await ada.history(room.id)).messages] == ["via a callable"]

    # The key shows up nowhere: repr, errors, the log records of httpx/httpcore at DEBUG.
    assert made.key not in repr(srv) and "<hidden>" in repr(srv)
    assert made.key not in str(err) and made.key not in repr(err)
    assert caplog.records, "httpx logged at DEBUG"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        for secret in (made.key, made.key[4:], made_up):
            assert secret not in text, f"{record.name} logged a key"


# ---------------------------------------------------------------------------
# Without a server
# ---------------------------------------------------------------------------


def test_publish_item_wire_form() -> None:
    assert PublishItem(room="r", body="b").to_wire() == {"room": "r", "body": "b"}
    item = PublishItem(room="r", body="b", kind="k", client_id="c", as_user="bot")
    assert item.to_wire() == {"room": "r", "body": "b", "kind": "k", "client_id": "c", "as": "bot"}


async def test_error_mapping_and_key_hygiene_with_a_mock_transport() -> None:
    key = "tpk_" + "s" * 43
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/presence":
            return httpx.Response(
                429,
                headers={"retry-after": "3"},
                json={"error": {"code": "rate_limited", "message": "slow down"}},
            )
        if request.url.path.endswith("/disconnect"):
            return httpx.Response(503, text="upstream gone")
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        srv = TelepathServer("http://api.test/", key, client=http)
        assert repr(srv) == "TelepathServer('http://api.test', api_key=<hidden>)"
        err = await refused(srv.presence(["a", "b"]))
        assert (err.status, err.code, err.message, err.retry_after) == (429, "rate_limited", "slow down", 3.0)
        assert seen[-1].headers["authorization"] == f"Bearer {key}"
        assert seen[-1].url.params["users"] == "a,b"
        err = await refused(srv.disconnect("u"))
        assert (err.status, err.code) == (503, "unavailable")
        err = await refused(srv.publish("r", "x"))
        assert err.code == "network" and err.status is None
        for e in (err,):
            assert key not in str(e) and key not in repr(e)
        await srv.aclose()
        assert not http.is_closed, "a client passed in is not closed"
