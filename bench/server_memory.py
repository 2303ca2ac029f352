"""What an idle authenticated socket costs in a real server process, wsgateway's part apart from the server's.

    python -m bench.server_memory [--server SERVER] [--sockets 1000] [--trace] [--server-args "..."]
        [--freeze-every S]

Starts one server on ``bench.asgi`` (the example project, wsgateway's in-process layer, a fresh SQLite
database), opens ten sockets and closes them (what the first sockets load), then asks the server for
its counts (SIGUSR1: see :func:`install`), opens N idle authenticated sockets (a bearer token each, over
N/10 users), and asks again. Reported per socket: RSS, the objects the cyclic collector tracks (by
type), and the time of one full collection with the N sockets held; with ``--trace`` (tracemalloc in
the server, which inflates its RSS), the bytes still allocated by package (wsgateway, channels,
daphne/twisted/autobahn, uvicorn, hypercorn, asyncio...). Counts, not timings, except the collection.
``--server-args``: more command-line arguments for the server (``"--http h11"``, say), to weigh its options.
The server must run the application in the process it starts (granian's workers are other processes).
``--freeze-every S``: the refreeze timer (``GC_FREEZE_EVERY``, off here unless given) in the server; then
also what the closed sockets leave frozen after one more refreeze, and after the hourly thaw, run at once
(keep S under the server's ping timeout: this client answers no ping).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.memory import bytes_by_package

ROOT = Path(__file__).resolve().parent.parent
#: uvicorn's default WebSocket implementation is websockets'; uvicorn-wsproto is its other one.
SERVERS = ["daphne", "uvicorn", "uvicorn-wsproto", "hypercorn"]
HOST = "127.0.0.1"


# -- in the server ------------------------------------------------------------------------------


def install(path: str, *, trace: bool) -> None:
    """On SIGUSR1, write the process's counts to ``path`` (and its tracemalloc snapshot to
    ``path + ".trace"``), then rename: the reader waits for the file."""
    if trace:
        tracemalloc.start()

    def dump(signum: int, frame: Any) -> None:
        from wsgateway import sockets

        # Counted before and after the collection, by type: a cycle through a suspended generator
        # (websockets' parser, under uvicorn) is freed by finalizing the generator, which gc.collect()
        # and gc.get_stats() do not count as collected (CPython 3.11).
        pending = collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())
        gc.collect()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            gc.collect()
            times.append(1000 * (time.perf_counter() - start))
        by_type = collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())
        if trace:
            tracemalloc.take_snapshot().dump(path + ".trace")
        stats = {
            "rss_kib": _status_kib("VmRSS"),
            # Every object the cyclic collector has freed in this process, in every collection.
            "collected": sum(generation["collected"] for generation in gc.get_stats()),
            "tracked": sum(by_type.values()),
            "frozen": gc.get_freeze_count(),
            "by_type": dict(by_type),
            "freed_by_type": dict(pending - by_type),
            "full_collection_ms": sorted(times)[1],
            "sockets": sum(len(sockets.local_sockets(user)) for user in list(sockets._registry)),
        }
        Path(path + ".tmp").write_text(json.dumps(stats))
        os.replace(path + ".tmp", path)

    def thaw(signum: int, frame: Any) -> None:
        from wsgateway import collector

        frozen = gc.get_freeze_count()
        collector.refreeze(thaw=True)  # the timer's hourly thaw, now
        gc.unfreeze()  # to count what is left by type, then frozen again as the thaw left it
        by_type = collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())
        gc.freeze()
        stats = {"frozen_before": frozen, "frozen": gc.get_freeze_count(), "by_type": dict(by_type)}
        Path(path + ".tmp").write_text(json.dumps({**stats, "rss_kib": _status_kib("VmRSS")}))
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGUSR2, thaw)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


# -- the client ---------------------------------------------------------------------------------


class Idle(asyncio.Protocol):
    """One socket that connects, reads what it is sent and says nothing."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.head = b""
        self.accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.received = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        transport.write(
            b"GET /ws/ HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n"
            % (HOST.encode(), self.port, key, self.token.encode())
        )

    def data_received(self, data: bytes) -> None:
        if not self.accepted.done():
            self.head += data
            if b"\r\n\r\n" in self.head:
                self.accepted.set_result(self.head.startswith(b"HTTP/1.1 101"))
                self.received += len(self.head.split(b"\r\n\r\n", 1)[1])
            return
        self.received += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.accepted.done():
            self.accepted.set_result(False)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_idle(port: int, tokens: list[str], count: int) -> list[Idle]:
    loop = asyncio.get_running_loop()
    opened: list[Idle] = []
    gate = asyncio.Semaphore(100)  # handshakes in flight: daphne's backlog and the client's own

    async def one(token: str) -> None:
        async with gate:
            _, sock = await loop.create_connection(lambda: Idle(port, token), HOST, port)
            opened.append(sock)
            if not await asyncio.wait_for(sock.accepted, 90):
                raise RuntimeError(f"refused: {sock.head[:200]!r}")

    await asyncio.gather(*(one(tokens[i % len(tokens)]) for i in range(count)))
    return opened


