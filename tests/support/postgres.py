"""A real PostgreSQL for the multi-process tests.

``WSGATEWAY_TEST_POSTGRES_URL`` (a server URL whose user may create databases)
when set; otherwise a throwaway cluster started here with the machine's initdb
(which .ci/run installs), on 127.0.0.1 and a free port, removed afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.servers import HOST, free_port, manage, project_env, wait_for_port


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    def __init__(self, parent: str | Path | None = None) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="wsgateway-pg-", dir=parent))

    @staticmethod
    def available() -> bool:
        return bool(os.environ.get("WSGATEWAY_TEST_POSTGRES_URL")) or bool(
            _pg_bin("initdb") and _pg_bin("postgres")
        )

    def start(self) -> PostgresServer:
        initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
        assert initdb and postgres, "PostgreSQL is not installed"
        data = self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            _as_postgres_user([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.proc = subprocess.Popen(
            _as_postgres_user(
                [
                    postgres,
                    "-D",
                    str(data),
                    "-h",
                    HOST,
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.dir),
                    "-c",
                    "max_connections=200",
                    "-c",
                    "fsync=off",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=30, proc=self.proc)
        self._wait_until_accepting(timeout=30)
        return self

    def _wait_until_accepting(self, timeout: float) -> None:
        """The port opens before the server takes connections: until then it answers "FATAL: the
        database system is starting up", which failed test_scale_out's setup on a loaded machine."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.server_url + "/postgres", connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                    raise
                time.sleep(0.2)

    @property
    def server_url(self) -> str:
        return f"postgres://postgres@{HOST}:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def create_database(server_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    import psycopg

    name = f"wsgw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url.rstrip("/") + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rstrip("/") + f"/{name}"


@contextmanager
def migrated_project_database() -> Iterator[dict[str, str]]:
    """The example project's environment on a fresh PostgreSQL server, migrated, with the demo
    users: for tests whose processes must race on a real row lock. Skips without PostgreSQL."""
    if not PostgresServer.available():
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer().start()
    try:
        env = project_env(DATABASE_URL=create_database(server.server_url))
        manage(env, "migrate", "--noinput")
        manage(env, "demo_users")
        yield env
    finally:
        server.stop()


def rerun_on_postgresql(test_file: str, names: list[str], timeout: float = 110) -> None:
    """Run ``names`` (tests of ``test_file``) again in a child pytest on a fresh PostgreSQL server, with
    the PostgreSQL test settings; fail with the child's output unless each passed. Skips without
    PostgreSQL. For what a database may type or plan its own way (plain SQL, ``IN`` lists)."""
    if not PostgresServer.available():
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer().start()
    try:
        env = {**os.environ, "WSGATEWAY_TEST_DATABASE_URL": create_database(server.server_url)}
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--ds",
            "tests.settings_postgres",
        ]
        result = subprocess.run(
            command + [f"{test_file}::{name}" for name in names],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert f"{len(names)} passed" in result.stdout, result.stdout


@pytest.fixture(autouse=True)
async def thread_closes_its_connection() -> AsyncIterator[None]:
    """Autouse in a module that imports it (one whose tests :func:`rerun_on_postgresql`): on
    PostgreSQL (the child run, CONN_MAX_AGE 60) the connection of Channels' database thread would
    outlive the test and keep its test database from being dropped."""
    yield
    from channels.db import database_sync_to_async
    from django.db import connection, connections

    if connection.vendor == "postgresql":
        await database_sync_to_async(connections.close_all)()
