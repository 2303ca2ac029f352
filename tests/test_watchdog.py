"""The layer watchdog's probe, on a layer of the test's own: a loop that stood still is not an outage.

The stall is real: the event loop is blocked (``time.sleep``) for longer than the probe's timeout while
the probe waits, as a full garbage collection of a process with thousands of sockets blocks it, and the
answer is there the moment the loop runs again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from wsgateway import health
from wsgateway.health import LayerWatchdog

TIMEOUT = 0.2


class StallingLayer:
    """Answers every probe, the first ``stalls`` of them during a stall of the loop; or never answers
    (``down``)."""

    def __init__(self, stalls: int = 0, down: bool = False) -> None:
        self.stalls, self.down = stalls, down
        self.sends = 0
        self.pending: dict[str, Any] | None = None
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def new_channel(self) -> str:
        return "probe!1"

    async def group_add(self, group: str, channel: str) -> None:
        return None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sends += 1
        if not self.down:
            self.pending = message

    async def receive(self, channel: str) -> dict[str, Any]:
        message, self.pending = self.pending, None
        if message is not None and self.sends <= self.stalls:
            # While the probe waits for it: the answer comes in 10 ms, and the loop stands still for
            # twice the timeout before it can be read (as a collection that starts then would).
            loop = asyncio.get_running_loop()
            loop.call_soon(time.sleep, TIMEOUT * 2)
            loop.call_later(0.01, self.sent.put_nowait, message)
        elif message is not None:
            self.sent.put_nowait(message)
        return await self.sent.get()


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT", TIMEOUT)


async def test_a_probe_that_timed_out_in_a_stalled_loop_is_asked_again_and_passes() -> None:
    layer = StallingLayer(stalls=1)
    watchdog = LayerWatchdog(layer)
    with pytest.raises(TimeoutError):
        await watchdog.probe()  # alone, the stall reads as a timeout
    layer.sends = 0
    await watchdog.check()  # the check asks again
    assert layer.sends == 2 and watchdog.healthy


async def test_a_layer_that_answers_neither_probe_is_down() -> None:
    layer = StallingLayer(down=True)
    watchdog = LayerWatchdog(layer)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await watchdog.check()
    assert layer.sends == 2
    assert time.monotonic() - started >= 2 * TIMEOUT  # two timeouts: an outage is seen one later


async def test_two_stalls_in_a_row_are_an_outage_to_the_check() -> None:
    layer = StallingLayer(stalls=2)
    with pytest.raises(TimeoutError):
        await LayerWatchdog(layer).check()
    assert layer.sends == 2
