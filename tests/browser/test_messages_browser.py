"""Django's messages in a real Chromium: the demo's "Django's messages" card, two tabs of one user.

What only a browser shows: that its fetch() is not a page load (``Sec-Fetch-Mode: cors``) and its form
submission is (``navigate``), and that the inbox's toast shows a message's HTML as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.servers import Daphne, manage, running

from .conftest import Site
from .helpers import PUSH_TIMEOUT_MS, login, open_home

pytestmark = pytest.mark.daphne

#: A user of this module's alone: the other browser tests count toasts of theirs.
USER = "mia"
HTML = '<b>Saved</b> the <img src=x onerror="document.title=1"> draft'


@pytest.fixture(scope="module")
def live(site: Site) -> Iterator[str]:
    """The demo with Django's messages on the socket (the package's site serves wsgateway's defaults),
    on the site's database; its URL."""
    manage(
        site.env,
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_user({USER!r}, password='x')",
    )
    with running(Daphne({**site.env, "WSGATEWAY_LIVE_MESSAGES": "1"}, name="browser-messages")) as daphne:
        yield daphne.http_url


def message_toasts(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-toast.wsgi-message")


def send_message(page: Any, text: str, level: str, button: str = "Send") -> None:
    page.locator("#message-text").fill(text)
    page.locator("#message-level").select_option(level)
    page.get_by_role("button", name=button, exact=True).click()


def test_a_message_from_another_tab_is_a_toast_in_both_and_on_no_page_after(
    live: str, new_page: Callable[..., Any]
) -> None:
    watching = login(new_page(), live, USER, "x")
    sending = open_home(new_page(tab_of=watching), live)

    send_message(sending, HTML, "warning")
    toast = message_toasts(watching).filter(has_text="Saved")
    expect(toast).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(toast).to_have_attribute("data-category", "warning")
    expect(toast.locator(".wsgi-label")).to_have_text(HTML)  # the markup as text
    expect(toast.locator("b, img")).to_have_count(0)
    expect(message_toasts(sending).filter(has_text="Saved")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    # The badge counts notifications only.
    expect(watching.locator("wsgateway-inbox .wsgi-badge")).to_be_hidden()

    watching.reload()
    expect(watching.locator("#connection")).to_have_attribute("data-state", "open")
    expect(watching.locator("#page-messages")).to_have_count(0)

    # A page load: its page shows the message, and no tab gets a toast of it. The next fetch's toast is
    # the only one that comes after, as the socket's frames are in order.
    send_message(sending, "Kept for the page", "success", button="Send and reload")
    expect(sending.locator("#page-messages")).to_contain_text("Kept for the page")
    expect(sending.locator("#page-messages [data-level=success]")).to_have_count(1)
    expect(sending.locator("#connection")).to_have_attribute("data-state", "open")
    send_message(sending, "After the page", "error")
    expect(message_toasts(watching).filter(has_text="After the page")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(message_toasts(watching).filter(has_text="After the page")).to_have_attribute(
        "data-category", "error"
    )
    expect(message_toasts(watching).filter(has_text="Kept for the page")).to_have_count(0)
    assert watching.title() != "1"
