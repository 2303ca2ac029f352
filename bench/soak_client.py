"""The soak's client process: holds its share of the sockets, reconnects some, and checks every ``seq``.

    python -m bench.soak_client PLAN.json   (started by bench/soak.py, which talks to it on stdin/stdout)

One *slot* is one page of one user: a socket that the reconnects replace, with a cursor that outlives
them, as ``wsgateway.js`` keeps one (docs/protocol.md, "Keeping up"). A push whose ``last.seq`` is the
cursor plus one moves it; one past a gap keeps the push and asks ``sync`` from the cursor; after a
reconnect, a connect frame whose ``seq`` is past the cursor asks ``sync``, as after a resync its ``missed``
does. Every ``seq`` a slot is given is kept, with how it came (live or by catch-up), so that the end can say,
against the database's rows: lost (a row of the user that never reached the slot), duplicated (one ``seq``
pushed live twice), and overlaps (a catch-up and a push both brought one, which the protocol expects and a
client drops by ``seq``).

Conversation with the orchestrator, one JSON line each way: the client prints ``{"connected": ...}`` once
its sockets are open; ``{"go": true}`` starts the reconnects; ``{"stop": {...}}`` (the expected rows'
file, the broadcasts' call times) ends them, waits for what is still due (bounded), and prints the report.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import MARK_PREFIX, OP_TEXT, Client, Plan, Socket, client_frame, monotonic, raise_fd_limit

#: A socket that is not open and authenticated within this long is a failed connect.
CONNECT_TIMEOUT = 30.0
#: Attempts of one reconnect before the slot is counted as given up.
RECONNECT_ATTEMPTS = 5


def log(message: str) -> None:
    print(f"  [soak-client] {message}", file=sys.stderr, flush=True)


@dataclass
class SoakPlan:
    #: [slot index, user id, token, port]
    slots: list[list[Any]]
    reconnects_per_s: float
    #: Seconds a reconnected slot stays away between its close and its new socket (a network blip):
    #: what was pushed meanwhile must come back by catch-up.
    offline_s: float = 1.0
    connect_window: int = 100
    #: Most seconds the drain waits for rows still due after the stop.
    drain_s: float = 30.0
    seed: int = 0


@dataclass(slots=True)
class Slot:
    """One page of one user, across its sockets: the cursor, and every ``seq`` it was given and how.

    The rules are docs/protocol.md's ("Keeping up"): a push at the cursor plus one moves it; a push past a
    gap is kept and asks a ``sync`` from the cursor; a catch-up (a sync's page, a resync's ``missed``)
    fills in. A ``seq`` given twice is a duplicate when both were pushes, an overlap otherwise.
    """

    index: int
    user_id: int
    token: str
    port: int
    cursor: int = -1
    #: The cursor of the slot's first socket (-1: it never had one): the rows after it are the slot's due.
    base: int = -1
    #: seq -> how it came: "live" or "sync"
    got: dict[int, str] = field(default_factory=dict)
    duplicates: int = 0
    overlaps: int = 0
    gaps: int = 0
    #: A sync asked and not yet answered in full: no second one meanwhile.
    syncing: bool = False
    socket: SoakSocket | None = None
    #: (ready at, [closed at or None], {broadcast round: latency}) of each of the slot's sockets.
    connections: list[tuple[float, list[float | None], dict[int, float]]] = field(default_factory=list)

    def take(self, seq: int, how: str) -> None:
        before = self.got.get(seq)
        if before is None:
            self.got[seq] = how
        elif before == "live" and how == "live":
            self.duplicates += 1
        else:
            self.overlaps += 1
        while self.cursor + 1 in self.got:
            self.cursor += 1

    def pushed(self, seq: int) -> int | None:
        """A live push of ``seq``; returns the ``since`` of the sync to ask, if one is due."""
        gap = seq > self.cursor + 1 and seq not in self.got
        self.take(seq, "live")
        if not gap:
            return None
        self.gaps += 1
        return self.ask()

    def caught_up(self, seqs: list[int], has_more: bool, seq: int | None) -> int | None:
        """A page of catch-up; returns the ``since`` of the next page, if there is more."""
        for one in seqs:
            self.take(one, "sync")
        self.syncing = False
        return self.ask(max(self.cursor, seq or 0)) if has_more else None

    def opened(self, start: int | None) -> int | None:
        """A new socket's connect frame said the user's latest is ``start``; returns the ``since`` of the
        sync to ask, if the slot is behind it."""
        if self.cursor < 0:
            self.cursor = self.base = start or 0  # a new page starts at the user's latest (docs/protocol.md)
            return None
        return self.ask() if (start or 0) > self.cursor else None

    def ask(self, since: int | None = None) -> int | None:
        if self.syncing:
            return None
        self.syncing = True
        return self.cursor if since is None else since

    def missing(self, rows: list[int]) -> set[int]:
        """The user's rows after the slot's first socket opened that never reached it (none, for a slot
        that never had a socket: its failed connects are counted apart)."""
        if self.base < 0:
            return set()
        return {seq for seq in rows if seq > self.base} - self.got.keys()


class SoakSocket(Socket):
    """bench.client's socket, whose frames after the connect frames go to its slot."""

    def __init__(self, runner: Runner, slot: Slot) -> None:
        super().__init__(runner.client, slot.index, slot.user_id, slot.token, slot.port)
        self.runner = runner
        self.slot = slot
        self.start_seq: int | None = None
        self.closing = False
        self.broadcasts: dict[int, float] = {}
        self.closed_at: list[float | None] = [None]

    def on_connect_frame(self, payload: bytes) -> None:
        frame = json.loads(payload)
        if frame.get("channel") == "notifications":
            self.start_seq = frame["payload"].get("seq")
        super().on_connect_frame(payload)

    def on_text(self, payload: bytes) -> None:
        if payload.startswith(MARK_PREFIX):
            self.ack(payload)
            return
        if not self.ready.done():
            self.on_connect_frame(payload)
            return
        self.runner.on_frame(self, json.loads(payload), monotonic())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_at[0] = monotonic()
        super().connection_lost(exc)
        if self.ready.done() and not self.closing:
            self.runner.server_closed(self)

    def sync(self, since: int | None) -> None:
        if since is None:
            return
        frame = {
            "channel": "notifications",
            "id": f"s{since}",
            "payload": {"action": "sync", "data": {"since": since}},
        }
        self.write(client_frame(OP_TEXT, json.dumps(frame).encode()))


