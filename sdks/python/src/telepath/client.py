"""The realtime client: one WebSocket to a Telepath gateway, kept alive."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Literal, Union
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from ._util import BoundedDict, TokenSource, http_base, jwt_claims, new_client_id, parse_retry_after, resolve, ws_url
from .backoff import Backoff
from .errors import TelepathError, code_for_status
from .events import EventStream, Listener, _Registry
from .rest import TelepathRest
from .types import (
    DeleteReply,
    DirectMessage,
    DmReply,
    DmUpdated,
    EditReply,
    EVENT_TYPES,
    Gap,
    JoinReply,
    Joined,
    Member,
    Message,
    MessageDeleted,
    MessageEdited,
    Notification,
    NotificationsRead,
    ReactReply,
    Reaction,
    ReadReply,
    Recovery,
    RejoinError,
    Reply,
    SendReply,
    StateChange,
    StatusReply,
    UnknownFrame,
    User,
    Welcome,
    from_wire,
    parse_frame,
)

__all__ = ["TelepathClient", "ConnectionState"]

log = logging.getLogger("telepath")

ConnectionState = Literal["idle", "connecting", "open", "reconnecting", "closed"]

TRANSIENT = frozenset({"unavailable", "internal", "rate_limited", "timeout"})
"""Error codes worth another try (a rejoin, a gap read)."""
GAP_FINAL = frozenset({"not_found", "forbidden", "unauthorized"})
"""History errors not worth a retry: the rejoin says what is wrong."""
HISTORY_PAGE = 500
STABLE_SECS = 5.0
"""A connection that stayed up this long resets the backoff."""
SELF_MEMBER_REPEAT_SECS = 10.0
"""A member event about us identical to the previous one within this window is the server's second copy."""
KEEP_KINDS = frozenset({"send", "dm", "change", "ack_dm"})
"""Items that stay queued across drops and are written again after the reconnect (idempotent)."""

LogItem = Union[Message, MessageEdited, MessageDeleted, Reaction]
"""What travels in a room's ordered log: messages and the changes that take a seq."""