def ask(pid: int, path: Path, want_sockets: int, within: float = 120) -> dict[str, Any]:
    """The server's counts once it holds ``want_sockets`` sockets."""
    deadline = time.monotonic() + within
    while True:
        path.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the server wrote no counts")
            time.sleep(0.05)
        stats: dict[str, Any] = json.loads(path.read_text())
        if stats["sockets"] == want_sockets:
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server holds {stats['sockets']} sockets, not {want_sockets}")
        time.sleep(0.5)


def thaw_now(pid: int, path: Path, within: float = 60) -> dict[str, Any]:
    """The refreeze timer's thaw in the server now (see :func:`install`); what it wrote."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not thaw")
        time.sleep(0.05)
    answer: dict[str, Any] = json.loads(path.read_text())
    return answer


def server_command(server: str, port: int, extra: tuple[str, ...] = ()) -> list[str]:
    app = "bench.asgi:application"
    if server == "daphne":
        listen = f"tcp:port={port}:interface={HOST}:backlog=1024"
        return [sys.executable, "-m", "daphne", "-e", listen, *extra, app]
    if server in ("uvicorn", "uvicorn-wsproto"):
        # As docs/deployment.md recommends it: no compression (this client offers none anyway).
        ws = ["--ws", "wsproto"] if server == "uvicorn-wsproto" else []  # else websockets-sansio, its default
        return [
            *(sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port), *ws),
            *("--lifespan", "off", "--ws-per-message-deflate", "false", *extra, app),
        ]
    if server == "hypercorn":  # --workers 0: the application in this process, not in a worker's
        return [sys.executable, "-m", "hypercorn", "--bind", f"{HOST}:{port}", "--workers", "0", *extra, app]
    raise ValueError(server)


async def _answers(port: int) -> None:
    """Return once the server accepts a connection (closed at once), or raise OSError."""
    _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1)
    writer.close()
    await writer.wait_closed()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def measure(
    server: str,
    count: int,
    trace: bool,
    directory: Path,
    freeze_every: int | None = None,
    server_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "BENCH_LAYER": "inprocess",
        "DATABASE_URL": f"sqlite:///{directory}/db.sqlite3",
        "BENCH_MEMSTATS": str(directory / f"{server}.json"),
        "BENCH_TRACEMALLOC": "1" if trace else "0",
        # Off unless asked (it is on by default): the counts are of the sockets' objects before any refreeze.
        "BENCH_GC_FREEZE_EVERY": str(freeze_every or 0),
        # The caller's path first: PYTHONPATH=<an older wsgateway's parent> measures that one.
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
    }
    env.pop("REDIS_URL", None)
    users = max(1, count // 10)
    tokens_path = directory / "tokens.json"
    if not tokens_path.exists():
        subprocess.run(
            [sys.executable, "-m", "bench.prepare", "--users", str(users), "--out", str(tokens_path)],
            cwd=directory, env=env, check=True,
        )  # fmt: skip
    tokens = [token for _, token in json.loads(tokens_path.read_text())][:users]
    port = free_port()
    log = open(directory / f"{server}.log", "ab")
    # Not run from ROOT: python -m puts the working directory ahead of PYTHONPATH.
    command = server_command(server, port, server_args)
    proc = subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=log)
    stats_path = Path(env["BENCH_MEMSTATS"])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                asyncio.run(_answers(port))
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{server} did not start; see {directory}/{server}.log") from None
                time.sleep(0.2)

        async def warm_up() -> None:
            for sock in await open_idle(port, tokens, 10):
                sock.close()

        asyncio.run(warm_up())
        before = ask(proc.pid, stats_path, 0)
        # With the timer: everything alive now frozen, to compare what the closed sockets leave with.
        base = thaw_now(proc.pid, stats_path) if freeze_every else {}
        before_trace = tracemalloc.Snapshot.load(str(stats_path) + ".trace") if trace else None

        traced: list[tracemalloc.Snapshot] = []

        async def hold() -> dict[str, Any]:
            started = time.monotonic()
            opened = await open_idle(port, tokens, count)
            took = time.monotonic() - started
            if freeze_every:
                await asyncio.sleep(freeze_every + 2)  # the sockets have lived through a freeze
            after = await asyncio.to_thread(ask, proc.pid, stats_path, count)
            after["connect_s"] = round(took, 1)
            if trace:
                # Now, with the sockets held: the next ask writes the closed sockets' over it.
                traced.append(tracemalloc.Snapshot.load(str(stats_path) + ".trace"))
            for sock in opened:
                sock.close()
            # What the closed sockets leave that only the cyclic collector frees.
            after["closed"] = await asyncio.to_thread(ask, proc.pid, stats_path, 0, 60 + count / 10)
            if freeze_every:
                # A refreeze after the close: what it left frozen of the closed sockets (reference
                # cycles frozen while the sockets were alive, and what is still alive), then what the
                # hourly thaw leaves of it (only what is still alive).
                await asyncio.sleep(freeze_every + 2)
                after["refrozen"] = await asyncio.to_thread(ask, proc.pid, stats_path, 0)
                after["thawed"] = await asyncio.to_thread(thaw_now, proc.pid, stats_path)
            return after

        after = asyncio.run(hold())
        grown = collections.Counter(after["by_type"]) - collections.Counter(before["by_type"])
        result: dict[str, Any] = {
            "server": server,
            "server_args": " ".join(server_args),
            "sockets": count,
            "rss_kib_per_socket": round((after["rss_kib"] - before["rss_kib"]) / count, 1),
            "tracked_per_socket": round((after["tracked"] - before["tracked"]) / count, 1),
            "tracked_by_type_per_socket": {
                name: round(n / count, 2) for name, n in grown.most_common() if n >= count / 4
            },
            "full_collection_ms": {
                "before": round(before["full_collection_ms"], 1),
                "after": round(after["full_collection_ms"], 1),
            },
            "frozen_at_start_up": before["frozen"],
            # What the cyclic collector freed from the N sockets' close to the end: their cycles.
            "garbage_per_closed_socket": round(
                (after["closed"]["collected"] - after["collected"]) / count, 1
            ),
            # What the collection after the close freed, by type, counted as objects gone (cycles through
            # a suspended generator included, which "collected" above misses).
            "freed_by_type_per_closed_socket": {
                name: round(n / count, 2)
                for name, n in collections.Counter(after["closed"]["freed_by_type"]).most_common()
                if n >= count / 4
            },
            "connect_s": after["connect_s"],
            "traced": trace,
            "gc_freeze_every": freeze_every,
        }
        if freeze_every:
            left, thawed = after["refrozen"], after["thawed"]
            result["frozen_left_per_closed_socket"] = round((left["frozen"] - base["frozen"]) / count, 1)
            result["frozen_left_after_thaw_per_closed_socket"] = round(
                (thawed["frozen"] - base["frozen"]) / count, 1
            )
            kept = collections.Counter(thawed["by_type"]) - collections.Counter(base["by_type"])
            result["left_after_thaw_by_type_per_closed_socket"] = {
                name: round(n / count, 2) for name, n in kept.most_common(10)
            }
            result["rss_kib"] = {
                "before": before["rss_kib"],
                "closed": left["rss_kib"],
                "thawed": thawed["rss_kib"],
            }
        if before_trace is not None:
            (after_trace,) = traced
            by_package = bytes_by_package(before_trace, after_trace)
            result["bytes_per_socket"] = round(sum(by_package.values()) / count)
            result["bytes_per_socket_by_package"] = {name: round(n / count) for name, n in by_package.items()}
        return result
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="daphne", choices=SERVERS)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the server: bytes by package")
    parser.add_argument("--freeze-every", type=int, help="GC_FREEZE_EVERY in the server (default: off)")
    parser.add_argument("--server-args", default="", help="more arguments for the server (split on spaces)")
    args = parser.parse_args()
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="wsgateway-server-memory-") as directory:
        result = measure(
            args.server,
            args.sockets,
            args.trace,
            Path(directory),
            args.freeze_every,
            tuple(args.server_args.split()),
        )
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
