"""The benchmark's WebSocket client: many sockets in one process, cheap enough not to be the bottleneck.

    python -m bench.client PLAN.json   (written by the orchestrator; the result is the last stdout line)

Each socket is a bare asyncio Protocol: the opening handshake carries ``Authorization: Bearer``,
server frames (never masked) are parsed by hand, pings are answered with masked pongs, and of each
text frame only ``"t"``, ``"n"`` and ``"r"`` are read, with byte regexes. Latency is
``time.monotonic()`` at receipt minus ``t``: CLOCK_MONOTONIC is one clock for every process of the
machine. The client's own CPU time over each measured window is reported beside the wall time: a
client using well under one core was waiting for the server, not the other way round.

Phases, in order, on one set of servers: ``connections`` (C sockets, connect rate, server RSS per
socket), then the sockets beyond U are closed; ``fanout`` (repeated); ``broadcast`` (repeated: one
``abroadcast()`` to the U sockets, and as its baseline one push to one user's socket); ``e2e``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import signal
import sys
import time
from array import array
from dataclasses import dataclass, field, replace
from typing import Any

T_RE = re.compile(rb'"t": ?(-?[0-9][0-9.eE+-]*)')
SEQ_RE = re.compile(rb'"n": ?([0-9]+)')
ROUND_RE = re.compile(rb'"r": ?([0-9]+)')
TS_RE = re.compile(rb'"ts": ?(-?[0-9][0-9.eE+-]*)')
#: How every mark the server writes begins (wsgateway.frames.mark, compact JSON).
MARK_PREFIX = b'{"channel":"gateway","payload":{"action":"mark"'

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
monotonic = time.monotonic
#: Round number of the unmeasured warm-up burst.
WARMUP_ROUND = 999
#: Round numbers of the broadcast phase's broadcasts and of their baselines (plus the repetition).
BROADCAST_ROUND = 1000
ONE_USER_ROUND = 2000
#: Keep-alive connections the end-to-end requests share (a request waits for a free one).
HTTP_POOL = 32


def log(message: str) -> None:
    print(f"  [client] {message}", file=sys.stderr, flush=True)


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A masked client frame (pong, close); only ever small."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


# -- accounting ---------------------------------------------------------------------------------


class Phase:
    """Counts messages of one measured window; sockets call :meth:`on_message` for each text frame."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.stray = 0
        self.latencies: array[float] = array("d")
        self.latency = 0.0  # of the message being accounted
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def on_message(self, sock: Socket, payload: bytes, now: float) -> None:
        match = T_RE.search(payload)
        if match is None:
            self.stray += 1
            return
        self.latency = now - float(match.group(1))
        self.latencies.append(self.latency)
        if not self.accept(sock, payload, now):
            return
        self.received += 1
        self.last = now
        if self.received >= self.expected and not self.done.done():
            self.done.set_result(None)

    def accept(self, sock: Socket, payload: bytes, now: float) -> bool:
        return True


class FanoutRound(Phase):
    """Every socket of the round must get seq 0..m-1 of round r exactly once."""

    def __init__(self, sockets: list[Socket], m: int, round_: int) -> None:
        super().__init__(len(sockets) * m)
        self.m = m
        self.round = round_
        for sock in sockets:
            sock.seen = bytearray(m)
            sock.count = 0
            sock.dups = 0

    def accept(self, sock: Socket, payload: bytes, now: float) -> bool:
        r = ROUND_RE.search(payload)
        seq = SEQ_RE.search(payload)
        if r is None or seq is None or int(r.group(1)) != self.round or sock.seen is None:
            self.stray += 1
            return False
        i = int(seq.group(1))
        sock.count += 1
        if i >= self.m:
            self.stray += 1
            return False
        if sock.seen[i]:
            sock.dups += 1
            return False
        sock.seen[i] = 1
        return True