class Runner:
    def __init__(self, plan: SoakPlan) -> None:
        self.plan = plan
        # bench.client's Client only as the sockets' owner (its loop); its phases are not used.
        self.client = Client(
            Plan(
                ports=[],
                pids=[],
                users=[],
                connections=0,
                fanout_users=0,
                messages=0,
                repeat=0,
                rate=1,
                duration=1,
                e2e="none",
            )
        )
        self.slots = [Slot(int(i), int(uid), str(token), int(port)) for i, uid, token, port in plan.slots]
        self.latencies: list[float] = []  # from notify() called to arrival, live pushes
        self.due_latencies: list[float] = []  # from when the producer was due to call it
        self.resync_frames = 0
        self.server_closes: dict[str, int] = {}
        self.reconnects = 0
        self.reconnect_failures = 0
        self.errors: list[str] = []
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.random = random.Random(plan.seed)
        #: Handshakes of reconnects in flight at once, as connect_all's.
        self.window = asyncio.Semaphore(plan.connect_window)

    # frames

    def on_frame(self, sock: SoakSocket, frame: dict[str, Any], now: float) -> None:
        slot = sock.slot
        channel = frame.get("channel")
        payload = frame.get("payload")
        if "error" in frame:  # a sync refused (rate_limited, ...): the next gap or reconnect asks again
            self.errors.append(f"slot {slot.index}: {frame['error']}")
            slot.syncing = False
            return
        if not isinstance(payload, dict):
            return
        if channel == "gateway":
            if payload.get("resync"):
                self.resync_frames += 1
            return
        if channel != "notifications":
            return
        if "r" in payload:  # a broadcast (bench.views.bench_payload)
            sock.broadcasts.setdefault(int(payload["r"]), now - float(payload["t"]))
            return
        if "notifications" in payload or "missed" in payload:  # a sync's page, a resync's connect frame
            items = payload.get("notifications") or payload.get("missed") or []
            seqs = [int(item["seq"]) for item in items]
            # A sync's "seq" is where the cursor may move; a resync frame's is the user's latest.
            where = payload.get("seq") if "notifications" in payload else None
            sock.sync(slot.caught_up(seqs, bool(payload.get("has_more")), where))
            return
        last = payload.get("last")
        if not isinstance(last, dict) or "seq" not in last:
            return
        data = last.get("data") or {}
        if "ts" in data:
            self.latencies.append(now - float(data["ts"]))
            self.due_latencies.append(now - float(data["t"]))
        sock.sync(slot.pushed(int(last["seq"])))

    # sockets

    async def open(self, slot: Slot) -> SoakSocket:
        sock = SoakSocket(self, slot)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self.client.loop.create_connection(lambda: sock, "127.0.0.1", slot.port)
                ready_at = await sock.ready
        except BaseException:
            sock.closing = True
            sock.fail("gave up")
            raise
        slot.socket = sock
        slot.connections.append((ready_at, sock.closed_at, sock.broadcasts))
        sock.sync(slot.opened(sock.start_seq))
        return sock

    async def connect_all(self) -> dict[str, Any]:
        window = asyncio.Semaphore(self.plan.connect_window)
        failed: list[str] = []

        async def one(slot: Slot) -> None:
            async with window:
                try:
                    await self.open(slot)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    failed.append(f"slot {slot.index}: {exc!r}")

        start = monotonic()
        await asyncio.gather(*(one(slot) for slot in self.slots))
        return {
            "connected": len(self.slots) - len(failed),
            "failed": len(failed),
            "errors": failed[:5],
            "elapsed_s": monotonic() - start,
        }

    async def reconnect(self, slot: Slot, reason: str) -> None:
        old = slot.socket
        slot.socket = None
        if old is not None:
            old.closing = True
            old.close()
            try:
                await asyncio.wait_for(asyncio.shield(old.lost), 10)
            except TimeoutError:
                old.fail("no close within 10 s")
            await asyncio.sleep(self.plan.offline_s)
        for attempt in range(RECONNECT_ATTEMPTS):
            try:
                async with self.window:  # the retries of refused first connects come all at once
                    await self.open(slot)
                self.reconnects += 1
                return
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.errors.append(
                    f"reconnect ({reason}) of slot {slot.index}, attempt {attempt + 1}: {exc!r}"
                )
                await asyncio.sleep(1.0)
        self.reconnect_failures += 1

    def server_closed(self, sock: SoakSocket) -> None:
        code = str(sock.close_code)
        self.server_closes[code] = self.server_closes.get(code, 0) + 1
        if not self.stopping and sock.slot.socket is sock:
            self.spawn(self.reconnect(sock.slot, f"server closed {code}"))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reconnect_loop(self) -> None:
        rate = self.plan.reconnects_per_s
        if rate <= 0:
            return
        start = monotonic()
        i = 0
        while not self.stopping:
            i += 1
            delay = start + i / rate - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping:
                return
            slot = self.random.choice(self.slots)
            if slot.socket is not None and not slot.syncing:
                self.spawn(self.reconnect(slot, "planned"))

    # the end

    async def drain(self, expected: dict[int, list[int]]) -> None:
        """Until every slot holds its user's rows, or nothing came for 5 s, or drain_s passed."""
        deadline = monotonic() + self.plan.drain_s
        last_total, quiet_since = -1, monotonic()
        while monotonic() < deadline:
            total = sum(len(slot.got) for slot in self.slots)
            if all(set(expected.get(slot.user_id, ())) <= slot.got.keys() for slot in self.slots):
                return
            if total != last_total:
                last_total, quiet_since = total, monotonic()
            elif monotonic() - quiet_since > 5 and not self.tasks:
                return
            await asyncio.sleep(0.25)

    def report(self, expected: dict[int, list[int]], broadcasts: list[list[float]]) -> dict[str, Any]:
        lost = refused = 0
        examples: list[str] = []
        unexpected = 0
        for slot in self.slots:
            rows = [seq for seq in expected.get(slot.user_id, []) if slot.base >= 0 and seq > slot.base]
            missing = slot.missing(rows)
            if slot.socket is None:  # its reconnects were refused to the end: what it missed says that
                refused += len(missing)
                continue
            lost += len(missing)
            unexpected += len(slot.got.keys() - set(rows))
            if missing and len(examples) < 10:
                examples.append(
                    f"slot {slot.index} (user {slot.user_id}, port {slot.port}): {sorted(missing)[:5]}"
                )
        ways = [how for slot in self.slots for how in slot.got.values()]
        rounds = []
        for round_, called, _answered in broadcasts:
            got: list[float] = []
            missed = excluded = 0
            for slot in self.slots:
                for ready_at, closed_at, seen in slot.connections:
                    if ready_at >= called or (closed_at[0] is not None and closed_at[0] < called):
                        continue  # not open when the broadcast was called
                    if int(round_) in seen:
                        got.append(seen[int(round_)])
                    elif closed_at[0] is None:
                        missed += 1
                    else:
                        excluded += 1  # closed by a reconnect before it arrived: no catch-up for broadcasts
            rounds.append(
                {
                    "round": int(round_),
                    "latencies": [round(x, 5) for x in got],
                    "missed": missed,
                    "excluded": excluded,
                }
            )
        return {
            "slots": len(self.slots),
            "expected": sum(
                sum(1 for seq in expected.get(slot.user_id, ()) if slot.base >= 0 and seq > slot.base)
                for slot in self.slots
            ),
            "never_connected": sum(1 for slot in self.slots if slot.base < 0),
            "lost": lost,
            "lost_while_refused": refused,
            "lost_examples": examples,
            "unexpected": unexpected,
            "duplicates": sum(slot.duplicates for slot in self.slots),
            "overlaps": sum(slot.overlaps for slot in self.slots),
            "gaps": sum(slot.gaps for slot in self.slots),
            "live": ways.count("live"),
            "caught_up": ways.count("sync"),
            "resync_frames": self.resync_frames,
            "reconnects": self.reconnects,
            "reconnect_failures": self.reconnect_failures,
            "server_closes": self.server_closes,
            "errors": self.errors[:10],
            "latencies": [round(x, 5) for x in self.latencies],
            "due_latencies": [round(x, 5) for x in self.due_latencies],
            "broadcasts": rounds,
        }


