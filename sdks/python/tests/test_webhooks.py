"""Webhooks (TelepathServer) and verify_webhook, and notifications sent with
publish_to_user. Without a server: verify_webhook against HMACs made here (a
good one; a changed body, another secret, a stale or future timestamp and
malformed headers refused). Against the real all-in-one
(TELEPATH_WEBHOOK_ALLOW_PRIVATE=1) with an http.server receiver on
127.0.0.1: the webhooks scope (and no room prefix) is needed; a webhook for
message.created gets a server-API publish, signed (verified; refused
tampered, with another secret or too old), with the protocol's headers and
body; its delivery is listed delivered; a failing receiver gets the same
event again with the next attempt number while the delivery shows what it
answered; 400s and 404s; a deleted webhook gets nothing more. A notification
(kind app) reaches the user's connected client as a notification event."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

from helpers import Recorder, Session, uname, wait_until
from telepath import (
    WEBHOOK_EVENTS,
    CreatedWebhook,
    DmResult,
    Message,
    Notification,
    TelepathError,
    TelepathServer,
    Webhook,
    WebhookDelivery,
    WebhookPayload,
    from_wire,
    verify_webhook,
)

NOBODY = "00000000-0000-4000-8000-000000000000"
SECRET = "whsec_unit-test-secret-0123456789"
BODY = '{"id":"e-1","type":"message.created","created_at":"2026-01-01T00:00:00Z","data":{"body":"héllo"}}'


def sign(secret: str, t: int, body: bytes | str) -> str:
    raw = body.encode() if isinstance(body, str) else body
    mac = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# ---------------------------------------------------------------------------
# verify_webhook, no server
# ---------------------------------------------------------------------------


def test_verify_accepts_the_signature_over_the_raw_body() -> None:
    now = int(time.time())
    sig = sign(SECRET, now, BODY)
    raw = BODY.encode()
    for body in (BODY, raw, bytearray(raw), memoryview(raw)):
        assert verify_webhook(SECRET, body, sig) is True, type(body)
    t, v1 = sig.split(",")
    assert verify_webhook(SECRET, BODY, f"{t}, v1={v1[3:].upper()}")
    assert verify_webhook(SECRET, BODY, f"{t},v1={'0' * 64},{v1},v0=whatever"), "any v1 may match; other schemes ignored"


def test_verify_refuses_a_changed_body_another_secret_or_a_stale_timestamp() -> None:
    now = int(time.time())
    sig = sign(SECRET, now, BODY)
    assert not verify_webhook(SECRET, BODY.replace("héllo", "hello"), sig)
    assert not verify_webhook(SECRET, BODY + " ", sig)
    assert not verify_webhook(SECRET + "x", BODY, sig)
    assert not verify_webhook(SECRET, BODY, sign(SECRET, now + 1, BODY).replace(f"t={now + 1}", f"t={now}"))
    assert verify_webhook(SECRET, BODY, sign(SECRET, now - 299, BODY)), "299 s old"
    assert not verify_webhook(SECRET, BODY, sign(SECRET, now - 360, BODY)), "6 minutes old: a replay"
    assert not verify_webhook(SECRET, BODY, sign(SECRET, now + 360, BODY)), "6 minutes ahead"
    assert verify_webhook(SECRET, BODY, sign(SECRET, now - 360, BODY), tolerance=600)
    assert not verify_webhook(SECRET, BODY, sign(SECRET, now - 10, BODY), tolerance=5)
    old = sign(SECRET, 1_700_000_000, BODY)
    assert verify_webhook(SECRET, BODY, old, now=1_700_000_100)
    assert not verify_webhook(SECRET, BODY, old, now=1_700_000_400)


def test_verify_refuses_missing_or_malformed_headers() -> None:
    now = int(time.time())
    good = sign(SECRET, now, BODY)
    hexd = good.split("v1=")[1]
    for sig in (
        None,
        "",
        "garbage",
        hexd,
        f"v1={hexd}",
        f"t={now}",
        f"t={now},",
        f"t={now},v1={hexd},",
        f"t=,v1={hexd}",
        f"t=abc,v1={hexd}",
        f"t=-{now},v1={hexd}",
        f"t={now}.5,v1={hexd}",
        f"t=١٢٣,v1={hexd}",
        f"t={now},t={now},v1={hexd}",
        f"t={now},v1={hexd[2:]}",
        f"t={now},v1={hexd}00",
        f"t={now},v1=zz{hexd[2:]}",
        f"t={now};v1={hexd}",
        f"t={now},v1={hexd},x",
        good + ",v0=a" * 1000,
    ):
        assert verify_webhook(SECRET, BODY, sig) is False, sig


def test_verify_raises_type_error_for_arguments_it_cannot_use() -> None:
    sig = sign(SECRET, int(time.time()), BODY)
    with pytest.raises(TypeError):
        verify_webhook("", BODY, sig)
    with pytest.raises(TypeError):
        verify_webhook(SECRET, json.loads(BODY), sig)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        verify_webhook(SECRET, BODY, sig, tolerance=-1)
    with pytest.raises(TypeError):
        verify_webhook(SECRET, BODY, sig, now=float("nan"))


# ---------------------------------------------------------------------------
# A receiver on 127.0.0.1
# ---------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 (a thread): records every POST and answers ``status`` (200 by default)."""

    def __init__(self, status: Callable[[Received], int] = lambda r: 200) -> None:
        self.got: list[Received] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                r = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(n))
                receiver.got.append(r)
                self.send_response(receiver.status(r))
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/hooks/telepath"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(status: Callable[[Received], int] = lambda r: 200) -> Receiver:
        r = Receiver(status)
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.close()


