"""Telepath SDK for Python: a realtime client, a REST client and a server-API client for the Telepath chat hub.

import asyncio
from telepath import TelepathClient, TelepathRest

async def main():
    async with await TelepathRest.from_login("http://127.0.0.1:8080", "ada") as api:
        room = await api.create_room("lobby")
        async with TelepathClient("ws://127.0.0.1:8080/connect", token=api.token) as tp:
            await tp.join(room.id)
            tp.on("message", lambda m: print(m.from_.name, m.body))
            await tp.send(room.id, "hello")

asyncio.run(main())
"""

from .backoff import Backoff
from .client import ConnectionState, TelepathClient
from .errors import TelepathError
from .events import EventStream
from .rest import TelepathRest
from .server import TelepathServer
from .types import *  # noqa: F401,F403
from .types import __all__ as _types_all
from .webhook import SIGNATURE_HEADER, verify_webhook

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "ConnectionState",
    "EventStream",
    "TelepathClient",
    "TelepathError",
    "TelepathRest",
    "TelepathServer",
    "SIGNATURE_HEADER",
    "verify_webhook",
    "__version__",
    *_types_all,
]
