"""``manage.py wsgateway_status``: every server process's sockets, rates, push latency, refusals and
layer drops, as they publish them on wsgateway's Redis layer (wsgateway.status), with the maintenance
state and the online users; refreshed until Ctrl-C, or once (``--once``), as text or JSON."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from wsgateway import maintenance, presence, status
from wsgateway.bridge import run_async
from wsgateway.conf import gateway_settings
from wsgateway.groups import channel_layer
from wsgateway.layers.extensions import STATUS, supports

#: Bounds of ``--interval``, in seconds: below the publishing interval a refresh shows nothing new.
MIN_INTERVAL = 0.5
MAX_INTERVAL = 60.0
#: The terminal's "home and clear screen", written before each refresh of the live view on a terminal.
CLEAR = "\x1b[H\x1b[2J"

NEEDS_REDIS = (
    "wsgateway_status reads what the server processes publish on wsgateway's Redis layer "
    "(wsgateway.layers.redis.RedisChannelLayer), and the channel layer {alias!r} is {backend}, which "
    "keeps each process's state to itself: this command, a process of its own, would see none of them."
)


def wait(seconds: float) -> None:
    """The pause between refreshes (a name of its own: tests replace it, not time.sleep)."""
    time.sleep(seconds)


def interval(text: str) -> float:
    seconds = float(text)
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ValueError(text)
    return seconds


def report(snapshots: list[dict[str, Any]], now: float, state: Any, online: int | None) -> dict[str, Any]:
    """The whole view: the processes' snapshots, the maintenance (``state``: a maintenance.State,
    None for off, or "unknown"), and how many users are online (None: not known)."""
    if state == "unknown":
        shown: dict[str, Any] | None = {"on": None}
    elif state is None:
        shown = {"on": False}
    else:
        shown = {
            "on": True,
            "reason": state.reason,
            "retry_after": state.retry_after,
            "since": state.since.isoformat(timespec="seconds"),
        }
    processes = [{**s, "age": round(max(now - s["at"], 0.0), 3)} for s in snapshots]
    return {
        "at": round(now, 3),
        "processes": processes,
        "sockets": sum(s["sockets"] for s in processes),
        "online_users": online,
        "maintenance": shown,
    }


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _rate(rates: dict[str, Any] | None, name: str) -> str:
    value = None if rates is None else rates.get(name)
    return "-" if value is None else f"{value:.1f}"


def _ms(latency: dict[str, Any] | None, name: str) -> str:
    value = None if latency is None else latency.get(name)
    return "-" if value is None else f"{value * 1000:.1f}"


COLUMNS: tuple[str, ...] = (
    *("PID", "HOST", "SERVER", "UP", "SOCKETS", "CONN/S", "PUSH/S", "IN/S", "OUT/S"),
    *("P50 MS", "P99 MS", "SEEN"),
)


def render_text(view: dict[str, Any]) -> str:
    """The view as a table, one row per process and a line of what is not zero under it."""
    at = datetime.fromtimestamp(view["at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    processes = view["processes"]
    online = view["online_users"]
    online_text = "?" if online is None else str(online)
    state = view["maintenance"]
    if state["on"] is None:
        maintenance_text = "maintenance unknown"
    elif state["on"]:
        maintenance_text = f"MAINTENANCE ON since {state['since']} (retry after {state['retry_after']} s)"
    else:
        maintenance_text = "maintenance off"
    lines = [
        f"wsgateway at {at}: processes {len(processes)}, sockets {view['sockets']}, "
        f"users online {online_text}, {maintenance_text}",
        "",
    ]
    if not processes:
        lines.append(
            "No process is publishing its status: none has had a socket in the last "
            f"{int(status.IDLE_KEEP)} s, or none runs wsgateway on this Redis."
        )
        return "\n".join(lines) + "\n"
    rows: list[tuple[str, ...]] = [COLUMNS]
    for p in processes:
        rates, latency = p.get("rates"), p.get("latency")
        rows.append(
            (
                str(p["pid"]),
                str(p["host"]),
                p.get("server") or "?",
                _duration(p["at"] - p["started"]),
                str(p["sockets"]),
                *(_rate(rates, n) for n in ("connects", "pushes", "frames_in", "frames_out")),
                _ms(latency, "p50"),
                _ms(latency, "p99"),
                f"{p['age']:.0f}s ago",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for number, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number:
            lines.extend(_details(processes[number - 1]))
    return "\n".join(lines) + "\n"


def _details(process: dict[str, Any]) -> list[str]:
    endpoints = ", ".join(f"{name} {n}" for name, n in process["endpoints"].items())
    found = [f"    sockets: {endpoints}"] if endpoints else []
    for title, counts in (("refused", process["refusals"]), ("layer", process["layer"])):
        moved = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        if moved:
            found.append(f"    {title}: {moved}")
    return found


class Command(BaseCommand):
    help = (
        "Show wsgateway's server processes (sockets per process and endpoint, connects, pushes and "
        "frames per second, push latency, refusals, layer drops) with the maintenance state and the "
        "online users, refreshed until Ctrl-C. Needs wsgateway's Redis layer, where the processes "
        "publish their status while they have sockets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Show it once and exit (for scripts).")
        parser.add_argument(
            "--json",
            dest="as_json",
            action="store_true",
            help="JSON: one document (with --once), else one line per refresh.",
        )
        parser.add_argument(
            "--interval",
            type=interval,
            default=status.INTERVAL,
            metavar="SECONDS",
            help=f"Seconds between refreshes, {MIN_INTERVAL} to {MAX_INTERVAL:.0f} "
            f"(default {status.INTERVAL}).",
        )

    def handle(self, *args: Any, once: bool, as_json: bool, interval: float, **options: Any) -> None:
        layer = channel_layer()
        if layer is None or not supports(layer, STATUS):
            backend = "missing" if layer is None else f"{type(layer).__module__}.{type(layer).__qualname__}"
            raise CommandError(NEEDS_REDIS.format(alias=gateway_settings.CHANNEL_LAYER, backend=backend))
        if once:
            self.show(self.read(layer), as_json, clear=False)
            return
        try:
            while True:
                try:
                    view = self.read(layer)
                except CommandError as exc:  # Redis down for a moment: say so, and try again
                    self.stderr.write(str(exc))
                else:
                    self.show(view, as_json, clear=not as_json and self.stdout.isatty())
                wait(interval)
        except KeyboardInterrupt:
            self.stdout.write("")  # the prompt on a line of its own after the ^C

    def read(self, layer: Any) -> dict[str, Any]:
        try:
            texts = run_async(layer.status_read, status.MAX_PROCESSES)
            online, _ = presence.online_page(0, 1)  # its count: a ZCARD on Redis, whatever the number
        except Exception as exc:  # the layer's error (Redis unreachable), told without a traceback
            raise CommandError(f"could not read the processes' status from the channel layer: {exc}") from exc
        try:
            state: Any = maintenance.current()
        except DatabaseError:
            state = "unknown"
        return report(status.decode(texts), time.time(), state, online)

    def show(self, view: dict[str, Any], as_json: bool, clear: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(view, sort_keys=True))
            return
        self.stdout.write((CLEAR if clear else "") + render_text(view), ending="")
