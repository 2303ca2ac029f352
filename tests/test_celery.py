"""notify() from a real Celery worker reaches a socket on a daphne, live, once each and in order.

"Event loop is closed", sending to channels-redis from Celery, is among its most reported problems;
notify() is sync code that reaches the layer without async_to_sync's loop per call (docs/notifications.md,
"From a Celery worker"). Here a real ``celery -A project worker`` runs the example project's task
``project.demo.tasks.notify_user``, on both pools: solo (the tasks in the worker's own process) and
prefork (two children, each reused for many tasks and then replaced). One redis-server is the channel
layer (db 0) and the broker (db 1); the processes share an SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.catchup import CursorPage, follow_until
from tests.support.servers import (
    HOST,
    OUTPUT,
    ROOT,
    HttpSession,
    RedisServer,
    manage,
    project_env,
    serving,
    sqlite_database,
)
from tests.support.wsclient import Client

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(90)]

#: Tasks enqueued per run, one notification each.
TASKS = 200

ENQUEUE = (
    "from django.contrib.auth import get_user_model; from project.demo.tasks import notify_user; "
    "alice = get_user_model().objects.get(username='alice'); "
    "[notify_user.delay(alice.pk, '{tag} %d' % n) for n in range({count})]"
)


@dataclass
class Backends:
    redis: RedisServer
    database: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"

    @property
    def broker_url(self) -> str:
        return f"redis://{HOST}:{self.redis.port}/1"  # the layer is on db 0 (RedisServer.url)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    directory = tmp_path_factory.mktemp("celery")
    sqlite_database(directory)
    redis = RedisServer().start()
    try:
        yield Backends(redis, directory / "db.sqlite3")
    finally:
        redis.stop()


class Worker:
    """``celery -A project worker``, its output in test-output/; stopped by SIGTERM (a warm
    shutdown), then killed with its pool's children if it lingers."""

    def __init__(self, env: dict[str, str], name: str, *args: str) -> None:
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"{name}.log"
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    *[sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel", "INFO"],
                    *["--without-heartbeat", "--without-gossip", "--without-mingle", "--hostname", name],
                    *args,
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own: the pool's children go with it
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            assert self.proc.poll() is None, f"the worker exited with {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"the worker was not ready after {timeout}s:\n{self.log()}"
            time.sleep(0.1)

    def stop(self) -> int | None:
        """Stop the worker; returns its exit code, or None if it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return None
        return self.proc.returncode


def stored_seqs(database: Path, tag: str) -> list[int]:
    # closing(): a sqlite3 connection's own context manager ends the transaction but leaves the
    # connection open, which Python 3.13 reports as a ResourceWarning (an error in this suite).
    with closing(sqlite3.connect(database, timeout=20)) as db:
        rows = db.execute(
            "SELECT n.seq FROM wsgateway_notification n JOIN auth_user u ON u.id = n.recipient_id "
            "WHERE u.username = 'alice' AND n.message LIKE ? ORDER BY n.seq",
            [f"{tag} %"],
        ).fetchall()
    return [seq for (seq,) in rows]


def pushed(client: Client) -> list[dict[str, Any]]:
    """The notifications pushed to ``client`` (not those a sync reply carried), in arrival order."""
    frames = [f for f in client.frames if f.get("channel") == "notifications" and "id" not in f]
    return [f["payload"]["last"] for f in frames if "last" in f.get("payload", {})]


@pytest.mark.parametrize(
    ("layer", "pool"),
    [
        ("wsgateway", ["--pool", "solo"]),
        # Two children, each replaced after 50 tasks: a pool's processes run task after task, and
        # new ones are forked from the parent while the others go on.
        ("wsgateway", ["--pool", "prefork", "--concurrency", "2", "--max-tasks-per-child", "50"]),
        # channels-redis' own layer, the one of the reports: notify() reaches it through the
        # bridge's loop, kept for the life of each process (wsgateway/bridge.py).
        ("core", ["--pool", "prefork", "--concurrency", "2", "--max-tasks-per-child", "50"]),
    ],
    ids=["wsgateway-solo", "wsgateway-prefork", "core-prefork"],
)
async def test_tasks_notifying_from_a_celery_worker_reach_the_socket_once_each_in_order(
    backends: Backends, layer: str, pool: list[str]
) -> None:
    tag = f"celery {layer} {pool[1]}"
    env = project_env(
        DATABASE_URL=backends.database_url,
        REDIS_URL=backends.redis.url,
        WSGATEWAY_REDIS_LAYER=layer,
        CELERY_BROKER_URL=backends.broker_url,
    )
    with serving(env, f"celery-daphne-{layer}-{pool[1]}") as daphne:
        worker = Worker(env, f"celery-{layer}-{pool[1]}", *pool)
        try:
            worker.wait_ready()
            alice = HttpSession(daphne.http_url).login("alice", "alice-password")
            client = await Client(f"{daphne.ws_url}/ws/", {"Cookie": alice.cookie_header}).connect()
            page = CursorPage()
            await page.follow(client)
            assert page.cursor is not None
            start = page.cursor

            await asyncio.to_thread(manage, env, "shell", "-c", ENQUEUE.format(tag=tag, count=TASKS))
            want = list(range(start + 1, start + TASKS + 1))
            await follow_until(page, client, want, timeout=45)
            await asyncio.sleep(0.5)  # room for a late duplicate to show up
            await client.close()
        finally:
            code = worker.stop()

    log = worker.log()
    assert code == 0, f"the worker did not shut down cleanly ({code}); see {worker.log_path}"
    assert log.count("succeeded in") == TASKS, f"see {worker.log_path}"
    # A push that fails is logged as a warning ("stored but not pushed"), not raised into the task.
    for problem in ("Traceback", "Event loop is closed", "WARNING/", "ERROR/", "CRITICAL/"):
        assert problem not in log, f"the worker logged {problem!r}; see {worker.log_path}"
    assert stored_seqs(backends.database, tag) == want
    # Every one was pushed live, once: the page's syncs (after a gap) only put them in order.
    live = pushed(client)
    assert sorted(n["seq"] for n in live) == want
    assert sorted(n["label"] for n in live) == sorted(f"{tag} {n}" for n in range(TASKS))
    if pool[1] == "solo":  # one process, tasks taken in the order they were queued: no gap to sync
        assert [n["seq"] for n in live] == want
        assert [n["label"] for n in live] == [f"{tag} {n}" for n in range(TASKS)]
    assert page.delivered == want
