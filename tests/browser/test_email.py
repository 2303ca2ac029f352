"""The e-mail of an unread notification, read (or not) in Chromium: a tab that marks it read within the
delay sends no e-mail; a user whose tab is open but who never opens the inbox gets exactly one.

Its own site (tests/support/mail.py): daphne, two ``manage.py db_worker`` and an SMTP sink, as in
tests/test_live_email.py; the package's ``site`` has no workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import PUSH_TIMEOUT_MS, login, open_home
from tests.support.mail import Site, mail_site

pytestmark = [pytest.mark.daphne, pytest.mark.slow, pytest.mark.timeout(180)]

#: The kind's delay in seconds: long enough for a tab to open its inbox and click, short for a test.
DELAY = 6
USERS = {"reader": "reader@example.com", "ignorer": "ignorer@example.com"}


@pytest.fixture(scope="module")
def mail(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    kinds = {"comment": {"label": "Comments", "email_after": DELAY}}
    with mail_site(tmp_path_factory.mktemp("browser-email"), "browser-email", kinds, USERS) as site:
        yield site


def inbox_item(page: Any, text: str) -> Any:
    page.locator("wsgateway-inbox .wsgi-bell").click()
    return page.locator("wsgateway-inbox .wsgi-item").filter(has_text=text)


def test_read_in_the_browser_within_the_delay_sends_none_and_ignored_sends_one(
    mail: Site, new_page: Callable[..., Any]
) -> None:
    reader = login(new_page(), mail.daphne.http_url, "reader")
    # Its tab open, its inbox never opened. (The site is on the in-process layer: the notifications, sent
    # from `manage.py shell`, are not pushed live; the reader's inbox lists it when opened.)
    ignorer = login(new_page(), mail.daphne.http_url, "ignorer")
    read_pk = mail.notify("reader", "Alice commented on the roadmap")
    ignored_pk = mail.notify("ignorer", "Bob commented on the budget")
    item = inbox_item(reader, "Alice commented on the roadmap")
    expect(item).to_have_attribute("data-read", "false", timeout=PUSH_TIMEOUT_MS)
    item.get_by_role("button", name="Mark read").click()
    expect(item).to_have_attribute("data-read", "true", timeout=PUSH_TIMEOUT_MS)

    assert mail.sink.wait(lambda: len(mail.sink.to(USERS["ignorer"])) >= 1, DELAY + 20)
    assert mail.sink.wait(lambda: f"notification {read_pk} not sent" in mail.logs(), 20)
    time.sleep(1)  # anything sent late would be here by now
    assert mail.sink.to(USERS["reader"]) == []
    [email] = mail.sink.to(USERS["ignorer"])
    assert email["Subject"] == "Bob commented on the budget"
    assert f"notification {ignored_pk} sent" in mail.logs()
    # The e-mail changed nothing in-app: the ignorer's tab, reloaded, still counts it unread.
    open_home(ignorer, mail.daphne.http_url)
    expect(ignorer.locator("wsgateway-inbox .wsgi-badge")).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    # The reader's was skipped for having been read (or seen: opening the inbox marks it seen first).
    assert any(f"notification {read_pk} not sent: {why}" in mail.logs() for why in ("read", "seen"))
