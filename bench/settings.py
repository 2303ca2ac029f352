"""Settings of the benchmark's daphne processes and worker: the example project, tuned to measure.

``BENCH_LAYER`` picks the channel layer (see :data:`bench.layers.ROWS`); ``DATABASE_URL``
and ``REDIS_URL`` come from the orchestrator.
"""

from __future__ import annotations

import os

from bench.layers import ROWS, layer_config
from project.settings import *  # noqa: F403
from project.settings import DATABASES, WSGATEWAY
from wsgateway.bounds import MAX_RATE

BENCH_LAYER = os.environ.get("BENCH_LAYER", "stock-inmemory")
if BENCH_LAYER not in ROWS:
    raise RuntimeError(f"BENCH_LAYER must be one of {', '.join(ROWS)}, not {BENCH_LAYER!r}")

# DEBUG=True keeps every query in connection.queries: memory grows with the run and skews it.
DEBUG = False
ROOT_URLCONF = "bench.urls"
ASGI_APPLICATION = "bench.asgi.application"
ALLOWED_HOSTS = ["127.0.0.1"]

CHANNEL_LAYERS = {
    "default": layer_config(BENCH_LAYER, os.environ.get("REDIS_URL"), os.environ.get("BENCH_REDIS_PREFIX"))
}

# A row with limits=False (inprocess-nolimits) runs with the inbound limits at the largest values the
# checks allow and the login re-check once a day: what the limits cost is that row against its twin.
if not ROWS[BENCH_LAYER].limits:
    WSGATEWAY = {
        **WSGATEWAY,
        **dict.fromkeys(
            ["RATE_LIMIT", "RATE_BURST", "USER_RATE_LIMIT", "USER_RATE_BURST", "RATE_LIMIT_CLOSE_AFTER"],
            MAX_RATE,
        ),
        "REVALIDATE_INTERVAL": 24 * 60 * 60,
    }

# BENCH_GC_FREEZE_EVERY=S: WSGATEWAY["GC_FREEZE_EVERY"] in the servers (bench.server_memory --freeze-every S);
# 0 turns the timer off (and with it the held-off full collections), to measure what it does.
if os.environ.get("BENCH_GC_FREEZE_EVERY"):
    _every = int(os.environ["BENCH_GC_FREEZE_EVERY"])
    WSGATEWAY = {**WSGATEWAY, "GC_FREEZE_EVERY": _every or None}

# A deployment keeps its database connections; opening one per request would be measured instead.
DATABASES["default"]["CONN_MAX_AGE"] = 600
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Two daphne processes and a worker write one file: WAL lets readers run beside the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", timeout=20
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# Diagnostic, off by default: BENCH_NO_MIDDLEWARE=1 serves every view without the example project's
# middleware, to tell Django's request path apart from wsgateway's push in the HTTP end-to-end rows.
if os.environ.get("BENCH_NO_MIDDLEWARE"):
    MIDDLEWARE: list[str] = []
