"""The Telepath REST api over ``httpx.AsyncClient``."""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence, TypeVar

import httpx

from ._http import call, query, seg
from ._util import TokenSource, resolve
from .types import (
    Announcement,
    ApiKeyInfo,
    ApiScope,
    CreatedApiKey,
    DirectMessage,
    DmConversation,
    DmPage,
    DmState,
    LoginResponse,
    Message,
    MessagePage,
    NotificationList,
    NotificationsRead,
    OnlineUser,
    Participant,
    Profile,
    Room,
    SearchPage,
    ThreadPage,
    Ticket,
    User,
    from_wire,
)

__all__ = ["TelepathRest"]

T = TypeVar("T")
Method = Literal["GET", "POST", "PATCH", "DELETE"]


_query = query
_seg = seg


class TelepathRest:
    """An async client for Telepath's REST routes.

    Every non-2xx answer raises :class:`~telepath.TelepathError` with the
    HTTP ``status``, the error ``code`` and ``message`` of the
    ``{"error":{"code","message"}}`` body, and ``retry_after`` (seconds) when
    the server sent ``Retry-After`` (429, 503). A request that never got an
    answer raises code ``network`` (or ``timeout``).

    Args:
        base_url: the api's origin, e.g. ``http://127.0.0.1:8080``.
        token: a token, or a (sync or async) callable giving one for each
            request; ``None`` until :meth:`login` sets one.
        client: an ``httpx.AsyncClient`` to use (not closed by :meth:`aclose`);
            by default the instance makes and owns one.
        timeout: per request, seconds (for the client it makes).

    Use it as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        token: TokenSource | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token: TokenSource | None = token
        self.user: User | None = None
        """The user of the last :meth:`login`, if any."""
        self._owns = client is None
        self._http = client if client is not None else httpx.AsyncClient(timeout=timeout)

    @classmethod
    async def from_login(
        cls, base_url: str, username: str, role: Literal["user", "admin"] | None = None, **kwargs: Any
    ) -> "TelepathRest":
        """A client logged in with dev login as ``username`` (``.token`` and ``.user`` set)."""
        rest = cls(base_url, **kwargs)
        try:
            await rest.login(username, role)
        except BaseException:
            await rest.aclose()
            raise
        return rest

    async def __aenter__(self) -> "TelepathRest":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP client (when this instance made it)."""
        if self._owns:
            await self._http.aclose()

    # ------------------------------------------------------------------
    # Authentication
    # ------------------------------------------------------------------

    async def login(
        self, username: str, role: Literal["user", "admin"] | None = None, *, remember: bool = True
    ) -> LoginResponse:
        """Dev login (``POST /auth/login``): creates the user if new.

        With ``remember`` (the default) the token is used for this client's
        next requests and ``.user`` is set.
        """
        body: dict[str, Any] = {"username": username}
        if role is not None:
            body["role"] = role
        res = from_wire(LoginResponse, await self.request("POST", "/auth/login", json=body, auth=False))
        if remember:
            self.token = res.token
            self.user = res.user
        return res

    async def ticket(self) -> Ticket:
        """A single-use connect ticket (``POST /auth/ticket``), valid 30 s: ``GET /connect?ticket=``."""
        return from_wire(Ticket, await self.request("POST", "/auth/ticket"))

    # ------------------------------------------------------------------
    # Rooms
    # ------------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        *,
        description: str | None = None,
        max_participants: int | None = None,
        private: bool | None = None,
    ) -> Room:
        """Creates a room (the caller joins as owner)."""
        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        if max_participants is not None:
            body["max_participants"] = max_participants
        if private is not None:
            body["private"] = private
        return from_wire(Room, await self.request("POST", "/rooms", json=body))

    async def list_rooms(self) -> list[Room]:
        """Active public rooms and the caller's rooms (theirs carry ``unread``, ``read_seq``, ``role``)."""
        data = await self.request("GET", "/rooms")
        return [from_wire(Room, r) for r in data.get("rooms", [])]

    async def get_room(self, room: str) -> Room:
        """One room with ``member_count``, ``online_count``, ``topic`` and the caller's ``role``."""
        return from_wire(Room, await self.request("GET", f"/rooms/{_seg(room)}"))

    async def update_room(self, room: str, **patch: Any) -> Room:
        """``PATCH /rooms/{id}`` (owner/moderators): any of name, description, topic, max_participants, private, retention."""
        return from_wire(Room, await self.request("PATCH", f"/rooms/{_seg(room)}", json=patch))

    async def join_room(self, room: str) -> Participant:
        """Becomes a participant (409 ``room_full``; 404 for private rooms and unknown ids)."""
        return from_wire(Participant, await self.request("POST", f"/rooms/{_seg(room)}/join"))

    async def leave_room(self, room: str) -> None:
        """Ends participation (404 when not a member; 409 for the owner of an open room)."""
        await self.request("DELETE", f"/rooms/{_seg(room)}/leave")

    async def close_room(self, room: str) -> None:
        """The owner or an admin closes the room."""
        await self.request("DELETE", f"/rooms/{_seg(room)}")

    async def history(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int | None = None
    ) -> MessagePage:
        """A page of history in seq order: ``before`` alone gives the newest below it, ``after`` the oldest above it."""
        data = await self.request(
            "GET", f"/rooms/{_seg(room)}/messages", params=_query(before=before, after=after, limit=limit)
        )
        return from_wire(MessagePage, data)

    async def send_message(
        self,
        room: str,
        body: str,
        *,
        kind: str | None = None,
        client_id: str | None = None,
        reply_to: str | None = None,
    ) -> Message:
        """``POST /rooms/{id}/messages``: the ``send`` frame over REST, answered once committed.

        Idempotent by ``client_id`` (one key space with the frame): a repeat
        answers with the message the first send stored.
        """
        payload: dict[str, Any] = {"body": body}
        if kind is not None:
            payload["kind"] = kind
        if client_id is not None:
            payload["client_id"] = client_id
        if reply_to is not None:
            payload["reply_to"] = reply_to
        return from_wire(Message, await self.request("POST", f"/rooms/{_seg(room)}/messages", json=payload))

    async def thread(
        self,
        room: str,
        message_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> ThreadPage:
        """A message and a page of its replies in seq order."""
        data = await self.request(
            "GET",
            f"/rooms/{_seg(room)}/messages/{_seg(message_id)}/thread",
            params=_query(before=before, after=after, limit=limit),
        )
        return from_wire(ThreadPage, data)

    async def participants(self, room: str) -> list[Participant]:
        """The room's participants in join order, with ``online`` and ``read_seq`` (members only)."""
        data = await self.request("GET", f"/rooms/{_seg(room)}/participants")
        return [from_wire(Participant, p) for p in data.get("participants", [])]

    # ------------------------------------------------------------------
    # DMs
    # ------------------------------------------------------------------

    async def dm_history(
        self, with_user: str, *, before: str | None = None, after: str | None = None, limit: int | None = None
    ) -> DmPage:
        """The caller's conversation with one user (id or name), a page in time order (DM ids as anchors)."""
        data = await self.request(
            "GET", "/dms", params=_query(**{"with": with_user}, before=before, after=after, limit=limit)
        )
        return from_wire(DmPage, data)

    async def dm_conversations(self) -> list[DmConversation]:
        """The caller's conversations, most recent first, each with its last DM and unread count."""
        data = await self.request("GET", "/dms")
        return [from_wire(DmConversation, c) for c in data.get("conversations", [])]

    async def pending_dms(self) -> list[DirectMessage]:
        """The caller's DMs not acked yet, oldest first."""
        data = await self.request("GET", "/dms/pending")
        return [from_wire(DirectMessage, m) for m in data.get("messages", [])]

    async def dm_state(self, dm_id: str) -> DmState:
        """Where one DM stands (sender or recipient only): ``queued`` until the recipient acks it."""
        return from_wire(DmState, await self.request("GET", f"/dms/{_seg(dm_id)}"))

    # ------------------------------------------------------------------
    # Search, notifications, presence, users, announcements
    # ------------------------------------------------------------------

    async def search(
        self,
        q: str,
        *,
        room: str | None = None,
        before: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> SearchPage:
        """Full-text search over the caller's rooms and DMs (snippets mark matches with « »)."""
        data = await self.request(
            "GET", "/search", params=_query(q=q, room=room, before=before, limit=limit, offset=offset)
        )
        return from_wire(SearchPage, data)

    async def notifications(
        self, *, unread: bool | None = None, before: str | None = None, limit: int | None = None
    ) -> NotificationList:
        """The caller's notifications, newest first, with the ``unread`` total."""
        data = await self.request("GET", "/notifications", params=_query(unread=unread, before=before, limit=limit))
        return from_wire(NotificationList, data)

    async def mark_notifications_read(
        self, *, ids: list[str] | None = None, up_to: str | None = None
    ) -> NotificationsRead:
        """Marks ``ids`` (or every one ``up_to`` an id) read; returns the new ``unread`` total."""
        body: dict[str, Any] = {}
        if ids is not None:
            body["ids"] = ids
        if up_to is not None:
            body["up_to"] = up_to
        return from_wire(NotificationsRead, await self.request("POST", "/notifications/read", json=body))

    async def online(self) -> list[OnlineUser]:
        """Users with at least one live connection (``GET /presence/online``)."""
        data = await self.request("GET", "/presence/online")
        return [from_wire(OnlineUser, u) for u in data.get("users", [])]

    async def user_profile(self, user: str) -> Profile:
        """A user's profile, by id or username."""
        return from_wire(Profile, await self.request("GET", f"/users/{_seg(user)}"))

    async def me(self) -> Profile:
        """The caller's profile."""
        return from_wire(Profile, await self.request("GET", "/users/me"))

    async def announcements(self) -> list[Announcement]:
        """The active announcements, newest first, each with ``dismissed``."""
        data = await self.request("GET", "/announcements")
        return [from_wire(Announcement, a) for a in data.get("announcements", [])]

    async def broadcast(self, body: str) -> str:
        """Admins only: a ``broadcast`` event to every connection; returns its id."""
        data = await self.request("POST", "/messages/broadcast", json={"body": body})
        return str(data.get("id", ""))

    # ------------------------------------------------------------------
    # Admin: the server API's keys
    # ------------------------------------------------------------------

    async def create_api_key(
        self, name: str, scopes: Sequence[ApiScope], *, room_prefix: str | None = None
    ) -> CreatedApiKey:
        """Admins only: a new key for :class:`~telepath.TelepathServer` (``POST /admin/api-keys``).

        ``scopes``: any of ``publish``, ``presence``, ``rooms``, ``users``, ``webhooks``;
        ``room_prefix`` limits the key to rooms whose name starts with it.
        The secret (``.key``, ``tpk_...``) is in this answer only: the server
        stores its hash. ``repr()`` of the result leaves the secret out.
        """
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if room_prefix is not None:
            body["room_prefix"] = room_prefix
        return from_wire(CreatedApiKey, await self.request("POST", "/admin/api-keys", json=body))

    async def list_api_keys(self) -> list[ApiKeyInfo]:
        """Admins only: every key, newest first, revoked ones too (never their secrets)."""
        data = await self.request("GET", "/admin/api-keys")
        return [from_wire(ApiKeyInfo, k) for k in data.get("keys", [])]

    async def revoke_api_key(self, key_id: str) -> None:
        """Admins only: revokes key ``key_id`` (its ``id``, not the secret); refused (401) from then on.

        404 for no such key.
        """
        await self.request("DELETE", f"/admin/api-keys/{_seg(key_id)}")

    # ------------------------------------------------------------------
    # Any route
    # ------------------------------------------------------------------

    async def request(
        self,
        method: Method | str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """Calls any route: JSON in, decoded JSON out (``None`` for an empty answer such as 204).

        Raises :class:`~telepath.TelepathError` for a non-2xx answer or a failed request.
        """
        authorization: str | None = None
        if auth and self.token is not None:
            token = await resolve(self.token)
            if token:
                authorization = f"Bearer {token}"
        return await call(
            self._http, self.base_url, method, path, json=json, params=params, authorization=authorization
        )
