"""Checking the signature of a webhook delivery (``Telepath-Signature``)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

__all__ = ["verify_webhook", "SIGNATURE_HEADER"]

SIGNATURE_HEADER = "Telepath-Signature"
"""The header that carries the signature."""

_MAX_HEADER = 4096
_PART = re.compile(r"([a-z0-9]+)=([^=,\s]+)")
_T = re.compile(r"[0-9]{1,15}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def verify_webhook(
    secret: str,
    body: bytes | bytearray | memoryview | str,
    signature: str | None,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether a webhook delivery is genuine: its ``Telepath-Signature`` matches its raw body and is recent.

    The header is ``t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC keyed
    with the secret's UTF-8 bytes over ``"<t>.<raw body>"``. Returns ``True``
    only when a ``v1`` matches (compared with :func:`hmac.compare_digest`)
    and ``t`` is within ``tolerance`` seconds of ``now``; ``False`` for a
    missing or malformed header, another secret, a changed body, or a stale
    (a replay) or future timestamp. Several ``v1`` entries may be given (any
    may match); other schemes are ignored.

    Args:
        secret: the webhook's signing secret, as
            :meth:`telepath.TelepathServer.create_webhook` answered it.
        body: the request body exactly as received (bytes; a ``str`` is
            encoded as UTF-8). Not a parsed and re-serialized object: the
            signature covers the bytes.
        signature: the ``Telepath-Signature`` header's value (``None`` when
            absent).
        tolerance: how far ``t`` may be from ``now``, seconds (default 300).
        now: Unix time in seconds to check against (default ``time.time()``).

    Raises ``TypeError`` for arguments it cannot use (an empty secret, a
    body that is not bytes or text, a negative tolerance).

    Then parse the body (``json.loads``) and drop an event ``id`` already
    handled: delivery is at least once.
    """
    if not isinstance(secret, str) or not secret:
        raise TypeError("verify_webhook: secret must be the webhook's signing secret (a non-empty str)")
    if isinstance(body, str):
        raw = body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
    else:
        raise TypeError("verify_webhook: body must be the raw body as received (bytes or str), not a parsed object")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise TypeError("verify_webhook: tolerance must be a number of seconds >= 0")
    if now is None:
        now = time.time()
    elif isinstance(now, bool) or not isinstance(now, (int, float)) or now != now:
        raise TypeError("verify_webhook: now must be Unix time in seconds")

    parsed = _parse(signature)
    if parsed is None:
        return False
    t, candidates = parsed
    if abs(now - t) > tolerance:
        return False
    expected = hmac.new(secret.encode("utf-8"), f"{t}.".encode("ascii") + raw, hashlib.sha256).digest()
    ok = False
    for candidate in candidates:  # every one compared in full
        ok = hmac.compare_digest(expected, candidate) or ok
    return ok


def _parse(header: str | None) -> tuple[int, list[bytes]] | None:
    """``t`` and the ``v1`` digests of a signature header, or ``None`` when it is malformed."""
    if not isinstance(header, str) or not header or len(header) > _MAX_HEADER:
        return None
    t: int | None = None
    v1: list[bytes] = []
    for raw in header.split(","):
        m = _PART.fullmatch(raw.strip())
        if m is None:
            return None
        key, value = m.group(1), m.group(2)
        if key == "t":
            if t is not None or _T.fullmatch(value) is None:
                return None
            t = int(value)
        elif key == "v1":
            if _HEX.fullmatch(value) is None:
                return None
            v1.append(bytes.fromhex(value))
    if t is None or not v1:
        return None
    return t, v1
