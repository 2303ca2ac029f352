"""ASGI entry point of the benchmark's daphne processes: project/asgi.py, plus the ceiling's consumer."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django_asgi_app = get_asgi_application()  # before importing anything that touches models

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from bench.layers import ROWS  # noqa: E402
from wsgateway import metrics  # noqa: E402
from wsgateway.routing import GatewayURLRouter, unrouted, websocket_urlpatterns  # noqa: E402

if getattr(settings, "BENCH_LAYER", None) == "ceiling":
    from bench.ceiling import CeilingConsumer

    websocket_urlpatterns = [path("ws/", CeilingConsumer.as_asgi(), name="wsgateway")]

if not ROWS[getattr(settings, "BENCH_LAYER", "stock-inmemory")].metrics:
    # The baseline of the metrics' cost: every call wsgateway.metrics gets per frame or per push does
    # nothing (the named counters of rare events are left as they are: they were there before the series).
    def _nothing(*args: object) -> None:
        return None

    metrics.SocketMeter.sent = metrics.SocketMeter.received = _nothing  # type: ignore[method-assign]
    metrics.push_delivered = metrics.fanned_out = metrics.pushed = _nothing

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": GatewayURLRouter([*websocket_urlpatterns, unrouted]),
    }
)

# As project/asgi.py does; BENCH_GC_FREEZE=0 leaves it out, to measure what it does.
if os.environ.get("BENCH_GC_FREEZE") != "0":
    gc.freeze()

# Diagnostics, off by default: BENCH_GC_LOG=1 logs collections of the oldest generation (and any
# over 10 ms) to the daphne log; BENCH_GC_THRESHOLD="a,b,c" calls gc.set_threshold(a, b, c).
if os.environ.get("BENCH_GC_THRESHOLD"):
    gc.set_threshold(*(int(x) for x in os.environ["BENCH_GC_THRESHOLD"].split(",")))

if os.environ.get("BENCH_GC_LOG"):
    import sys
    import time

    _gc_start = [0.0]

    def _log_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_start[0] = time.perf_counter()
            return
        took = time.perf_counter() - _gc_start[0]
        if info["generation"] == 2 or took > 0.01:
            print(
                f"gc gen{info['generation']}: {1000 * took:.1f} ms, collected {info['collected']}, "
                f"tracked {len(gc.get_objects())}, "
                f"at monotonic {time.monotonic():.3f}",
                file=sys.stderr,
                flush=True,
            )

    gc.callbacks.append(_log_gc)

# BENCH_GC_THAW=1: on SIGUSR2, the hourly thaw's collection now (wsgateway.collector.refreeze(thaw=True)):
# unfreeze, one full collection, freeze again, and what it freed to stderr: the reference cycles that were
# left among frozen objects, which only the thaw frees (bench/README.md, "Full collections out of the way").
if os.environ.get("BENCH_GC_THAW"):
    import collections
    import json
    import signal
    import sys
    import time

    def _thaw(signum: int, frame: object) -> None:
        frozen = gc.get_freeze_count()
        start = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        took = time.perf_counter() - start
        by_type = collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())
        gc.freeze()
        print(f"thaw: {frozen} frozen, {freed} freed, {1000 * took:.1f} ms", file=sys.stderr, flush=True)
        print(f"thaw: by type {json.dumps(dict(by_type))}", file=sys.stderr, flush=True)
        with open("/proc/self/status") as status:
            rss = next(line for line in status if line.startswith("VmRSS"))
        print(f"rss after the thaw: {rss.split()[1]} KiB", file=sys.stderr, flush=True)

    signal.signal(signal.SIGUSR2, _thaw)

# Diagnostics, off by default: BENCH_MEMSTATS=<path> writes the process's collector counts (and, with
# BENCH_TRACEMALLOC=1, a tracemalloc snapshot beside it) to <path> on SIGUSR1; bench.server_memory reads them.
if os.environ.get("BENCH_MEMSTATS"):
    from bench import server_memory

    server_memory.install(os.environ["BENCH_MEMSTATS"], trace=os.environ.get("BENCH_TRACEMALLOC") == "1")
