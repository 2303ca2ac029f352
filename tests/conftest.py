from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import DatabaseSyncToAsync
from channels.layers import BaseChannelLayer

from tests.support.clock import Clock, FakeClock, RealClock
from tests.support.communicators import create_user
from tests.support.layers import make_layer
from tests.support.postgres import migrated_project_database
from tests.support.servers import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist the controller collects nothing, so it loads tests/browser/conftest.py only when
    that directory is named on the command line; its closing "browser tests NOT RUN" section is printed
    by the controller, so it is registered here for it."""
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None):
        if not hasattr(config, "workerinput"):  # the controller, not a worker
            import tests.browser.conftest as browser

            if not config.pluginmanager.is_registered(browser):
                config.pluginmanager.register(browser, "tests.browser.conftest")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: REDIS_URL when set, else a redis-server this fixture starts."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgres_env() -> Iterator[dict[str, str]]:
    """The environment of processes that run the example project on a PostgreSQL database of this
    module's, migrated (tests/support/postgres.py: DATABASE_URL's server, or one it starts)."""
    with migrated_project_database() as env:
        yield env


@pytest.fixture(autouse=True)
def maintenance_known_off() -> None:
    """Every test starts with this process knowing that maintenance is off, for the whole test.

    The consumer reads the state once per MAINTENANCE_CHECK_INTERVAL (wsgateway.maintenance): without
    this, whether a test's connect makes that read would depend on how long ago the test before it did,
    and a test counting a connect's trips to the database would pass or fail by its order.
    tests/test_maintenance.py forgets it, and reads the state as a server does.
    """
    from wsgateway import maintenance

    maintenance._cache.state, maintenance._cache.read_at = None, float("inf")


@pytest.fixture(autouse=True)
def no_user_cooling_down() -> Iterator[None]:
    """No user of a test is cooling down after another test's 4429 (wsgateway.limits): this process
    remembers cool-downs by user pk and by handshake credentials, and the database gives pks again."""
    from channels.layers import channel_layers

    from wsgateway import limits
    from wsgateway.layers import InProcessChannelLayer

    def forget() -> None:
        limits.cooldowns.until.clear()
        for layer in channel_layers.backends.values():  # the project's layer lives as long as the process
            if isinstance(layer, InProcessChannelLayer):
                layer.cooldowns.until.clear()

    forget()
    yield
    forget()


@pytest.fixture(autouse=True)
def no_repair_pending() -> Iterator[None]:
    """No user of a test waits for a repair after another test's failed push (wsgateway.repairs keeps
    them for the process's next push, and the database gives pks again)."""
    from wsgateway import repairs

    repairs.PENDING.take()
    yield
    repairs.PENDING.take()


@pytest.fixture(autouse=True)
def no_user_present() -> Iterator[None]:
    """No user of a test is online after another test's sockets (wsgateway.presence keeps a user online
    for PRESENCE_GRACE after their last socket on a process-local layer, and the database gives pks again)."""
    from wsgateway import presence

    presence._local.sockets.clear()
    presence._local.left.clear()
    presence._local.since.clear()
    yield
    presence._local.sockets.clear()
    presence._local.left.clear()
    presence._local.since.clear()


# -- users: one in the database, with the password of tests.support.communicators --------------------
# A module that needs another kind (permissions, the sync ORM of a sync test, a logged-in HTTP session
# of a live server) defines its own, under the same name, and says why.


@pytest.fixture
async def ann() -> Any:
    return await create_user("ann")


@pytest.fixture
async def alice() -> Any:
    return await create_user("alice")


@pytest.fixture
async def bob() -> Any:
    return await create_user("bob")


@pytest.fixture
def output_dir() -> Path:
    path = Path(__file__).resolve().parents[1] / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def database_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions run in Channels' database thread (database_sync_to_async), in order."""
    trips: list[str] = []
    original = DatabaseSyncToAsync.thread_handler

    def counting(self: Any, loop: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(self.func, "__name__", repr(self.func)))
        return original(self, loop, *args, **kwargs)

    monkeypatch.setattr(DatabaseSyncToAsync, "thread_handler", counting)
    return trips


# -- channel layers by kind: a module that uses these defines the fixture ``kind`` ------------------


@pytest.fixture(scope="session")
def redis_nodes(redis_url: str) -> Iterator[list[str]]:
    """Three real Redis nodes: ``redis_url``'s and two more redis-servers this fixture starts."""
    servers = [RedisServer().start() for _ in range(2)]
    try:
        yield [redis_url, *(server.url for server in servers)]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def redis_for(kind: str, request: pytest.FixtureRequest) -> str | None:
    """The Redis URL a layer of ``kind`` uses; "redis-3": three, joined with commas."""
    if kind == "redis-3":
        return ",".join(request.getfixturevalue("redis_nodes"))
    return str(request.getfixturevalue("redis_url")) if "redis" in kind else None


@pytest.fixture
def clock(kind: str, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """What the layers of ``layer_factory`` measure their expiry on, in a test that asks for it.

    A fake clock for the layers of this process: wsgateway's in-process layer is given it, and
    Channels' in-memory layer reads it through its module's ``time``; ``await clock.sleep(s)``
    moves it on without waiting. The real clock for a Redis layer, whose expiry is Redis's own.
    """
    if "redis" in kind:
        return RealClock()
    fake = FakeClock()
    if kind == "stock-inmemory":
        monkeypatch.setattr("channels.layers.time", fake)
    return fake


@pytest.fixture
async def layer_factory(
    kind: str, redis_for: str | None, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    made: list[BaseChannelLayer] = []
    # The in-process layer on the test's fake clock, when the test has one (see ``clock``).
    on_fake_clock = kind == "inprocess" and "clock" in request.fixturenames
    on_clock = {"clock": request.getfixturevalue("clock")} if on_fake_clock else {}

    def factory(**config: Any) -> BaseChannelLayer:
        layer = make_layer(kind, redis_for, **on_clock, **config)
        made.append(layer)
        return layer

    yield factory
    for layer in made:
        await layer.flush()
        if hasattr(layer, "close_pools"):
            await layer.close_pools()
        elif hasattr(layer, "close"):
            await layer.close()
