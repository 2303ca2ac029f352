"""``make bench``: wsgateway's push path on each channel layer, side by side, on this machine.

    python -m bench [--users 1000] [--messages 20] [--connections 5000] [--rate 500] [--duration 5]
                    [--repeat 3] [--attack-duration 10] [--pushes 20000] [--only ROW,ROW] [--quick]
                    [--output bench-results]

Rows (see bench/layers.py): ceiling, stock-inmemory, inprocess and inprocess-nolimits (the limits at
their largest values) on one daphne process; redis-core, redis-pubsub and redis on two daphne processes
sharing one Redis (sockets split across both, pushes triggered on the first). For each row, on fresh
servers: C sockets connect (connect rate, server memory per socket), U of them stay; fan-out (M pushes
to each of U users, --repeat times, medians reported); end-to-end (notifications created at --rate/s
for --duration s until received). Then the attack rows, flood and slow-reader, on one daphne each
(bench/attacks.py): another user's push latency alone and during --attack-duration s of attack, and
the server's memory. Then the server rows (bench/servers.py): per ASGI server (daphne, uvicorn and its
WebSocket implementations, hypercorn, granian), the phases and both attacks on wsgateway's in-process
layer in one process, so that only the server differs; ``--only uvicorn`` runs uvicorn's three rows.

Everything listens on 127.0.0.1, every load is bounded in count and time, and every process started
here is stopped on the way out, Ctrl-C included. Results: a table on stdout, and JSON and a PNG under
bench-results/<timestamp>/, with a copy of the JSON at bench-results/latest.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.attacks import AttackPlan
from bench.client import HTTP_POOL, Plan
from bench.layers import ROWS, SERVER_GROUPS, Row, availability
from bench.servers import SERVERS, BenchServer, launcher
from tests.support.postgres import PostgresServer, create_database
from tests.support.servers import ROOT, RedisServer, project_env

QUICK = {
    "users": 20,
    "messages": 3,
    "connections": 50,
    "rate": 50.0,
    "duration": 1.0,
    "repeat": 1,
    "attack_duration": 2.0,
    "pushes": 500,
}
DEFAULTS = {
    "users": 1000,
    "messages": 20,
    "connections": 5000,
    "rate": 500.0,
    "duration": 5.0,
    "repeat": 3,
    "attack_duration": 10.0,
    "pushes": 20000,
}
PHASES = ("connections", "fanout", "e2e", "broadcast")
MAX_CONNECTIONS = 5000
#: Most notifications the slow-reader row pushes to the socket that does not read.
MAX_PUSHES = 200_000
#: notify() calls a second to the other user of an attack row, with and without the attack.
OTHER_RATE = 20.0
#: A client using more than this share of one core may have been the bottleneck.
CLIENT_CPU_LIMIT = 80.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Resources:
    """Everything started here, stopped in reverse order by close(), whatever happened."""

    def __init__(self) -> None:
        self.stops: list[Callable[[], None]] = []

    def add(self, stop: Callable[[], None]) -> None:
        self.stops.append(stop)

    def close(self) -> None:
        while self.stops:
            stop = self.stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                say(f"bench: cleanup step failed: {exc!r}")


@contextmanager
def scratch(prefix: str) -> Iterator[tuple[Path, Resources]]:
    """A scratch directory and the :class:`Resources` of a run, closed on the way out, whatever happened.

    The directory is in memory-backed /dev/shm when there is one: SQLite there, as PostgreSQL runs with
    fsync=off, for a run measures the push path, not the disk. SIGINT and SIGTERM raise KeyboardInterrupt
    meanwhile, so that both stop the run and everything it started, even one started with SIGINT ignored
    (a background job).
    """
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=shm if os.access(shm, os.W_OK) else None))
    resources = Resources()
    resources.add(lambda: shutil.rmtree(workdir, ignore_errors=True))
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield workdir, resources
    finally:
        resources.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- arguments ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--users", type=int, help=f"U: sockets (one per user) for fan-out ({DEFAULTS['users']})"
    )
    parser.add_argument(
        "--messages", type=int, help=f"M: pushes to each user per round ({DEFAULTS['messages']})"
    )
    parser.add_argument(
        "--connections",
        type=int,
        help=f"C: sockets for the connect test, at most {MAX_CONNECTIONS} ({DEFAULTS['connections']})",
    )
    parser.add_argument(
        "--rate", type=float, help=f"end-to-end notifications per second ({DEFAULTS['rate']:g})"
    )
    parser.add_argument("--duration", type=float, help=f"end-to-end seconds ({DEFAULTS['duration']:g})")
    parser.add_argument(
        "--worker",
        default="2x2",
        metavar="PxT",
        help="the end-to-end notify() worker of the Redis rows: P processes of T threads (2x2)",
    )
    parser.add_argument(
        "--repeat", type=int, help=f"fan-out rounds per row; the median is shown ({DEFAULTS['repeat']})"
    )
    parser.add_argument(
        "--attack-duration",
        type=float,
        help="seconds of each attack row's attack; its baseline lasts half as long "
        f"({DEFAULTS['attack_duration']:g})",
    )
    parser.add_argument(
        "--pushes",
        type=int,
        help=f"slow-reader: notifications pushed to the socket that does not read ({DEFAULTS['pushes']})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke: " + ", ".join(f"{k} {v:g}" for k, v in QUICK.items()),
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated rows, of: {', '.join(ROWS)}; a server's name ({', '.join(SERVERS)}) "
        "runs its phases' row and its two attack rows",
    )
    parser.add_argument(
        "--no-server-attacks",
        action="store_true",
        help="a server's name in --only runs its phases' row alone",
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated, of: {', '.join(PHASES)}"
    )
    parser.add_argument(
        "--db",
        choices=["auto", "sqlite", "postgres"],
        default="auto",
        help="database of the Redis rows: auto = PostgreSQL when installed, else SQLite "
        "(in-process rows always use SQLite)",
    )
    parser.add_argument(
        "--redis-url",
        help="use this Redis (with a fresh key prefix per row) instead of starting a redis-server per row",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench-results",
        help="results go to OUTPUT/<timestamp>/, and OUTPUT/latest.json",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the daphne processes with py-spy (pip install py-spy) during each measured phase "
        "(the last fan-out round only); collapsed stacks go to "
        "<results>/profile-<row>-<phase>-<daphne>.txt",
    )
    parser.add_argument(
        "--connect-window",
        type=int,
        default=100,
        help="handshakes in flight at once in the connect test (100)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="a round ends when nothing arrived for this long after the trigger returned",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    asked = [name.strip() for name in (args.only or ",".join(ROWS)).split(",") if name.strip()]
    unknown = [name for name in asked if name not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; rows are {', '.join(ROWS)}")
    # A server's name brings its attack rows with it (SERVER_GROUPS), unless --no-server-attacks.
    args.rows = []
    for name in asked:
        group = SERVER_GROUPS.get(name, [name])[: 1 if args.no_server_attacks else None]
        args.rows += [row for row in group if row not in args.rows]
    args.phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    if bad := [phase for phase in args.phases if phase not in PHASES]:
        parser.error(f"unknown phase(s) {', '.join(bad)}")
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be 1..{MAX_CONNECTIONS}")
    if args.users < 1 or args.messages < 1 or args.repeat < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--users, --messages, --repeat, --rate and --duration must be positive")
    if args.attack_duration <= 0 or not 1 <= args.pushes <= MAX_PUSHES:
        parser.error(f"--attack-duration must be positive, --pushes 1..{MAX_PUSHES}")
    try:
        args.worker_processes, args.worker_threads = (int(n) for n in args.worker.lower().split("x"))
    except ValueError:
        parser.error("--worker is PxT, such as 2x2")
    if args.worker_processes < 1 or args.worker_threads < 1:
        parser.error("--worker needs at least one process of one thread")
    if args.profile and not Path(sys.executable).with_name("py-spy").exists():
        parser.error(f"--profile needs py-spy: {sys.executable} -m pip install py-spy")
    if args.users > args.connections and "connections" in args.phases:
        args.connections = args.users  # the fan-out sockets are the first U of the connect test's
    return args


# -- servers and databases ----------------------------------------------------------------------


def bench_env(**extra: str) -> dict[str, str]:
    env = project_env(**extra)
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    env.pop("DJANGO_DEBUG", None)
    return env


def prepare_database(database_url: str, users: int, workdir: Path) -> list[list[Any]]:
    """Migrate, create the users in bulk, return [[user_id, bearer token], ...]."""
    out = workdir / f"tokens-{uuid.uuid4().hex[:8]}.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.prepare", "--users", str(users), "--out", str(out)],
        cwd=ROOT,
        env=bench_env(DATABASE_URL=database_url, BENCH_LAYER="stock-inmemory"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.prepare failed:\n{result.stdout}\n{result.stderr}")
    tokens: list[list[Any]] = json.loads(out.read_text())
    return tokens


class Databases:
    """The SQLite file of the in-process rows and the database of the Redis rows, made on first use."""

    def __init__(self, args: argparse.Namespace, workdir: Path, resources: Resources) -> None:
        self.args = args
        self.workdir = workdir
        self.resources = resources
        self.made: dict[str, tuple[str, list[list[Any]]]] = {}
        self.users = max(args.users, args.connections) + 10

    def for_row(self, row: Row) -> tuple[str, str, list[list[Any]]]:
        """(engine, DATABASE_URL, tokens)."""
        engine = "sqlite"
        if row.kind == "redis" and self.args.db != "sqlite":
            if PostgresServer.available():
                engine = "postgres"
            elif self.args.db == "postgres":
                raise RuntimeError("--db postgres: PostgreSQL is not installed")
        if engine not in self.made:
            say(f"bench: preparing a {engine} database with {self.users} users")
            if engine == "sqlite":
                url = f"sqlite:///{self.workdir / 'bench.sqlite3'}"
            else:
                server_url = os.environ.get("WSGATEWAY_TEST_POSTGRES_URL")
                if not server_url:
                    # Beside the work folder (memory-backed /dev/shm when there is one): a shared
                    # machine's disk stalls showed up as end-to-end latency; the push path is measured.
                    server = PostgresServer(parent=self.workdir.parent).start()
                    self.resources.add(server.stop)
                    server_url = server.server_url
                url = create_database(server_url)
            self.made[engine] = (url, prepare_database(url, self.users, self.workdir))
        url, tokens = self.made[engine]
        return engine, url, tokens


# -- one row ------------------------------------------------------------------------------------


def run_row(row: Row, args: argparse.Namespace, databases: Databases, out_dir: Path) -> dict[str, Any]:
    engine, database_url, tokens = databases.for_row(row)
    resources = Resources()
    try:
        extra = {"DATABASE_URL": database_url, "BENCH_LAYER": row.name}
        service_pids: dict[str, int] = {}
        if row.kind == "redis":
            urls = []
            if args.redis_url:
                urls.append(args.redis_url)
                extra["BENCH_REDIS_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}"
            while len(urls) < row.redis_nodes:  # fresh ones per row: no groups or queues left by another
                redis = RedisServer().start()
                resources.add(redis.stop)
                if redis.proc is not None:
                    service_pids["redis" if not urls else f"redis-{len(urls) + 1}"] = redis.proc.pid
                urls.append(redis.url)
            extra["REDIS_URL"] = ",".join(urls)  # several nodes: bench.layers.layer_config splits them
            # Two processes, so prometheus-client's multiprocess mode, as docs/metrics.md deploys it: each
            # sample is written to a file this row's processes share (and its cost is what is measured).
            extra["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=databases.workdir)
        env = bench_env(**extra)
        if row.attack:
            return run_attack(row, args, env, tokens, databases.workdir, out_dir, resources)
        servers: list[BenchServer] = []
        for i in range(2 if row.kind == "redis" else 1):
            server = launcher(row.server, env, log_name(row, i), out_dir)
            resources.add(server.stop)
            servers.append(server.start())
        plan = Plan(
            ports=[server.port for server in servers],
            pids=[server.pid for server in servers],
            users=tokens,
            connections=args.connections,
            fanout_users=args.users,
            messages=args.messages,
            repeat=args.repeat,
            rate=args.rate,
            duration=args.duration,
            e2e="none" if row.name == "ceiling" else ("worker" if row.kind == "redis" else "http"),
            warmup_user=int(tokens[-1][0]),
            worker={
                "argv": [
                    sys.executable,
                    "-m",
                    "bench.worker",
                    f"--processes={args.worker_processes}",
                    f"--threads={args.worker_threads}",
                ],
                "env": env,
                "cwd": str(ROOT),
            },
            idle_timeout=args.idle_timeout,
            connect_window=args.connect_window,
            phases=[phase for phase in args.phases if phase in row.phases],
            service_pids=service_pids,
            profile_dir=str(out_dir) if args.profile else None,
            profile_name=row.name,
        )
        plan_path = databases.workdir / f"plan-{row.name}.json"
        plan_path.write_text(json.dumps(asdict(plan)))
        timeout = 120 + args.repeat * (plan.round_timeout + args.idle_timeout) + args.duration + 240
        client = subprocess.Popen(
            [sys.executable, "-m", "bench.client", str(plan_path)],
            cwd=ROOT,
            env=bench_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        resources.add(lambda: _stop_process(client))
        try:
            stdout, _ = client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the client did not finish within {timeout:.0f}s") from None
        plan_path.unlink()
        if client.returncode != 0:
            raise RuntimeError(f"the client exited with {client.returncode}")
        result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        for server in servers:
            if not server.alive():
                result.setdefault("warnings", []).append(f"{server.name} exited; see {server.log_path}")
        result.update(
            database=engine,
            server=row.server,
            server_processes=len(servers),
            description=row.description,
            backend=row.backend,
        )
        result["summary"] = summarise(result)
        return result
    finally:
        resources.close()


def run_attack(
    row: Row,
    args: argparse.Namespace,
    env: dict[str, str],
    tokens: list[list[Any]],
    workdir: Path,
    out_dir: Path,
    resources: Resources,
) -> dict[str, Any]:
    """An attack row: one server process, bench.attacks against it (the attackers are the first users, the
    other user the next)."""
    server = launcher(row.server, env, log_name(row, 0), out_dir)
    resources.add(server.stop)
    server.start()
    plan = AttackPlan(
        attack=str(row.attack),
        port=server.port,
        pid=server.pid,
        attacker=tokens[0],
        attackers=tokens[: row.attackers],
        connect_rate=row.connect_rate,
        upload_rate=row.upload_rate,
        other=tokens[row.attackers],
        warmup=tokens[-1],
        duration=args.attack_duration,
        baseline=args.attack_duration / 2,
        other_rate=OTHER_RATE,
        pushes=args.pushes,
    )
    plan_path = workdir / f"plan-{row.name}.json"
    plan_path.write_text(json.dumps(asdict(plan)))
    timeout = 120 + 3 * args.attack_duration + plan.read_timeout
    client = subprocess.Popen(
        [sys.executable, "-m", "bench.attacks", str(plan_path)],
        cwd=ROOT,
        env=bench_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    resources.add(lambda: _stop_process(client))
    try:
        stdout, _ = client.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"bench.attacks did not finish within {timeout:.0f}s") from None
    plan_path.unlink()
    if client.returncode != 0:
        raise RuntimeError(f"bench.attacks exited with {client.returncode}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    if not server.alive():
        result.setdefault("warnings", []).append(f"{server.name} exited; see {server.log_path}")
    result.update(
        database="sqlite",
        server=row.server,
        server_processes=1,
        description=row.description,
        backend=row.backend,
    )
    result["summary"] = summarise_attack(result)
    return result


def log_name(row: Row, index: int) -> str:
    """The log file's name of a row's ``index``-th server process (no colon: a file name)."""
    return f"{row.name.replace(':', '-')}-{index + 1}"


def _stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _redis_cpu(services: dict[str, Any]) -> float | None:
    """All the row's redis-servers' CPU together (100% = one core), as the one Redis of other rows."""
    found = [pct for name, pct in services.items() if name.startswith("redis") and pct is not None]
    return sum(found) if found else None


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    rounds = result.get("fanout") or []
    if rounds:
        summary.update(
            fanout_rate=_median([r["messages_per_s"] for r in rounds]),
            fanout_p50_ms=_median([r["p50_ms"] for r in rounds]),
            fanout_p99_ms=_median([r["p99_ms"] for r in rounds]),
            fanout_exactly_m=all(r["exactly_m"] for r in rounds),
            fanout_missing=sum(r["missing"] for r in rounds),
            fanout_duplicates=sum(r["duplicates"] for r in rounds),
            fanout_client_cpu_pct=max(r["client_cpu_pct"] for r in rounds),
            fanout_server_cpu_pct=_median([sum(x for x in r["server_cpu_pct"] if x) for r in rounds]),
            fanout_redis_cpu_pct=_median([_redis_cpu(r.get("service_cpu_pct", {})) for r in rounds]),
            fanout_rates=[r["messages_per_s"] for r in rounds],
        )
    e2e = result.get("e2e")
    if e2e:
        summary.update(
            e2e_p50_ms=e2e["p50_ms"],
            e2e_p99_ms=e2e["p99_ms"],
            e2e_from_send_p50_ms=e2e.get("from_send_p50_ms"),
            e2e_from_send_p99_ms=e2e.get("from_send_p99_ms"),
            e2e_received=e2e["received"],
            e2e_expected=e2e["expected"],
            e2e_complete=e2e["missing"] == 0 and e2e["duplicates"] == 0,
            e2e_achieved_rate=e2e["producer"].get("achieved_rate"),
            e2e_http_capacity=(e2e.get("http_capacity") or {}).get("requests_per_s"),
            e2e_client_cpu_pct=e2e["client_cpu_pct"],
        )
    broadcasts = result.get("broadcast") or []
    if broadcasts:
        everyone = [r["broadcast"] for r in broadcasts]
        one_user = [r["one_user"] for r in broadcasts]
        summary.update(
            broadcast_sockets=everyone[0]["expected"],
            broadcast_last_ms=_median([r["last_ms"] for r in everyone]),
            broadcast_p50_ms=_median([r["p50_ms"] for r in everyone]),
            broadcast_one_user_ms=_median([r["last_ms"] for r in one_user]),
            broadcast_complete=all(
                r["received"] == r["expected"] and not r["duplicates"] for r in everyone + one_user
            ),
        )
    connections = result.get("connections")
    if connections:
        summary.update(
            connect_rate=connections["connect_rate"],
            kib_per_socket=connections["kib_per_socket"],
            connected=connections["connected"],
            connect_requested=connections["requested"],
            connect_client_cpu_pct=connections["client_cpu_pct"],
        )
    return summary


def summarise_attack(result: dict[str, Any]) -> dict[str, Any]:
    base, during = result["baseline"], result["during"]
    summary: dict[str, Any] = {
        "other_p50_ms": base["from_send"]["p50_ms"],
        "other_p99_ms": base["from_send"]["p99_ms"],
        "other_attack_p50_ms": during["from_send"]["p50_ms"],
        "other_attack_p99_ms": during["from_send"]["p99_ms"],
        "other_p99_ratio": result.get("p99_ratio"),
        "other_delivered": [base["received"], base["expected"], during["received"], during["expected"]],
        "other_complete": base["received"] == base["expected"] and during["received"] == during["expected"],
        "rss_before_mib": result["rss_kib"]["before"] / 1024,
        "rss_after_mib": result["rss_kib"]["after"] / 1024,
        "rss_peak_mib": result["rss_kib"]["peak"] / 1024,
        "server_cpu_pct": [result.get("server_cpu_pct_baseline"), result.get("server_cpu_pct")],
    }
    if result["attack"] == "flood":
        summary.update(
            accepted_per_s=result["accepted_per_s"],
            processed_per_s=result["processed_per_s"],
            rate_limited_per_s=result["rate_limited_per_s"],
            reconnects=result["reconnects"],
            attackers=result.get("attackers", 1),
            refused_connects=result.get("refused_connects", 0),
            close_codes=result["close_codes"],
            first_close_after_ms=result["first_close_after_ms"],
        )
    else:
        summary.update(
            pushed=result["pushed"],
            bytes_pushed=result["bytes_pushed"],
            received_at_end=result["received_at_end"],
            close_code=result["close_code"],
            closed_after_push_s=result["closed_after_push_s"],
            kernel_queued=sum(
                result[key] or 0 for key in ("server_send_queue_bytes", "client_receive_queue_bytes")
            ),
            tcp_state=result["tcp_state"],
            tcp_state_changed_at_s=result["tcp_state_changed_at_s"],
        )
    return summary


# -- report -------------------------------------------------------------------------------------

RATIO_METRICS = {"fanout_rate": "fan-out msg/s", "connect_rate": "connects/s"}


def ratios(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {other row: {metric: row / other}}} for each row's comparisons."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, result in results.items():
        compare = ROWS[name].compare_to or {
            "stock-inmemory": ("ceiling",),
            "redis-pubsub": ("redis-core",),
        }.get(name, ())
        for other in compare:
            if other not in results:
                continue
            mine, theirs = result["summary"], results[other]["summary"]
            entry = {}
            for metric in [*RATIO_METRICS, "kib_per_socket", "e2e_p99_ms"]:
                if mine.get(metric) and theirs.get(metric):
                    entry[metric] = mine[metric] / theirs[metric]
            table.setdefault(name, {})[other] = entry
    return table


def _fmt(value: Any, spec: str = ",.0f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(head[i]), *(len(row[i]) for row in rows)]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return lines


def _pair(summary: dict[str, Any], first: str, second: str) -> str:
    if summary.get(first) is None:
        return "-"
    return f"{_fmt(summary.get(first), ',.1f')} / {_fmt(summary.get(second), ',.1f')}"


def _pct(value: float | None, limit: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}%" + (" (!)" if limit is not None and value > limit else "")


def render_table(
    results: dict[str, Any],
    skipped: dict[str, str],
    ratio_table: dict[str, Any],
    args: argparse.Namespace,
    capacity: dict[str, Any],
) -> str:
    if all(ROWS[name].attack for name in results):  # only attack rows: their tables alone
        return "\n".join(render_attacks(results, skipped)).lstrip("\n")
    lines = [
        f"fan-out: U={args.users} sockets (one per user), M={args.messages} pushes to each, median of "
        f"{args.repeat} round(s); end-to-end: notify() at {args.rate:g}/s for {args.duration:g} s "
        f"(Redis rows: a worker of {args.worker_processes} process(es) x {args.worker_threads} thread(s)); "
        f"connections: C={args.connections} authenticated sockets",
        "",
    ]
    head = [
        "row",
        "servers",
        "fan-out msg/s",
        "p50 / p99 ms",
        "every socket got M",
        "client CPU",
        "server CPU",
        "e2e p50 / p99 ms",
        "from send p50 / p99",
        "e2e delivered",
        "e2e rate/s",
        "connects/s",
        "KiB/socket",
    ]
    rows: list[list[str]] = []
    blank = ["" for _ in head[2:]]
    for name in ROWS:
        if name in skipped:
            rows.append([name, skipped[name], *blank])
            continue
        if name not in results or ROWS[name].attack:
            continue
        result, s = results[name], results[name]["summary"]
        if "error" in result:
            rows.append([name, f"FAILED: {result['error'][:80]}", *blank])
            continue
        exact = "-"
        if "fanout_exactly_m" in s:
            exact = (
                "yes"
                if s["fanout_exactly_m"]
                else (f"LOSSES: {s['fanout_missing']} missing, {s['fanout_duplicates']} duplicated")
            )
        delivered = "-"
        if "e2e_expected" in s:
            delivered = f"{s['e2e_received']}/{s['e2e_expected']}" + ("" if s["e2e_complete"] else " LOSSES")
        servers = f"{result['server_processes']} {result['server']}, {result['database']}"
        rows.append(
            [
                name,
                servers,
                _fmt(s.get("fanout_rate")),
                _pair(s, "fanout_p50_ms", "fanout_p99_ms"),
                exact,
                _pct(s.get("fanout_client_cpu_pct"), CLIENT_CPU_LIMIT),
                _pct(s.get("fanout_server_cpu_pct"))
                + (
                    f" + redis {s['fanout_redis_cpu_pct']:.0f}%"
                    if s.get("fanout_redis_cpu_pct") is not None
                    else ""
                ),
                _pair(s, "e2e_p50_ms", "e2e_p99_ms"),
                _pair(s, "e2e_from_send_p50_ms", "e2e_from_send_p99_ms"),
                delivered,
                _fmt(s.get("e2e_achieved_rate")),
                _fmt(s.get("connect_rate")),
                _fmt(s.get("kib_per_socket"), ",.1f"),
            ]
        )
    lines += markdown_table(head, rows)
    ratio_rows = []
    for name, entries in ratio_table.items():
        for other, entry in entries.items():
            ratio_rows.append(
                [
                    name,
                    other,
                    *(
                        f"{entry[key]:.2f}x" if key in entry else "-"
                        for key in ("fanout_rate", "connect_rate", "kib_per_socket", "e2e_p99_ms")
                    ),
                ]
            )
    if ratio_rows:
        lines += [
            "",
            "Ratios (row / compared row; fan-out and connects: higher is better; memory and "
            "latency: lower is better):",
            "",
        ]
        lines += markdown_table(
            ["row", "compared to", "fan-out msg/s", "connects/s", "KiB/socket", "e2e p99"], ratio_rows
        )
    lines += render_broadcasts(results, args)
    lines += render_servers(results, skipped)
    lines += render_attacks(results, skipped)
    lines.append("")
    if capacity.get("messages_per_s"):
        lines.append(
            f"Client capacity (bench.selftest: the same client against a server that only sends): "
            f"{capacity['messages_per_s']:,.0f} msg/s at {capacity['client_cpu_pct']:.0f}% of one core."
        )
    elif capacity:
        lines.append(f"Client capacity: not measured ({capacity.get('error')}).")
    lines.append(
        "client CPU: the client's CPU time / wall time in the fan-out window (highest round); under "
        f"{CLIENT_CPU_LIMIT:.0f}% of one core the client was waiting for the server, not the bottleneck; "
        "(!) marks a row above. server CPU: the server processes' CPU time / wall time, summed "
        "(100% = one core), and redis-server's."
    )
    lines.append(
        "e2e: latency from the time each notification was due (open loop) to its arrival on the socket; "
        "from send: from the time the producer sent it (request written / notify() called); e2e rate/s: "
        "the rate the producer achieved (below the target: the producer side, notify() itself, was "
        "saturated)."
    )
    for name, result in results.items():
        http = result.get("summary", {}).get("e2e_http_capacity")
        if http:
            lines.append(
                f"HTTP capacity of {name}'s server (the same middleware, a view that does nothing, "
                f"{HTTP_POOL} connections, closed loop): {http:,.0f} requests/s; no producer by HTTP "
                "gets past it."
            )
    return "\n".join(lines)


def render_broadcasts(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The broadcast phase: one abroadcast() to every socket, beside one push to one user's socket."""
    rows = []
    for name, result in results.items():
        s = result.get("summary", {})
        if "broadcast_last_ms" not in s:
            continue
        last, one = s["broadcast_last_ms"], s["broadcast_one_user_ms"]
        rows.append(
            [
                name,
                _fmt(s["broadcast_sockets"]),
                _fmt(last, ",.1f"),
                _fmt(s["broadcast_p50_ms"], ",.1f"),
                _fmt(one, ",.1f"),
                f"{last / one:.1f}x" if last and one else "-",
                "yes" if s["broadcast_complete"] else "LOSSES or duplicates",
            ]
        )
    if not rows:
        return []
    return [
        "",
        f"Broadcast: one abroadcast() to the U={args.users} sockets, from a view; ms from the call until "
        f"the last socket had it (median of {args.repeat}), beside one push to one user's socket, the "
        "same frame on the same servers (the ratio: what reaching every socket costs over reaching one):",
        "",
        *markdown_table(
            ["row", "sockets", "last socket ms", "p50 ms", "one user ms", "ratio", "every socket once"],
            rows,
        ),
    ]