def load_expected(path: Path) -> dict[int, list[int]]:
    """{user id: [seq, ...]}: the database's rows, which bench.soak wrote once the producer ended."""
    return {int(uid): seqs for uid, seqs in json.loads(path.read_text()).items()}


async def read_command(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise SystemExit("the orchestrator went away")
    command: dict[str, Any] = json.loads(line)
    return command


async def amain(plan: SoakPlan) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    runner = Runner(plan)
    print(json.dumps(await runner.connect_all()), flush=True)
    await read_command(reader)  # go
    for slot in runner.slots:  # a first connect that failed is tried again, as a page's would be
        if slot.socket is None:
            runner.spawn(runner.reconnect(slot, "first connect failed"))
    reconnects = asyncio.ensure_future(runner.reconnect_loop())
    stop = (await read_command(reader))["stop"]
    runner.stopping = True
    await reconnects
    if runner.tasks:
        await asyncio.wait(set(runner.tasks), timeout=RECONNECT_ATTEMPTS * (CONNECT_TIMEOUT + 1))
    expected = load_expected(Path(stop["expected"]))
    await runner.drain(expected)
    result = runner.report(expected, stop["broadcasts"])
    for slot in runner.slots:
        if slot.socket is not None:
            slot.socket.closing = True
    await runner.client.close_sockets([slot.socket for slot in runner.slots if slot.socket is not None])
    print(json.dumps(result), flush=True)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.soak_client PLAN.json")
    with open(sys.argv[1]) as f:
        plan = SoakPlan(**json.load(f))
    limit = raise_fd_limit()
    if len(plan.slots) + 64 > limit:
        sys.exit(f"RLIMIT_NOFILE is {limit}: too low for {len(plan.slots)} sockets in one process")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(amain(plan))
    except KeyboardInterrupt:  # stopped by the orchestrator (Ctrl-C, a failure): quietly
        sys.exit(130)


if __name__ == "__main__":
    main()
