"""Event dispatch: callbacks and async iterators over a client's events."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Iterable

__all__ = ["EventStream", "Listener"]

log = logging.getLogger("telepath")

Listener = Callable[[Any], Any]
"""An event callback: called with the event; may be a coroutine function (run as a task)."""

_END = object()


class EventStream:
    """An async iterator over a client's events (all of them, or the names given).

    Events are queued from the moment the stream is made (so nothing is missed
    between making it and the first ``async for`` step) until :meth:`close`,
    or until the client closes, which ends the iteration::

        async with client.events("message", "dm") as stream:
            async for ev in stream:
                ...

    The queue is unbounded: a stream nobody reads keeps growing, so close it
    when done.
    """

    def __init__(self, registry: "_Registry", names: Iterable[str]) -> None:
        self._registry = registry
        self.names: frozenset[str] = frozenset(names)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False
        registry.streams.add(self)

    def wants(self, name: str) -> bool:
        """Whether this stream takes events called ``name`` (all but ``frame`` when made without names)."""
        return name in self.names if self.names else name != "frame"

    def _put(self, event: Any) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is _END:
            # Let later calls end too.
            self._queue.put_nowait(_END)
            raise StopAsyncIteration
        return item

    async def get(self, timeout: float | None = None) -> Any:
        """The next event; ``TimeoutError`` after ``timeout`` seconds, ``StopAsyncIteration`` once ended."""
        if timeout is None:
            return await self.__anext__()
        return await asyncio.wait_for(self.__anext__(), timeout)

    def pending(self) -> int:
        """Events queued and not read yet."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stops queueing; an iteration in progress ends after what is queued."""
        if self._closed:
            return
        self._closed = True
        self._registry.streams.discard(self)
        self._queue.put_nowait(_END)

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Registry:
    """Listeners by event name (``*``: every event but ``frame``) and streams."""

    def __init__(self) -> None:
        self.listeners: dict[str, list[Listener]] = {}
        self.streams: set[EventStream] = set()
        self.tasks: set[asyncio.Task[Any]] = set()

    def on(self, name: str, fn: Listener) -> Callable[[], None]:
        self.listeners.setdefault(name, []).append(fn)

        def off() -> None:
            self.off(name, fn)

        return off

    def off(self, name: str, fn: Listener) -> None:
        fns = self.listeners.get(name)
        if fns and fn in fns:
            fns.remove(fn)

    def emit(self, name: str, event: Any) -> None:
        fns = list(self.listeners.get(name, ()))
        if name != "frame":
            fns += self.listeners.get("*", ())
        for fn in fns:
            try:
                result = fn(event)
            except Exception:  # a listener's bug must not break the connection
                log.exception("telepath: %s listener raised", name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self.tasks.add(task)
                task.add_done_callback(self._task_done)
        for stream in list(self.streams):
            if stream.wants(name):
                stream._put(event)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("telepath: async listener raised", exc_info=task.exception())

    def end_streams(self) -> None:
        for stream in list(self.streams):
            stream.close()
