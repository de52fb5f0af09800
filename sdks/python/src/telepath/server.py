"""The server API (``/api/``) for application backends, with an API key, over ``httpx.AsyncClient``."""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping

import httpx

from ._http import call, seg
from ._util import TokenSource, resolve
from .types import (
    AddedMembers,
    ApiPresence,
    DisconnectResult,
    DmResult,
    Message,
    PublishItem,
    PublishOutcome,
    Room,
    from_wire,
)

__all__ = ["TelepathServer"]


def _ids(values: str | Iterable[str]) -> list[str]:
    """A list of ids from one id or an iterable of them."""
    return [values] if isinstance(values, str) else [str(v) for v in values]


class TelepathServer:
    """An async client for the server API: what an application's backend does with an API key.

    Keys (``tpk_...``) come from ``telepath apikey create`` or
    :meth:`telepath.TelepathRest.create_api_key`. Each key holds scopes
    (``publish``, ``presence``, ``rooms``, ``users``) and may be limited to
    rooms whose name starts with a prefix. A key never works on the user
    routes, and a user token never works here.

    Every non-2xx answer raises :class:`~telepath.TelepathError` with the
    HTTP ``status``, the error ``code`` and ``message`` (401 messages:
    ``missing_api_key``, ``not_an_api_key``, ``unknown_api_key``,
    ``revoked_api_key``; 403: ``missing scope: <scope>`` or a room outside
    the key's prefix), and ``retry_after`` (seconds) when the server sent
    ``Retry-After``. A request that never got an answer raises code
    ``network`` (or ``timeout``).

    The key is sent in the ``Authorization`` header only. It is kept out of
    ``repr()``, error messages and logs.

    Args:
        base_url: the api's origin, e.g. ``http://127.0.0.1:8080``.
        api_key: the key, or a (sync or async) callable giving one for each
            request (for keys rotated at run time).
        client: an ``httpx.AsyncClient`` to use (not closed by :meth:`aclose`);
            by default the instance makes and owns one.
        timeout: per request, seconds (for the client it makes).

    Use it as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: TokenSource,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._owns = client is None
        self._http = client if client is not None else httpx.AsyncClient(timeout=timeout)

    def __repr__(self) -> str:
        return f"TelepathServer({self.base_url!r}, api_key=<hidden>)"

    async def __aenter__(self) -> "TelepathServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP client (when this instance made it)."""
        if self._owns:
            await self._http.aclose()

    # ------------------------------------------------------------------
    # Publishing (scope publish)
    # ------------------------------------------------------------------

    async def publish(
        self,
        room: str,
        body: str,
        *,
        kind: str | None = None,
        client_id: str | None = None,
        as_user: str | None = None,
    ) -> Message:
        """Publishes a message to a room (``POST /api/rooms/{id}/publish``); the committed message.

        Sent as the bot user ``as_user`` (a username, created if new) or, by
        default, as the ``system`` user. Neither needs to be a participant.
        The message is ordered in the room's log and delivered to the room's
        connections like any message. Idempotent by ``client_id`` per sender:
        a repeat answers with the message stored first, so retries are safe
        when you pass one. 404 for no such room or a closed one.
        """
        payload = PublishItem(room=room, body=body, kind=kind, client_id=client_id, as_user=as_user).to_wire()
        del payload["room"]
        return from_wire(Message, await self.request("POST", f"/api/rooms/{seg(room)}/publish", json=payload))

    async def publish_batch(self, items: Iterable[PublishItem | Mapping[str, Any]]) -> list[PublishOutcome]:
        """Publishes 1-100 messages in one call (``POST /api/publish``): one outcome per item, in order.

        An item the server refuses (no such room, outside the key's prefix,
        a bad field) has ``error`` set and does not hold back the others.
        Items are :class:`~telepath.PublishItem` or mappings already in wire
        form (``{"room","body","kind"?,"client_id"?,"as"?}``).
        """
        wire = [i.to_wire() if isinstance(i, PublishItem) else dict(i) for i in items]
        data = await self.request("POST", "/api/publish", json={"items": wire})
        return [from_wire(PublishOutcome, r) for r in data.get("results", [])]

    async def publish_to_user(
        self, user: str, body: str, *, client_id: str | None = None, as_user: str | None = None
    ) -> DmResult:
        """Sends a direct message to a user (``POST /api/users/{id}/publish``), by user id.

        From the bot user ``as_user`` or the ``system`` user; delivered live
        (``delivered`` true) or queued until the user connects. Idempotent by
        ``client_id`` per sender. 404 for no such user.
        """
        payload: dict[str, Any] = {"body": body}
        if client_id is not None:
            payload["client_id"] = client_id
        if as_user is not None:
            payload["as"] = as_user
        data = await self.request("POST", f"/api/users/{seg(user)}/publish", json=payload)
        return from_wire(DmResult, data.get("dm", {}))

    # ------------------------------------------------------------------
    # Presence (scope presence)
    # ------------------------------------------------------------------

    async def presence(self, users: str | Iterable[str]) -> ApiPresence:
        """Which of 1-1000 users (ids) are online (``GET /api/presence?users=``)."""
        ids = _ids(users)
        return from_wire(ApiPresence, await self.request("GET", "/api/presence", params={"users": ",".join(ids)}))

    async def room_presence(self, room: str) -> ApiPresence:
        """Which of a room's participants are online (``GET /api/rooms/{id}/presence``)."""
        return from_wire(ApiPresence, await self.request("GET", f"/api/rooms/{seg(room)}/presence"))

    # ------------------------------------------------------------------
    # Rooms (scope rooms)
    # ------------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        *,
        description: str | None = None,
        max_participants: int | None = None,
        private: bool | None = None,
    ) -> Room:
        """Creates a room owned by the ``system`` user (``POST /api/rooms``); its name within the key's prefix."""
        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        if max_participants is not None:
            body["max_participants"] = max_participants
        if private is not None:
            body["private"] = private
        return from_wire(Room, await self.request("POST", "/api/rooms", json=body))

    async def add_members(self, room: str, users: str | Iterable[str]) -> AddedMembers:
        """Makes 1-1000 known users (ids) participants of a room, private rooms too (``POST /api/rooms/{id}/members``).

        ``added`` lists those who were not participants before; each of them
        gets a ``member`` ``joined`` event like a join. 404 for an unknown
        user, 409 for a full room or a banned user.
        """
        data = await self.request("POST", f"/api/rooms/{seg(room)}/members", json={"users": _ids(users)})
        return from_wire(AddedMembers, data)

    # ------------------------------------------------------------------
    # Users (scope users)
    # ------------------------------------------------------------------

    async def disconnect(self, user: str) -> DisconnectResult:
        """Closes every connection of a user (id) with ``bye`` ``admin`` and close code 4003, on every gateway.

        A :class:`~telepath.TelepathClient` closed this way stops (state
        ``closed``, code 4003): it does not reconnect.
        """
        return from_wire(DisconnectResult, await self.request("POST", f"/api/users/{seg(user)}/disconnect"))

    # ------------------------------------------------------------------
    # Any route
    # ------------------------------------------------------------------

    async def request(
        self,
        method: Literal["GET", "POST", "PATCH", "DELETE"] | str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Calls any route with the key: JSON in, decoded JSON out (``None`` for an empty answer).

        Raises :class:`~telepath.TelepathError` for a non-2xx answer or a failed request.
        """
        key = await resolve(self._api_key)
        authorization = f"Bearer {key}" if key else None
        return await call(
            self._http, self.base_url, method, path, json=json, params=params, authorization=authorization
        )
