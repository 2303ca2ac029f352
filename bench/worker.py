"""A paced notify() worker pool, for the end-to-end rows on Redis: the push starts in other processes.

    python -m bench.worker --rate 500 --duration 5 --users 1,2,3   (bench.settings from the env)

Like a prefork task-queue worker (Celery's default pool), it loads Django once, then forks
``--processes`` children that share the schedule: child k sends notifications k, k+P, k+2P...
from ``--threads`` threads of its own, so that one slow call does not hold back the next.
Processes rather than more threads: threads of one process share its GIL, and in this benchmark
four threads at 500/s put tens of milliseconds of waiting for it into the tail (see bench/README.md).

Each notification carries ``data={"t": the time.monotonic() it was due at, "ts": when notify() was
called, "n": i}``: open loop, so a worker that falls behind shows as latency, as it would to a
user. CLOCK_MONOTONIC is shared by all processes. The summary goes to stdout as one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import sys
import threading
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--users", required=True, help="comma-separated user ids, used in turn")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="per process")
    parser.add_argument(
        "--warmup-user", type=int, help="a user with no socket, notified before the clock starts"
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections

    user_ids = [int(uid) for uid in args.users.split(",")]
    users = {user.pk: user for user in get_user_model()._default_manager.filter(pk__in=user_ids)}
    connections.close_all()  # each child opens its own
    # As docs/deployment.md advises for workers: everything loaded so far (Django and the app, about 110,000
    # objects) leaves the cyclic collector's view. A full collection over them took 70 to 100 ms here,
    # once every few thousand notify() calls, and stalled every thread of the worker.
    gc.freeze()

    context = multiprocessing.get_context("fork")
    ready = context.Barrier(args.processes + 1)
    start = context.Value("d", 0.0)
    go = context.Event()
    reports = context.SimpleQueue()
    children = [
        context.Process(
            target=produce, args=(k, args, users, user_ids, ready, start, go, reports), daemon=True
        )
        for k in range(args.processes)
    ]
    for child in children:
        child.start()
    ready.wait(timeout=60)
    start.value = time.monotonic() + 0.01
    go.set()
    results = [reports.get() for _ in children]
    for child in children:
        child.join()
    elapsed = max(result["elapsed_s"] for result in results)
    total = sum(result["total"] for result in results)
    errors = sum(result["errors"] for result in results)
    print(
        json.dumps(
            {
                "sent": total - errors,
                "error_count": errors,
                "elapsed_s": elapsed,
                "achieved_rate": total / elapsed if elapsed > 0 else None,
                "processes": args.processes,
                "threads": args.threads,
                "max_lag_ms": max(result["max_lag_ms"] for result in results),
            }
        )
    )


def produce(
    index: int,
    args: argparse.Namespace,
    users: dict[int, Any],
    user_ids: list[int],
    ready: Any,
    start: Any,
    go: Any,
    reports: Any,
) -> None:
    """One child: notifications index, index + processes, ... at their due times."""
    from django.contrib.auth import get_user_model

    from wsgateway import notify

    warm = threading.Barrier(args.threads + 1)
    mine = list(range(index, int(args.rate * args.duration), args.processes))
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "max_lag": 0.0}

    def run() -> None:
        if args.warmup_user is not None:  # this thread's database connection, the layer's first connection
            try:
                warmup_user = get_user_model()._default_manager.get(pk=args.warmup_user)
                for i in range(3):
                    notify(warmup_user, "Warm-up.", data={"warmup": i})
            except Exception as exc:  # the measured notifications will show what is wrong
                print(f"warm-up failed: {exc!r}", file=sys.stderr, flush=True)
        warm.wait()
        go.wait()
        while True:
            with lock:
                if state["next"] >= len(mine):
                    return
                i = mine[state["next"]]
                state["next"] += 1
            due = start.value + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            try:
                notify(
                    users[user_ids[i % len(user_ids)]],
                    "Your export is ready.",
                    data={"t": due, "ts": now, "n": i},
                    actions=[{"label": "Open", "url": "/"}],
                )
            except Exception as exc:  # counted and reported: the client sees the loss
                with lock:
                    state["errors"] += 1
                print(f"notify failed: {exc!r}", file=sys.stderr, flush=True)
            with lock:
                state["max_lag"] = max(state["max_lag"], now - due)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    warm.wait()
    ready.wait(timeout=60)
    if not go.wait(timeout=60):  # the parent is gone: stop, do not linger
        return
    for thread in threads:
        thread.join()
    reports.put(
        {
            "total": len(mine),
            "errors": state["errors"],
            "elapsed_s": time.monotonic() - start.value,
            "max_lag_ms": state["max_lag"] * 1000,
        }
    )


if __name__ == "__main__":
    main()
