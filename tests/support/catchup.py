"""A page that follows a user's notifications by the protocol's cursor, for tests against real servers.

It does what docs/protocol.md asks of a client (and wsgateway.js does): start at the first connect
frame's ``seq``; hand over a pushed notification whose ``seq`` is the one after the cursor; on a
gap, a reconnect or a resync, ``sync`` from the cursor until nothing more. ``delivered`` is what the
page got, in order; a test compares it with what was stored.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from tests.support.servers import ROOT
from tests.support.wsclient import Client

#: A worker: COUNT notifications for alice, one notify() each, PAUSE seconds apart.
NOTIFY_IN_SHELL = (
    "import time; from django.contrib.auth import get_user_model; from wsgateway import notify; "
    "alice = get_user_model().objects.get(username='alice'); "
    "[(notify(alice, f'from a worker {{n}}'), time.sleep({pause})) for n in range({count})]"
)


def notify_in_another_process(env: dict[str, str], count: int, pause: float) -> subprocess.Popen[str]:
    """Start a worker process that notifies alice ``count`` times, ``pause`` seconds apart."""
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "shell",
            "-c",
            NOTIFY_IN_SHELL.format(count=count, pause=pause),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class CursorPage:
    def __init__(self) -> None:
        self.cursor: int | None = None
        self.delivered: list[int] = []
        self.syncs = 0

    async def follow(self, client: Client) -> None:
        """Read every frame ``client`` has so far, from where this page left off on it."""
        read = getattr(client, "_page_read", 0)
        while read < len(client.frames):
            frame = client.frames[read]
            read += 1
            client._page_read = read  # type: ignore[attr-defined]
            payload = frame.get("payload")
            if frame.get("channel") != "notifications" or not isinstance(payload, dict) or "id" in frame:
                continue
            if "seq" in payload and "last" not in payload:  # a connect frame, first or after a resync
                if self.cursor is None:
                    self.cursor = payload["seq"]
                self._take(payload.get("missed") or [])
                await self.sync(client)
            elif "last" in payload:
                seq = payload["last"]["seq"]
                if self.cursor is not None and seq == self.cursor + 1:
                    self._take([payload["last"]])
                elif self.cursor is not None and seq > self.cursor + 1:
                    await self.sync(client)  # a gap: a push was lost, or two crossed

    async def sync(self, client: Client) -> None:
        assert self.cursor is not None
        while True:
            self.syncs += 1
            reply = await client.request("notifications", {"action": "sync", "data": {"since": self.cursor}})
            assert "payload" in reply, f"sync failed: {reply!r}"
            self._take(reply["payload"]["notifications"])
            self.cursor = max(self.cursor, reply["payload"]["seq"])
            if not reply["payload"]["has_more"]:
                return

    def _take(self, notifications: list[dict[str, Any]]) -> None:
        # Oldest first; what the page has already (a push a sync repeats) is passed over.
        assert self.cursor is not None
        for notification in notifications:
            if notification["seq"] > self.cursor:
                self.delivered.append(notification["seq"])
                self.cursor = notification["seq"]


async def follow_until(page: CursorPage, client: Client, want: list[int], timeout: float) -> None:
    """Let ``page`` follow ``client`` until it has delivered exactly ``want`` (or fail at ``timeout``)."""

    async def caught_up() -> None:
        await page.follow(client)
        while page.delivered != want:
            await client.wait_for(
                lambda frames: len(frames) > getattr(client, "_page_read", 0), timeout=timeout
            )
            await page.follow(client)

    try:
        await asyncio.wait_for(caught_up(), timeout)
    except TimeoutError:
        missing = sorted(set(want) - set(page.delivered))
        raise AssertionError(
            f"page has {len(page.delivered)} of {len(want)}; missing {missing[:20]}"
        ) from None