class _Stop(Exception):
    """Ends the connection loop for good."""

    def __init__(self, error: TelepathError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(eq=False)
class _Item:
    order: int
    kind: str  # send, dm, change, ack_dm, join, status, request, refresh, fire
    frame: dict[str, Any]
    timeout: float
    future: asyncio.Future[Any] | None = None
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    room: str | None = None
    since: int | None = None
    retries: int = 0
    timer: asyncio.TimerHandle | None = None
    on_write: Callable[[], None] | None = None
    ref: str | None = None

    def dead(self) -> bool:
        """Nobody waits for it any more (the caller cancelled)."""
        return self.future is not None and self.future.done()


@dataclass(eq=False)
class _Room:
    room: str
    joined: bool = False
    delivered: int | None = None
    """Highest seq emitted to the app with no hole below it."""
    base: int | None = None
    """Where the seqs continue when nothing was delivered yet."""
    sinceless_reply: int | None = None
    held: dict[int, LogItem] = field(default_factory=dict)
    replay_until: int | None = None
    stall: asyncio.TimerHandle | None = None
    gap: tuple[int, int] | None = None
    gap_task: asyncio.Task[None] | None = None
    resume_from: int | None = None
    reply_seq: int | None = None
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    inflight: _Item | None = None
    rejoin_failures: int = 0
    rejoin_timer: asyncio.TimerHandle | None = None

    def contiguous(self) -> int | None:
        return self.delivered if self.delivered is not None else self.base


@dataclass(eq=False)
class _Ack:
    wanted: int
    sent: int | None = None
    last_at: float = 0.0
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _DmVersion:
    deleted: bool
    edited_at: str | None


def _dm_ack_key(frame: dict[str, Any]) -> str:
    """One DM ack in flight: the DM and the version it names."""
    return json.dumps([frame.get("dm"), frame.get("deleted"), frame.get("edited_at")])


def _newer_dm(nxt: _DmVersion, prev: _DmVersion) -> bool:
    if prev.deleted:
        return False
    if nxt.deleted:
        return True
    if nxt.edited_at is None:
        return False
    return prev.edited_at is None or nxt.edited_at > prev.edited_at


class TelepathClient:
    """A Telepath WebSocket client that stays connected.

    It reconnects with exponential backoff and jitter, rejoins every joined
    room with ``since`` = the last seq it delivered (so nothing is missed or
    repeated), delivers each room's messages in seq order (dropping repeats,
    filling holes from REST history), keeps sends, DMs and changes queued
    across drops and writes them again with the same ``client_id`` until the
    server answers, re-applies the chosen status, and acks DMs and room seqs.

    Args:
        url: the gateway, ``ws(s)://host:port/connect`` (``http(s)://host:port`` works too).
        token: a token, or a (sync or async) callable giving one; called on
            every (re)connect. Sent in the ``Authorization`` header, or
            exchanged for a connect ticket when ``auth="ticket"``.
        auth: ``"header"`` (default) or ``"ticket"``: before each connect,
            ``POST /auth/ticket`` with the token, then ``GET /connect?ticket=``.
        ticket: instead of a token: a connect ticket, or a callable giving a
            fresh one for each attempt (a ticket is single use).
        on_token_expired: called (sync or async) when the server ends the
            session with 4001 (token expired or revoked) or refuses the
            handshake with 401; returns a fresh token, or ``None`` to stop.
            Without it, a static token stops the client on 4001/401, while a
            token callable is simply called again.
        rest_url: the REST api's origin for gap repair (default: the origin of ``url``).
        reconnect: a :class:`Backoff`, ``True`` (the default backoff: 0.25 s
            doubling to 10 s, jitter 0.5) or ``False`` (no automatic reconnect).
        request_timeout: seconds to wait for a reply once a request is written.
        connect_timeout: seconds for the handshake and the ``welcome``.
        auto_ack: ack DMs addressed to us, and room seqs once delivered (default true).
        ack_interval: room acks go out at most once per this many seconds per room.
        typing_interval: :meth:`typing` sends at most one ``active: true`` per room per interval.
        refresh_before_exp: with a token callable, send ``refresh`` this long before ``exp``.
        subprotocol: offer ``telepath.v1``.
        max_auth_failures: consecutive 401/4001 without a welcome before giving up.
        gap_fetch_timeout: seconds per history read while filling a hole (default ``request_timeout``).
        gap_fetch_retries: history reads after the first failed one before rejoining with ``since``.
        gap_hold_max: messages held behind a hole before rejoining with ``since``.
        connect_kwargs: extra keyword arguments for ``websockets.asyncio.client.connect``.

    Events (:meth:`on`, :meth:`events`, :meth:`wait_for`) are named by the
    server frame's ``type`` (``message``, ``dm``, ``presence``, ``typing``,
    ``member``, ``notification``, ``announcement``, ...; see
    :data:`telepath.types.EVENT_TYPES`) plus the SDK's own ``state``,
    ``joined``, ``recovery``, ``gap``, ``rejoin_error``, ``dm_updated``,
    ``notifications_unread`` (an ``int``: the count changed) and ``frame``
    (every raw frame, before it is handled; not included in ``*``).
    """

    def __init__(
        self,
        url: str,
        *,
        token: TokenSource | None = None,
        auth: Literal["header", "ticket"] = "header",
        ticket: TokenSource | None = None,
        on_token_expired: Callable[[], str | None | Awaitable[str | None]] | None = None,
        rest_url: str | None = None,
        reconnect: Backoff | bool = True,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        auto_ack: bool = True,
        ack_interval: float = 0.5,
        typing_interval: float = 2.0,
        refresh_before_exp: float = 30.0,
        subprotocol: bool = True,
        max_auth_failures: int = 3,
        gap_fetch_timeout: float | None = None,
        gap_fetch_retries: int = 2,
        gap_hold_max: int = 1000,
        dm_memory: int = 2000,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if token is None and ticket is None:
            raise ValueError("TelepathClient: give a token or a ticket")
        if auth not in ("header", "ticket"):
            raise ValueError("TelepathClient: auth is 'header' or 'ticket'")
        if auth == "ticket" and token is None:
            raise ValueError("TelepathClient: auth='ticket' needs a token to ask for tickets")
        self.url = ws_url(url)
        self.rest_url = (rest_url or http_base(self.url)).rstrip("/")
        self._token_source: TokenSource | None = token
        self._auth = auth
        self._ticket_source = ticket
        self._on_token_expired = on_token_expired
        if reconnect is True:
            self._backoff: Backoff | None = Backoff()
        elif reconnect is False:
            self._backoff = None
        else:
            self._backoff = reconnect
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.auto_ack = auto_ack
        self.ack_interval = ack_interval
        self.typing_interval = typing_interval
        self.refresh_before_exp = refresh_before_exp
        self._subprotocol = subprotocol
        self._max_auth_failures = max(1, max_auth_failures)
        self._gap_fetch_timeout = gap_fetch_timeout if gap_fetch_timeout is not None else request_timeout
        self._gap_fetch_retries = max(0, gap_fetch_retries)
        self._gap_hold_max = max(1, gap_hold_max)
        self._connect_kwargs = dict(connect_kwargs or {})

        self._events = _Registry()
        self._state: ConnectionState = "idle"
        self._welcome: Welcome | None = None
        self._ws: ClientConnection | None = None
        self._ready = False
        self._stopped = True
        self._gen = 0
        self._runner: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._reconnect_now = asyncio.Event()
        self._connect_waiters: list[asyncio.Future[Welcome]] = []
        self._close_error: TelepathError | None = None
        self._current_token: str | None = None
        self._opened_at = 0.0

        self._order = 0
        self._ref = 0
        self._outbox: deque[_Item] = deque()
        self._inflight: dict[str, _Item] = {}
        self._retrying: dict[int, tuple[_Item, asyncio.TimerHandle]] = {}
        self._rooms: dict[str, _Room] = {}
        self._status_wanted: dict[str, Any] | None = None
        self._status_waiters: list[asyncio.Future[Any]] = []
        self._acks: dict[str, _Ack] = {}
        self._dm_acks: set[str] = set()
        self._seen_dms: BoundedDict[str, _DmVersion] = BoundedDict(dm_memory)
        self._seen_invites: BoundedDict[str, bool] = BoundedDict(1000)
        self._seen_notifications: BoundedDict[str, bool] = BoundedDict(2000)
        self._seen_announcements: BoundedDict[str, bool] = BoundedDict(1000)
        self._last_self_member: dict[str, tuple[str, float]] = {}
        self._typing_sent: dict[str, float] = {}
        self._read_cursor: dict[str, int] = {}
        self._unread = 0
        self._rest: TelepathRest | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._next_token: str | None = None

        # Pacing under the server's per-connection frame rate.
        self._bucket = 40.0
        self._capacity = 40.0
        self._rate = 45.0
        self._refilled = time.monotonic()

    # ------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """``idle``, ``connecting``, ``open``, ``reconnecting`` or ``closed``."""
        return self._state

    @property
    def welcome(self) -> Welcome | None:
        """The latest ``welcome`` frame."""
        return self._welcome

    @property
    def user(self) -> User | None:
        """Who we are, from the latest ``welcome``."""
        return self._welcome.user if self._welcome else None

    @property
    def unread_notifications(self) -> int:
        """Unread notifications as this client knows them (``welcome``, +1 per new one, ``notifications_read``)."""
        return self._unread

    @property
    def rooms(self) -> list[str]:
        """Rooms joined (or being joined) on this client; they are rejoined after every reconnect."""
        return list(self._rooms)

    def last_seq(self, room: str) -> int | None:
        """The highest seq of ``room`` delivered with nothing missing below it (else the latest join reply's)."""
        r = self._rooms.get(room)
        if r is None:
            return None
        for value in (r.delivered, r.base, r.reply_seq, r.resume_from):
            if value is not None:
                return value
        return None

    def pending(self) -> int:
        """Sends and DMs queued or in flight."""
        n = sum(1 for it in self._outbox if it.kind in ("send", "dm") and not it.dead())
        n += sum(1 for it in self._inflight.values() if it.kind in ("send", "dm") and not it.dead())
        n += sum(1 for it, _ in self._retrying.values() if it.kind in ("send", "dm") and not it.dead())
        return n

    # ------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------

    async def connect(self, timeout: float | None = None) -> Welcome:
        """Connects (or reconnects a closed client) and waits for the first ``welcome``.

        Transient failures (refused connections, 503, 1012, ...) are retried
        with backoff; a fatal one raises :class:`TelepathError`: a refused
        token or ticket (``unauthorized``, status 401), 4001 with no way to
        refresh, 4003, or the client being closed. With ``timeout`` the
        client gives up (and closes) after that many seconds (code ``timeout``).
        """
        if self._state == "open" and self._welcome is not None:
            return self._welcome
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Welcome] = loop.create_future()
        self._connect_waiters.append(fut)
        if self._stopped:
            self._stopped = False
            self._close_error = None
            self._runner = asyncio.create_task(self._run(), name="telepath-connection")
        try:
            if timeout is None:
                return await asyncio.shield(fut)
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            err = TelepathError("timeout", f"no welcome within {timeout} s")
            await self._shutdown(err)
            await self.close()
            raise err from None

    async def close(self) -> None:
        """Closes the connection (1000) for good: everything waiting fails with ``closed``; event streams end."""
        await self._shutdown(TelepathError("closed", "the client is closed"))
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            try:
                await runner
            except (asyncio.CancelledError, Exception):
                pass
            self._runner = None

    async def __aenter__(self) -> "TelepathClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def set_token(self, token: TokenSource) -> None:
        """Replaces the token (or callable) used from the next (re)connect on."""
        self._token_source = token

    def reconnect_now(self) -> None:
        """Skips the wait of a scheduled reconnect and tries now."""
        self._reconnect_now.set()

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def on(self, name: str, fn: Listener) -> Callable[[], None]:
        """Calls ``fn(event)`` for every event ``name`` (``*``: all); returns a function that unsubscribes.

        A coroutine function is run as a task per event. Callbacks run in the
        order events arrive, from the connection's reader: keep them short.
        """
        if name != "*" and name != "frame" and name not in EVENT_TYPES:
            raise ValueError(f"unknown event {name!r}")
        return self._events.on(name, fn)

    def off(self, name: str, fn: Listener) -> None:
        """Removes a callback added with :meth:`on`."""
        self._events.off(name, fn)

    def events(self, *names: str) -> EventStream:
        """An async iterator over the events called ``names`` (all when none); see :class:`EventStream`."""
        for name in names:
            if name != "frame" and name not in EVENT_TYPES:
                raise ValueError(f"unknown event {name!r}")
        return EventStream(self._events, names)

    async def wait_for(
        self,
        names: str | Iterable[str],
        predicate: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The next event called ``names`` for which ``predicate`` holds; ``TimeoutError`` after ``timeout``."""
        wanted = [names] if isinstance(names, str) else list(names)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def listener(ev: Any) -> None:
            if fut.done():
                return
            try:
                ok = predicate is None or predicate(ev)
            except Exception as err:  # surface the predicate's bug to the caller
                fut.set_exception(err)
                return
            if ok:
                fut.set_result(ev)

        offs = [self.on(n, listener) for n in wanted]
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            for off in offs:
                off()

    # ------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------

    async def request(self, frame: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Sends any frame with a fresh ``ref`` and returns the reply's ``data``.

        Raises :class:`TelepathError` with the server's code, or ``timeout``,
        ``disconnected`` (dropped after it was written: it is not resent) or
        ``closed``. Made while disconnected, it waits for the next ``welcome``.
        """
        return await self._enqueue("request", dict(frame), timeout)

    async def join(self, room: str, *, since: int | None = None) -> JoinReply:
        """Joins a room and subscribes to it; it is rejoined with ``since`` after every reconnect.

        With ``since``, the messages after it are replayed (``recovered``
        false: too many or gone, page them over REST). Without it, the
        server replays from our delivery cursor.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        entry = self._rooms.get(room)
        if entry is None:
            entry = _Room(room=room)
            self._rooms[room] = entry
        if since is not None:
            entry.resume_from = since
            if entry.delivered is not None and since < entry.delivered:
                entry.delivered = None
            entry.base = None
        if not self._ready:
            entry.waiters.append(fut)
        elif entry.inflight is not None and since is None:
            entry.inflight.waiters.append(fut)
        else:
            entry.waiters.append(fut)
            self._push_join(entry)
            self._pump()
        reply: JoinReply = await fut
        return reply

    async def leave(self, room: str) -> dict[str, Any]:
        """Leaves a room (ends participation); it is forgotten at once and not rejoined.

        The owner of an open room may not leave it (``conflict``): the room is
        then joined again with ``since``.
        """
        entry = self._rooms.get(room)
        since = entry.contiguous() if entry is not None and entry.joined else None
        was_joined = entry is not None and entry.joined
        if entry is not None:
            self._forget_room(entry, TelepathError("cancelled", "left the room"))
        try:
            data: dict[str, Any] = await self._enqueue("request", {"type": "leave", "room": room})
            return data
        except TelepathError as err:
            if err.code == "conflict" and was_joined and room not in self._rooms and not self._stopped:
                task = asyncio.ensure_future(self.join(room, since=since))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise

    async def send(
        self,
        room: str,
        body: str,
        *,
        kind: str | None = None,
        reply_to: str | None = None,
        client_id: str | None = None,
    ) -> SendReply:
        """Sends a room message; returns its ``id``, ``seq`` and ``ts`` once committed.

        It carries a ``client_id`` (a fresh UUID unless given): queued while
        disconnected, and written again with the same ``client_id`` after a
        drop until the server answers, so it is stored once. Cancelling the
        call removes it from the queue (one already written may still land).
        """
        cid = client_id or new_client_id()
        frame: dict[str, Any] = {"type": "send", "room": room, "body": body, "client_id": cid}
        if kind is not None:
            frame["kind"] = kind
        if reply_to is not None:
            frame["reply_to"] = reply_to
        data = await self._enqueue("send", frame)
        reply = from_wire(SendReply, data)
        reply.client_id = cid
        return reply

    async def dm(self, to: str, body: str, *, client_id: str | None = None) -> DmReply:
        """Sends a direct message to a user id or username; queued and retried like :meth:`send`."""
        cid = client_id or new_client_id()
        data = await self._enqueue("dm", {"type": "dm", "to": to, "body": body, "client_id": cid})
        reply = from_wire(DmReply, data)
        reply.client_id = cid
        return reply

    async def edit(self, room: str, message_id: str, body: str) -> EditReply:
        """Edits one of our room messages; queued and written again after a drop (a repeat changes nothing)."""
        data = await self._enqueue("change", {"type": "edit", "room": room, "id": message_id, "body": body})
        return from_wire(EditReply, data)

    async def delete(self, room: str, message_id: str) -> DeleteReply:
        """Deletes a room message (its author, the room's owner or moderators, admins)."""
        data = await self._enqueue("change", {"type": "delete", "room": room, "id": message_id})
        return from_wire(DeleteReply, data)

    async def react(self, room: str, message_id: str, emoji: str, on: bool = True) -> ReactReply:
        """Puts our reaction ``emoji`` on a room message (``on``) or takes it off."""
        data = await self._enqueue(
            "change", {"type": "react", "room": room, "id": message_id, "emoji": emoji, "on": on}
        )
        return from_wire(ReactReply, data)

    async def read(self, room: str, seq: int) -> ReadReply:
        """Moves our read cursor in ``room`` forward to ``seq`` (``receipt`` events tell the room).

        A seq at or below the cursor the server last confirmed returns at once.
        """
        cursor = self._read_cursor.get(room)
        if cursor is not None and seq <= cursor:
            return ReadReply(room=room, seq=cursor)
        data = await self._enqueue("change", {"type": "read", "room": room, "seq": seq})
        reply = from_wire(ReadReply, data)
        self._read_cursor[room] = max(self._read_cursor.get(room, 0), reply.seq)
        return reply

    async def edit_dm(self, dm_id: str, body: str) -> EditReply:
        """Edits one of our DMs."""
        data = await self._enqueue("change", {"type": "edit", "dm": dm_id, "id": dm_id, "body": body})
        return from_wire(EditReply, data)

    async def delete_dm(self, dm_id: str) -> DeleteReply:
        """Deletes one of our DMs."""
        data = await self._enqueue("change", {"type": "delete", "dm": dm_id, "id": dm_id})
        return from_wire(DeleteReply, data)

    async def status(self, status: str, text: str | None = None) -> StatusReply:
        """Sets our status (``online``, ``away``, ``busy``, ``meditating``); re-applied after every reconnect."""
        self._check_open()
        self._status_wanted = {"status": status} if text is None else {"status": status, "text": text}
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._status_waiters.append(fut)
        if self._ready:
            self._push_status()
            self._pump()
        return from_wire(StatusReply, await fut)

    def typing(self, room: str, active: bool = True) -> None:
        """Says we are typing in ``room`` (or stopped, ``active=False``).

        Fire and forget: at most one ``active: true`` per ``typing_interval``
        (the server's indicator lasts 6 s); dropped while disconnected.
        """
        if not active:
            if self._typing_sent.pop(room, None) is not None and self._ready:
                self._push_fire({"type": "typing", "room": room, "active": False})
            return
        if not self._ready:
            return
        now = time.monotonic()
        last = self._typing_sent.get(room)
        if last is not None and now - last < self.typing_interval:
            return
        self._typing_sent[room] = now
        self._push_fire({"type": "typing", "room": room, "active": True})

    def ack_room(self, room: str, seq: int) -> None:
        """Moves the room's delivery cursor (throttled, latest wins), never past a hole."""
        entry = self._rooms.get(room)
        upto = entry.contiguous() if entry is not None else None
        if upto is not None and seq > upto:
            seq = upto
        st = self._acks.get(room)
        if st is None:
            st = _Ack(wanted=seq)
            self._acks[room] = st
        elif st.sent is not None and seq <= st.sent:
            return
        else:
            st.wanted = max(st.wanted, seq)
        self._schedule_ack(room, st)

    async def ack_dm(self, dm_id: str, *, deleted: bool | None = None, edited_at: str | None = None) -> None:
        """Acks a DM addressed to us (it leaves our offline queue); returns once the server stored it.

        ``deleted`` and ``edited_at`` name the version received (as the DM or
        its change event carried them): an edit or a delete made after it
        stays queued and comes again. Without them the ack covers the DM in
        whatever state it is now.
        """
        version = None if deleted is None and edited_at is None else _DmVersion(bool(deleted), edited_at)
        await self._queue_dm_ack(dm_id, version)

    async def ping(self) -> int:
        """The server's clock in ms (``ping``)."""
        data = await self._enqueue("request", {"type": "ping"})
        return int(data.get("pong", 0)) if isinstance(data, dict) else 0

    async def broadcast(self, body: str) -> str:
        """Admins only: a ``broadcast`` event to every connection; returns its id."""
        data = await self._enqueue("request", {"type": "broadcast", "body": body})
        return str(data.get("id", "")) if isinstance(data, dict) else ""

    async def refresh_token(self, token: str | None = None) -> int:
        """Sends ``refresh`` with ``token`` (default: a new one from the token callable); returns the new ``exp``."""
        if token is None:
            if self._token_source is None:
                raise TelepathError("unauthorized", "no token source to refresh from")
            token = await resolve(self._token_source)
        data = await self._enqueue("refresh", {"type": "refresh", "token": token})
        self._current_token = token
        if not callable(self._token_source):
            self._token_source = token
        return int(data.get("exp", 0)) if isinstance(data, dict) else 0

    # ------------------------------------------------------------------
    # Connection loop
    # ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state == "closed":
            raise TelepathError("closed", "the client is closed")

    def _set_state(self, state: ConnectionState, **extra: Any) -> None:
        changed = self._state != state
        self._state = state
        if changed or state == "reconnecting":
            self._events.emit("state", StateChange(state=state, **extra))

    async def _run(self) -> None:
        attempt = 0
        auth_failures = 0
        try:
            while not self._stopped:
                if self._state != "reconnecting":
                    self._set_state("connecting")
                code: int | None = None
                reason = ""
                was_ready = False
                retry_after: float | None = None
                auth_failed = False
                try:
                    ws = await self._open()
                except TelepathError as err:
                    if err.status == 401:
                        auth_failed = True
                    elif err.status is not None and err.status not in (429, 503) and err.status < 500:
                        # 403 (origin), 400/426 (a handshake we got wrong): retrying will not help.
                        raise _Stop(err) from err
                    retry_after = err.retry_after
                    reason = err.message
                    if auth_failed:
                        auth_failures += 1
                        await self._after_auth_failure(err, auth_failures)
                else:
                    code, reason, was_ready = await self._session(ws)
                    if was_ready:
                        auth_failures = 0
                    if code == 4003:
                        raise _Stop(TelepathError("closed", reason or "disconnected by an admin", close_code=4003))
                    if code == 4001:
                        auth_failures += 1
                        await self._after_auth_failure(
                            TelepathError("unauthorized", reason or "token expired or revoked", close_code=4001),
                            auth_failures,
                        )
                if self._stopped:
                    return
                if self._backoff is None:
                    raise _Stop(TelepathError("closed", reason or "connection lost", close_code=code))
                if was_ready and time.monotonic() - self._opened_at >= STABLE_SECS:
                    attempt = 0
                attempt += 1
                delay = self._backoff.delay(attempt)
                if code in (4008, 4009):
                    delay = max(delay, self._backoff.max_delay)
                if retry_after is not None:
                    delay = max(delay, retry_after)
                self._set_state("reconnecting", attempt=attempt, delay=delay, code=code, reason=reason or None)
                self._reconnect_now.clear()
                try:
                    await asyncio.wait_for(self._reconnect_now.wait(), delay)
                except TimeoutError:
                    pass
        except _Stop as stop:
            await self._shutdown(stop.error)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug: never leave callers waiting forever
            log.exception("telepath: connection loop failed")
            await self._shutdown(TelepathError("closed", f"connection loop failed: {err!r}"))

    async def _after_auth_failure(self, err: TelepathError, failures: int) -> None:
        """4001 or a 401 handshake: get a fresh token (callback or token callable), or stop."""
        if failures > self._max_auth_failures:
            raise _Stop(err)
        if self._on_token_expired is not None:
            try:
                fresh = await resolve(self._on_token_expired)
            except Exception as cb_err:
                raise _Stop(TelepathError("unauthorized", f"token refresh failed: {cb_err!r}")) from cb_err
            if not fresh:
                raise _Stop(err)
            if callable(self._token_source):
                self._next_token = str(fresh)  # once; the callable stays for later connects
            else:
                self._token_source = str(fresh)
            self._ticket_source = None  # a token from now on
            return
        if self._ticket_source is not None:
            if callable(self._ticket_source):
                return  # a fresh ticket next time
            raise _Stop(err)
        if callable(self._token_source):
            return  # called again on the next attempt
        raise _Stop(err)

    async def _token(self) -> str:
        if self._next_token is not None:
            token, self._next_token = self._next_token, None
            return token
        token = await resolve(self._token_source)
        if not isinstance(token, str) or not token:
            raise TelepathError("unauthorized", "the token source gave no token")
        return token

    async def _open(self) -> ClientConnection:
        """One handshake: token/ticket, then the upgrade. Raises TelepathError."""
        headers: dict[str, str] = {}
        url = self.url
        token: str | None = None
        try:
            if self._ticket_source is not None:
                ticket = await resolve(self._ticket_source)
                url = _with_query(url, ticket=str(ticket))
            elif self._auth == "ticket":
                token = await self._token()
                ticket = (await self._rest_client(token).ticket()).ticket
                url = _with_query(url, ticket=ticket)
            else:
                token = await self._token()
                headers["Authorization"] = f"Bearer {token}"
        except TelepathError:
            raise
        except Exception as err:
            raise TelepathError("network", f"getting credentials failed: {err!r}") from err
        kwargs: dict[str, Any] = {
            "additional_headers": headers,
            "open_timeout": self.connect_timeout,
            "compression": None,
            "max_size": 2**24,
        }
        if self._subprotocol:
            kwargs["subprotocols"] = [Subprotocol("telepath.v1")]
        kwargs.update(self._connect_kwargs)
        try:
            ws = await ws_connect(url, **kwargs)
        except InvalidStatus as err:
            res = err.response
            status = res.status_code
            code, message = code_for_status(status), f"handshake refused: HTTP {status}"
            try:
                body = json.loads(res.body or b"")
                if isinstance(body, dict) and isinstance(body.get("error"), dict):
                    code = str(body["error"].get("code") or code)
                    message = str(body["error"].get("message") or message)
            except ValueError:
                pass
            raise TelepathError(
                code, message, status=status, retry_after=parse_retry_after(res.headers.get("Retry-After"))
            ) from err
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as err:
            raise TelepathError("network", f"connect failed: {err!r}") from err
        if token is not None:
            self._current_token = token
        return ws

    async def _session(self, ws: ClientConnection) -> tuple[int | None, str, bool]:
        """Runs one connection until it ends: (close code, reason, whether a welcome came)."""
        self._ws = ws
        gen = self._gen = self._gen + 1
        was_ready = False
        try:
            try:
                first = await asyncio.wait_for(ws.recv(), self.connect_timeout)
            except TimeoutError:
                await ws.close(4000, "no welcome")
                return None, "no welcome in time", False
            welcome = self._decode(first)
            if not isinstance(welcome, Welcome):
                await ws.close(4000, "expected welcome")
                return None, "the first frame was not welcome", False
            self._on_welcome(welcome)
            was_ready = True
            self._writer = asyncio.create_task(self._write_loop(ws, gen), name="telepath-writer")
            self._start_refresh(gen)
            while True:
                raw = await ws.recv()
                frame = self._decode(raw)
                if frame is not None:
                    self._on_frame(frame)
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            code = rcvd.code if rcvd is not None else 1006
            reason = rcvd.reason if rcvd is not None else ""
            return code, reason, was_ready
        finally:
            self._ready = False
            self._ws = None
            self._gen += 1
            for task in (self._writer, self._refresh_task):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            self._writer = None
            self._refresh_task = None
            self._clear_connection_timers()
            self._salvage(TelepathError("disconnected", "the connection dropped"))
            if ws.state is not websockets.protocol.State.CLOSED:
                try:
                    await asyncio.wait_for(ws.close(), 2)
                except Exception:
                    pass

    def _decode(self, raw: str | bytes) -> Any:
        if isinstance(raw, (bytes, bytearray)):
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return None
        try:
            frame = parse_frame(data)
        except (TypeError, ValueError) as err:
            log.warning("telepath: dropped a malformed %s frame: %s", data.get("type"), err)
            return None
        self._events.emit("frame", frame)
        return frame

    async def _shutdown(self, error: TelepathError) -> None:
        """Stops for good: state closed, everything waiting fails with ``error``."""
        if self._state == "closed":
            return
        self._stopped = True
        self._close_error = error
        self._gen += 1
        self._ready = False
        ws = self._ws
        self._ws = None
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        self._writer = None
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
        self._clear_connection_timers()
        err = error
        self._salvage(err)
        for it in list(self._outbox):
            self._fail(it, err)
        self._outbox.clear()
        for room in list(self._rooms.values()):
            for w in room.waiters:
                if not w.done():
                    w.set_exception(err)
            room.waiters.clear()
            if room.rejoin_timer:
                room.rejoin_timer.cancel()
                room.rejoin_timer = None
            if not room.joined:
                del self._rooms[room.room]
        for w in self._status_waiters:
            if not w.done():
                w.set_exception(err)
        self._status_waiters.clear()
        for st in self._acks.values():
            if st.timer:
                st.timer.cancel()
                st.timer = None
        for w in self._connect_waiters:
            if not w.done():
                w.set_exception(err)
        self._connect_waiters.clear()
        self._set_state("closed", code=error.close_code, reason=error.message)
        self._events.end_streams()
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(1000, "bye"), 2)
            except Exception:
                pass
        if self._rest is not None:
            rest, self._rest = self._rest, None
            await rest.aclose()

    def _clear_connection_timers(self) -> None:
        for _item, handle in self._retrying.values():
            handle.cancel()
        for room in self._rooms.values():
            if room.rejoin_timer:
                room.rejoin_timer.cancel()
                room.rejoin_timer = None
            # The next connection's rejoin (since = the contiguous seq) replays what was held or missing.
            self._reset_gap(room)
        self._typing_sent.clear()

    def _salvage(self, err: TelepathError) -> None:
        """After a drop: sends, DMs, changes and DM acks stay queued in their order; joins and status are
        redone after the next welcome; other requests already written fail with ``err``."""
        keep: list[_Item] = []

        def reattach(it: _Item) -> bool:
            if it.timer:
                it.timer.cancel()
                it.timer = None
            if it.kind == "join":
                entry = self._rooms.get(it.room or "")
                if entry is not None:
                    if entry.inflight is it:
                        entry.inflight = None
                    entry.waiters.extend(it.waiters)
                else:
                    for w in it.waiters:
                        if not w.done():
                            w.set_exception(err)
                it.waiters = []
                return True
            if it.kind == "status":
                self._status_waiters.extend(it.waiters)
                it.waiters = []
                return True
            return False

        for it in list(self._inflight.values()):
            if reattach(it):
                continue
            if it.kind in KEEP_KINDS:
                keep.append(it)
            elif it.kind != "fire":
                self._fail(it, err)
        self._inflight.clear()
        for it, handle in list(self._retrying.values()):
            handle.cancel()
            keep.append(it)
        self._retrying.clear()
        for it in list(self._outbox):
            if reattach(it):
                continue
            if it.kind == "fire":
                continue
            if it.kind == "refresh":
                self._fail(it, err)
                continue
            keep.append(it)
        keep = [it for it in keep if not it.dead()]
        keep.sort(key=lambda it: it.order)
        self._outbox = deque(keep)
        for room in self._rooms.values():
            room.inflight = None

    def _fail(self, it: _Item, err: TelepathError) -> None:
        if it.timer:
            it.timer.cancel()
            it.timer = None
        if it.future is not None and not it.future.done():
            it.future.set_exception(err)
        for w in it.waiters:
            if not w.done():
                w.set_exception(err)
        it.waiters = []
        if it.kind == "ack_dm":
            self._dm_acks.discard(_dm_ack_key(it.frame))

    # ------------------------------------------------------------------
    # Outgoing frames
    # ------------------------------------------------------------------

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    async def _enqueue(self, kind: str, frame: dict[str, Any], timeout: float | None = None) -> Any:
        self._check_open()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        it = _Item(
            order=self._next_order(),
            kind=kind,
            frame=frame,
            timeout=timeout if timeout is not None else self.request_timeout,
            future=fut,
        )
        self._outbox.append(it)
        self._pump()
        return await fut

    def _queue_dm_ack(self, dm_id: str, version: _DmVersion | None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._stopped:
            fut.set_exception(TelepathError("closed", "the client is closed"))
            return fut
        frame: dict[str, Any] = {"type": "ack", "dm": dm_id}
        if version is not None:
            frame["deleted"] = version.deleted
            if version.edited_at is not None:
                frame["edited_at"] = version.edited_at
        self._dm_acks.add(_dm_ack_key(frame))
        it = _Item(
            order=self._next_order(),
            kind="ack_dm",
            frame=frame,
            timeout=self.request_timeout,
            future=fut,
        )
        self._outbox.append(it)
        self._pump()
        return fut

    def _push_join(self, entry: _Room) -> None:
        self._cancel_gap(entry)
        self._clear_stall(entry)
        since = entry.contiguous()
        if since is None:
            since = entry.resume_from
        frame: dict[str, Any] = {"type": "join", "room": entry.room}
        if since is not None:
            frame["since"] = since
        it = _Item(
            order=self._next_order(),
            kind="join",
            frame=frame,
            timeout=self.request_timeout,
            waiters=entry.waiters,
            room=entry.room,
            since=since,
        )
        entry.waiters = []
        entry.inflight = it
        self._outbox.append(it)

    def _push_status(self) -> None:
        assert self._status_wanted is not None
        it = _Item(
            order=self._next_order(),
            kind="status",
            frame={"type": "status", **self._status_wanted},
            timeout=self.request_timeout,
            waiters=self._status_waiters,
        )
        self._status_waiters = []
        self._outbox.append(it)

    def _push_fire(self, frame: dict[str, Any], on_write: Callable[[], None] | None = None) -> None:
        self._outbox.append(_Item(order=self._next_order(), kind="fire", frame=frame, timeout=0, on_write=on_write))
        self._pump()

    def _schedule_ack(self, room: str, st: _Ack) -> None:
        if st.timer is not None:
            return
        wait = max(0.0, st.last_at + self.ack_interval - time.monotonic())

        def flush() -> None:
            st.timer = None
            if self._acks.get(room) is not st:
                return
            if st.sent is not None and st.wanted <= st.sent:
                return
            if not self._ready:
                return  # re-sent after the next welcome
            seq = st.wanted
            st.last_at = time.monotonic()

            def written() -> None:
                st.sent = max(st.sent or 0, seq)

            self._push_fire({"type": "ack", "room": room, "seq": seq}, written)

        if wait == 0:
            flush()
        else:
            st.timer = asyncio.get_running_loop().call_later(wait, flush)

    def _pump(self) -> None:
        self._wake.set()

    async def _write_loop(self, ws: ClientConnection, gen: int) -> None:
        """Writes queued frames in order while the rate allows (a token bucket under the server's limit)."""
        while gen == self._gen and self._ready:
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            self._bucket = min(self._capacity, self._bucket + (now - self._refilled) * self._rate)
            self._refilled = now
            if self._bucket < 1:
                await asyncio.sleep((1 - self._bucket) / self._rate)
                continue
            it = self._outbox.popleft()
            if it.dead():
                continue
            text = self._prepare(it)
            if text is None:
                continue
            self._bucket -= 1
            try:
                await ws.send(text)
            except ConnectionClosed:
                return  # the reader sees the close and salvages
            if it.on_write is not None:
                it.on_write()

    def _prepare(self, it: _Item) -> str | None:
        """Puts a ref and a timer on one item and serialises it; None when refused locally."""
        frame = dict(it.frame)
        ref: str | None = None
        if it.kind != "fire":
            self._ref += 1
            ref = str(self._ref)
            frame["ref"] = ref
        text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        limit = self._welcome.limits.max_frame_bytes if self._welcome else 0
        if limit and len(text.encode()) > limit:
            # The server would close the connection (1009), and a resend would do it again.
            self._fail(it, TelepathError("too_large", f"frame is over {limit} bytes"))
            return None
        if ref is not None:
            it.ref = ref
            self._inflight[ref] = it
            it.timer = asyncio.get_running_loop().call_later(it.timeout, self._on_timeout, ref)
        return text

    def _on_timeout(self, ref: str) -> None:
        it = self._inflight.pop(ref, None)
        if it is None:
            return
        it.timer = None
        err = TelepathError("timeout", f"no reply to {it.frame.get('type')} within {it.timeout} s")
        if it.kind == "join":
            self._on_join_reply(it, None, err)
        else:
            self._fail(it, err)

    # ------------------------------------------------------------------
    # Incoming frames
    # ------------------------------------------------------------------

    def _on_welcome(self, w: Welcome) -> None:
        self._welcome = w
        self._ready = True
        self._opened_at = time.monotonic()
        rate = w.limits.max_rate_per_s if w.limits.max_rate_per_s > 0 else 50
        self._capacity = max(1.0, float(int(rate * 0.8)))
        self._rate = rate * 0.9
        self._bucket = self._capacity
        self._refilled = time.monotonic()

        # Rejoin every room (with since), re-apply the status, re-send acks, then the queue.
        rest = list(self._outbox)
        self._outbox.clear()
        for entry in list(self._rooms.values()):
            self._push_join(entry)
        if self._status_wanted is not None:
            self._push_status()
        for room, st in self._acks.items():
            if room not in self._rooms:
                continue
            st.sent = None
            seq = st.wanted

            def written(st: _Ack = st, seq: int = seq) -> None:
                st.sent = max(st.sent or 0, seq)
                st.last_at = time.monotonic()

            self._outbox.append(
                _Item(
                    order=self._next_order(),
                    kind="fire",
                    frame={"type": "ack", "room": room, "seq": seq},
                    timeout=0,
                    on_write=written,
                )
            )
        self._outbox.extend(rest)

        before = self._unread
        if w.notifications_unread is not None:
            self._unread = max(0, int(w.notifications_unread))
        self._set_state("open")
        self._events.emit("welcome", w)
        if self._unread != before:
            self._events.emit("notifications_unread", self._unread)
        for fut in self._connect_waiters:
            if not fut.done():
                fut.set_result(w)
        self._connect_waiters.clear()
        self._pump()

    def _on_frame(self, f: Any) -> None:
        kind = f.type
        if kind == "reply":
            self._on_reply(f)
        elif kind == "message":
            self._on_message(f)
        elif kind in ("message_edited", "message_deleted", "reaction"):
            self._on_change(f)
        elif kind == "dm":
            self._on_dm(f)
        elif kind == "member":
            self._on_member(f)
        elif kind == "invite":
            if f.id in self._seen_invites:
                return
            self._seen_invites.set(f.id, True)
            self._events.emit("invite", f)
        elif kind == "notification":
            self._on_notification(f)
        elif kind == "notifications_read":
            self._on_notifications_read(f)
        elif kind == "announcement":
            if f.id in self._seen_announcements:
                return
            self._seen_announcements.set(f.id, True)
            self._events.emit("announcement", f)
        elif kind == "announcement_dismissed":
            self._seen_announcements.set(f.id, True)
            self._events.emit("announcement_dismissed", f)
        elif kind == "room_closed":
            entry = self._rooms.get(f.room)
            if entry is not None:
                self._forget_room(entry, TelepathError("not_found", "the room was closed"))
            self._events.emit("room_closed", f)
        elif kind == "welcome":
            pass  # only the first frame of a connection
        elif isinstance(f, UnknownFrame):
            pass
        else:
            self._events.emit(kind, f)

    def _on_reply(self, r: Reply) -> None:
        it = self._inflight.pop(r.ref, None)
        if it is None:
            return
        if it.timer:
            it.timer.cancel()
            it.timer = None
        err: TelepathError | None = None
        if not r.ok:
            body = r.error
            err = TelepathError(body.code if body else "internal", body.message if body else "request failed")
        if it.kind == "join":
            self._on_join_reply(it, r.data if r.ok else None, err)
            return
        if it.kind == "status":
            for w in it.waiters:
                if w.done():
                    continue
                if err is not None:
                    w.set_exception(err)
                else:
                    w.set_result(r.data)
            it.waiters = []
            return
        if it.kind in KEEP_KINDS and err is not None and err.code == "rate_limited" and it.retries < 5:
            # Idempotent (by client_id, or by nature): a rate-limited attempt is retried.
            it.retries += 1
            handle = asyncio.get_running_loop().call_later(0.5 * it.retries, self._retry, it)
            self._retrying[it.order] = (it, handle)
            return
        if it.kind == "ack_dm":
            self._dm_acks.discard(_dm_ack_key(it.frame))
        if it.future is not None and not it.future.done():
            if err is not None:
                it.future.set_exception(err)
            else:
                it.future.set_result(r.data)

    def _retry(self, it: _Item) -> None:
        if self._retrying.pop(it.order, None) is None:
            return
        self._outbox.appendleft(it)
        self._pump()

    def _on_join_reply(self, it: _Item, data: Any, err: TelepathError | None) -> None:
        entry = self._rooms.get(it.room or "")
        waiters, it.waiters = it.waiters, []
        if entry is None:
            e = err or TelepathError("cancelled", "left the room")
            for w in waiters:
                if not w.done():
                    w.set_exception(e)
            return
        if entry.inflight is it:
            entry.inflight = None
        reply: JoinReply | None = None
        if err is None:
            try:
                reply = from_wire(JoinReply, data if isinstance(data, dict) else {})
            except TypeError:
                err = TelepathError("bad_response", "join reply without data")
        if err is not None or reply is None:
            e = err or TelepathError("bad_response", "join reply without data")
            if entry.joined and e.code in TRANSIENT and self._backoff is not None:
                # A rejoin that failed for now: try again on this connection.
                entry.waiters.extend(waiters)
                entry.rejoin_failures += 1
                gen = self._gen

                def again() -> None:
                    entry.rejoin_timer = None
                    if gen != self._gen or not self._ready or self._rooms.get(entry.room) is not entry:
                        return
                    self._push_join(entry)
                    self._pump()

                entry.rejoin_timer = asyncio.get_running_loop().call_later(
                    self._backoff.delay(entry.rejoin_failures), again
                )
                return
            for w in waiters:
                if not w.done():
                    w.set_exception(e)
            if entry.joined:
                self._forget_room(entry, e)
                self._events.emit("rejoin_error", RejoinError(room=entry.room, error=e))
            elif entry.inflight is None:
                for w in entry.waiters:
                    if not w.done():
                        w.set_exception(e)
                entry.waiters = []
                self._rooms.pop(entry.room, None)
            return
        rejoin = entry.joined
        self._last_self_member.pop(entry.room, None)
        entry.joined = True
        entry.rejoin_failures = 0
        entry.reply_seq = reply.seq
        entry.sinceless_reply = None
        entry.replay_until = None
        if reply.recovered is False:
            # Nothing was replayed: the app pages (since, seq] over REST; live messages continue after seq.
            entry.delivered = reply.seq
            entry.resume_from = reply.seq
            entry.held.clear()
        elif it.since is not None and reply.seq < it.since:
            # The room's log is behind what we saw (a restored database): follow the server.
            entry.delivered = reply.seq
            entry.resume_from = reply.seq
            entry.held.clear()
        elif it.since is not None:
            # The replay of (since, seq] follows the reply.
            if entry.delivered is None:
                entry.base = it.since
            upto = entry.contiguous()
            if upto is not None and reply.seq > upto:
                entry.replay_until = reply.seq
        elif entry.contiguous() is None:
            # The server replays from our delivery cursor, which we do not know: the first message says.
            entry.sinceless_reply = reply.seq
        for w in waiters:
            if not w.done():
                w.set_result(reply)
        self._events.emit(
            "joined", Joined(room=entry.room, seq=reply.seq, recovered=reply.recovered, rejoin=rejoin, since=it.since)
        )
        if reply.recovered is False:
            self._events.emit("recovery", Recovery(room=entry.room, seq=reply.seq, since=it.since))
        self._settle(entry)

    def _on_message(self, m: Message) -> None:
        entry = self._rooms.get(m.room)
        if entry is None:
            self._events.emit("message", m)
            return
        self._ingest(entry, m)
        self._settle(entry)

    def _on_change(self, c: Any) -> None:
        room, seq = getattr(c, "room", None), getattr(c, "seq", None)
        if isinstance(room, str) and isinstance(seq, int):
            entry = self._rooms.get(room)
            if entry is not None:
                self._ingest(entry, c)
                self._settle(entry)
                return
        elif getattr(c, "dm", None) and c.type != "reaction":
            # The edited or deleted DM went back into our offline queue: this
            # copy is its current state, acked as such (a later change stays queued).
            got = (
                _DmVersion(deleted=True, edited_at=None)
                if c.type == "message_deleted"
                else _DmVersion(deleted=False, edited_at=c.edited_at)
            )
            prev = self._seen_dms.get(c.id)
            if prev is not None:
                if c.type == "message_deleted":
                    nxt = _DmVersion(deleted=True, edited_at=prev.edited_at)
                else:
                    nxt = _DmVersion(deleted=prev.deleted, edited_at=c.edited_at)
                if not _newer_dm(nxt, prev):
                    self._ack_dm_to_me(c.id, getattr(c, "to", None), got)
                    return
                self._seen_dms.set(c.id, nxt)
            self._events.emit(c.type, c)
            self._ack_dm_to_me(c.id, getattr(c, "to", None), got)
            return
        self._events.emit(c.type, c)

    def _ack_dm_to_me(self, dm_id: str, to: str | None, version: _DmVersion) -> None:
        me = self.user
        if not self.auto_ack or me is None or to != me.id:
            return
        frame: dict[str, Any] = {"type": "ack", "dm": dm_id, "deleted": version.deleted}
        if version.edited_at is not None:
            frame["edited_at"] = version.edited_at
        if _dm_ack_key(frame) not in self._dm_acks:
            self._queue_dm_ack(dm_id, version).add_done_callback(_ignore_result)

    def _on_dm(self, d: DirectMessage) -> None:
        prev = self._seen_dms.get(d.id)
        version = _DmVersion(deleted=d.deleted, edited_at=d.edited_at)
        if prev is None:
            self._seen_dms.set(d.id, version)
            self._events.emit("dm", d)
        elif _newer_dm(version, prev):
            # An edited or deleted DM is queued again in its current state: an update, not a repeat.
            self._seen_dms.set(d.id, version)
            self._events.emit("dm_updated", DmUpdated(dm=d))
        # Only the recipient's ack counts; repeats are acked again (the server re-sends until its ack lands).
        self._ack_dm_to_me(d.id, d.to, version)

    def _on_member(self, f: Member) -> None:
        me = self.user.id if self.user else None
        if me is None or f.user.id != me or f.action == "joined":
            self._events.emit("member", f)
            return
        by = f.by.id if f.by else None
        key = json.dumps([f.action, f.reason, by, f.role, f.until])
        last = self._last_self_member.get(f.room)
        now = time.monotonic()
        if last is not None and last[0] == key and now - last[1] < SELF_MEMBER_REPEAT_SECS:
            return
        self._last_self_member[f.room] = (key, now)
        if f.action == "left":
            entry = self._rooms.get(f.room)
            removed = f.reason in ("kicked", "banned")
            if entry is not None and (entry.joined or removed):
                err = (
                    TelepathError("forbidden", f"removed from the room ({f.reason})")
                    if removed
                    else TelepathError("cancelled", "left the room on another connection")
                )
                self._forget_room(entry, err)
        self._events.emit("member", f)

    def _on_notification(self, n: Notification) -> None:
        if n.id in self._seen_notifications:
            return
        self._seen_notifications.set(n.id, True)
        before = self._unread
        if n.read is not True:
            self._unread += 1
        self._events.emit("notification", n)
        if self._unread != before:
            self._events.emit("notifications_unread", self._unread)

    def _on_notifications_read(self, r: NotificationsRead) -> None:
        before = self._unread
        self._unread = max(0, int(r.unread))
        self._events.emit("notifications_read", r)
        if self._unread != before:
            self._events.emit("notifications_unread", self._unread)

    # ------------------------------------------------------------------
    # Room order: each room's log reaches the app in seq order, without holes
    # or repeats. An item past the next seq due is held while the missing
    # range is read over REST; acks carry the contiguous seq only.
    # ------------------------------------------------------------------

    def _ingest(self, entry: _Room, m: LogItem) -> None:
        seq = m.seq
        assert seq is not None
        upto = entry.contiguous()
        if upto is None:
            if entry.sinceless_reply is not None:
                self._sinceless_base(entry, seq)
            elif entry.inflight is not None:
                # The join's reply says where the room continues.
                self._hold(entry, m)
                return
            else:
                # Nothing tells where the room starts: take this as the start.
                entry.base = seq - 1
            upto = entry.contiguous()
            assert upto is not None
        if seq <= upto:
            return  # a repeat (reconnect seam, replay overlapping live frames)
        if seq == upto + 1:
            self._deliver(entry, m)
        else:
            self._hold(entry, m)

    def _sinceless_base(self, entry: _Room, first: int) -> None:
        reply = entry.sinceless_reply
        assert reply is not None
        entry.sinceless_reply = None
        if first <= reply:
            entry.base = first - 1
            entry.replay_until = reply
        else:
            entry.base = reply

    def _hold(self, entry: _Room, m: LogItem) -> None:
        assert m.seq is not None
        entry.held.setdefault(m.seq, m)

    def _deliver(self, entry: _Room, m: LogItem) -> None:
        assert m.seq is not None
        entry.delivered = m.seq
        if entry.replay_until is not None and m.seq >= entry.replay_until:
            entry.replay_until = None
        self._events.emit(m.type, m)
        if self.auto_ack and self._rooms.get(entry.room) is entry:
            self.ack_room(entry.room, m.seq)

    def _settle(self, entry: _Room) -> None:
        """Delivers what the held items allow, then deals with a hole that is left."""

        def live() -> bool:
            return self._rooms.get(entry.room) is entry

        if not live():
            return
        if entry.contiguous() is None and entry.sinceless_reply is not None and entry.held:
            self._sinceless_base(entry, min(entry.held))
        upto = entry.contiguous()
        if upto is None:
            return
        for seq in [s for s in entry.held if s <= upto]:
            del entry.held[seq]
        while (nxt := entry.held.pop(upto + 1, None)) is not None:
            self._deliver(entry, nxt)
            if not live():
                return
            upto = entry.contiguous()
            assert upto is not None
        gap = entry.gap
        if gap is not None and upto >= gap[1] - 1:
            self._cancel_gap(entry)
            self._events.emit("gap", Gap(room=entry.room, after=gap[0], before=gap[1], action="filled"))
            if not live():
                return
        if not entry.held:
            self._clear_stall(entry)
            return
        if entry.inflight is not None:
            # A join is under way: its replay covers everything relayed before it.
            if len(entry.held) > self._gap_hold_max:
                for seq in sorted(entry.held, reverse=True)[: len(entry.held) - self._gap_hold_max]:
                    del entry.held[seq]
            return
        if len(entry.held) > self._gap_hold_max:
            self._rejoin_for_gap(entry)
            return
        if entry.gap is not None or not self._ready:
            return
        if entry.replay_until is not None and upto < entry.replay_until:
            # The join's replay is still coming: give it time before reading history.
            self._arm_stall(entry)
            return
        self._clear_stall(entry)
        self._start_gap(entry, upto, min(entry.held))

    def _start_gap(self, entry: _Room, after: int, before: int) -> None:
        entry.gap = (after, before)
        self._events.emit("gap", Gap(room=entry.room, after=after, before=before, action="fetch"))
        if entry.gap != (after, before):
            return
        token = self._current_token
        if token is None:
            # Ticket-only clients have no token for REST: the join's replay fills the hole.
            self._rejoin_for_gap(entry)
            return
        gap = entry.gap
        entry.gap_task = asyncio.ensure_future(self._fetch_gap(entry, gap))

    async def _fetch_gap(self, entry: _Room, gap: tuple[int, int]) -> None:
        def live() -> bool:
            return entry.gap is gap and self._rooms.get(entry.room) is entry

        error: TelepathError | None = None
        for attempt in range(self._gap_fetch_retries + 1):
            if attempt > 0:
                backoff = self._backoff or Backoff()
                await asyncio.sleep(backoff.delay(attempt))
                if not live():
                    return
            try:
                while True:
                    after = entry.contiguous()
                    assert after is not None
                    rest = self._rest_client(self._current_token)
                    page = await asyncio.wait_for(
                        rest.history(entry.room, after=after, before=gap[1], limit=HISTORY_PAGE),
                        self._gap_fetch_timeout,
                    )
                    if not live():
                        return
                    progress = False
                    for m in page.messages:
                        if m.seq <= after or m.seq >= gap[1]:
                            continue
                        m.room = entry.room
                        self._hold(entry, m)
                        progress = True
                    self._settle(entry)
                    if not live():
                        return  # filled (or given up, or left)
                    if not page.has_more:
                        # Edits, deletes and reactions take seqs but are not history items:
                        # a join with since replays them in order.
                        self._rejoin_for_gap(entry)
                        return
                    if not progress:
                        break
                error = TelepathError("bad_response", f"history has no seq {entry.contiguous()} + 1 in {entry.room}")
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                error = TelepathError("timeout", "no history page in time")
            except TelepathError as err:
                error = err
                if err.code in GAP_FINAL:
                    break
            except Exception as err:
                error = TelepathError("network", repr(err))
            if not live():
                return
        if live():
            self._rejoin_for_gap(entry, error)

    def _rejoin_for_gap(self, entry: _Room, error: TelepathError | None = None) -> None:
        after = entry.contiguous()
        assert after is not None
        before = min(entry.held) if entry.held else after + 1
        self._reset_gap(entry)
        self._events.emit("gap", Gap(room=entry.room, after=after, before=before, action="rejoin", error=error))
        if self._rooms.get(entry.room) is not entry or not self._ready or entry.inflight is not None:
            return
        self._push_join(entry)
        self._pump()

    def _arm_stall(self, entry: _Room) -> None:
        if entry.stall is not None:
            return
        gen = self._gen

        def fire() -> None:
            entry.stall = None
            if gen != self._gen or self._rooms.get(entry.room) is not entry:
                return
            entry.replay_until = None
            self._settle(entry)

        entry.stall = asyncio.get_running_loop().call_later(self._gap_fetch_timeout, fire)

    def _clear_stall(self, entry: _Room) -> None:
        if entry.stall is not None:
            entry.stall.cancel()
        entry.stall = None

    def _cancel_gap(self, entry: _Room) -> None:
        if entry.gap_task is not None and not entry.gap_task.done() and entry.gap_task is not asyncio.current_task():
            entry.gap_task.cancel()
        entry.gap_task = None
        entry.gap = None

    def _reset_gap(self, entry: _Room) -> None:
        self._cancel_gap(entry)
        self._clear_stall(entry)
        entry.held.clear()
        entry.replay_until = None
        entry.sinceless_reply = None

    def _forget_room(self, entry: _Room, err: TelepathError) -> None:
        self._rooms.pop(entry.room, None)
        self._reset_gap(entry)
        if entry.rejoin_timer is not None:
            entry.rejoin_timer.cancel()
            entry.rejoin_timer = None
        for w in entry.waiters:
            if not w.done():
                w.set_exception(err)
        entry.waiters = []
        if entry.inflight is not None:
            for w in entry.inflight.waiters:
                if not w.done():
                    w.set_exception(err)
            entry.inflight.waiters = []
        st = self._acks.pop(entry.room, None)
        if st is not None and st.timer is not None:
            st.timer.cancel()
        self._typing_sent.pop(entry.room, None)

    # ------------------------------------------------------------------
    # REST for gap repair and tickets; token refresh
    # ------------------------------------------------------------------

    def _rest_client(self, token: str | None) -> TelepathRest:
        if self._rest is None:
            self._rest = TelepathRest(self.rest_url, timeout=self.request_timeout)
        self._rest.token = token
        return self._rest

    def _start_refresh(self, gen: int) -> None:
        if not callable(self._token_source) or self._current_token is None:
            return
        claims = jwt_claims(self._current_token) or {}
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)):
            return
        self._refresh_task = asyncio.ensure_future(self._refresh_loop(gen, float(exp), claims.get("iat")))

    async def _refresh_loop(self, gen: int, exp: float, iat: Any) -> None:
        while gen == self._gen and self._ready:
            now = time.time()
            lifetime = exp - (float(iat) if isinstance(iat, (int, float)) else now)
            remaining = exp - now
            lead = min(self.refresh_before_exp, max(0.0, lifetime) / 3, max(0.0, remaining) / 2 + 0.001)
            await asyncio.sleep(max(0.0, remaining - lead))
            if gen != self._gen or not self._ready:
                return
            try:
                token = await resolve(self._token_source)
                new_exp = (jwt_claims(token) or {}).get("exp")
                if not isinstance(new_exp, (int, float)) or new_exp <= exp:
                    await asyncio.sleep(min(1.0, max(0.1, (exp - time.time()) / 3)))
                    if time.time() >= exp:
                        return  # the server closes 4001; the reconnect gets a fresh token
                    continue
                await self.refresh_token(token)
                exp, iat = float(new_exp), (jwt_claims(token) or {}).get("iat")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("telepath: token refresh failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                if time.time() >= exp:
                    return


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
