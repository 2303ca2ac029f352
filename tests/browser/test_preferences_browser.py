"""The preferences page in Chromium against a real daphne: a change made in one tab shows in another
without a reload, and applies there: a notification of a kind turned off in-app reaches neither the
badge nor the toasts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.servers import HttpSession, manage

from .conftest import Site
from .helpers import PUSH_TIMEOUT_MS, login, password

#: This module's own user: it counts notifications, so no other test may send it any.
USER = "prefs-pia"
PAGE = "/wsgateway/preferences/page/"

WATCH_NOTIFICATIONS = """() => {
  const notifications = window.wsgatewayPreferences.notifications;
  window.watched = { handed: 0, seq: notifications.seq };
  notifications.onNotification(() => window.watched.handed++);
}"""
NOTIFICATIONS_SINCE = """() => {
  const notifications = window.wsgatewayPreferences.notifications;
  const { handed, seq } = window.watched;
  return { handed, sameSeq: notifications.seq === seq, unread: notifications.unread };
}"""


@pytest.fixture(scope="module")
def user(site: Site) -> str:
    manage(
        site.env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_user({USER!r}, password={password(USER)!r})",
    )
    return USER


def open_preferences(page: Any, site_url: str) -> Any:
    page.goto(site_url + PAGE)
    page.locator("wsgateway-inbox[data-state=open]").wait_for()
    return page


def send(http: HttpSession, message: str, kind: str) -> Any:
    status, body = http.post("/notify-me/", {"message": message, "kind": kind})
    assert status == 200, body
    return json.loads(body)["id"]


def test_a_change_in_one_tab_shows_in_another_without_a_reload_and_applies_there(
    site: Site, user: str, new_page: Callable[..., Any], screenshot_path: Callable[[str], Path]
) -> None:
    first = open_preferences(login(new_page(), site.url, user), site.url)
    second = open_preferences(new_page(tab_of=first), site.url)
    second.evaluate("window.notReloaded = true")
    comments = second.get_by_label("Comments on your documents: In the app")
    expect(comments).to_be_checked()
    # A required kind's boxes are shown, checked, and cannot be changed.
    expect(second.get_by_label("Security alerts: In the app")).to_be_checked()
    expect(second.get_by_label("Security alerts: In the app")).to_be_disabled()

    # What wsgateway.js makes of the pushes that follow: no notification, no step of the cursor, no count.
    second.evaluate(WATCH_NOTIFICATIONS)

    first.get_by_label("Comments on your documents: In the app").uncheck()
    expect(comments).not_to_be_checked(timeout=PUSH_TIMEOUT_MS)
    first.get_by_label("A digest of what stayed unread, by e-mail").select_option("daily")
    expect(second.get_by_label("A digest of what stayed unread, by e-mail")).to_have_value(
        "daily", timeout=PUSH_TIMEOUT_MS
    )
    assert second.evaluate("window.notReloaded") is True
    assert second.evaluate(NOTIFICATIONS_SINCE) == {"handed": 0, "sameSeq": True, "unread": 0}
    expect(first.locator("#wsgateway-preferences-status")).to_have_text("Saved.")

    # The page drawn again reads what was stored.
    third = open_preferences(new_page(tab_of=first), site.url)
    expect(third.get_by_label("Comments on your documents: In the app")).not_to_be_checked()
    expect(third.get_by_label("A digest of what stayed unread, by e-mail")).to_have_value("daily")

    # A comment is stored for no one now; a mention, sent after it, arrives: the comment was not
    # merely slow.
    http = HttpSession(site.url).login(user, password(user))
    assert send(http, "Ann commented on the plan", "comment") is None
    assert send(http, "Ann mentioned you", "mention") is not None
    toasts = second.locator("wsgateway-inbox .wsgi-toast")
    toasts.filter(has_text="Ann mentioned you").wait_for(timeout=PUSH_TIMEOUT_MS)
    expect(second.locator("wsgateway-inbox .wsgi-badge")).to_have_text("1")
    assert toasts.filter(has_text="Ann commented on the plan").count() == 0
    second.screenshot(path=str(screenshot_path("preferences.png")))


def test_a_refused_change_says_why_and_leaves_the_box_as_stored(
    site: Site, user: str, new_page: Callable[..., Any]
) -> None:
    page = open_preferences(login(new_page(), site.url, user), site.url)
    mentions = page.get_by_label("Mentions: In the app")
    expect(mentions).to_be_checked()

    # The kind is gone from the settings between the page's drawing and the change: the change is
    # sent as a stale page would send it.
    def stale(route: Any) -> None:
        body = route.request.post_data_json
        route.continue_(post_data=json.dumps({"choices": {"poll": body["choices"]["mention"]}}))

    page.route(
        site.url + "/wsgateway/preferences/",
        lambda route: stale(route) if route.request.method == "POST" else route.continue_(),
    )
    mentions.uncheck()
    status = page.locator("#wsgateway-preferences-status")
    expect(status).to_have_attribute("data-code", "unknown_kind")
    # What the server has is drawn again: the box is checked, as stored.
    expect(mentions).to_be_checked()


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violation_on_the_page(
    site: Site, user: str, new_page: Callable[..., Any], scheme: str
) -> None:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci`; the accessibility check must not be skipped")
    page = login(new_page(), site.url, user)
    page.emulate_media(color_scheme=scheme)
    open_preferences(page, site.url)
    page.evaluate(AXE.read_text())
    result = page.evaluate("axe.run('main').then((r) => r.violations)")
    assert [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in result] == []
