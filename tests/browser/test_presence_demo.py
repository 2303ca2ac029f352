"""The demo's "Who is online" card in Chromium, against a daphne that serves the presence channel
(``WSGATEWAY_PRESENCE_CHANNEL=1``, ``PRESENCE_GRACE`` 1 s): a green dot that follows another user's tab."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.servers import Daphne, project_env, sqlite_database

from .helpers import PUSH_TIMEOUT_MS, login

pytestmark = pytest.mark.daphne

GRACE = 1


@pytest.fixture(scope="module")
def presence_site(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = project_env(
        DATABASE_URL=sqlite_database(tmp_path_factory.mktemp("presence-demo-db")),
        WSGATEWAY_PRESENCE_CHANNEL="1",
        WSGATEWAY_EXTRA=json.dumps({"PRESENCE_GRACE": GRACE}),
    )
    daphne = Daphne(env, name="presence-demo").start()
    try:
        yield daphne.http_url
    finally:
        daphne.stop()


def dot(page: Any, username: str) -> Any:
    return page.locator("#people-list .person").filter(has_text=username)


def test_a_dot_turns_green_when_another_user_opens_the_demo_and_grey_after_the_grace(
    presence_site: str, new_page: Callable[..., Any]
) -> None:
    alice = login(new_page(), presence_site, "alice")
    expect(dot(alice, "bob")).to_have_attribute("data-online", "false")
    expect(dot(alice, "bob").locator(".person-state")).to_have_text("offline")
    bob = login(new_page(), presence_site, "bob")
    expect(dot(alice, "bob")).to_have_attribute("data-online", "true", timeout=PUSH_TIMEOUT_MS)
    expect(dot(bob, "alice")).to_have_attribute(
        "data-online", "true"
    )  # bob's page, told by its watch's reply
    bob.close()
    # Offline once the grace (1 s) and the check after it are over: within the push bound past it.
    expect(dot(alice, "bob")).to_have_attribute(
        "data-online", "false", timeout=GRACE * 1000 + PUSH_TIMEOUT_MS
    )
    expect(dot(alice, "bob").locator(".person-state")).to_have_text("offline")
