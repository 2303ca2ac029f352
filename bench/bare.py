"""Each server's own memory per WebSocket, without wsgateway, Channels or Django.

    python -m bench.bare [--sockets 1000] [--servers daphne,uvicorn,...] [--deflate] [--server-args "..."]

Each server of bench/servers.py serves :func:`application`, which accepts a socket, sends it three short
frames (as wsgateway's connect frames) and waits for its close. ``--sockets`` sockets open, 100 at a time,
after 20 that came and went; the serving process's RSS growth over them, per socket, is that server's own
cost of an idle socket, which no application can take back. ``--deflate``: the client offers
permessage-deflate, as browsers do (the benchmark's client does not); a server that accepts it keeps a
compressor and a decompressor per socket. ``--server-args``: more
command-line arguments for each server (``"--ws-per-message-deflate false"``, say), to weigh its options.
Everything listens on 127.0.0.1, and each server is stopped before the next starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.servers import SERVERS, BenchServer, launcher
from tests.support.servers import HOST, ROOT


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    for n in range(3):
        await send({"type": "websocket.send", "text": f'{{"frame": {n}}}'})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def measure(server: BenchServer, sockets: int, deflate: bool) -> float:
    import websockets

    async def one() -> Any:
        ws = await websockets.connect(
            f"ws://{HOST}:{server.port}/",
            proxy=None,
            open_timeout=30,
            ping_interval=None,
            compression="deflate" if deflate else None,
        )
        for _ in range(3):
            await asyncio.wait_for(ws.recv(), 30)
        return ws

    warm = await asyncio.gather(*(one() for _ in range(20)))
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1)
    before = rss_kib(server.pid)
    held: list[Any] = []
    try:
        while len(held) < sockets:
            held += await asyncio.gather(*(one() for _ in range(min(100, sockets - len(held)))))
        await asyncio.sleep(1)
        return (rss_kib(server.pid) - before) / sockets
    finally:
        await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000, help="sockets held, 1..5000 (1000)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, of: %(default)s")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate, as browsers do")
    parser.add_argument("--server-args", default="", help="more arguments for each server (split on spaces)")
    args = parser.parse_args()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    if unknown := [name for name in names if name not in SERVERS]:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    if not 1 <= args.sockets <= 5000:
        parser.error("--sockets must be 1..5000")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    logs = Path(tempfile.mkdtemp(prefix="wsgateway-bare-"))
    offered = ", deflate offered" if args.deflate else ""
    offered += f", {args.server_args}" if args.server_args else ""
    print(f"| server | KiB per idle socket ({args.sockets} sockets{offered}) |")
    print("|---|---|")
    for name in names:
        server = launcher(name, env, f"bare-{name}", logs)
        server.application = "bench.bare:application"
        server.start(*args.server_args.split())
        try:
            kib = asyncio.run(measure(server, args.sockets, args.deflate))
        finally:
            server.stop()
        print(f"| {name} | {kib:.1f} |", flush=True)
    shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
