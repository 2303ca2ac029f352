"""How fast can the benchmark's client receive? Against a server that does nothing but send.

    python -m bench.selftest [--users 1000] [--messages 100]

A bare asyncio server in another process answers the client's handshakes and its fan-out trigger
with pre-encoded frames, shaped like the benchmark's pushes, written as fast as the sockets take
them. The client then runs its fan-out phase against it exactly as against daphne. Its rate here is
the most the client can count; a daphne row far below it, with the client's CPU well under one core,
was measured on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing
import re
import sys
import time
from typing import Any

from bench.client import Client, Plan, raise_fd_limit
from tests.support.servers import HOST, free_port, wait_for_port

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
PAYLOAD = json.loads(
    '{"category":"info","last":{"id":6,"category":"info","label":"Your weekly report is ready.",'
    '"is_read":false,"data":{"report":17},"actions":[{"label":"Open","url":"/reports/2025-01/"}],'
    '"metainfo":{"createdDatetime":"2025-01-01T12:00:00.000000+00:00","changedDatetime":'
    '"2025-01-01T12:00:00.000000+00:00","createdUser":"reports","changedUser":"reports"}},"unread":6}'
)


def frame(text: bytes) -> bytes:
    size = len(text)
    header = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + size.to_bytes(2, "big")
    return header + text


def connect_frames(user_id: int) -> bytes:
    frames = [
        {"channel": "gateway", "payload": {"user": {"id": user_id}, "services": ["notifications"]}},
        {"channel": "notifications", "payload": {"unread": 0}},
    ]
    return b"".join(frame(json.dumps(f).encode()) for f in frames)


def serve(port: int) -> None:
    sockets: dict[int, asyncio.StreamWriter] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a port probe
            writer.close()
            return
        if head.startswith(b"POST"):
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            body = json.loads(await reader.readexactly(length))
            start = time.monotonic()
            prefix = json.dumps({"channel": "notifications", "payload": PAYLOAD}, separators=(",", ":"))[:-2]
            template = prefix.encode() + b',"r":%d,"n":%d,"t":%.9f}}'
            for seq in range(body["m"]):
                for uid in body["users"]:
                    sockets[uid].write(frame(template % (body["round"], seq, time.monotonic())))
                await asyncio.sleep(0)
            answer = json.dumps({"elapsed": time.monotonic() - start}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(answer), answer)
            )
            await writer.drain()
            writer.close()
            return
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", head).group(1)  # type: ignore[union-attr]
        token = re.search(rb"Authorization: Bearer (\S+)", head).group(1)  # type: ignore[union-attr]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        user_id = int(token)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept + connect_frames(user_id)
        )
        sockets[user_id] = writer
        try:
            while await reader.read(65536):
                pass
        finally:
            sockets.pop(user_id, None)
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, HOST, port, backlog=1024)
        async with server:
            await server.serve_forever()

    raise_fd_limit()
    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args()
    raise_fd_limit()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        wait_for_port(port)
        assert server.pid is not None
        plan = Plan(
            ports=[port],
            pids=[server.pid],
            users=[[i, str(i)] for i in range(args.users)],
            connections=args.users,
            fanout_users=args.users,
            messages=args.messages,
            repeat=args.repeat,
            rate=1,
            duration=1,
            e2e="none",
            phases=["fanout"],
        )

        async def run() -> dict[str, Any]:
            return await Client(plan).run()

        result = asyncio.run(run())
    finally:
        server.terminate()
        server.join(5)
    rounds = result["fanout"]
    best = max(rounds, key=lambda r: r["messages_per_s"] or 0)
    summary = {
        "messages_per_s": best["messages_per_s"],
        "client_cpu_pct": best["client_cpu_pct"],
        "sender_cpu_pct": best["server_cpu_pct"][0],
        "exactly_m": all(r["exactly_m"] for r in rounds),
        "users": args.users,
        "messages": args.messages,
    }
    for r in rounds:
        print(
            f"round {r['round']}: {r['received']:,}/{r['expected']:,} in {r['elapsed_s']:.2f}s = "
            f"{r['messages_per_s']:,.0f} msg/s, client CPU {r['client_cpu_pct']:.0f}%, "
            f"sender CPU {r['server_cpu_pct'][0]:.0f}%, exactly M: {r['exactly_m']}",
            file=sys.stderr if args.json else sys.stdout,
        )
    if args.json:
        print(json.dumps(summary))
    sys.exit(0 if summary["exactly_m"] else 1)


if __name__ == "__main__":
    main()
