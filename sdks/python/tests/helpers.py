"""Test helpers: a real all-in-one ``telepath`` on a free loopback port with a
temp dir (killed by pid), a TCP proxy that can cut connections and drop
server frames, and small waiting utilities."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import httpx

from telepath import Backoff, TelepathClient, TelepathRest

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("TELEPATH_BIN") or str(REPO / "target" / "debug" / "telepath")
SECRET = "python-sdk-test-secret"
FAST = Backoff(initial_delay=0.05, max_delay=0.4)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (Linux), so no server outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One all-in-one telepath process; :meth:`start` again reuses the port and the database."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="telepath-pysdk-")
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/connect"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, f"server-{self.starts}.log")

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TELEPATH_LISTEN": f"127.0.0.1:{self.port}",
            "DATABASE_URL": f"sqlite://{self.dir}/t.db",
            "TELEPATH_JWT_SECRET": SECRET,
            "TELEPATH_DEV_ADMINS": "*",
            "TELEPATH_IP_LOGIN_RATE_PER_S": "0",
            "TELEPATH_IP_ROOM_RATE_PER_S": "0",
            "TELEPATH_USER_RATE_PER_S": "0",
            "TELEPATH_WORKER_THREADS": "2",
            "TELEPATH_DRAIN_SECS": "1",
            # Webhooks deliver to the tests' receivers on 127.0.0.1.
            "TELEPATH_WEBHOOK_ALLOW_PRIVATE": "1",
            "RUST_LOG": "warn",
            **self.extra_env,
        }

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Spawned from the main thread only: the child's death signal follows the spawning thread.
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [BIN],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
        return self.proc

    def _check_alive(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"telepath exited ({proc.returncode}):\n{self.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"telepath not ready on {self.base}:\n{self.log()}")

    def start(self, timeout: float = 30.0) -> None:
        """Starts the process and waits for ``/readyz`` (raises with the log if it dies or is not ready)."""
        proc = self._spawn()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                self._check_alive(proc, deadline)
                try:
                    if http.get(f"{self.base}/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)

    async def astart(self, timeout: float = 30.0) -> None:
        """:meth:`start` without blocking the event loop."""
        proc = self._spawn()
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                self._check_alive(proc, deadline)
                try:
                    if (await http.get(f"{self.base}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> None:
        """Signals our process (by pid) and waits for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    async def akill(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> None:
        """:meth:`kill` without blocking the event loop."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                break
            await asyncio.sleep(0.02)

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


_names = itertools.count(1)


def uname(prefix: str) -> str:
    """A fresh username (1-32 of [A-Za-z0-9_.-])."""
    return f"{prefix}-{os.getpid() % 10000}-{int(time.time() * 1000) % 100000}-{next(_names)}"[:32]


async def wait_until(pred: Callable[[], Any], what: str, timeout: float = 10.0, every: float = 0.02) -> Any:
    """Polls ``pred`` (sync or async) until truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


class Recorder:
    """Collects every event of the given names from a client."""

    def __init__(self, client: TelepathClient, *names: str) -> None:
        self.items: list[Any] = []
        for name in names:
            client.on(name, self.items.append)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.items if getattr(e, "type", None) == kind]

    def bodies(self) -> list[str | None]:
        return [e.body for e in self.of("message")]


class Gate:
    """A token callable that can be held shut: a reconnect waits in it until :meth:`release`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def __call__(self) -> str:
        self.calls += 1
        await self._open.wait()
        return self.token


class Session:
    """Clients and REST clients made by one test, closed at the end."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.clients: list[TelepathClient] = []
        self.rests: list[TelepathRest] = []

    async def rest(self, name: str | None = None, role: str | None = None) -> TelepathRest:
        api = await TelepathRest.from_login(self.server.base, name or uname("u"), role)  # type: ignore[arg-type]
        self.rests.append(api)
        return api

    def client(self, token: Any = None, url: str | None = None, **kwargs: Any) -> TelepathClient:
        kwargs.setdefault("reconnect", FAST)
        kwargs.setdefault("request_timeout", 10.0)
        tp = TelepathClient(url or self.server.ws, token=token, rest_url=self.server.base, **kwargs)
        self.clients.append(tp)
        return tp

    async def user(self, name: str | None = None, **kwargs: Any) -> tuple[TelepathRest, TelepathClient]:
        """A logged-in REST client and a connected realtime client for one user."""
        api = await self.rest(name)
        tp = self.client(api.token, **kwargs)
        await tp.connect(timeout=15)
        return api, tp

    async def close(self) -> None:
        for tp in self.clients:
            await tp.close()
        for api in self.rests:
            await api.aclose()


# ---------------------------------------------------------------------------
# A TCP proxy between a client and the server
# ---------------------------------------------------------------------------


class Proxy:
    """Forwards loopback TCP connections to ``target_port``.

    :meth:`cut` aborts every connection open through it (the client sees a
    dropped connection, the server a reset). ``drop`` is a predicate over
    server -> client text frames (decoded JSON): a frame it accepts is not
    delivered, as if lost.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.drop: Callable[[dict[str, Any]], bool] | None = None
        self.dropped: list[dict[str, Any]] = []
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connect"

    async def start(self) -> "Proxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.transport.abort()
            return
        self.connections += 1
        pair = (c_writer, s_writer)
        self._pairs.add(pair)
        up = asyncio.create_task(self._pipe(c_reader, s_writer, pair))
        down = asyncio.create_task(self._pipe_frames(s_reader, c_writer, pair))
        self._tasks.update((up, down))
        up.add_done_callback(self._tasks.discard)
        down.add_done_callback(self._tasks.discard)

    def _close_pair(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._pairs.discard(pair)
        for w in pair:
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._close_pair(pair)

    async def _pipe_frames(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: Any) -> None:
        """Server -> client: the HTTP response as is, then WebSocket frames one by one through ``drop``."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            await writer.drain()
            while True:
                h = await reader.readexactly(2)
                length = h[1] & 0x7F
                ext = b""
                if length == 126:
                    ext = await reader.readexactly(2)
                    length = int.from_bytes(ext, "big")
                elif length == 127:
                    ext = await reader.readexactly(8)
                    length = int.from_bytes(ext, "big")
                mask = await reader.readexactly(4) if h[1] & 0x80 else b""
                payload = await reader.readexactly(length)
                opcode = h[0] & 0x0F
                if opcode == 1 and h[0] & 0x80 and not mask and self.drop is not None:
                    try:
                        frame = json.loads(payload)
                    except ValueError:
                        frame = None
                    if isinstance(frame, dict) and self.drop(frame):
                        self.dropped.append(frame)
                        continue
                writer.write(h + ext + mask + payload)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._close_pair(pair)

    def cut(self) -> int:
        """Aborts every open connection; returns how many."""
        pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair)
        return len(pairs)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    return list(await asyncio.gather(*aws))


def assert_contiguous(msgs: list[Any], who: str) -> None:
    seqs = [m.seq for m in msgs]
    for a, b in zip(seqs, seqs[1:], strict=False):
        assert b == a + 1, f"{who}: gap or repeat at {a} -> {b} in {seqs}"
    ids = [m.id for m in msgs]
    assert len(set(ids)) == len(ids), f"{who}: repeated ids in {seqs}"
