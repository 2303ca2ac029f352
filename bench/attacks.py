"""The attack rows' client: one user attacks one server process while another user's pushes are timed.

    python -m bench.attacks PLAN.json   (written by the orchestrator; the result is the last stdout line)

Both rows first time another user's pushes with no attack (the baseline), then the same during the
attack, on the same server: notify() at ``other_rate`` per second through ``POST /bench/notify/`` (the
in-process end-to-end path of bench.client), received on that user's socket. Latency is receipt minus
the time the request was written ("from send"), and minus the time it was due (open loop).

``flood``: each attacking user's socket sends ``list`` requests of 100 notifications as fast as the
server takes them (the writer waits while asyncio's write buffer is over its high-water mark); when the
server closes it, or refuses the handshake, that user opens another at once, as a hostile client would
(it ignores the pause a 4429 asks for), so the flood lasts the whole window. Every answer is counted: a
real reply (processed), ``rate_limited``, or another error; frames written but never answered were
dropped by the server after a close, or were still in flight.

``slow-reader``: the attacker's socket (SO_RCVBUF of 4 KiB) stops reading once connected; it sends the
gateway's ping, a text frame, every few seconds, which also keeps the server from pinging it. Meanwhile the
fan-out view pushes ``pushes`` notification-shaped frames (about 400 bytes) to that user at
``push_rate`` a second. Afterwards the socket reads again, for a bounded time: what reached it, and the
close frame if the server sent one (the push stamped last before it says when).

The server's RSS (VmRSS of /proc/<pid>/status) is read before and after the attack, and every 100 ms
during it (the peak).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from bench.client import (
    MARK_PREFIX,
    OP_CLOSE,
    OP_TEXT,
    T_RE,
    Client,
    E2EPhase,
    Http,
    Plan,
    Socket,
    client_frame,
    cpu_seconds,
    latency_summary,
    log,
    monotonic,
)

HOST = "127.0.0.1"
CODE_RE = re.compile(rb'"code": ?"([a-z_]+)"')
#: The flood's request: the largest page of the notifications service.
LIST_FRAME = b'{"channel":"notifications","payload":{"action":"list","data":{"limit":100}},"id":%d}'
#: The gateway's own ping (docs/protocol.md): a text frame, so daphne counts the socket as alive.
PING_FRAME = b'{"channel":"gateway","payload":{"action":"ping"}}'
#: Most frames one flood writes, whatever its duration (about 30,000 a second were written on 2 cores).
MAX_FLOOD_FRAMES = 2_000_000
#: Frames the flooder builds and writes at once.
FLOOD_BATCH = 64
#: The slow reader's receive buffer: the kernel holds little, the server's buffers hold the rest.
SLOW_RCVBUF = 4096
#: Seconds between the slow reader's pings (daphne pings a socket silent for 20 s).
SLOW_PING_EVERY = 3.0
#: Pushes per request to the fan-out view, in the slow-reader row.
PUSH_CHUNK = 250


@dataclass
class AttackPlan:
    attack: str  # "flood" or "slow-reader"
    port: int
    pid: int
    #: [user_id, token]: the attacker, the other user, and a user without a socket for warm-up.
    attacker: list[Any]
    other: list[Any]
    warmup: list[Any]
    #: Seconds of the attack, and of the baseline before it.
    duration: float
    baseline: float
    #: flood: every attacking user, [user_id, token] each (the attacker alone when empty).
    attackers: list[list[Any]] = field(default_factory=list)
    #: flood: handshakes a second that reach daphne, all attackers together (a proxy's per-IP limit on
    #: connects, emulated: the client waits for its turn instead of being refused by the proxy); None: all.
    connect_rate: float | None = None
    #: flood: bytes a second each attacking socket writes at most (a proxy's per-connection limit on what
    #: a client sends, emulated: the proxy would read no faster); None: as fast as the kernel takes them.
    upload_rate: float | None = None
    #: notify() a second to the other user, in both windows.
    other_rate: float = 20.0
    #: flood: notifications made for the attacker before, so that each list has a full page to read.
    seed: int = 100
    #: slow-reader: frames pushed to the attacker, and how fast.
    pushes: int = 20000
    push_rate: float = 4000.0
    #: slow-reader: the longest the attacker reads at the end.
    read_timeout: float = 20.0


def frame_to_server(payload: bytes) -> bytes:
    """A masked client text frame, masked with int XOR (client_frame's loop is too slow for a flood)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | OP_TEXT, 0x80 | size])
    else:
        header = bytes([0x80 | OP_TEXT, 0x80 | 126]) + size.to_bytes(2, "big")
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + masked


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the process started) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1])
    return values


