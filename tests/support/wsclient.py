"""A WebSocket client for tests against real daphne processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed


class Client:
    """One socket; frames are collected in the background so none is missed while a test waits."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, subprotocols: list[str] | None = None
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        #: Offered in Sec-WebSocket-Protocol ("wsgateway.v1", as wsgateway.js does); None offers none.
        self.subprotocols = subprotocols
        self.frames: list[dict[str, Any]] = []
        #: The marks read (and acknowledged): they are not in ``frames``.
        self.marks = 0
        self.closed: asyncio.Future[int | None] | None = None
        self._new = asyncio.Event()
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0

    async def connect(self, *, expect_frames: int = 3) -> Client:
        self._ws = await websockets.connect(
            self.url,
            additional_headers=self.headers,
            subprotocols=self.subprotocols,  # type: ignore[arg-type]
            open_timeout=10,
            max_size=None,
            ping_interval=None,
            proxy=None,
        )
        self.closed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        if expect_frames:
            await self.wait_for(lambda frames: len(frames) >= expect_frames, timeout=10)
        return self

    async def _read(self) -> None:
        assert self._ws is not None and self.closed is not None
        # Flow control as docs/protocol.md asks of a client: echo each mark as it is read, which
        # acknowledges everything before it. Marks are not content: they are counted, not kept.
        try:
            async for text in self._ws:
                frame = json.loads(text)
                payload = frame.get("payload")
                if (
                    frame.get("channel") == "gateway"
                    and isinstance(payload, dict)
                    and payload.get("action") == "mark"
                ):
                    self.marks += 1
                    ack = {"channel": "gateway", "payload": {"action": "ack", "data": payload["data"]}}
                    await self._ws.send(json.dumps(ack))
                    continue
                self.frames.append(frame)
                self._new.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set_result(self._ws.close_code)
            self._new.set()

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 10) -> Any:
        """Wait until ``predicate(frames)`` is truthy and return its value."""
        async with asyncio.timeout(timeout):
            while True:
                result = predicate(self.frames)
                if result:
                    return result
                self._new.clear()
                await self._new.wait()

    def on(self, channel: str) -> list[dict[str, Any]]:
        return [f["payload"] for f in self.frames if f.get("channel") == channel and "payload" in f]

    async def request(self, channel: str, payload: Any, timeout: float = 10) -> dict[str, Any]:
        assert self._ws is not None
        self._next_id += 1
        frame_id = f"r{self._next_id}"
        await self._ws.send(json.dumps({"channel": channel, "payload": payload, "id": frame_id}))
        return await self.wait_for(  # type: ignore[no-any-return]
            lambda frames: next((f for f in frames if f.get("id") == frame_id), None), timeout
        )

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame as it is (a reply to a server request, say)."""
        assert self._ws is not None
        await self._ws.send(json.dumps(frame))

    async def server_request(self, channel: str, timeout: float = 10) -> dict[str, Any]:
        """The first request the server sent on ``channel`` (a frame with ``"request"``)."""
        return await self.wait_for(  # type: ignore[no-any-return]
            lambda frames: next((f for f in frames if f.get("channel") == channel and "request" in f), None),
            timeout,
        )

    async def close_code(self, timeout: float = 10) -> int | None:
        assert self.closed is not None
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)