def _growth(summary: dict[str, Any]) -> str:
    """An attack row's server RSS growth, MiB: at its peak over before."""
    if summary.get("rss_peak_mib") is None:
        return "-"
    return f"+{summary['rss_peak_mib'] - summary['rss_before_mib']:,.1f}"


def render_servers(results: dict[str, Any], skipped: dict[str, str]) -> list[str]:
    """Which server: each server's phases and attack rows on one line, from the rows above."""
    rows: list[list[str]] = []
    for server in SERVERS:
        names = SERVER_GROUPS[server]
        if not any(name in results or name in skipped for name in names):
            continue
        if server in skipped:
            rows.append([server, skipped[server], *["" for _ in range(10)]])
            continue
        main = results.get(server, {}).get("summary", {})
        flood = results.get(f"{server}:flood", {}).get("summary", {})
        slow = results.get(f"{server}:slow-reader", {}).get("summary", {})
        if slow.get("close_code") is not None:
            slow_end = f"closed {slow['close_code']}"
        elif slow:
            slow_end = f"read {slow['received_at_end']:,}/{slow['pushed']:,}"
        else:
            slow_end = "-"
        rows.append(
            [
                server,
                _fmt(main.get("fanout_rate")),
                _fmt(main.get("fanout_p99_ms"), ",.1f"),
                _fmt(main.get("broadcast_last_ms"), ",.1f"),
                _fmt(main.get("e2e_from_send_p99_ms"), ",.1f"),
                _fmt(main.get("connect_rate")),
                _fmt(main.get("kib_per_socket"), ",.1f"),
                _pair(flood, "other_p99_ms", "other_attack_p99_ms").replace(" / ", " -> "),
                _growth(flood),
                _pair(slow, "other_p99_ms", "other_attack_p99_ms").replace(" / ", " -> "),
                _growth(slow),
                slow_end,
            ]
        )
    if not rows:
        return []
    return [
        "",
        "Which server: wsgateway's in-process layer in one process of each server (bench/servers.py); the "
        "columns are those of the tables above and below, side by side:",
        "",
        *markdown_table(
            [
                "server",
                "fan-out msg/s",
                "fan-out p99 ms",
                "broadcast ms",
                "e2e p99 ms (from send)",
                "connects/s",
                "KiB/socket",
                "flood: other p99 ms alone -> during",
                "flood: RSS MiB",
                "slow reader: other p99 ms",
                "slow reader: RSS MiB",
                "slow reader: at the end",
            ],
            rows,
        ),
    ]


