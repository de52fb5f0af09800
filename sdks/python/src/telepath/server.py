"""The server API (``/api/``) for application backends, with an API key, over ``httpx.AsyncClient``."""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping, Sequence, overload

import httpx

from ._http import call, query, seg
from ._util import TokenSource, resolve
from .errors import TelepathError
from .types import (
    AddedMembers,
    ApiPresence,
    CreatedWebhook,
    DeliveryStatus,
    DisconnectResult,
    DmResult,
    Message,
    Notification,
    PublishItem,
    PublishOutcome,
    PublishToUserKind,
    Room,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
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
    (``publish``, ``presence``, ``rooms``, ``users``, ``webhooks``) and may be
    limited to rooms whose name starts with a prefix (such a key cannot
    manage webhooks). A key never works on the user
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

    @overload
    async def publish_to_user(
        self,
        user: str,
        body: str,
        *,
        kind: Literal["notification"],
        client_id: str | None = None,
        as_user: str | None = None,
    ) -> Notification: ...

    @overload
    async def publish_to_user(
        self,
        user: str,
        body: str,
        *,
        kind: Literal["dm"] | None = None,
        client_id: str | None = None,
        as_user: str | None = None,
    ) -> DmResult: ...

    async def publish_to_user(
        self,
        user: str,
        body: str,
        *,
        kind: PublishToUserKind | None = None,
        client_id: str | None = None,
        as_user: str | None = None,
    ) -> DmResult | Notification:
        """Sends a direct message or a notification to a user (``POST /api/users/{id}/publish``), by user id.

        From the bot user ``as_user`` or the ``system`` user. ``kind`` ``"dm"``
        (the default): a DM, delivered live (``delivered`` true) or queued
        until the user connects; returns a :class:`DmResult`.
        ``kind="notification"``: a personal notification of kind ``app``
        (the ``notification`` event on every live connection of the user,
        kept in ``GET /notifications`` and the unread count); returns the
        :class:`Notification`. Idempotent by ``client_id`` per sender: a
        repeat answers the first DM or notification and delivers nothing.
        404 for no such user.
        """
        payload: dict[str, Any] = {"body": body}
        if kind is not None:
            payload["kind"] = kind
        if client_id is not None:
            payload["client_id"] = client_id
        if as_user is not None:
            payload["as"] = as_user
        data = await self.request("POST", f"/api/users/{seg(user)}/publish", json=payload)
        want = "notification" if kind == "notification" else "dm"
        inner = data.get(want) if isinstance(data, dict) else None
        if not isinstance(inner, dict):
            raise TelepathError("bad_response", f"POST /api/users/{{id}}/publish: no {want} in the answer", status=201)
        if want == "notification":
            return from_wire(Notification, inner)
        return from_wire(DmResult, inner)

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
    # Webhooks (scope webhooks, a key without a room prefix)
    # ------------------------------------------------------------------

    async def create_webhook(
        self, url: str, events: Sequence[WebhookEvent], *, secret: str | None = None
    ) -> CreatedWebhook:
        """Registers a webhook (``POST /api/webhooks``): Telepath POSTs each of ``events`` to ``url``, signed.

        ``events``: 1-8 of :data:`telepath.WEBHOOK_EVENTS`. ``secret``: 16-128
        printable ASCII characters without spaces; ``None``: the server makes
        one (``whsec_...``). The answer's ``secret`` is shown this once: keep
        it for :func:`telepath.verify_webhook`. Deliveries are retried with
        backoff until a 2xx answer. 400 for a URL, events or secret the
        server refuses (a host resolving to a private address among them,
        unless the server sets ``TELEPATH_WEBHOOK_ALLOW_PRIVATE=1``), or when
        64 webhooks exist; 403 for a key without the scope or with a room
        prefix. A secret given is kept out of error messages.
        """
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if secret is not None:
            body["secret"] = secret
        try:
            data = await self.request("POST", "/api/webhooks", json=body)
        except TelepathError as err:
            if secret and secret in err.message:
                err.message = err.message.replace(secret, "[redacted]")
                err.args = (err.message,)
            raise
        return from_wire(CreatedWebhook, data)

    async def list_webhooks(self) -> list[Webhook]:
        """Every webhook, oldest first, with its ``pending`` and ``dropped`` counts (``GET /api/webhooks``); no secrets."""
        data = await self.request("GET", "/api/webhooks")
        return [from_wire(Webhook, w) for w in data.get("webhooks", [])]

    async def get_webhook(self, webhook: str) -> Webhook:
        """One webhook (``GET /api/webhooks/{id}``); 404 for an unknown id."""
        return from_wire(Webhook, await self.request("GET", f"/api/webhooks/{seg(webhook)}"))

    async def delete_webhook(self, webhook: str) -> None:
        """Deletes a webhook with its deliveries; pending ones are not sent (``DELETE /api/webhooks/{id}``)."""
        await self.request("DELETE", f"/api/webhooks/{seg(webhook)}")

    async def webhook_deliveries(
        self,
        webhook: str,
        *,
        status: DeliveryStatus | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> list[WebhookDelivery]:
        """A webhook's deliveries, newest first (``GET /api/webhooks/{id}/deliveries``).

        Each with its ``status``, ``attempts``, and the last attempt's HTTP
        status and error. ``status`` filters; page with ``before`` = the last
        one's ``id``; ``limit`` 1-100 (default 50). 400 on a bad parameter,
        404 for an unknown webhook.
        """
        params = query(status=status, before=before, limit=limit)
        data = await self.request("GET", f"/api/webhooks/{seg(webhook)}/deliveries", params=params)
        return [from_wire(WebhookDelivery, d) for d in data.get("deliveries", [])]

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