class RssSampler:
    """VmRSS of a process every 100 ms while it runs: the peak of the window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, memory_kib(self.pid)["VmRSS"])
            await asyncio.sleep(0.1)

    def __enter__(self) -> RssSampler:
        self.peak = memory_kib(self.pid)["VmRSS"]
        self.task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
        self.peak = max(self.peak, memory_kib(self.pid)["VmRSS"])


# -- the sockets --------------------------------------------------------------------------------


class FloodStats:
    def __init__(self) -> None:
        self.written_frames = 0
        self.unsent_frames = 0  # still in the client's buffer when the socket ended
        self.processed = 0
        self.rate_limited = 0
        self.other_errors: dict[str, int] = {}
        self.close_codes: dict[str, int] = {}
        self.connections: list[dict[str, Any]] = []
        #: Handshakes the server answered with a close before the connect frames (a cool-down).
        self.refused_connects = 0
        self.refused_codes: dict[str, int] = {}


class Turns:
    """Handshakes let through at ``rate`` a second, one after another (None: all at once), as a proxy's
    ``limit_req`` without a burst lets one IP's through; the proxy refuses the others itself, which
    costs daphne nothing, so here they simply wait."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.next = monotonic()

    async def wait(self, end: float) -> bool:
        """Wait for the next turn; False when it comes after ``end``."""
        if self.rate is None:
            return True
        turn, self.next = self.next, max(self.next, monotonic()) + 1 / self.rate
        if turn > end:
            return False
        await asyncio.sleep(max(0.0, turn - monotonic()))
        return True