def render_attacks(results: dict[str, Any], skipped: dict[str, str]) -> list[str]:
    """The flood and slow-reader rows: a table each, under the main one."""
    lines: list[str] = []
    other_head = ["other user p50 / p99 ms, alone", "during the attack", "p99 ratio", "other got"]
    for attack, head in [
        (
            "flood",
            [
                "frames/s accepted",
                "processed/s",
                "rate_limited/s",
                "reconnects (refused at the handshake)",
                "close codes",
                "first close after ms",
                "server CPU % alone / during",
            ],
        ),
        (
            "slow-reader",
            [
                "pushed",
                "MiB pushed",
                "MiB in kernel buffers",
                "read at the end",
                "close code",
                "closed after push at s",
                "TCP end",
            ],
        ),
    ]:
        rows: list[list[str]] = []
        for name in [n for n, row in ROWS.items() if row.attack == attack]:
            if name in skipped:
                rows.append([name, skipped[name], *["" for _ in range(len(head) + 4)]])
                continue
            if name not in results:
                continue
            result, s = results[name], results[name]["summary"]
            if "error" in result:
                rows.append([name, f"FAILED: {result['error'][:80]}", *["" for _ in range(len(head) + 4)]])
                continue
            if attack == "flood":
                cells = [
                    _fmt(s["accepted_per_s"]),
                    _fmt(s["processed_per_s"], ",.1f"),
                    _fmt(s["rate_limited_per_s"], ",.1f"),
                    f"{s['reconnects']} ({s.get('refused_connects', 0)})",
                    ", ".join(f"{code} x{count}" for code, count in s["close_codes"].items()) or "-",
                    _fmt(s["first_close_after_ms"], ",.1f"),
                    " / ".join(_fmt(v, ".0f") for v in s.get("server_cpu_pct") or [None, None]),
                ]
            else:
                changed = s["tcp_state_changed_at_s"]
                cells = [
                    f"{s['pushed']:,}",
                    f"{s['bytes_pushed'] / 2**20:,.1f}",
                    f"{s['kernel_queued'] / 2**20:,.1f}",
                    f"{s['received_at_end']:,}",
                    "none" if s["close_code"] is None else str(s["close_code"]),
                    _fmt(s["closed_after_push_s"], ",.1f"),
                    s["tcp_state"] + ("" if changed is None else f" at {changed:.1f} s"),
                ]
            got = s["other_delivered"]
            rows.append(
                [
                    name,
                    f"{s['rss_before_mib']:,.1f} -> {s['rss_after_mib']:,.1f} ({s['rss_peak_mib']:,.1f})",
                    *cells,
                    _pair(s, "other_p50_ms", "other_p99_ms"),
                    _pair(s, "other_attack_p50_ms", "other_attack_p99_ms"),
                    _fmt(s["other_p99_ratio"], ".2f") + ("x" if s["other_p99_ratio"] else ""),
                    f"{got[0]}/{got[1]}, {got[2]}/{got[3]}" + ("" if s["other_complete"] else " LOSSES"),
                ]
            )
        if rows:
            lines += ["", f"Attack: {attack} ({ROWS[attack].description})", ""]
            head = ["row", "server RSS MiB before -> after (peak)", *head, *other_head]
            lines += markdown_table(head, rows)
    if lines:
        lines += [
            "",
            f"Other user: notify() at {OTHER_RATE:g}/s to a second user's socket, alone (half the attack's "
            "time) then during the attack, on the same server; latency from the request's sending to the "
            "push's arrival. Flood: accepted = frames written to TCP (the kernel took them); processed = "
            "real replies; a closed or refused socket is reopened at once, by each attacking user "
            "(flood-5: five). Slow reader: in kernel buffers = the "
            "server end's send queue and the reader's receive queue when the pushing ended, bytes not in "
            "the server's RSS; read at the end = frames "
            "the socket read once it read again; closed after push at = the push stamped last before the "
            "close frame; TCP end = the client end's TCP state when the pushing ended (CLOSE_WAIT: the "
            "server closed).",
        ]
    return lines


