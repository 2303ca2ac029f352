"""The ASGI servers the benchmark runs its rows on, one launcher each.

Every launcher serves ``bench.asgi:application`` on 127.0.0.1 on a port from the OS, with a listen backlog
of 1024 (a burst of handshakes must queue, not be refused), logging warnings only, and each as a site
would start it otherwise: its own defaults (its event loop included), one worker. :attr:`BenchServer.pid`
is the process that serves the sockets, whose RSS and CPU time the benchmark reads: the server's own under
daphne and uvicorn; its one worker under hypercorn and granian, whose main process only supervises.

Kept free of Django imports, as bench/layers.py: the orchestrator reads it before any settings exist.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.support.servers import HOST, Server

APPLICATION = "bench.asgi:application"
#: The listen backlog of every server (daphne's endpoint, uvicorn's, hypercorn's and granian's flag).
BACKLOG = 1024


@dataclass(frozen=True)
class ServerSpec:
    """One server as the benchmark runs it: the row's name, the program, its WebSocket settings."""

    name: str
    program: str
    #: Arguments that choose the WebSocket implementation or settings (uvicorn's --ws).
    args: tuple[str, ...] = ()
    description: str = ""


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in [
        ServerSpec("daphne", "daphne", description="daphne (Twisted, autobahn)"),
        ServerSpec(
            "uvicorn",
            "uvicorn",
            description="uvicorn --ws auto (websockets-sansio, as websockets is installed), uvloop",
        ),
        ServerSpec(
            "uvicorn-websockets",
            "uvicorn",
            ("--ws", "websockets"),
            "uvicorn --ws websockets (websockets' legacy asyncio protocol, a read queue of 32 messages)",
        ),
        ServerSpec("uvicorn-wsproto", "uvicorn", ("--ws", "wsproto"), "uvicorn --ws wsproto"),
        ServerSpec("hypercorn", "hypercorn", description="hypercorn (wsproto, asyncio's own loop)"),
        ServerSpec(
            "granian",
            "granian",
            description="granian --interface asginl, one worker (Rust: hyper, tungstenite), uvloop",
        ),
    ]
}


class BenchServer(Server):
    """One server process of a row, quiet, its log in the run's results folder."""

    #: True for a server whose main process only supervises, and serves in one child process (its worker).
    supervises = False

    def __init__(self, spec: ServerSpec, env: dict[str, str], name: str, log_dir: Path) -> None:
        super().__init__(env, name)
        self.spec = spec
        self.program = spec.program
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.worker: int | None = None
        #: What it serves: the benchmark's project, or bench.bare's application.
        self.application = APPLICATION

    def command(self, *extra_args: str) -> list[str]:
        return [sys.executable, "-m", *self.arguments(), *self.spec.args, *extra_args, self.application]

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def start(self, *extra_args: str) -> Self:
        super().start(*extra_args)
        if self.supervises:
            self.worker = self._worker_pid()
        return self

    def _worker_pid(self, timeout: float = 20.0) -> int:
        """The main process's one child that serves, besides multiprocessing's resource tracker (hypercorn's).
        The main process binds the port before it starts the worker, so the port answering does not say
        the worker is there."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = [pid for pid in children.read_text().split() if not _is_resource_tracker(pid)]
            if len(workers) == 1:
                return int(workers[0])
            if self.proc.poll() is not None or len(workers) > 1:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} started not one worker within {timeout:g} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        """The process that serves the sockets."""
        if self.worker is not None:
            return self.worker
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid


def _is_resource_tracker(pid: str) -> bool:
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone already
        return True


class BenchDaphne(BenchServer):
    def arguments(self) -> list[str]:
        return ["daphne", "-e", f"tcp:port={self.port}:interface={HOST}:backlog={BACKLOG}", "-v", "0"]


class BenchUvicorn(BenchServer):
    def arguments(self) -> list[str]:
        # --lifespan off: Channels' router has no "lifespan" route (tests/support/servers.Uvicorn). One
        # process: uvicorn serves in its main process unless given --workers.
        return [
            *("uvicorn", "--host", HOST, "--port", str(self.port), "--backlog", str(BACKLOG)),
            *("--lifespan", "off", "--log-level", "warning", "--no-access-log"),
        ]


class BenchHypercorn(BenchServer):
    # Its one worker (-w 1, the default) is a process of its own, started with multiprocessing's spawn.
    supervises = True

    def arguments(self) -> list[str]:
        # Its backlog is 100 unless told; its access log is off unless given a file.
        return [
            *("hypercorn", "--bind", f"{HOST}:{self.port}", "--backlog", str(BACKLOG)),
            *("--log-level", "WARNING"),
        ]


class BenchGranian(BenchServer):
    supervises = True

    def arguments(self) -> list[str]:
        return [
            *("granian", "--interface", "asginl", "--host", HOST, "--port", str(self.port)),
            *("--workers", "1", "--backlog", str(BACKLOG), "--log-level", "warning"),
        ]


LAUNCHERS: dict[str, type[BenchServer]] = {
    "daphne": BenchDaphne,
    "uvicorn": BenchUvicorn,
    "hypercorn": BenchHypercorn,
    "granian": BenchGranian,
}


def launcher(server: str, env: dict[str, str], name: str, log_dir: Path) -> BenchServer:
    """A server of ``SERVERS[server]``, not started."""
    spec = SERVERS[server]
    return LAUNCHERS[spec.program](spec, env, name, log_dir)
