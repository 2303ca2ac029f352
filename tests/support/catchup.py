"""A page that follows a user's notifications by the protocol's cursor, for tests against real servers.

It does what docs/protocol.md asks of a client (and wsgateway.js does): start at the first connect
frame's ``seq``; hand over a pushed notification whose ``seq`` is the one after the cursor; on a
gap, a reconnect or a resync, ``sync`` from the cursor until nothing more. ``delivered`` is what the
page got, in order; a test compares it with what was stored.
"""

from __future__ import annotations

from typing import Any

from tests.support.wsclient import Client


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
