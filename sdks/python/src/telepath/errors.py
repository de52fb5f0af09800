"""The SDK's one exception type."""

from __future__ import annotations

__all__ = ["TelepathError", "SERVER_CODES", "CLIENT_CODES", "code_for_status"]

SERVER_CODES = frozenset(
    {
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "room_full",
        "rate_limited",
        "too_large",
        "conflict",
        "unavailable",
        "internal",
    }
)
"""The protocol's error codes (replies, ``error`` frames, REST error bodies)."""

CLIENT_CODES = frozenset({"timeout", "disconnected", "closed", "cancelled", "network", "bad_response"})
"""Codes the SDK uses for failures that are not the server's answer."""


class TelepathError(Exception):
    """A failed request, REST call or connection attempt.

    Attributes:
        code: the server's error code (``not_found``, ``too_large``, ...) or
            one of the SDK's own: ``timeout`` (no reply in time),
            ``disconnected`` (the socket dropped with the request in flight),
            ``closed`` (the client was closed), ``cancelled`` (superseded, e.g.
            a join cancelled by ``leave``), ``network`` and ``bad_response``.
        message: the server's message, or the SDK's explanation.
        status: the HTTP status, for REST errors and refused WebSocket
            handshakes (``None`` otherwise).
        retry_after: seconds from the ``Retry-After`` header (429 and 503),
            when the server sent one.
        close_code: the WebSocket close code, when a connection ended the
            client for good (4001 without a way to refresh, 4003, ...).
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        close_code: int | None = None,
    ) -> None:
        self.code = code
        self.message = message if message is not None else code
        self.status = status
        self.retry_after = retry_after
        self.close_code = close_code
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"

    def __repr__(self) -> str:
        parts = [repr(self.code), repr(self.message)]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after}")
        if self.close_code is not None:
            parts.append(f"close_code={self.close_code}")
        return f"TelepathError({', '.join(parts)})"


def code_for_status(status: int) -> str:
    """The protocol's error code for an HTTP status (when a body carries none)."""
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        413: "too_large",
        415: "bad_request",
        429: "rate_limited",
        503: "unavailable",
        507: "unavailable",
    }.get(status, "internal")
