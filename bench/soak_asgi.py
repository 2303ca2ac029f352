"""ASGI entry point of the soak's server processes (bench/soak.py): bench.asgi, plus a record of its
garbage collections and of the counters that say a socket was resynced, in a file the soak reads.

``SOAK_GC_FILE`` names the file: one JSON object a line. ``{"gc": [generation, ms, monotonic]}`` for each
collection of the oldest generation and each one over 1 ms (the pauses that stall every socket of the
process); ``{"tick": monotonic, "count": [per generation], "ms": [...], "counters": {...}}`` once a second,
the totals so far. The callback only appends to a list (it runs inside every collection, hundreds a second
under load); a daemon thread writes, so that the file's I/O never lengthens the pause it measures.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from typing import Any

from bench.asgi import application
from wsgateway import metrics

__all__ = ["application"]

#: What the soak reports beside the pauses: resyncs, and what would cause one.
COUNTERS = (
    metrics.SOCKETS_RESYNCED,
    metrics.CATCHUP_RESYNC,
    metrics.LAYER_OVERFLOWED_CHANNELS,
    metrics.LAYER_DROPPED,
    metrics.PUSH_FAILED,
    metrics.MEMBERSHIP_REFRESH_FAILED,
)
#: Collections shorter than this (and younger than the oldest generation) are only counted.
RECORD_OVER_S = 0.001


class GcRecorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.pauses: list[tuple[int, float, float]] = []
        self.started = 0.0
        self.lock = threading.Lock()

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self.started = now
            return
        took = now - self.started
        generation = info["generation"]
        self.count[generation] += 1
        self.seconds[generation] += took
        if generation == 2 or took >= RECORD_OVER_S:
            with self.lock:
                self.pauses.append((generation, took, time.monotonic()))

    def write(self) -> None:
        with self.lock:
            pauses, self.pauses = self.pauses, []
        lines: list[dict[str, Any]] = [
            {"gc": [gen, round(1000 * took, 3), round(at, 4)]} for gen, took, at in pauses
        ]
        lines.append(
            {
                "tick": round(time.monotonic(), 4),
                "count": list(self.count),
                "ms": [round(1000 * s, 1) for s in self.seconds],
                "counters": {name: metrics.value(name) for name in COUNTERS},
            }
        )
        with open(self.path, "a") as out:
            out.write("".join(json.dumps(line) + "\n" for line in lines))

    def run(self) -> None:
        while True:
            time.sleep(1.0)
            self.write()


if os.environ.get("SOAK_GC_FILE"):
    _recorder = GcRecorder(os.environ["SOAK_GC_FILE"])
    gc.callbacks.append(_recorder)
    threading.Thread(target=_recorder.run, name="soak-gc-writer", daemon=True).start()