def client_capacity(args: argparse.Namespace) -> dict[str, Any]:
    """bench.selftest: the client against a server that only sends. Its rate is the client's limit."""
    users, messages = (args.users, 20) if args.quick else (args.users, max(args.messages, 100))
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.selftest",
                "--users",
                str(users),
                "--messages",
                str(messages),
                "--repeat",
                "2",
                "--json",
            ],
            cwd=ROOT,
            env=bench_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": repr(exc)}
    return summary


def _version(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    packages: dict[str, str | None] = {}
    for name in [
        "django",
        "channels",
        "channels-redis",
        "daphne",
        "twisted",
        "autobahn",
        "uvicorn",
        "websockets",
        "wsproto",
        "uvloop",
        "httptools",
        "hypercorn",
        "granian",
        "asgiref",
        "redis",
        "psycopg",
        "wsgateway",
    ]:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    from tests.support.postgres import _pg_bin
    from tests.support.servers import redis_server_binary

    try:
        redis_binary: str | None = redis_server_binary()
    except Exception:
        redis_binary = None
    postgres = _pg_bin("postgres")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": packages,
        "redis_server": _version([redis_binary, "--version"]) if redis_binary else None,
        "postgres": _version([postgres, "--version"]) if postgres else None,
        # Anything else busy on the machine competes with the servers: check this before comparing runs.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def render_machine(info: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    return (
        f"machine: {info['nproc']} CPU(s), {info['cpu_model']}, {info['memory']} RAM, "
        f"Linux {info['kernel']}, Python {info['python']}\npackages: {packages}\n"
        f"redis: {info['redis_server'] or '-'}\npostgres: {info['postgres'] or '-'}\n"
        f"load average (1, 5, 15 min) before the run: {info['loadavg_at_start']}, after: "
        f"{info.get('loadavg_at_end')}"
    )


