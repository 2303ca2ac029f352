"""The views the benchmark client triggers: a fan-out burst, and one notification through notify()."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from wsgateway import abroadcast, frames
from wsgateway import notify as wsgateway_notify
from wsgateway.groups import apush_many

CHANNEL = "notifications"
_STAMP = "2025-01-01T12:00:00.000000+00:00"


def bench_payload(round_: int, seq: int) -> dict[str, Any]:
    """Shaped like notification_payload() of a saved Notification (about 400 bytes on the wire).

    ``r``, ``seq`` and ``t`` (time.monotonic() at push time) let the client check for
    losses and duplicates and measure latency; CLOCK_MONOTONIC is shared by all processes.
    """
    return {
        "category": "info",
        "last": {
            "id": seq + 1,
            "category": "info",
            "label": "Your weekly report is ready.",
            "is_read": False,
            "data": {"report": 17},
            "actions": [{"label": "Open", "url": "/reports/2025-01/"}],
            "metainfo": {
                "createdDatetime": _STAMP,
                "changedDatetime": _STAMP,
                "createdUser": "reports",
                "changedUser": "reports",
            },
        },
        "unread": seq + 1,
        "r": round_,
        "n": seq,
        "t": time.monotonic(),
    }


def _refuse(request: HttpRequest) -> HttpResponse | None:
    if request.method != "POST":
        return HttpResponse(status=405)
    if request.META.get("REMOTE_ADDR") != "127.0.0.1":
        return HttpResponse(status=403)
    return None


def _users(body: dict[str, Any]) -> list[int]:
    if "users" in body:
        return [int(uid) for uid in body["users"]]
    low, high = body["range"]
    return list(range(int(low), int(high)))


@csrf_exempt
async def fanout(request: HttpRequest) -> HttpResponse:
    """POST {"m", "users": [...] | "range": [lo, hi], "round"}: m pushes to each user, in order."""
    if (refused := _refuse(request)) is not None:
        return refused
    body = json.loads(request.body)
    m, users, round_ = int(body["m"]), _users(body), int(body.get("round", 0))
    start = time.monotonic()
    sent = 0
    if getattr(settings, "BENCH_LAYER", None) == "ceiling":
        from bench.ceiling import REGISTRY

        for seq in range(m):
            for uid in users:
                text = frames.data(CHANNEL, bench_payload(round_, seq))
                for consumer in list(REGISTRY.get(uid, ())):
                    await consumer.send(text_data=text)
                    sent += 1
    else:
        # One notification to every user per round, the way notify([u1, u2, ...]) sends it: a layer
        # with group_send_many (wsgateway's) takes the round at once, a stock layer one group_send
        # after another.
        # Payloads are made one at a time, as for the ceiling: a list of a thousand alive at once set off
        # collections that the ceiling's loop never does.
        for seq in range(m):
            await apush_many((uid, CHANNEL, bench_payload(round_, seq)) for uid in users)
            sent += len(users)
    # The size of one of these frames (they differ by a few digits): what a push put on the wire.
    frame_bytes = len(frames.data(CHANNEL, bench_payload(round_, m - 1)).encode())
    return JsonResponse({"sent": sent, "elapsed": time.monotonic() - start, "frame_bytes": frame_bytes})


@csrf_exempt
async def broadcast(request: HttpRequest) -> HttpResponse:
    """POST {"round"}: one abroadcast() of a fan-out frame (seq 0 of the round) to every socket."""
    if (refused := _refuse(request)) is not None:
        return refused
    round_ = int(json.loads(request.body).get("round", 0))
    start = time.monotonic()
    await abroadcast(CHANNEL, bench_payload(round_, 0))
    return JsonResponse({"elapsed": time.monotonic() - start})


#: notify() calls of all requests run here, one at a time, on one database connection: the way a site
#: writes to SQLite. Each request's own thread (Django's per-request ThreadSensitiveContext) would open
#: a connection per request, and concurrent writers on one SQLite file wait in its busy handler, which
#: sleeps in steps of up to 100 ms: the benchmark would measure that lock, not the push path.
_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-notify")


def _notify_one(user_id: int, data: dict[str, Any]) -> None:
    user = get_user_model()._default_manager.get(pk=user_id)
    wsgateway_notify(user, "Your export is ready.", data=data, actions=[{"label": "Open", "url": "/"}])


@csrf_exempt
async def noop(request: HttpRequest) -> HttpResponse:
    """POST: nothing but the site's middleware and a response: what the HTTP path costs alone."""
    if (refused := _refuse(request)) is not None:
        return refused
    return JsonResponse({"ok": True})


@csrf_exempt
async def notify(request: HttpRequest) -> HttpResponse:
    """POST {"user", "t", "ts", "n"}: one notify() (row, post_save, push on commit), as a site's would."""
    if (refused := _refuse(request)) is not None:
        return refused
    body = json.loads(request.body)
    # DatabaseSyncToAsync, like wsgateway.anotify: old connections closed around the call, and the push
    # that notify() schedules on commit (async_to_sync) runs on this event loop.
    await DatabaseSyncToAsync(_notify_one, thread_sensitive=False, executor=_WRITER)(
        int(body["user"]), {"t": body["t"], "ts": body["ts"], "n": body["n"]}
    )
    return JsonResponse({"ok": True})
