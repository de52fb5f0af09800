"""Fixtures: one real all-in-one telepath per test module (``SERVER_ENV`` in a
module adds environment), and a per-test :class:`helpers.Session` that closes
the clients a test made."""

from __future__ import annotations

import os
import signal
from typing import Any, AsyncIterator, Iterator

import pytest

from helpers import BIN, Server, Session


def pytest_configure(config: pytest.Config) -> None:
    if not os.path.exists(BIN):
        raise pytest.UsageError(f"no telepath binary at {BIN} (set TELEPATH_BIN)")
    # SIGTERM (e.g. from `timeout`) runs the fixtures' teardown, which kills the servers.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(getattr(request.module, "SERVER_ENV", None))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def session(server: Server, request: pytest.FixtureRequest) -> AsyncIterator[Session]:
    s = Session(server)
    try:
        yield s
    finally:
        await s.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"\n--- telepath log ({server.log_path}) ---\n{server.log()}")