class E2EPhase(Phase):
    """Notification i (data.seq) must reach its one socket exactly once.

    ``t`` is when it was due (open loop: a producer or server falling behind counts), ``ts`` when
    the producer actually sent it (the request written, or notify() called).
    """

    def __init__(self, expected: int) -> None:
        super().__init__(expected)
        self.seen = bytearray(expected)
        self.dups = 0
        self.from_send: array[float] = array("d")
        self.arrivals: list[tuple[int, float]] = []

    def accept(self, sock: Socket, payload: bytes, now: float) -> bool:
        seq = SEQ_RE.search(payload)
        if seq is None:
            self.stray += 1
            return False
        i = int(seq.group(1))
        if i >= self.expected:
            self.stray += 1
            return False
        if self.seen[i]:
            self.dups += 1
            return False
        self.seen[i] = 1
        self.arrivals.append((i, self.latency))
        sent = TS_RE.search(payload)
        if sent is not None:
            self.from_send.append(now - float(sent.group(1)))
        return True


# -- one socket ---------------------------------------------------------------------------------


class Socket(asyncio.Protocol):
    def __init__(self, client: Client, index: int, user_id: int, token: str, port: int) -> None:
        self.client = client
        self.index = index
        self.user_id = user_id
        self.token = token
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.pending = b""
        self.upgraded = False
        self.fragments: list[bytes] | None = None
        self.fragment_text = False
        self.connect_expected = 0
        self.connect_frames = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.error: str | None = None
        # Per fan-out round.
        self.seen: bytearray | None = None
        self.count = 0
        self.dups = 0
        # Flow control, as wsgateway.js does it: each mark echoed as it is read (see on_text).
        self.marks = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        transport.write(
            b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n"
            % (self.port, key, self.token.encode())
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(self.error or f"connection lost: {exc!r}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        pos = 0
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.pending = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.fail(f"handshake refused: {data[:end].splitlines()[0].decode(errors='replace')}")
                return
            self.upgraded = True
            pos = end + 4
        size = len(data)
        while size - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            if b1 & 0x80:  # servers never mask; a masked frame is a protocol error
                self.fail("masked frame from the server")
                return
            end = start + length
            if end > size:
                break
            opcode = b0 & 0x0F
            if opcode == OP_TEXT and b0 & 0x80:
                self.on_text(data[start:end])
            else:
                self.on_control_or_fragment(b0, opcode, data[start:end])
            pos = end
        if pos < size:
            self.pending = data[pos:]

    # frames

    def on_control_or_fragment(self, b0: int, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            if not self.ready.done():
                self.error = (
                    self.error or f"closed by the server with {self.close_code} before its connect frames"
                )
            self.write(client_frame(OP_CLOSE, payload[:2]))
            if self.transport is not None:
                self.transport.close()
        elif opcode in (OP_TEXT, OP_BINARY):  # first fragment
            self.fragments = [payload]
            self.fragment_text = opcode == OP_TEXT
        elif opcode == OP_CONT and self.fragments is not None:
            self.fragments.append(payload)
            if b0 & 0x80:
                message, self.fragments = b"".join(self.fragments), None
                if self.fragment_text:
                    self.on_text(message)

    def on_text(self, payload: bytes) -> None:
        if payload.startswith(MARK_PREFIX):  # one frame a quarter window: the rest pay one compare
            self.ack(payload)
            return
        if self.connect_frames < self.connect_expected or not self.connect_expected:
            self.on_connect_frame(payload)
            return
        self.client.phase.on_message(self, payload, monotonic())

    def on_connect_frame(self, payload: bytes) -> None:
        self.connect_frames += 1
        if self.connect_frames == 1:
            frame = json.loads(payload)
            if "error" in frame:
                self.error = f"refused: {frame['error'].get('code')}"
                return
            # The gateway frame first, then one on-connect frame per service.
            self.connect_expected = 1 + len(frame["payload"]["services"])
        if self.connect_frames == self.connect_expected and not self.ready.done():
            self.ready.set_result(monotonic())

    def ack(self, mark_frame: bytes) -> None:
        """Echo a mark: everything read before it is acknowledged (docs/protocol.md, Flow control)."""
        self.marks += 1
        mark = json.loads(mark_frame)["payload"]["data"]
        ack = {"channel": "gateway", "payload": {"action": "ack", "data": mark}}
        self.write(client_frame(OP_TEXT, json.dumps(ack).encode()))

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self, reason: str) -> None:
        self.error = reason
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()


# -- HTTP/1.1 keep-alive, enough for the bench views --------------------------------------------


class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: Any, within: float) -> tuple[int, Any]:
        async with asyncio.timeout(within):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            data = json.dumps(body).encode()
            self.writer.write(
                b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.port, len(data), data)
            )
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            if "content-length" in headers:
                raw = await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                    chunks.append(await self.reader.readexactly(size + 2))
                    if size == 0:
                        break
                raw = b"".join(chunk[:-2] for chunk in chunks)
            else:
                raw = await self.reader.read()
            if headers.get("connection", "").lower() == "close":
                self.close()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")[:200]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# -- measurements -------------------------------------------------------------------------------