class Keys:
    """API keys made by the admin for one test, each as a TelepathServer (closed at the end)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.made: list[TelepathServer] = []

    async def __call__(self, scopes: list[str], room_prefix: str | None = None) -> TelepathServer:
        root = await self.session.rest(uname("root"), role="admin")
        made = await root.create_api_key(uname("key"), scopes, room_prefix=room_prefix)  # type: ignore[arg-type]
        srv = TelepathServer(self.session.server.base, made.key)
        self.made.append(srv)
        return srv

    async def close(self) -> None:
        for srv in self.made:
            await srv.aclose()


@pytest.fixture
async def keys(session: Session) -> AsyncIterator[Keys]:
    k = Keys(session)
    try:
        yield k
    finally:
        await k.close()


async def refused(aw: Any) -> TelepathError:
    with pytest.raises(TelepathError) as err:
        await aw
    return err.value


# ---------------------------------------------------------------------------
# Against the server
# ---------------------------------------------------------------------------


async def test_webhooks_need_the_scope_and_no_room_prefix(keys: Keys) -> None:
    publish_only = await keys(["publish"])
    err = await refused(publish_only.list_webhooks())
    assert (err.status, err.code, err.message) == (403, "forbidden", "missing scope: webhooks")
    err = await refused(publish_only.create_webhook("http://127.0.0.1:9/x", ["message.created"]))
    assert (err.status, err.message) == (403, "missing scope: webhooks")
    # Webhooks hear about every room: a key limited to a prefix cannot hold the scope.
    err = await refused(keys(["webhooks"], room_prefix="ops-"))
    assert err.status == 400 and "room_prefix" in err.message


async def test_a_published_message_is_delivered_signed_and_listed_delivered(
    keys: Keys, receivers: Callable[..., Receiver]
) -> None:
    srv = await keys(["webhooks", "publish", "rooms"])
    rec = receivers()
    w = await srv.create_webhook(rec.url, ["message.created"])
    assert isinstance(w, CreatedWebhook)
    assert w.secret.startswith("whsec_") and len(w.secret) == 49
    assert w.secret not in repr(w), "repr leaves the secret out"
    assert (w.url, w.events, w.pending, w.dropped) == (rec.url, ["message.created"], 0, 0)
    listed = {x.id: x for x in await srv.list_webhooks()}[w.id]
    assert type(listed) is Webhook and not hasattr(listed, "secret")
    assert (listed.url, listed.events, listed.created_at) == (w.url, w.events, w.created_at)
    assert await srv.get_webhook(w.id) == listed

    room = await srv.create_room(uname("billing"))
    bot = uname("billing-bot")
    m = await srv.publish(room.id, "invoice paid ✓", as_user=bot, client_id="inv-1")
    got = (await wait_until(lambda: rec.got, "the delivery at the receiver"))[0]
    assert got.path == "/hooks/telepath"
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["telepath-event"] == "message.created"
    assert got.headers["telepath-attempt"] == "1"
    assert got.headers["telepath-delivery"].isdigit()
    sig = got.headers["telepath-signature"]
    assert abs(int(sig.split(",")[0][2:]) - time.time()) < 60

    assert verify_webhook(w.secret, got.body, sig)
    assert verify_webhook(w.secret, got.body.decode(), sig)
    assert not verify_webhook(w.secret, got.body.replace(b"invoice paid", b"invoice void"), sig), "tampered"
    assert not verify_webhook(w.secret + "0", got.body, sig), "another secret"
    assert not verify_webhook(w.secret, got.body, sig, now=time.time() + 360), "checked 6 minutes later"
    assert not verify_webhook(w.secret, got.body, sign(w.secret, int(time.time()) - 3600, got.body)), "an hour old"

    payload = from_wire(WebhookPayload, got.json())
    assert payload.type == "message.created"
    assert payload.id == got.headers["telepath-event-id"]
    assert payload.created_at
    assert payload.data["id"] == m.id and payload.data["seq"] == m.seq and payload.data["from"]["name"] == bot
    assert from_wire(Message, payload.data) == m, "data is the message as the message event has it"

    async def delivered() -> WebhookDelivery | None:
        return next((d for d in await srv.webhook_deliveries(w.id) if d.status == "delivered"), None)

    d = await wait_until(delivered, "the delivery listed delivered")
    assert isinstance(d, WebhookDelivery)
    assert d.id == int(got.headers["telepath-delivery"])
    assert (d.event_id, d.event, d.attempts, d.last_status) == (payload.id, "message.created", 1, 200)
    assert d.last_error is None and d.next_attempt_at is None and d.delivered_at
    assert [x.id for x in await srv.webhook_deliveries(w.id, status="delivered")] == [d.id]
    assert await srv.webhook_deliveries(w.id, status="pending") == []
    assert await srv.webhook_deliveries(w.id, status="failed") == []

    # Newest first, paged.
    await srv.publish(room.id, "second")
    await srv.publish(room.id, "third")

    async def three() -> list[WebhookDelivery] | None:
        ds = await srv.webhook_deliveries(w.id)
        return ds if len(ds) == 3 and all(x.status == "delivered" for x in ds) else None

    ds = await wait_until(three, "three delivered")
    assert ds[0].id > ds[1].id > ds[2].id
    assert [x.id for x in await srv.webhook_deliveries(w.id, limit=2)] == [ds[0].id, ds[1].id]
    assert [x.id for x in await srv.webhook_deliveries(w.id, before=ds[1].id)] == [ds[2].id]
    await wait_until(lambda: len(rec.got) == 3, "three requests")
    assert sorted(r.json()["data"]["body"] for r in rec.got) == ["invoice paid ✓", "second", "third"]
    assert (await srv.get_webhook(w.id)).pending == 0

    await srv.delete_webhook(w.id)
    for aw in (srv.get_webhook(w.id), srv.webhook_deliveries(w.id), srv.delete_webhook(w.id)):
        err = await refused(aw)
        assert (err.status, err.code) == (404, "not_found")
    assert w.id not in {x.id for x in await srv.list_webhooks()}
    await srv.publish(room.id, "after the delete")
    await asyncio.sleep(0.5)
    assert len(rec.got) == 3, "a deleted webhook gets nothing"


async def test_a_failed_attempt_is_retried_with_the_same_event(
    keys: Keys, receivers: Callable[..., Receiver]
) -> None:
    srv = await keys(["webhooks", "publish", "rooms"])
    failing = True
    rec = receivers(lambda r: 500 if failing else 202)
    secret = "my-own-secret_0123456789!"
    w = await srv.create_webhook(rec.url, ["message.created", "room.joined"], secret=secret)
    assert w.secret == secret
    room = await srv.create_room(uname("retry"))
    await srv.publish(room.id, "try again")

    async def failed_once() -> WebhookDelivery | None:
        ds = await srv.webhook_deliveries(w.id)
        return ds[0] if ds and ds[0].attempts >= 1 and ds[0].last_status == 500 else None

    pending = await wait_until(failed_once, "a failed attempt recorded")
    assert pending.status == "pending" and pending.next_attempt_at and pending.last_attempt_at
    assert "500" in (pending.last_error or "")
    assert (await srv.get_webhook(w.id)).pending >= 1

    failing = False

    async def delivered() -> WebhookDelivery | None:
        ds = await srv.webhook_deliveries(w.id, status="delivered")
        return ds[0] if ds else None

    done = await wait_until(delivered, "delivered after a retry", timeout=20)
    assert done.id == pending.id and done.attempts >= 2 and done.last_status == 202
    assert done.attempts == len(rec.got)
    assert [r.headers["telepath-attempt"] for r in rec.got] == [str(i + 1) for i in range(len(rec.got))]
    assert len({r.headers["telepath-event-id"] for r in rec.got}) == 1
    assert len({r.body for r in rec.got}) == 1
    assert all(verify_webhook(secret, r.body, r.headers["telepath-signature"]) for r in rec.got)


async def test_bad_input_is_refused(keys: Keys) -> None:
    srv = await keys(["webhooks"])
    url = "http://127.0.0.1:9/hook"
    assert len(WEBHOOK_EVENTS) == 8 and "message.created" in WEBHOOK_EVENTS
    for aw in (
        srv.create_webhook(url, []),
        srv.create_webhook(url, ["message.created", "message.created"]),
        srv.create_webhook(url, ["message.sent"]),  # type: ignore[list-item]
        srv.create_webhook(url, ["message.created"], secret="too-short"),
        srv.create_webhook(url, ["message.created"], secret="has spaces in it, sixteen+"),
        srv.create_webhook("ftp://127.0.0.1/hook", ["message.created"]),
        srv.create_webhook("http://user:pw@127.0.0.1/hook", ["message.created"]),
    ):
        err = await refused(aw)
        assert (err.status, err.code) == (400, "bad_request"), err
    for aw in (srv.get_webhook(NOBODY), srv.delete_webhook(NOBODY), srv.webhook_deliveries(NOBODY)):
        err = await refused(aw)
        assert (err.status, err.code) == (404, "not_found")
    w = await srv.create_webhook(url, list(WEBHOOK_EVENTS))
    assert w.events == list(WEBHOOK_EVENTS)
    for kwargs in ({"limit": 0}, {"limit": 101}, {"status": "lost"}):
        err = await refused(srv.webhook_deliveries(w.id, **kwargs))  # type: ignore[arg-type]
        assert err.status == 400, kwargs
    await srv.delete_webhook(w.id)


# ---------------------------------------------------------------------------
# publish_to_user kind="notification"
# ---------------------------------------------------------------------------


async def test_a_notification_reaches_the_users_client_as_kind_app(session: Session, keys: Keys) -> None:
    srv = await keys(["publish"])
    api, tp = await session.user(uname("ada"))
    notes = Recorder(tp, "notification")
    bot = uname("export-bot")

    n = await srv.publish_to_user(api.user.id, "your export is ready", kind="notification", as_user=bot, client_id="x-1")
    assert isinstance(n, Notification)
    assert (n.kind, n.text) == ("app", "your export is ready")
    assert n.from_ is not None and n.from_.name == bot
    assert n.room is None and n.message_id is None and n.ts
    got = (await wait_until(lambda: notes.of("notification"), "the notification event"))[0]
    assert isinstance(got, Notification)
    assert (got.id, got.kind, got.text) == (n.id, "app", "your export is ready")
    assert got.from_ is not None and got.from_.name == bot
    await wait_until(lambda: tp.unread_notifications == 1, "the unread count")

    again = await srv.publish_to_user(api.user.id, "changed", kind="notification", as_user=bot, client_id="x-1")
    assert (again.id, again.text) == (n.id, "your export is ready"), "a repeat answers the first"
    await asyncio.sleep(0.3)
    assert len(notes.of("notification")) == 1, "and publishes nothing"

    listed = (await api.notifications()).notifications
    assert [(x.id, x.kind, x.read) for x in listed if x.kind == "app"] == [(n.id, "app", False)]
    dm = await srv.publish_to_user(api.user.id, "a DM", kind="dm", as_user=bot)
    assert isinstance(dm, DmResult) and dm.delivered
    assert isinstance(await srv.publish_to_user(api.user.id, "another DM"), DmResult)
    err = await refused(srv.publish_to_user(NOBODY, "nobody", kind="notification"))
    assert err.status == 404
    err = await refused(srv.publish_to_user(api.user.id, "x", kind="shout"))  # type: ignore[call-overload]
    assert err.status == 400
