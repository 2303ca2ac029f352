"""How long pruning holds its locks on a big table (issue 21): ``python -m bench.prune``.

    python -m bench.prune [--rows 1000000] [--users 1000] [--db sqlite,postgres] [--batch N]

For each database: a new one (SQLite in a temporary directory; PostgreSQL a throwaway server, as the
tests start it), migrated, loaded with ``--rows`` notifications by one ``INSERT ... SELECT`` from a
series (row by row through the ORM takes far too long), then ``wsgateway.notifications.prune()``
with every range's transaction timed. A range's transaction (the look, the users' numbering locks,
the re-read, the delete, the marks) is what holds locks: on SQLite the whole database's write lock,
on PostgreSQL the users' ``NotificationSequence`` rows and the deleted rows. The longest of them is
the figure the issue bounds (under a second).

The rows, by ``id % 10``: 0-2 read 200 days ago, 3 archived 200 days ago, 4 expired yesterday, 5
deleted 40 days ago, 6-9 unread and new: 60 % of the table is removed with the default settings.
Each database runs in a process of its own (Django is set up once per process); the last stdout line
of each is its result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SQLITE_LOAD = """
WITH RECURSIVE series(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM series WHERE x + 1 < %(rows)d)
INSERT INTO wsgateway_notification (
    recipient_id, category, message, data, actions, is_read, created, changed, seq, version, change,
    seen_at, archived_at, deleted_at, snoozed_until, expires_at)
SELECT
    %(first_user)d + x %% %(users)d, 20, 'Notification ' || x, '{}', '[]', (x %% 10) < 4,
    datetime('now', '-250 days'),
    CASE WHEN x %% 10 < 4 THEN datetime('now', '-200 days') WHEN x %% 10 = 5 THEN datetime('now', '-40 days')
         ELSE datetime('now') END,
    x / %(users)d + 1, x / %(users)d + 1, 1,
    CASE WHEN x %% 10 < 4 THEN datetime('now', '-200 days') END,
    CASE WHEN x %% 10 = 3 THEN datetime('now', '-200 days') END,
    CASE WHEN x %% 10 = 5 THEN datetime('now', '-40 days') END,
    NULL,
    CASE WHEN x %% 10 = 4 THEN datetime('now', '-1 days') END
FROM series
"""

POSTGRES_LOAD = """
INSERT INTO wsgateway_notification (
    recipient_id, category, message, data, actions, is_read, created, changed, seq, version, change,
    seen_at, archived_at, deleted_at, snoozed_until, expires_at)
SELECT
    %(first_user)d + x %% %(users)d, 20, 'Notification ' || x, '{}', '[]', (x %% 10) < 4,
    now() - interval '250 days',
    CASE WHEN x %% 10 < 4 THEN now() - interval '200 days' WHEN x %% 10 = 5 THEN now() - interval '40 days'
         ELSE now() END,
    x / %(users)d + 1, x / %(users)d + 1, 1,
    CASE WHEN x %% 10 < 4 THEN now() - interval '200 days' END,
    CASE WHEN x %% 10 = 3 THEN now() - interval '200 days' END,
    CASE WHEN x %% 10 = 5 THEN now() - interval '40 days' END,
    NULL,
    CASE WHEN x %% 10 = 4 THEN now() - interval '1 day' END
FROM generate_series(0, %(rows)d - 1) AS x
"""


def child(rows: int, users: int, batch: int | None) -> dict[str, Any]:
    """In a process set up for one database: load it, prune it, time every range."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from wsgateway.conf import gateway_settings
    from wsgateway.models import Notification, NotificationSequence
    from wsgateway.notifications import pruning

    call_command("migrate", verbosity=0)
    user_model = get_user_model()
    user_model.objects.bulk_create(user_model(username=f"user{n}") for n in range(users))
    first: int = user_model.objects.order_by("pk").values_list("pk", flat=True)[0]
    started = time.perf_counter()
    load = POSTGRES_LOAD if connection.vendor == "postgresql" else SQLITE_LOAD
    with connection.cursor() as cursor:
        cursor.execute(load % {"rows": rows, "users": users, "first_user": first})
    per_user = -(-rows // users)
    NotificationSequence.objects.bulk_create(
        NotificationSequence(user_id=first + n, last=per_user) for n in range(users)
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE wsgateway_notification")
    loaded = time.perf_counter() - started
    assert Notification.objects.count() == rows

    durations: list[float] = []
    original = pruning._prune_range

    def timed(*args: Any, **kwargs: Any) -> None:
        begun = time.perf_counter()
        try:
            original(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - begun)

    pruning._prune_range = timed
    started = time.perf_counter()
    result = pruning.prune(wake=False, batch=batch)
    elapsed = time.perf_counter() - started
    left = Notification.objects.count()
    return {
        "database": connection.vendor,
        "rows": rows,
        "users": users,
        "batch": batch or gateway_settings.NOTIFICATIONS_PRUNE_BATCH,
        "load_s": round(loaded, 1),
        "removed": dict(result.counts),
        "removed_total": result.total,
        "left": left,
        "ranges": len(durations),
        "prune_s": round(elapsed, 1),
        "range_median_ms": round(statistics.median(durations) * 1000, 1),
        "range_p99_ms": round(sorted(durations)[int(len(durations) * 0.99) - 1] * 1000, 1),
        "range_max_ms": round(max(durations) * 1000, 1),
    }


def run(database: str, rows: int, users: int, batch: int | None, workdir: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = None
    if database == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'prune.sqlite3'}"
    else:
        from tests.support.postgres import PostgresServer, create_database

        server = PostgresServer().start()  # its own directory: the postgres user must reach it
        env["DATABASE_URL"] = create_database(server.server_url)
    try:
        out = subprocess.run(
            [
                *(sys.executable, "-m", "bench.prune", "--child", "--rows", str(rows), "--users", str(users)),
                *(("--batch", str(batch)) if batch else ()),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=3600,
        )
    finally:
        if server is not None:
            server.stop()
    if out.returncode:
        raise RuntimeError(f"{database}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.prune", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--batch", type=int, help="ids a range covers (default: NOTIFICATIONS_PRUNE_BATCH)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.rows, args.users, args.batch)))
        return
    with tempfile.TemporaryDirectory(prefix="wsgateway-prune-") as workdir:
        for database in args.db.split(","):
            result = run(database.strip(), args.rows, args.users, args.batch, Path(workdir))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
