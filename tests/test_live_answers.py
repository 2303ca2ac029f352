"""A tab answering a burst of the server's requests, against a real daphne on Redis (issue 20).

The red team's case: a tab that answered every request of a burst had its 42nd answer refused
``rate_limited``, its answers spending the budget its own frames have. Here the limits are the
defaults (a burst of 40 frames, 20 a second), the requests are this process's ``aask`` on the Redis
layer, and the tab is a real WebSocket client that answers each request as it reads it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from tests.support.servers import Daphne, HttpSession, serving, site_env
from tests.support.wsclient import Client
from wsgateway import aask
from wsgateway.exceptions import RequestFailed

pytestmark = [pytest.mark.daphne, pytest.mark.redis, pytest.mark.timeout(120)]

#: A table that holds the whole burst: what is measured is the rate budget, not the table.
EXTRA = {"MAX_PENDING_REQUESTS": 100}
LAYERS = {"default": {"BACKEND": "wsgateway.layers.redis.RedisChannelLayer", "CONFIG": {"hosts": []}}}


@pytest.fixture(scope="module")
def daphne(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daphne, str]]:
    env = site_env(
        tmp_path_factory.mktemp("live-answers"), REDIS_URL=redis_url, WSGATEWAY_EXTRA=json.dumps(EXTRA)
    )
    with serving(env, "live-answers") as server:
        yield server, redis_url


async def answer_everything(client: Client, answered: list[str]) -> None:
    """Answer each request as it is read, with its own payload; keep the other frames for the test."""

    def a_request(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
        return next((frame for frame in frames if "request" in frame), None)

    while True:
        request = await client.wait_for(a_request, timeout=3600)
        client.frames.remove(request)
        reply = {"channel": request["channel"], "reply": request["request"], "payload": request["payload"]}
        await client.send(reply)
        answered.append(request["request"])


def outcome(result: Any) -> str:
    return f"{type(result).__name__}:{result.code}" if isinstance(result, RequestFailed) else "answered"


async def test_a_tab_answers_a_burst_of_100_requests_and_keeps_its_own_budget(
    daphne: tuple[Daphne, str],
) -> None:
    server, redis_url = daphne
    session = HttpSession(server.http_url).login("alice", "alice-password")
    client = await Client(f"{server.ws_url}/ws/", {"Cookie": session.cookie_header}).connect()
    client.frames.clear()  # the connect frames
    layers = {"default": {**LAYERS["default"], "CONFIG": {"hosts": [redis_url]}}}
    answered: list[str] = []
    answering = asyncio.create_task(answer_everything(client, answered))
    try:
        with override_settings(CHANNEL_LAYERS=layers, WSGATEWAY=EXTRA):
            results = await asyncio.gather(
                *(aask(1, "editor", n, timeout=20) for n in range(100)), return_exceptions=True
            )
        assert Counter(map(outcome, results)) == Counter(answered=100)
        assert results == list(range(100))
        assert len(answered) == 100
        # Nothing of the burst was refused, and the tab's own burst of 40 frames is all there.
        assert not [frame for frame in client.frames if "error" in frame], client.frames
        for n in range(40):
            await client.send({"channel": "gateway", "id": n, "payload": {"action": "ping"}})

        def all_answered(frames: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            answers = [frame for frame in frames if frame.get("id") is not None]
            return answers if len(answers) >= 40 else None

        pongs = await client.wait_for(all_answered)
        assert sorted(frame["id"] for frame in pongs) == list(range(40))
        assert all(frame["payload"] == {"action": "pong"} for frame in pongs), pongs
    finally:
        answering.cancel()
        await asyncio.gather(answering, return_exceptions=True)
        await client.close()