def latency_summary(values: array[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": ordered[-1] * 1000}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class CpuWindow:
    """CPU used by this client, the servers and the backing services, between start() and stop()."""

    def __init__(self, server_pids: list[int], service_pids: dict[str, int] | None = None) -> None:
        self.server_pids = server_pids
        self.service_pids = service_pids or {}

    def start(self) -> CpuWindow:
        self.wall0, self.cpu0 = monotonic(), time.process_time()
        self.server0 = [cpu_seconds(pid) for pid in self.server_pids]
        self.service0 = {name: cpu_seconds(pid) for name, pid in self.service_pids.items()}
        return self

    def stop(self, end: float | None = None) -> dict[str, Any]:
        cpu = time.process_time() - self.cpu0
        server = [
            cpu_seconds(pid) - before for pid, before in zip(self.server_pids, self.server0, strict=True)
        ]
        services = {name: cpu_seconds(pid) - self.service0[name] for name, pid in self.service_pids.items()}
        wall = (end if end is not None else monotonic()) - self.wall0
        wall_now = monotonic() - self.wall0

        def pct(seconds: float) -> float | None:
            return 100 * seconds / wall_now if wall_now > 0 else None

        return {
            "wall_s": wall,
            "client_cpu_s": cpu,
            "client_cpu_pct": pct(cpu),
            "server_cpu_pct": [pct(s) for s in server],
            "service_cpu_pct": {name: pct(s) for name, s in services.items()},
        }


@dataclass
class Plan:
    ports: list[int]
    pids: list[int]
    users: list[list[Any]]  # [user_id, token]
    connections: int
    fanout_users: int
    messages: int
    repeat: int
    rate: float
    duration: float
    e2e: str  # "http", "worker" or "none"
    worker: dict[str, Any] = field(default_factory=dict)  # argv and env for e2e == "worker"
    #: A user with no socket: warm-up notifications (first DB connection, lazy imports) go to them.
    warmup_user: int | None = None
    connect_window: int = 100
    idle_timeout: float = 10.0
    round_timeout: float = 300.0
    phases: list[str] = field(default_factory=lambda: ["connections", "fanout", "e2e"])
    #: Backing services whose CPU is reported beside the servers': {"redis": pid, "postgres": pid}.
    service_pids: dict[str, int] = field(default_factory=dict)
    #: Set by ``--profile``: py-spy samples the servers during each measured phase, into this folder.
    profile_dir: str | None = None
    profile_name: str = "row"


class Profiler:
    """py-spy on every server process during one phase (a no-op without ``profile_dir``)."""

    def __init__(self, plan: Plan, phase: str) -> None:
        self.plan = plan
        self.phase = phase
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Profiler:
        if self.plan.profile_dir is None:
            return self
        py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        for i, pid in enumerate(self.plan.pids):
            output = os.path.join(
                self.plan.profile_dir, f"profile-{self.plan.profile_name}-{self.phase}-{i + 1}.txt"
            )
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--output",
                    output,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        await asyncio.sleep(1.0)  # attached before the clock starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()


class Client:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.loop = asyncio.get_running_loop()
        self.phase: Phase = Phase(0)
        self.sockets: list[Socket] = []

    # connections

    async def open_sockets(self, entries: list[tuple[int, int, str, int]]) -> tuple[list[Socket], list[str]]:
        """Open and authenticate sockets, at most connect_window handshakes in flight."""
        window = asyncio.Semaphore(self.plan.connect_window)
        errors: list[str] = []

        async def one(index: int, user_id: int, token: str, port: int) -> Socket | None:
            async with window:
                sock = Socket(self, index, user_id, token, port)
                try:
                    async with asyncio.timeout(30):
                        await self.loop.create_connection(lambda: sock, "127.0.0.1", port)
                        await sock.ready
                except (OSError, TimeoutError, ConnectionError) as exc:
                    errors.append(f"socket {index}: {sock.error or exc!r}")
                    sock.fail("gave up")
                    return None
                return sock

        results = await asyncio.gather(*(one(*entry) for entry in entries))
        return [sock for sock in results if sock is not None], errors

    def entries(self, count: int, offset: int = 0) -> list[tuple[int, int, str, int]]:
        ports = self.plan.ports
        return [
            (i, int(self.plan.users[i][0]), str(self.plan.users[i][1]), ports[i % len(ports)])
            for i in range(offset, offset + count)
        ]

    async def close_sockets(self, sockets: list[Socket]) -> None:
        for sock in sockets:
            sock.close()
        if sockets:
            await asyncio.wait([sock.lost for sock in sockets], timeout=10)

    async def connections(self) -> dict[str, Any]:
        plan = self.plan
        # Warm the servers up (imports, first database connection, first consumer) before measuring.
        warm, _ = await self.open_sockets(self.entries(min(10, len(plan.users))))
        await self.close_sockets(warm)
        await asyncio.sleep(0.5)
        before = [rss_kib(pid) for pid in plan.pids]
        cpu = CpuWindow(plan.pids, plan.service_pids).start()
        start = monotonic()
        sockets, errors = await self.open_sockets(self.entries(plan.connections))
        end = max((sock.ready.result() for sock in sockets), default=monotonic())
        window = cpu.stop(end)
        await asyncio.sleep(0.5)
        after = [rss_kib(pid) for pid in plan.pids]
        self.sockets = sorted(sockets, key=lambda sock: sock.index)
        growth = sum(after) - sum(before)
        result = {
            "requested": plan.connections,
            "connected": len(sockets),
            "failed": len(errors),
            "errors": errors[:10],
            "elapsed_s": end - start,
            "connect_rate": len(sockets) / (end - start) if end > start else None,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_socket": growth / len(sockets) if sockets else None,
            **window,
        }
        log(
            f"connections: {len(sockets)}/{plan.connections} in {end - start:.2f}s, "
            f"{result['kib_per_socket'] or 0:.1f} KiB/socket, client CPU {window['client_cpu_pct']:.0f}%"
        )
        return result

    async def ensure_fanout_sockets(self) -> list[Socket]:
        """The first U sockets stay for fan-out and end-to-end; the others are closed."""
        users = self.plan.fanout_users
        if not self.sockets:
            self.sockets, errors = await self.open_sockets(self.entries(users))
            if errors:
                log(f"{len(errors)} sockets failed to connect: {errors[:3]}")
        keep = [sock for sock in self.sockets if sock.index < users]
        extra = [sock for sock in self.sockets if sock.index >= users]
        await self.close_sockets(extra)
        if extra:
            await asyncio.sleep(1.0)  # let the servers process the disconnects
        self.sockets = keep
        return keep

    async def wait_phase(self, phase: Phase, producer_done: asyncio.Future[Any] | None = None) -> None:
        """Until all expected messages arrived, or none for idle_timeout after the producer ended."""
        deadline = monotonic() + self.plan.round_timeout
        seen = -1
        quiet_since = monotonic()
        while not phase.done.done() and monotonic() < deadline:
            try:
                await asyncio.wait_for(asyncio.shield(phase.done), 0.5)
            except TimeoutError:
                pass
            now = monotonic()
            if phase.received + phase.stray != seen:
                seen = phase.received + phase.stray
                quiet_since = now
            elif (
                producer_done is None or producer_done.done()
            ) and now - quiet_since > self.plan.idle_timeout:
                break

    # fan-out

    async def fanout(self, sockets: list[Socket], round_: int, messages: int | None = None) -> dict[str, Any]:
        plan = self.plan
        m = plan.messages if messages is None else messages
        user_ids = [sock.user_id for sock in sockets]
        phase = self.phase = FanoutRound(sockets, m, round_)
        http = Http(plan.ports[0])
        cpu = CpuWindow(plan.pids, plan.service_pids).start()
        start = cpu.wall0
        trigger = asyncio.ensure_future(
            http.post("/bench/fanout/", {"m": m, "users": user_ids, "round": round_}, plan.round_timeout)
        )
        await self.wait_phase(phase, trigger)
        end = phase.last or monotonic()
        window = cpu.stop(end)
        try:
            status, answer = await asyncio.wait_for(trigger, 5)
        except (TimeoutError, OSError) as exc:
            status, answer = 0, repr(exc)
        http.close()
        missing = sum(m - sum(sock.seen or b"") for sock in sockets)
        duplicates = sum(sock.dups for sock in sockets)
        wrong = sum(1 for sock in sockets if sock.count != m)
        # Which sockets lost what: {socket index: [server port, messages received, unique]}, the first few.
        short = {
            sock.index: [sock.port, sock.count, sum(sock.seen or b"")]
            for sock in sockets
            if sock.count != m or sock.dups
        }
        elapsed = end - start
        result = {
            "round": round_,
            "sockets": len(sockets),
            "expected": phase.expected,
            "received": phase.received,
            "missing": missing,
            "duplicates": duplicates,
            "stray": phase.stray,
            "sockets_not_exactly_m": wrong,
            "not_exactly_m": dict(list(short.items())[:20]),
            "exactly_m": missing == 0
            and duplicates == 0
            and wrong == 0
            and len(sockets) == plan.fanout_users,
            "elapsed_s": elapsed,
            "messages_per_s": phase.received / elapsed if elapsed > 0 else None,
            "trigger_status": status,
            "trigger": answer,
            **latency_summary(phase.latencies),
            **window,
        }
        self.phase = Phase(0)
        log(
            f"fan-out round {round_}: {phase.received}/{phase.expected} in {elapsed:.2f}s "
            f"= {result['messages_per_s'] or 0:,.0f}/s, p99 {result['p99_ms'] or 0:.0f} ms, "
            f"client CPU {window['client_cpu_pct']:.0f}%"
        )
        return result

    # broadcast

    async def broadcasts(self, sockets: list[Socket]) -> list[dict[str, Any]]:
        """Each repetition: one push to the first socket's user (the baseline: the same frame, one
        socket), then one broadcast to all U sockets; the time from the call until the last socket
        had it. Both warmed up once, unmeasured."""
        rounds = []
        for r in [-1, *range(self.plan.repeat)]:
            one_user = await self.one_frame(sockets[:1], ONE_USER_ROUND + r, "/bench/fanout/")
            everyone = await self.one_frame(sockets, BROADCAST_ROUND + r, "/bench/broadcast/")
            if r >= 0:
                rounds.append({"round": r, "one_user": one_user, "broadcast": everyone})
                log(
                    f"broadcast round {r}: {everyone['received']}/{everyone['expected']} sockets, "
                    f"the last after {everyone['last_ms'] or 0:.1f} ms; "
                    f"one user's push {one_user['last_ms'] or 0:.1f} ms"
                )
        return rounds

    async def one_frame(self, sockets: list[Socket], round_: int, path: str) -> dict[str, Any]:
        """One frame (seq 0 of ``round_``) that every socket of ``sockets`` should get once."""
        phase = self.phase = FanoutRound(sockets, 1, round_)
        body = {"m": 1, "users": [sockets[0].user_id], "round": round_}
        http = Http(self.plan.ports[0])
        trigger = asyncio.ensure_future(http.post(path, body, self.plan.round_timeout))
        await self.wait_phase(phase, trigger)
        try:
            status, _ = await asyncio.wait_for(trigger, 5)
        except (TimeoutError, OSError) as exc:
            status = 0
            log(f"{path} failed: {exc!r}")
        http.close()
        self.phase = Phase(0)
        return {
            "expected": phase.expected,
            "received": phase.received,
            "duplicates": sum(sock.dups for sock in sockets),
            "trigger_status": status,
            # "t" is the view's clock as it made the frame: the latest latency is the last socket's.
            "last_ms": 1000 * max(phase.latencies) if phase.latencies else None,
            "p50_ms": latency_summary(phase.latencies)["p50_ms"],
        }

    # end-to-end

    async def e2e(self, sockets: list[Socket]) -> dict[str, Any]:
        plan = self.plan
        total = int(plan.rate * plan.duration)
        user_ids = [sock.user_id for sock in sockets]
        if plan.e2e == "http" and plan.warmup_user is not None:
            http = Http(plan.ports[0])
            for i in range(5):
                await http.post(
                    "/bench/notify/",
                    {"user": plan.warmup_user, "t": monotonic(), "ts": monotonic(), "n": i},
                    30,
                )
            http.close()
        http_capacity = await self.http_capacity(min(total, 1000)) if plan.e2e == "http" else None
        phase = self.phase = E2EPhase(total)
        cpu = CpuWindow(plan.pids, plan.service_pids).start()
        producer: dict[str, Any] = {}
        if plan.e2e == "http":
            done = asyncio.ensure_future(self.paced_requests(total, user_ids, producer))
        else:
            done = asyncio.ensure_future(self.run_worker(user_ids, producer))
        await self.wait_phase(phase, done)
        window = cpu.stop(phase.last or None)
        try:  # the producer's report: answers to requests whose pushes already arrived
            await asyncio.wait_for(asyncio.shield(done), 30)
        except TimeoutError:
            done.cancel()
        await asyncio.gather(done, return_exceptions=True)
        result = {
            "mode": plan.e2e,
            "rate": plan.rate,
            "duration_s": plan.duration,
            "expected": total,
            "received": phase.received,
            "missing": total - phase.received,
            "duplicates": phase.dups,
            "stray": phase.stray,
            "producer": producer,
            "http_capacity": http_capacity,
            **latency_summary(phase.latencies),
            **{f"from_send_{k}": v for k, v in latency_summary(phase.from_send).items()},
            # The slowest notifications: [seq, ms from due time]; where in the run they were says why.
            "slowest": [
                [i, round(1000 * latency, 1)]
                for i, latency in sorted(phase.arrivals, key=lambda a: -a[1])[:10]
            ],
            **window,
        }
        self.phase = Phase(0)
        log(
            f"end-to-end ({plan.e2e}): {phase.received}/{total}, p50 {result['p50_ms'] or 0:.1f} ms, "
            f"p99 {result['p99_ms'] or 0:.1f} ms, client CPU {window['client_cpu_pct']:.0f}%"
        )
        return result

    async def http_capacity(self, requests: int) -> dict[str, Any]:
        """The same daphne and middleware answering a view that does nothing, as fast as it can
        (closed loop on HTTP_POOL connections): the most requests/s any view could be paced at."""
        https = [Http(self.plan.ports[0]) for _ in range(HTTP_POOL)]
        statuses: dict[int, int] = {}
        left = requests

        async def loop(http: Http) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                status, _ = await http.post("/bench/noop/", {}, self.plan.round_timeout)
                statuses[status] = statuses.get(status, 0) + 1

        start = monotonic()
        try:
            await asyncio.gather(*(loop(http) for http in https))
        finally:
            for http in https:
                http.close()
        elapsed = monotonic() - start
        result = {"requests": requests, "statuses": statuses, "requests_per_s": requests / elapsed}
        log(f"HTTP capacity (a view that does nothing): {result['requests_per_s']:,.0f} requests/s")
        return result

    async def paced_requests(self, total: int, user_ids: list[int], report: dict[str, Any]) -> None:
        """POST /bench/notify/ at plan.rate per second, on at most HTTP_POOL keep-alive connections.

        Open loop: each notification carries its scheduled time as "t", so a server that falls
        behind shows as latency, including the time a request waited here for a free connection.
        """
        plan = self.plan
        idle: asyncio.Queue[Http] = asyncio.Queue()
        opened = 0
        errors: list[str] = []
        statuses: dict[int, int] = {}
        max_lag = 0.0
        tasks: set[asyncio.Task[None]] = set()

        async def one(i: int, due: float) -> None:
            nonlocal opened, max_lag
            if idle.empty() and opened < HTTP_POOL:
                opened += 1
                http = Http(plan.ports[0])
            else:
                http = await idle.get()
            max_lag = max(max_lag, monotonic() - due)
            try:
                status, _ = await http.post(
                    "/bench/notify/",
                    {"user": user_ids[i % len(user_ids)], "t": due, "ts": monotonic(), "n": i},
                    plan.round_timeout,
                )
                statuses[status] = statuses.get(status, 0) + 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(repr(exc))
                http.close()
            idle.put_nowait(http)

        start = monotonic() + 0.01
        for i in range(total):
            due = start + i / plan.rate
            delay = due - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        scheduled_by = monotonic()
        await asyncio.gather(*tasks)
        finished = monotonic()
        while not idle.empty():
            idle.get_nowait().close()
        report.update(
            sent=total,
            statuses=statuses,
            errors=errors[:5],
            error_count=len(errors),
            connections=opened,
            send_s=scheduled_by - start,
            achieved_rate=total / (finished - start),
            max_lag_ms=max_lag * 1000,
        )

    async def run_worker(self, user_ids: list[int], report: dict[str, Any]) -> None:
        plan = self.plan
        argv = [
            *plan.worker["argv"],
            "--rate",
            str(plan.rate),
            "--duration",
            str(plan.duration),
            "--users",
            ",".join(map(str, user_ids)),
        ]
        if plan.warmup_user is not None:
            argv += ["--warmup-user", str(plan.warmup_user)]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=plan.worker["env"],
            cwd=plan.worker.get("cwd"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # A group of its own, killed whole below: the worker's forked producers outlived a kill of
            # the worker alone (an interrupted bench left them sending until their duration ran out).
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), plan.duration + 120)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        lines = out.decode().strip().splitlines()
        try:
            report.update(json.loads(lines[-1]))
        except (IndexError, ValueError):
            report.update(error=f"worker exited with {proc.returncode}: {err.decode()[-500:]}")

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        result: dict[str, Any] = {}
        if "connections" in plan.phases:
            async with Profiler(plan, "connections"):
                result["connections"] = await self.connections()
        if {"fanout", "e2e", "broadcast"} & set(plan.phases):
            sockets = await self.ensure_fanout_sockets()
            result["fanout_sockets"] = len(sockets)
            if "fanout" in plan.phases:
                # Unmeasured: the first burst after the connect test pays for one-time costs.
                result["fanout_warmup"] = await self.fanout(sockets, WARMUP_ROUND, messages=1)
                result["fanout"] = []
                for r in range(plan.repeat):
                    async with Profiler(
                        plan if r == plan.repeat - 1 else replace(plan, profile_dir=None), "fanout"
                    ):
                        result["fanout"].append(await self.fanout(sockets, r))
            if "broadcast" in plan.phases and sockets:
                result["broadcast"] = await self.broadcasts(sockets)
            if "e2e" in plan.phases and plan.e2e != "none":
                async with Profiler(plan, "e2e"):
                    result["e2e"] = await self.e2e(sockets)
        await self.close_sockets(self.sockets)
        return result


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def amain(plan: Plan) -> dict[str, Any]:
    return await Client(plan).run()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.client PLAN.json")
    with open(sys.argv[1]) as f:
        plan = Plan(**json.load(f))
    limit = raise_fd_limit()
    if plan.connections + 64 > limit:
        sys.exit(f"RLIMIT_NOFILE is {limit}: too low for {plan.connections} sockets")
    # SIGTERM from the orchestrator unwinds like Ctrl-C: asyncio.run cancels the tasks, and the
    # end-to-end worker this process started is killed in run_worker's finally.
    signal.signal(signal.SIGTERM, _interrupt)
    result = asyncio.run(amain(plan))
    result["fd_limit"] = limit
    print(json.dumps(result))


if __name__ == "__main__":
    main()
