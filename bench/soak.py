"""``make soak``: N authenticated sockets over several server processes on one Redis, for a set time, under
steady ``notify()``, broadcasts and reconnects; then what was lost, duplicated, how late, and what the
servers went through (memory, garbage-collection pauses, resyncs).

    python -m bench.soak [--sockets 2000] [--processes 2] [--per-user 3] [--duration 60] [--rate 200]
                         [--broadcasts 5] [--reconnects 2] [--server uvicorn] [--clients N] [--db auto]

Pieces, all on 127.0.0.1: a redis-server; a database with N / per-user users (PostgreSQL when installed,
else SQLite); ``--processes`` servers of ``bench.soak_asgi`` on wsgateway's Redis layer (each writes its
collections and counters to a file, see bench/soak_asgi.py); client processes of ``bench.soak_client``
(at most 5,000 sockets each), a user's ``--per-user`` sockets spread over the servers; ``bench.worker``
calling ``notify()`` at ``--rate`` a second, round-robin over the users, for ``--duration`` seconds, while
this process calls ``abroadcast()`` ``--broadcasts`` times (through the bench's view) and the clients close
and reopen ``--reconnects`` sockets a second, catching up by ``seq`` as wsgateway.js does.

The verdict is against the database: every notification row of a user must have reached each of the
user's sockets exactly once, live or by catch-up. Push latency is from the ``notify()`` call to arrival,
live pushes only. A broadcast's time is from its frame's making to the last socket that was open
throughout. Every phase is bounded in count and time; Ctrl-C or a failure stops every process started
here. Results: a table on stdout, and JSON at bench-results/soak-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.__main__ import (
    Databases,
    Resources,
    _stop_process,
    bench_env,
    machine_info,
    markdown_table,
    scratch,
)
from bench.client import cpu_seconds, rss_kib
from bench.layers import ROWS
from tests.support.servers import HOST, ROOT, RedisServer, Server, wait_for_port

APPLICATION = "bench.soak_asgi:application"
#: Sockets one client process holds at most (one event loop; the bench's client holds 5,000 well).
PER_CLIENT = 5000
#: Bounds of the arguments: a soak is opt-in, but never unbounded.
MAX_SOCKETS = 40_000
MAX_DURATION = 3600.0
MAX_RATE = 2000.0
#: RSS is sampled this often, seconds.
RSS_EVERY = 5.0
#: The issue's targets (issue 24), checked in the verdict.
TARGET_P99_MS = 500.0
TARGET_BROADCAST_MS = 2000.0


def say(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


# -- servers ------------------------------------------------------------------------------------


def server_command(server: str, port: int) -> list[str]:
    """The command line of one server process serving :data:`APPLICATION` on ``HOST:port``."""
    if server == "daphne":
        # A listen backlog for the connect burst, as bench's daphnes have.
        endpoint = f"tcp:port={port}:interface={HOST}:backlog=2048"
        return [sys.executable, "-m", "daphne", "-e", endpoint, "-v", "0", APPLICATION]
    if server == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port), "--lifespan", "off"),
            *("--backlog", "2048", "--log-level", "warning", "--ws-per-message-deflate", "false"),
            APPLICATION,
        ]
    if server == "hypercorn":
        return [
            sys.executable,
            "-m",
            "hypercorn",
            "--bind",
            f"{HOST}:{port}",
            "--backlog",
            "2048",
            APPLICATION,
        ]
    raise ValueError(f"unknown server {server!r}")


SERVERS = ("daphne", "uvicorn", "hypercorn")


class SoakServer(Server):
    """One server process of the soak, its log and its collections' file in the run's folder."""

    def __init__(self, env: dict[str, str], server: str, index: int, folder: Path) -> None:
        self.program = server
        super().__init__(env, name=f"soak-{server}-{index}")
        self.log_path = folder / f"{self.name}.log"
        self.gc_path = folder / f"{self.name}-gc.jsonl"
        self.env = {**env, "SOAK_GC_FILE": str(self.gc_path)}

    def command(self, *extra_args: str) -> list[str]:
        return server_command(self.program, self.port)

    def start(self, *extra_args: str) -> SoakServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, timeout=60, proc=self.proc)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def read_gc(path: Path, since: float, until: float) -> dict[str, Any]:
    """One server's collections between ``since`` and ``until`` (monotonic), and its last counters."""
    pauses: list[tuple[int, float, float]] = []
    ticks: list[dict[str, Any]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line the killed writer left half-written
            if "gc" in record and since <= record["gc"][2] <= until:
                gen, ms, at = record["gc"]
                pauses.append((int(gen), float(ms), float(at)))
            elif "tick" in record:
                ticks.append(record)
    full = sorted(ms for gen, ms, _ in pauses if gen == 2)
    longest = sorted(pauses, key=lambda p: -p[1])[:5]
    # The counters since the last tick before the run (none: the process's whole life, from zero).
    before = [t for t in ticks if t["tick"] <= since]
    baseline = before[-1]["counters"] if before else {}
    last = ticks[-1] if ticks else None
    counters = {k: v - baseline.get(k, 0) for k, v in last["counters"].items()} if last else {}
    return {
        "full_collections": len(full),
        "full_ms_median": statistics.median(full) if full else None,
        "full_ms_max": full[-1] if full else None,
        "pauses_over_50ms": sum(1 for _, ms, _ in pauses if ms > 50),
        "pause_ms_max": longest[0][1] if longest else None,
        "longest": [[gen, ms, round(at - since, 1)] for gen, ms, at in longest],
        "collections": last["count"] if last else None,
        "collection_ms_total": last["ms"] if last else None,
        "counters_during_run": counters,
        "counters_total": last["counters"] if last else {},
    }


def resync_log_lines(path: Path) -> tuple[int, int]:
    """(outage resyncs, sockets they resynced) as the server's log says (wsgateway.health's warning)."""
    events = sockets = 0
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if "channel layer is back; resyncing" in line:
                events += 1
                try:
                    sockets += int(line.split("resyncing")[1].split()[0])
                except (IndexError, ValueError):
                    pass
    return events, sockets


# -- client processes ---------------------------------------------------------------------------


class ClientProcess:
    """A bench.soak_client process, and a thread reading its JSON lines into a queue."""

    def __init__(self, plan_path: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.soak_client", str(plan_path)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def answer(self, within: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=within)
        except queue.Empty:
            raise RuntimeError(f"a client process did not answer within {within:.0f}s") from None
        if line is None:
            raise RuntimeError(f"a client process exited with {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        _stop_process(self.proc)


# -- the database's truth -----------------------------------------------------------------------


def dump_expected(users_file: Path, out: Path) -> None:
    """``python -m bench.soak expected USERS OUT``: {user id: [seq, ...]} of every notification row of
    the users (bench.settings, DATABASE_URL from the env)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from wsgateway.models import Notification

    users = json.loads(users_file.read_text())
    rows: dict[int, list[int]] = {uid: [] for uid in users}
    for uid, seq in Notification.objects.filter(recipient_id__in=users).values_list("recipient_id", "seq"):
        rows[uid].append(seq)
    out.write_text(json.dumps({uid: sorted(seqs) for uid, seqs in rows.items()}))


def post(port: int, path: str, body: dict[str, Any]) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read())


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop ``proc`` and every process of its group (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the whole group has ended
    _stop_process(proc)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what did not end on SIGTERM
    except ProcessLookupError:
        pass


def broadcast(port: int, entry: list[float]) -> None:
    """POST the bench's broadcast view (one abroadcast()); entry is [round, called at, answered at]."""
    try:
        post(port, "/bench/broadcast/", {"round": int(entry[0])})
    except OSError as exc:  # the sockets' side shows what did not arrive
        say(f"broadcast {int(entry[0]) - 999} failed: {exc!r}")
    entry[2] = time.monotonic()


# -- the run ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=2000, help=f"N, at most {MAX_SOCKETS:,} (2000)")
    parser.add_argument("--processes", type=int, default=2, help="server processes (2)")
    parser.add_argument("--per-user", type=int, default=3, help="sockets of each user, over the servers (3)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of notify() (60)")
    parser.add_argument("--rate", type=float, default=200.0, help="notify() calls a second (200)")
    parser.add_argument("--broadcasts", type=int, default=5, help="abroadcast() calls during the run (5)")
    parser.add_argument("--reconnects", type=float, default=2.0, help="sockets reconnected a second (2)")
    parser.add_argument(
        "--offline", type=float, default=1.0, help="seconds a reconnected socket stays away first (1)"
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="uvicorn",
        help="the ASGI server (uvicorn, as docs/deployment.md recommends)",
    )
    parser.add_argument("--clients", type=int, help=f"client processes (one per {PER_CLIENT:,} sockets)")
    parser.add_argument(
        "--worker", default="2x2", metavar="PxT", help="bench.worker: processes x threads (2x2)"
    )
    parser.add_argument("--db", choices=["auto", "sqlite", "postgres"], default="auto")
    parser.add_argument("--drain", type=float, default=30.0, help="most seconds to wait for late rows (30)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    if not 1 <= args.sockets <= MAX_SOCKETS:
        parser.error(f"--sockets must be 1..{MAX_SOCKETS}")
    if not 1 <= args.per_user <= 20 or args.sockets < args.per_user:
        parser.error("--per-user must be 1..20 (MAX_CONNECTIONS_PER_USER) and at most --sockets")
    if not 1 <= args.processes <= 16:
        parser.error("--processes must be 1..16")
    if not 0 < args.duration <= MAX_DURATION or not 0 < args.rate <= MAX_RATE:
        parser.error(f"--duration must be in (0, {MAX_DURATION:g}], --rate in (0, {MAX_RATE:g}]")
    if not 0 <= args.offline <= 60:
        parser.error("--offline must be 0..60")
    if not 0 <= args.broadcasts <= 100 or not 0 <= args.reconnects <= 100 or not 0 < args.drain <= 600:
        parser.error("--broadcasts 0..100, --reconnects 0..100, --drain (0, 600]")
    args.clients = args.clients or math.ceil(args.sockets / PER_CLIENT)
    if not 1 <= args.clients <= 16 or args.sockets / args.clients > PER_CLIENT * 2:
        parser.error(f"--clients must be 1..16, at most {2 * PER_CLIENT} sockets each")
    try:
        args.worker_processes, args.worker_threads = (int(n) for n in args.worker.lower().split("x"))
    except ValueError:
        parser.error("--worker is PxT, such as 2x2")
    return args


def percentile(ordered: list[float], q: float) -> float | None:
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def run(args: argparse.Namespace, folder: Path, workdir: Path, resources: Resources) -> dict[str, Any]:
    users = args.sockets // args.per_user
    sockets = users * args.per_user
    redis = RedisServer().start()
    resources.add(redis.stop)
    assert redis.proc is not None
    databases = Databases(argparse.Namespace(db=args.db, users=users, connections=users), workdir, resources)
    engine, database_url, tokens = databases.for_row(ROWS["redis"])
    env = bench_env(
        DATABASE_URL=database_url,
        BENCH_LAYER="redis",
        REDIS_URL=redis.url,
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="metrics-", dir=workdir),
    )
    say(f"{args.processes} {args.server} processes on one Redis, {engine} database")
    servers = []
    for i in range(args.processes):
        server = SoakServer(env, args.server, i + 1, folder)
        resources.add(server.stop)
        servers.append(server.start())
    pids = [server.pid for server in servers]
    rss_idle = [rss_kib(pid) for pid in pids]

    # Slot k of user u goes to server (u + k) % processes: a user's sockets on different processes.
    slots = [
        [u * args.per_user + k, int(tokens[u][0]), str(tokens[u][1]), servers[(u + k) % len(servers)].port]
        for u in range(users)
        for k in range(args.per_user)
    ]
    clients: list[ClientProcess] = []
    for c in range(args.clients):
        plan_path = workdir / f"soak-client-{c}.json"
        share = slots[c :: args.clients]
        plan_path.write_text(
            json.dumps(
                {
                    "slots": share,
                    "reconnects_per_s": args.reconnects / args.clients,
                    "offline_s": args.offline,
                    "drain_s": args.drain,
                    "seed": c,
                }
            )
        )
        client = ClientProcess(plan_path, bench_env())
        resources.add(client.stop)
        clients.append(client)
    connect_within = 60 + sockets / 50  # 50 connects a second at the least
    say(
        f"connecting {sockets:,} sockets ({users:,} users x {args.per_user}) "
        f"from {len(clients)} client process(es)"
    )
    started = time.monotonic()
    connected = [client.answer(max(1.0, connect_within - (time.monotonic() - started))) for client in clients]
    connect_s = time.monotonic() - started
    total_connected = sum(c["connected"] for c in connected)
    say(f"{total_connected:,}/{sockets:,} connected in {connect_s:.1f}s")
    time.sleep(2.0)
    rss: list[list[Any]] = []
    rss_connected = [rss_kib(pid) for pid in pids]

    worker = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "bench.worker",
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
            ),
            *("--users", ",".join(str(t[0]) for t in tokens[:users]), "--warmup-user", str(tokens[-1][0])),
            *(f"--processes={args.worker_processes}", f"--threads={args.worker_threads}"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        # A group of its own: the worker forks its producers, which outlive a parent stopped alone.
        start_new_session=True,
    )
    resources.add(lambda: stop_group(worker))
    # CPU over the run, as shares of one core: whether the machine (two cores, shared) was the limit.
    cpu_pids = {"servers": pids, "clients": [c.proc.pid for c in clients], "redis": [redis.proc.pid]}
    cpu0 = {name: sum(cpu_seconds(pid) for pid in group) for name, group in cpu_pids.items()}
    load0 = os.getloadavg()[0]
    go = time.monotonic()
    for client in clients:
        client.send({"go": True})
    # The worker's clock starts once it has loaded Django (a few seconds); broadcasts are spread over
    # the run after that, not at its edges. Any still due when the worker ends are called then.
    start = go + min(5.0, args.duration / 2)
    due = [start + (i + 1) * args.duration / (args.broadcasts + 1) for i in range(args.broadcasts)]
    broadcasts: list[list[float]] = []
    triggers: list[threading.Thread] = []
    next_rss = go
    deadline = go + args.duration + 120
    while worker.poll() is None or due:
        now = time.monotonic()
        if worker.poll() is not None:
            due = [now] * len(due)
        if now > deadline:
            raise RuntimeError(f"the notify() worker did not finish within {args.duration + 120:.0f}s")
        if now >= next_rss:
            rss.append([round(now - go, 1), [rss_kib(pid) for pid in pids]])
            next_rss += RSS_EVERY
        if due and now >= due[0]:
            due.pop(0)
            # On a thread: a server that is slow to answer must not hold back the schedule or the samples.
            entry = [1000.0 + len(broadcasts), now, math.nan]
            broadcasts.append(entry)
            port = servers[(len(broadcasts) - 1) % len(servers)].port
            triggers.append(threading.Thread(target=broadcast, args=(port, entry), daemon=True))
            triggers[-1].start()
            say(f"broadcast {len(broadcasts)} at {now - go:.0f}s")
        if not all(server.alive() for server in servers):
            raise RuntimeError("a server process exited during the run; see its log in " + str(folder))
        time.sleep(0.1)
    produced_until = time.monotonic()
    for trigger in triggers:
        trigger.join(timeout=35)  # post()'s own timeout is 30 s
    cpu: dict[str, Any] = {
        name: round(100 * (sum(cpu_seconds(pid) for pid in group) - cpu0[name]) / (produced_until - go), 1)
        for name, group in cpu_pids.items()
    }
    cpu["loadavg_1min_start_end"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    out, _ = worker.communicate(timeout=30)
    producer = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": "no report"}
    say(f"notify(): {producer.get('sent')} sent at {producer.get('achieved_rate') or 0:.0f}/s")

    users_file, expected_file = workdir / "soak-users.json", workdir / "soak-expected.json"
    users_file.write_text(json.dumps([int(t[0]) for t in tokens[:users]]))
    subprocess.run(
        [sys.executable, "-m", "bench.soak", "expected", str(users_file), str(expected_file)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    for client in clients:
        client.send({"stop": {"expected": str(expected_file), "broadcasts": broadcasts}})
    reports = [client.answer(args.drain + 240) for client in clients]
    ended = time.monotonic()
    rss.append([round(ended - go, 1), [rss_kib(pid) for pid in pids]])

    gcs = [read_gc(server.gc_path, go, ended) for server in servers]
    logged = [resync_log_lines(server.log_path) for server in servers]
    alive = [server.alive() for server in servers]
    result = aggregate(
        args,
        users,
        sockets,
        engine,
        connected,
        connect_s,
        rss_idle,
        rss_connected,
        rss,
        producer,
        reports,
        broadcasts,
        gcs,
        logged,
        alive,
        produced_until - go,
    )
    result["cpu_pct_of_one_core"] = cpu
    return result


def aggregate(
    args: argparse.Namespace,
    users: int,
    sockets: int,
    engine: str,
    connected: list[dict[str, Any]],
    connect_s: float,
    rss_idle: list[int],
    rss_connected: list[int],
    rss: list[list[Any]],
    producer: dict[str, Any],
    reports: list[dict[str, Any]],
    broadcasts: list[list[float]],
    gcs: list[dict[str, Any]],
    logged: list[tuple[int, int]],
    alive: list[bool],
    produced_s: float,
) -> dict[str, Any]:
    latencies = sorted(x for r in reports for x in r["latencies"])
    due = sorted(x for r in reports for x in r["due_latencies"])
    total = {
        key: sum(r[key] for r in reports)
        for key in (
            "expected",
            "lost",
            "lost_while_refused",
            "unexpected",
            "duplicates",
            "overlaps",
            "gaps",
            "live",
            "caught_up",
            "resync_frames",
            "reconnects",
            "reconnect_failures",
            "never_connected",
        )
    }
    rounds = []
    for i, (round_, called, answered) in enumerate(broadcasts):
        parts = [r["broadcasts"][i] for r in reports]
        got = sorted(x for p in parts for x in p["latencies"])
        rounds.append(
            {
                "round": int(round_),
                "sockets": len(got),
                "missed": sum(p["missed"] for p in parts),
                "excluded": sum(p["excluded"] for p in parts),
                "p50_ms": percentile(got, 0.5),
                "last_ms": 1000 * got[-1] if got else None,
                # How long the view's abroadcast() took to answer (the HTTP request included).
                "call_ms": None if math.isnan(answered) else 1000 * (answered - called),
            }
        )
    mid = rss[len(rss) // 2][1] if rss else rss_connected
    end = rss[-1][1] if rss else rss_connected
    resync_counter = sum(g["counters_during_run"].get("sockets.resynced", 0) for g in gcs)
    result: dict[str, Any] = {
        "sockets": sockets,
        "users": users,
        "per_user": args.per_user,
        "server": args.server,
        "processes": args.processes,
        "clients": args.clients,
        "database": engine,
        "duration_s": args.duration,
        "rate": args.rate,
        "produced_s": produced_s,
        "connected": sum(c["connected"] for c in connected),
        "connect_failed": sum(c["failed"] for c in connected),
        "connect_errors": [e for c in connected for e in c["errors"]][:5],
        "connect_s": connect_s,
        "producer": producer,
        **total,
        "server_closes": [r["server_closes"] for r in reports],
        "client_errors": [e for r in reports for e in r["errors"]][:10],
        "lost_examples": [e for r in reports for e in r["lost_examples"]][:10],
        "push_p50_ms": percentile(latencies, 0.5),
        "push_p99_ms": percentile(latencies, 0.99),
        "push_max_ms": 1000 * latencies[-1] if latencies else None,
        "due_p50_ms": percentile(due, 0.5),
        "due_p99_ms": percentile(due, 0.99),
        "broadcasts": rounds,
        "rss_idle_kib": rss_idle,
        "rss_connected_kib": rss_connected,
        "rss_samples": rss,
        "kib_per_socket": (sum(rss_connected) - sum(rss_idle))
        / max(1, sum(c["connected"] for c in connected)),
        "rss_growth_kib": [e - c for e, c in zip(end, rss_connected, strict=True)],
        "rss_growth_second_half_kib": [e - m for e, m in zip(end, mid, strict=True)],
        "gc": gcs,
        "resyncs_counted": resync_counter,
        "resyncs_logged": [list(x) for x in logged],
        "servers_alive": alive,
    }
    last = [r["last_ms"] for r in rounds if r["last_ms"] is not None]
    result["verdict"] = {
        "every_connect_accepted": result["connect_failed"] == 0 and total["reconnect_failures"] == 0,
        "no_loss": total["lost"] == total["lost_while_refused"] == 0,
        "no_duplicate": total["duplicates"] == 0,
        "no_resync": resync_counter == 0 and total["resync_frames"] == 0,
        f"push_p99_under_{TARGET_P99_MS:.0f}ms": (result["push_p99_ms"] or math.inf) < TARGET_P99_MS,
        f"broadcast_under_{TARGET_BROADCAST_MS:.0f}ms": not broadcasts
        or (bool(last) and max(last) < TARGET_BROADCAST_MS and all(r["missed"] == 0 for r in rounds)),
    }
    return result


def _f(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> str:
    r = result
    rows = [
        [
            "sockets (users x per user)",
            f"{r['connected']:,}/{r['sockets']:,} ({r['users']:,} x {r['per_user']})",
        ],
        [
            "servers",
            f"{r['processes']} {r['server']}, one Redis, {r['database']}; {r['clients']} client process(es)",
        ],
        [
            "connect",
            f"{r['connect_s']:.1f} s, {r['connect_failed']} refused (tried again during the run; "
            f"{r['never_connected']} never connected); "
            f"{_f(r['kib_per_socket'], '.1f')} KiB/socket",
        ],
        [
            "notify()",
            f"{_f(r['producer'].get('sent'))} at {_f(r['producer'].get('achieved_rate'), '.0f')}/s "
            f"for {r['duration_s']:g} s ({_f(r['producer'].get('error_count'))} failed)",
        ],
        ["deliveries expected", f"{r['expected']:,} ({r['live']:,} live, {r['caught_up']:,} by catch-up)"],
        [
            "lost / duplicated",
            f"{r['lost']} / {r['duplicates']} (and {r['lost_while_refused']} at slots whose reconnects "
            "were refused to the end)",
        ],
        ["catch-up overlaps, gaps", f"{r['overlaps']} / {r['gaps']}"],
        ["reconnects (failed)", f"{r['reconnects']:,} ({r['reconnect_failures']})"],
        [
            "push p50 / p99 / max",
            f"{_f(r['push_p50_ms'], ',.1f')} / {_f(r['push_p99_ms'], ',.1f')} / "
            f"{_f(r['push_max_ms'], ',.1f')} ms (from notify())",
        ],
        ["push p99 from due time", f"{_f(r['due_p99_ms'], ',.1f')} ms"],
    ]
    for b in r["broadcasts"]:
        rows.append(
            [
                f"broadcast {b['round'] - 999}",
                f"{b['sockets']:,} sockets, last {_f(b['last_ms'], ',.0f')} ms, "
                f"p50 {_f(b['p50_ms'], ',.0f')} ms; {b['missed']} missed, {b['excluded']} reconnecting; "
                f"the call answered in {_f(b.get('call_ms'), ',.0f')} ms",
            ]
        )
    rows.append(
        [
            "resyncs",
            f"{r['resyncs_counted']} counted by the servers, {r['resync_frames']} seen by clients, "
            f"logged {r['resyncs_logged']}",
        ]
    )
    for i, g in enumerate(r["gc"]):
        rows.append(
            [
                f"server {i + 1}: RSS, GC",
                f"RSS {r['rss_connected_kib'][i] // 1024} MiB connected, "
                f"{r['rss_growth_kib'][i]:+,} KiB over the run ({r['rss_growth_second_half_kib'][i]:+,} "
                f"in its 2nd half); {g['full_collections']} full collections (median "
                f"{_f(g['full_ms_median'], ',.0f')} ms, max {_f(g['full_ms_max'], ',.0f')} ms), "
                f"{g['pauses_over_50ms']} pauses > 50 ms",
            ]
        )
    cpu = r.get("cpu_pct_of_one_core", {})
    rows.append(
        [
            "CPU during notify()",
            f"servers {_f(cpu.get('servers'))}%, clients {_f(cpu.get('clients'))}%, "
            f"redis {_f(cpu.get('redis'))}% of one core; load average {cpu.get('loadavg_1min_start_end')}",
        ]
    )
    rows.append(["verdict", ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in r["verdict"].items())])
    return "\n".join(markdown_table(["soak", "result"], rows))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["expected"]:
        dump_expected(Path(argv[1]), Path(argv[2]))
        return 0
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = args.output / f"soak-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    with scratch("wsgateway-soak-") as (workdir, resources):
        try:
            result = run(args, folder, workdir, resources)
        except KeyboardInterrupt:
            say("interrupted; stopping everything")
            return 130
        except (RuntimeError, subprocess.SubprocessError) as exc:  # a server died, a step timed out
            say(f"failed: {exc}; stopping everything")
            return 2
    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = render(result)
    json_path = args.output / f"soak-{stamp}.json"
    json_path.write_text(
        json.dumps(
            {
                "timestamp": stamp,
                "machine": info,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "result": result,
                "table": table,
            },
            indent=1,
        )
    )
    print(table)
    print(f"\nresults: {json_path}\nserver logs and collections: {folder}")
    return 0 if all(result["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
