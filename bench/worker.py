"""A paced notify() worker, for the end-to-end rows on Redis: the push starts in another process.

    python -m bench.worker --rate 500 --duration 5 --users 1,2,3   (bench.settings from the env)

Like a task queue worker, it calls wsgateway.notify() from plain sync code; ``--threads`` of them
share the schedule, so that one slow call does not hold back the next. Each notification carries
``data={"t": the time.monotonic() it was due at, "ts": when notify() was called, "seq": i}``: open
loop, so a worker that falls behind shows as latency, as it would to a user. The summary goes to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--users", required=True, help="comma-separated user ids, used in turn")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--warmup-user", type=int, help="a user with no socket, notified before the clock starts"
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from wsgateway import notify

    user_ids = [int(uid) for uid in args.users.split(",")]
    users = {user.pk: user for user in get_user_model()._default_manager.filter(pk__in=user_ids)}
    connection.close()
    # As the README advises for workers: everything loaded so far (Django and the app, about 110,000
    # objects) leaves the cyclic collector's view. A full collection over them took 70 to 100 ms here,
    # once every few thousand notify() calls, and stalled every thread of the worker.
    gc.freeze()
    warm = threading.Barrier(args.threads + 1)
    go = threading.Event()
    total = int(args.rate * args.duration)
    lock = threading.Lock()
    state = {"next": 0, "errors": 0}
    lag = {"max": 0.0}
    clock = {"start": 0.0}

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
        start = clock["start"]
        while True:
            with lock:
                i = state["next"]
                if i >= total:
                    return
                state["next"] = i + 1
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            try:
                notify(
                    users[user_ids[i % len(user_ids)]],
                    "Your export is ready.",
                    data={"t": due, "ts": now, "seq": i},
                    actions=[{"label": "Open", "url": "/"}],
                )
            except Exception as exc:  # counted and reported: the client sees the loss
                with lock:
                    state["errors"] += 1
                print(f"notify failed: {exc!r}", file=sys.stderr, flush=True)
            with lock:
                lag["max"] = max(lag["max"], now - due)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    warm.wait()
    start = clock["start"] = time.monotonic() + 0.01
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    print(
        json.dumps(
            {
                "sent": total - state["errors"],
                "error_count": state["errors"],
                "elapsed_s": elapsed,
                "achieved_rate": total / elapsed if elapsed > 0 else None,
                "threads": args.threads,
                "max_lag_ms": lag["max"] * 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
