"""One JSON request over ``httpx.AsyncClient``, its failures as :class:`TelepathError`.

Shared by :class:`telepath.TelepathRest` and :class:`telepath.TelepathServer`.
The ``authorization`` value goes into the header only: it never appears in
an error message (those name the method and the path, never the URL's
query nor a header).
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

import httpx

from ._util import parse_retry_after
from .errors import TelepathError, code_for_status


def seg(value: str) -> str:
    """One path segment, percent-encoded."""
    return quote(str(value), safe="")


def query(**params: Any) -> dict[str, str]:
    """Query parameters without the ``None`` ones; booleans as ``true``/``false``."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = str(value)
    return out


async def call(
    http: httpx.AsyncClient,
    base_url: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    authorization: str | None = None,
) -> Any:
    """``method base_url+path``: JSON in, decoded JSON out (``None`` for an empty answer such as 204).

    Raises :class:`TelepathError`: the ``{"error":{"code","message"}}`` body
    of a non-2xx answer with its ``status`` and ``retry_after``; ``timeout``
    or ``network`` when no answer came; ``bad_response`` for a 2xx answer
    that is not JSON.
    """
    headers = {"accept": "application/json"}
    if authorization:
        headers["authorization"] = authorization
    url = f"{base_url}{path}"
    try:
        res = await http.request(method, url, json=json, params=dict(params) if params else None, headers=headers)
    except httpx.TimeoutException as err:
        raise TelepathError("timeout", f"{method} {path}: {type(err).__name__}: {err}") from err
    except httpx.HTTPError as err:
        raise TelepathError("network", f"{method} {path}: {type(err).__name__}: {err}") from err
    data: Any = None
    if res.content:
        try:
            data = res.json()
        except ValueError:
            if res.is_success:
                raise TelepathError(
                    "bad_response", f"{method} {path}: the answer is not JSON", status=res.status_code
                ) from None
    if not res.is_success:
        err_body = data.get("error") if isinstance(data, dict) else None
        code = code_for_status(res.status_code)
        message = f"{method} {path}: HTTP {res.status_code}"
        if isinstance(err_body, dict):
            code = str(err_body.get("code") or code)
            message = str(err_body.get("message") or message)
        raise TelepathError(
            code,
            message,
            status=res.status_code,
            retry_after=parse_retry_after(res.headers.get("retry-after")),
        )
    return data