class Flooder(Socket):
    """Counts the answers to its frames by kind; pauses its writer while the buffer is full."""

    #: A typical frame's size, to count the frames left unsent in the buffer.
    frame_size = len(frame_to_server(LIST_FRAME % 100000))

    def __init__(self, client: Client, user: list[Any], port: int, stats: FloodStats) -> None:
        super().__init__(client, 0, int(user[0]), str(user[1]), port)
        self.stats = stats
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed_at: float | None = None  # when its close frame was read

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()  # the writer sees the loss
        super().connection_lost(exc)

    def on_text(self, payload: bytes) -> None:
        if not self.ready.done():
            super().on_text(payload)
            return
        if b'"error"' not in payload:
            self.stats.processed += 1
            return
        match = CODE_RE.search(payload)
        code = match.group(1).decode() if match else "?"
        if code == "rate_limited":
            self.stats.rate_limited += 1
        else:
            self.stats.other_errors[code] = self.stats.other_errors.get(code, 0) + 1

    def on_control_or_fragment(self, b0: int, opcode: int, payload: bytes) -> None:
        if opcode == OP_CLOSE and self.ready.done():
            # Answer and drop the connection at once, frames still buffered included.
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self.closed_at = monotonic()
            self.write(client_frame(OP_CLOSE, payload[:2]))
            self.drop()
            return
        super().on_control_or_fragment(b0, opcode, payload)

    def drop(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            unsent = self.transport.get_write_buffer_size()
            self.stats.unsent_frames += round(unsent / self.frame_size) if unsent else 0
            self.transport.abort()


class SlowReader(Socket):
    """Counts the frames and bytes it reads, and the push stamp of the last frame it read.

    The attack pauses its reading once it is connected, and resumes it at the end.
    """

    def __init__(self, client: Client, user: list[Any], port: int) -> None:
        super().__init__(client, 0, int(user[0]), str(user[1]), port)
        self.frames = 0
        self.bytes = 0
        self.last_t: float | None = None  # the push stamp of the last frame before the close

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            self.bytes += len(data)
        super().data_received(data)

    def on_text(self, payload: bytes) -> None:
        if not self.ready.done():
            super().on_text(payload)
            return
        if payload.startswith(MARK_PREFIX):  # read at the end only: it acknowledges nothing
            return
        self.frames += 1
        match = T_RE.search(payload)
        if match is not None:
            self.last_t = float(match.group(1))


async def connect(sock: Socket, rcvbuf: int | None = None) -> float:
    """Open and authenticate ``sock``; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = monotonic()
    async with asyncio.timeout(30):
        if rcvbuf is None:
            await loop.create_connection(lambda: sock, HOST, sock.port)
        else:
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
            raw.setblocking(False)
            await loop.sock_connect(raw, (HOST, sock.port))
            await loop.create_connection(lambda: sock, sock=raw)
        await sock.ready
    return monotonic() - start


# -- the attacks --------------------------------------------------------------------------------


class Attacks:
    def __init__(self, plan: AttackPlan) -> None:
        self.plan = plan
        # bench.client's Client does the other user's part: its socket, the paced notify() requests.
        self.client = Client(
            Plan(
                ports=[plan.port],
                pids=[plan.pid],
                users=[plan.other],
                connections=1,
                fanout_users=1,
                messages=1,
                repeat=1,
                rate=plan.other_rate,
                duration=plan.baseline,
                e2e="http",
                idle_timeout=5.0,
                round_timeout=max(60.0, 4 * plan.duration),
            )
        )

    async def other_user(self, seconds: float, sockets: list[Socket]) -> dict[str, Any]:
        """notify() to the other user at other_rate for ``seconds``; its pushes' latency."""
        total = max(1, round(self.plan.other_rate * seconds))
        phase = self.client.phase = E2EPhase(total)
        producer: dict[str, Any] = {}
        done = asyncio.ensure_future(
            self.client.paced_requests(total, [sock.user_id for sock in sockets], producer)
        )
        await self.client.wait_phase(phase, done)
        await asyncio.gather(done, return_exceptions=True)
        return {
            "expected": total,
            "received": phase.received,
            "duplicates": phase.dups,
            "from_send": latency_summary(phase.from_send),
            "from_due": latency_summary(phase.latencies),
            "producer_errors": producer.get("error_count"),
            "achieved_rate": producer.get("achieved_rate"),
        }

    async def notify(self, user_id: int, count: int) -> None:
        """``count`` notify() calls for one user, one after another (warm-up, the flood's page)."""
        http = Http(self.plan.port)
        try:
            for i in range(count):
                now = monotonic()
                body = {"user": user_id, "t": now, "ts": now, "n": 1_000_000 + i}
                await http.post("/bench/notify/", body, 30)
        finally:
            http.close()

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        await self.notify(int(plan.warmup[0]), 5)  # first database connection, lazy imports
        other = (0, int(plan.other[0]), str(plan.other[1]), plan.port)
        others, errors = await self.client.open_sockets([other])
        if errors:
            raise RuntimeError(f"the other user's socket: {errors}")
        result: dict[str, Any] = {"attack": plan.attack, "duration_s": plan.duration}
        if plan.attack == "flood" and plan.seed:
            for attacker in plan.attackers or [plan.attacker]:
                await self.notify(int(attacker[0]), plan.seed)
        log(f"{plan.attack}: baseline, the other user's pushes for {plan.baseline:g} s")
        cpu_before, started = cpu_seconds(plan.pid), monotonic()
        result["baseline"] = await self.other_user(plan.baseline, others)
        result["server_cpu_pct_baseline"] = (
            100 * (cpu_seconds(plan.pid) - cpu_before) / (monotonic() - started)
        )
        attack = self.flood if plan.attack == "flood" else self.slow_reader
        before = memory_kib(plan.pid)["VmRSS"]
        # The server's CPU time in the window, a steadier measure of what the attack cost it than a p99 on a
        # shared machine (the baseline's is the same measure with no attack).
        cpu_before, started = cpu_seconds(plan.pid), monotonic()
        with RssSampler(plan.pid) as sampler:
            during, details = await asyncio.gather(self.other_user(plan.duration, others), attack())
        result["server_cpu_pct"] = 100 * (cpu_seconds(plan.pid) - cpu_before) / (monotonic() - started)
        result.update(details)
        result["during"] = during
        result["rss_kib"] = {
            "before": before,
            "after": details.pop("rss_after_kib"),
            "peak": sampler.peak,
            "hwm": memory_kib(plan.pid)["VmHWM"],
        }
        await self.client.close_sockets(others)
        base, under = result["baseline"]["from_send"]["p99_ms"], during["from_send"]["p99_ms"]
        result["p99_ratio"] = under / base if base and under else None
        log(
            f"{plan.attack}: other user's p99 from send {base or 0:.1f} ms without, {under or 0:.1f} ms "
            f"during; server RSS {before / 1024:.1f} -> {result['rss_kib']['after'] / 1024:.1f} MiB "
            f"(peak {sampler.peak / 1024:.1f})"
        )
        return result

    async def flood(self) -> dict[str, Any]:
        plan = self.plan
        attackers = plan.attackers or [plan.attacker]
        stats = FloodStats()
        start = monotonic()
        end = start + plan.duration
        connect_errors: list[str] = []
        budget = [MAX_FLOOD_FRAMES]  # frames left, shared by the attacking users
        turns = Turns(plan.connect_rate)
        await asyncio.gather(
            *(self.flood_as(user, stats, end, budget, connect_errors, turns) for user in attackers)
        )
        elapsed = min(monotonic(), end) - start  # the flood's window, not the wait for its last answers
        rss_after = memory_kib(plan.pid)["VmRSS"]
        accepted = stats.written_frames - stats.unsent_frames
        answered = stats.processed + stats.rate_limited + sum(stats.other_errors.values())
        closed = [c for c in stats.connections if c["close_code"] is not None]
        result = {
            "attackers": len(attackers),
            "refused_connects": stats.refused_connects,
            "refused_codes": stats.refused_codes,
            "elapsed_s": elapsed,
            "frames_accepted": accepted,
            "accepted_per_s": accepted / elapsed,
            "processed": stats.processed,
            "processed_per_s": stats.processed / elapsed,
            "rate_limited": stats.rate_limited,
            "rate_limited_per_s": stats.rate_limited / elapsed,
            "other_errors": stats.other_errors,
            "unanswered": accepted - answered,
            "connections": len(stats.connections),
            "reconnects": max(0, len(stats.connections) - 1),
            "connect_errors": connect_errors[:5],
            "close_codes": stats.close_codes,
            "first_close_after_ms": closed[0]["open_ms"] if closed else None,
            "median_open_ms": sorted(c["open_ms"] for c in stats.connections)[len(stats.connections) // 2]
            if stats.connections
            else None,
            "connections_detail": stats.connections[:20],
            "rss_after_kib": rss_after,
        }
        log(
            f"flood: {accepted} frames accepted in {elapsed:.1f} s ({result['accepted_per_s']:,.0f}/s), "
            f"{stats.processed} processed, {stats.rate_limited} rate_limited, {result['reconnects']} "
            f"reconnects ({stats.refused_connects} refused at the handshake), closes {stats.close_codes}"
        )
        return result

    async def flood_as(
        self,
        user: list[Any],
        stats: FloodStats,
        end: float,
        budget: list[int],
        connect_errors: list[str],
        turns: Turns,
    ) -> None:
        """One attacking user's flood until ``end``: a socket, then another at once whenever the server
        closes it or refuses the handshake (at once, or at the proxy's pace: ``turns``)."""
        plan = self.plan
        n = 0
        while monotonic() < end and budget[0] > 0:
            if not await turns.wait(end):
                break
            sock = Flooder(self.client, user, plan.port, stats)
            try:
                connect_s = await connect(sock)
            except (OSError, TimeoutError, ConnectionError) as exc:
                if sock.close_code is not None:  # refused with a close: straight back, as the red team
                    stats.refused_connects += 1
                    key = str(sock.close_code)
                    stats.refused_codes[key] = stats.refused_codes.get(key, 0) + 1
                    await asyncio.wait([sock.lost], timeout=5)
                    continue
                connect_errors.append(repr(sock.error or exc))
                sock.fail("gave up")
                await asyncio.sleep(0.05)
                continue
            opened = monotonic()
            written = written_bytes = 0
            while monotonic() < end and budget[0] > 0 and not sock.lost.done():
                if sock.transport is None or sock.transport.is_closing():
                    break
                if not sock.writable.is_set():
                    await sock.writable.wait()
                    continue
                batch = b"".join(frame_to_server(LIST_FRAME % (n + i)) for i in range(FLOOD_BATCH))
                if plan.upload_rate:  # the proxy reads no faster than this
                    due = opened + (written_bytes + len(batch)) / plan.upload_rate
                    if due > monotonic():
                        await asyncio.sleep(due - monotonic())
                sock.write(batch)
                written_bytes += len(batch)
                n += FLOOD_BATCH
                written += FLOOD_BATCH
                budget[0] -= FLOOD_BATCH
                await asyncio.sleep(0)  # let the answers in
            stats.written_frames += written
            if not sock.lost.done():  # the window ended with the socket open: answers in flight count
                await asyncio.sleep(0.5)
                sock.drop()
            await asyncio.wait([sock.lost], timeout=5)
            stats.connections.append(
                {
                    "connect_ms": round(1000 * connect_s, 1),
                    "open_ms": round(1000 * ((sock.closed_at or monotonic()) - opened), 1),
                    "frames_written": written,
                    "close_code": sock.close_code,
                }
            )
            key = str(sock.close_code) if sock.close_code is not None else "none (window ended)"
            stats.close_codes[key] = stats.close_codes.get(key, 0) + 1

    async def slow_reader(self) -> dict[str, Any]:
        plan = self.plan
        sock = SlowReader(self.client, plan.attacker, plan.port)
        await connect(sock, rcvbuf=SLOW_RCVBUF)
        assert sock.transport is not None
        sock.transport.pause_reading()
        sock.bytes = 0  # the connect frames are not the attack's
        start = monotonic()
        end = start + plan.duration
        # Unread, the close frame stays behind the pushes; the TCP state shows when the server let go.
        tcp: dict[str, Any] = {"state": "ESTABLISHED", "changed_at_s": None}

        last_ping = start

        async def watch() -> None:
            nonlocal last_ping
            while True:
                state = tcp_state(sock)
                if state != tcp["state"]:
                    tcp.update(state=state, changed_at_s=monotonic() - start)
                if state == "ESTABLISHED" and monotonic() - last_ping >= SLOW_PING_EVERY:
                    last_ping = monotonic()
                    sock.write(frame_to_server(PING_FRAME))  # not once the server closed: a reset drops
                await asyncio.sleep(0.1)  # what the socket holds, the close frame too

        watcher = asyncio.ensure_future(watch())
        http = Http(plan.port)
        pushed = pushed_bytes = 0
        statuses: dict[int, int] = {}
        chunk = 0
        try:
            while pushed < plan.pushes and monotonic() < end:
                due = start + pushed / plan.push_rate
                if due > monotonic():
                    await asyncio.sleep(due - monotonic())
                m = min(PUSH_CHUNK, plan.pushes - pushed)
                status, answer = await http.post(
                    "/bench/fanout/", {"m": m, "users": [sock.user_id], "round": chunk}, plan.duration + 30
                )
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200 and isinstance(answer, dict):
                    pushed += answer["sent"]
                    pushed_bytes += answer["sent"] * answer["frame_bytes"]
                chunk += 1
            push_s = monotonic() - start
            if monotonic() < end:  # the other user's window goes on; so does the silent socket
                await asyncio.sleep(end - monotonic())
        finally:
            http.close()
            watcher.cancel()
        rss_after = memory_kib(plan.pid)["VmRSS"]
        # Bytes the kernel holds on the server's side (not in the server's RSS) and on the reader's.
        queues = tcp_queues(plan.port, sock.transport.get_extra_info("sockname")[1])
        # Now read what reached the socket, until nothing came for a second, for at most read_timeout.
        read_start = monotonic()
        sock.transport.resume_reading()
        last = -1
        while monotonic() - read_start < plan.read_timeout and not sock.lost.done() and sock.frames != last:
            last = sock.frames
            await asyncio.wait([sock.lost], timeout=1.0)
        read_s = monotonic() - read_start
        lost = sock.lost.done()
        closed = sock.close_code is not None
        sock.close()
        result = {
            "pushed": pushed,
            "push_s": push_s,
            "push_per_s": pushed / push_s if push_s > 0 else None,
            "bytes_pushed": pushed_bytes,
            "trigger_statuses": statuses,
            "received_at_end": sock.frames,
            "bytes_received_at_end": sock.bytes,
            "read_s": read_s,
            "close_code": sock.close_code,
            "closed_by_server": closed,
            "connection_lost_while_reading": lost,
            # The push stamped last before the close frame: the close came after it.
            "closed_after_push_s": (sock.last_t - start) if closed and sock.last_t is not None else None,
            "server_send_queue_bytes": queues[0],
            "client_receive_queue_bytes": queues[1],
            "tcp_state": tcp["state"],
            "tcp_state_changed_at_s": tcp["changed_at_s"],
            "rss_after_kib": rss_after,
        }
        log(
            f"slow-reader: {pushed} pushed in {push_s:.1f} s, {sock.frames} read at the end in "
            f"{read_s:.1f} s, close code {sock.close_code}, TCP {tcp['state']}"
        )
        return result


#: Linux's TCP states (include/net/tcp_states.h), by number.
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}


def tcp_queues(server_port: int, client_port: int) -> tuple[int | None, int | None]:
    """(the server end's send queue, the client end's receive queue) of one loopback connection,
    in bytes, from /proc/net/tcp: what the kernel holds of the pushes, outside the server's memory."""
    send = receive = None
    try:
        with open("/proc/net/tcp") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
                tx, rx = (int(n, 16) for n in fields[4].split(":"))
                if (local, remote) == (server_port, client_port):
                    send = tx
                elif (local, remote) == (client_port, server_port):
                    receive = rx
    except OSError:
        pass
    return send, receive


def tcp_state(sock: Socket) -> str:
    """The client end's TCP state: CLOSE_WAIT once the server closed, CLOSE after a reset."""
    if sock.transport is None:
        return "CLOSE"
    raw = sock.transport.get_extra_info("socket")
    if raw is None:
        return "CLOSE"
    try:
        info = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return "CLOSE"
    return TCP_STATES.get(info[0], str(info[0]))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.attacks PLAN.json")
    with open(sys.argv[1]) as f:
        plan = AttackPlan(**json.load(f))
    signal.signal(signal.SIGTERM, _interrupt)

    async def amain() -> dict[str, Any]:
        return await Attacks(plan).run()

    print(json.dumps(asyncio.run(amain())))


if __name__ == "__main__":
    main()