def plot(results: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    summaries = [results[name].get("summary", {}) for name in names]
    colours = [
        "#888888" if ROWS[n].name == "ceiling" else "#c0504d" if ROWS[n].optional else "#4f81bd"
        for n in names
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    # (axes, [(summary key, legend)], title, log scale): one bar per key and row.
    panels: list[tuple[Any, list[tuple[str, str | None]], str, bool]] = [
        (axes[0][0], [("fanout_rate", None)], "fan-out: delivered messages/s (log)", True),
        (
            axes[0][1],
            [("e2e_p99_ms", "from due time"), ("e2e_from_send_p99_ms", "from send")],
            "end-to-end p99 latency, ms (log)",
            True,
        ),
        (axes[1][0], [("connect_rate", None)], "authenticated connects/s", False),
        (axes[1][1], [("kib_per_socket", None)], "server memory per socket, KiB", False),
    ]
    for ax, keys, label, log in panels:
        width = 0.8 / len(keys)
        for k, (key, legend) in enumerate(keys):
            values = [s.get(key) or 0 for s in summaries]
            positions = [i + (k - (len(keys) - 1) / 2) * width for i in range(len(names))]
            bars = ax.bar(
                positions, values, width=width, color=colours, alpha=1.0 if k == 0 else 0.55, label=legend
            )
            for bar, value in zip(bars, values, strict=True):
                if value:
                    ax.annotate(
                        f"{value:,.0f}" if value >= 100 else f"{value:.1f}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(names)), names)
        ax.set_title(label)
        if log and any(s.get(key) for s in summaries for key, _ in keys):
            ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = args.output / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    info = machine_info()
    started = time.monotonic()
    capacity: dict[str, Any] = {}
    with scratch("wsgateway-bench-") as (workdir, resources):
        try:
            say("bench: the client's own limit (bench.selftest)")
            capacity = client_capacity(args)
            databases = Databases(args, workdir, resources)
            for name in args.rows:
                row = ROWS[name]
                reason = availability(name) if row.optional else None
                if reason is not None:
                    say(f"bench: {name}: {reason}")
                    skipped[name] = reason
                    continue
                say(f"bench: {name} ({row.description})")
                try:
                    results[name] = run_row(row, args, databases, out_dir)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    say(f"bench: {name} failed: {exc}")
                    results[name] = {"error": str(exc), "summary": {}}
        except KeyboardInterrupt:
            say("bench: interrupted; stopping everything")
            return 130

    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    ratio_table = ratios({k: v for k, v in results.items() if "error" not in v})
    table = render_table(results, skipped, ratio_table, args, capacity)
    report = {
        "timestamp": stamp,
        "elapsed_s": time.monotonic() - started,
        "machine": info,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": results,
        "skipped": skipped,
        "ratios": ratio_table,
        "client_capacity": capacity,
        "table": table,
    }
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(report, indent=2))
    shutil.copyfile(json_path, args.output / "latest.json")
    png_path = out_dir / "results.png"
    plot(
        {k: v for k, v in results.items() if "error" not in v and not ROWS[k].attack},
        png_path,
        f"wsgateway bench {stamp}: {info['nproc']} CPU(s) {info['cpu_model']}; "
        f"U={args.users} M={args.messages} C={args.connections} e2e {args.rate:g}/s",
    )
    print(render_machine(info))
    print()
    print(table)
    print()
    print(f"results: {json_path}\nplot: {png_path}\nlatest: {args.output / 'latest.json'}")
    failed = [name for name, result in results.items() if "error" in result]
    return 1 if failed else 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
