"""Small helpers shared by the REST and realtime clients."""

from __future__ import annotations

import base64
import email.utils
import inspect
import json
import time
import uuid
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Generic, TypeVar, Union
from urllib.parse import urlsplit, urlunsplit

K = TypeVar("K")
V = TypeVar("V")

TokenSource = Union[str, Callable[[], Union[str, Awaitable[str]]]]
"""A token, or a (sync or async) callable returning one."""


async def resolve(source: Any) -> Any:
    """The value of ``source``: itself, or what calling it gives (awaited when awaitable)."""
    value = source() if callable(source) else source
    if inspect.isawaitable(value):
        value = await value
    return value


def new_client_id() -> str:
    """A fresh idempotency key for ``send``/``dm``."""
    return str(uuid.uuid4())


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT (not verified: the server does that), or ``None``."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def ws_url(url: str) -> str:
    """The gateway's ``ws(s)://.../connect`` URL: http(s) becomes ws(s), an empty path ``/connect``."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/connect"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def http_base(url: str) -> str:
    """The REST api's origin for a gateway URL: ws(s) becomes http(s), the path goes."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class BoundedDict(Generic[K, V]):
    """A dict that forgets its oldest keys (by first insertion) past ``max``."""

    def __init__(self, max_items: int) -> None:
        self._max = max(1, max_items)
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def set(self, key: K, value: V) -> None:
        self._items[key] = value
        while len(self._items) > self._max:
            self._items.popitem(last=False)
