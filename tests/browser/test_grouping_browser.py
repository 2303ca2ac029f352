"""Grouping in Chromium: a burst of notifications of one group is one inbox entry, updated where it
is ("… and 19 others", the count, the newest text), and one toast, in every tab; a tab opened after
the burst lists the one entry. Against a real daphne, through the demo's ``/notify-me/`` view; and
wsgateway.js's copy, fed frames by a fake socket.

The pages and their fixtures are tests/browser/test_inbox.py's (the tag under a strict CSP) and
tests/browser/test_client.py's (the client alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.servers import HttpSession, manage

from . import test_client, test_inbox
from .conftest import Site
from .test_client import states_eval
from .test_inbox import PUSH_MS, badge, bell, expect_count, expect_text, items, toasts, violations, wait_for

# The pages of those modules, by their fixtures' names (pytest finds a fixture among a module's names).
inbox_browser = test_inbox.inbox_browser
open_inbox = test_inbox.open_inbox
client_page = test_client.client_page

#: Users of this module only (open_inbox signs in as one of them).
USERS = ["group-ann", "group-ben"]
#: The burst of the issue's "done when".
BURST = 20

# Each toast the page ever showed, counted as it is added: one shown and replaced by another is still two.
COUNT_TOASTS = """
window.toastsShown = 0;
new MutationObserver((records) => {
  for (const record of records) for (const node of record.addedNodes) {
    if (node.classList && node.classList.contains("wsgi-toast")) window.toastsShown += 1;
  }
}).observe(document.querySelector("wsgateway-inbox .wsgi-toasts"), { childList: true });
"""


@pytest.fixture(scope="module")
def inbox_users(site: Site) -> list[str]:
    """This module's users, in place of test_inbox.py's (open_inbox asks for the fixture by name)."""
    create = (
        "from django.contrib.auth.models import User\n"
        f"for name in {USERS!r}:\n"
        "    User.objects.create_user(name, password=name + '-password')\n"
    )
    manage(site.env, "shell", "-c", create)
    return USERS


def send(http: HttpSession, message: str, group: str = "") -> None:
    status, body = http.post("/notify-me/", {"message": message, "group": group})
    assert status == 200, body


def labels(page: Any) -> list[str]:
    return [str(text) for text in items(page).locator(".wsgi-label").all_text_contents()]


@pytest.mark.daphne
def test_a_burst_of_one_group_is_one_entry_and_one_toast_in_every_tab(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    looking, http = open_inbox("group-ann")
    away, _ = open_inbox("group-ann")  # its inbox stays closed: toasts and the badge only
    for page in (looking, away):
        page.evaluate(COUNT_TOASTS)
        # No toast goes by itself while the burst is sent, however slow the machine.
        page.evaluate("document.querySelector('wsgateway-inbox')._toastTimeout = 120000")
    bell(looking).click()
    send(http, "Older, alone")
    send(http, "Comment 1", group="doc-42")
    send(http, "Newer, alone")
    expect_count(items(looking), 3)
    for i in range(2, BURST + 1):
        send(http, f"Comment {i}", group="doc-42")

    grouped = items(looking).filter(has_text=f"Comment {BURST}")
    wait_for(lambda: grouped.count() == 1 and grouped.get_attribute("data-count") == str(BURST), PUSH_MS)
    # One entry, updated where it was: nothing above or below it moved.
    assert labels(looking) == ["Newer, alone", f"Comment {BURST}", "Older, alone"]
    expect_text(grouped.locator(".wsgi-group"), f"group-ann and {BURST - 1} others")
    expect_text(grouped.locator(".wsgi-count"), str(BURST))
    expect_text(badge(looking), "3")
    for page in (looking, away):
        expect_text(badge(page), "3")
        group_toast = toasts(page).filter(has_text=f"Comment {BURST}")
        group_toast.wait_for(timeout=PUSH_MS)
        # One toast for the group, beside the two others', and never more shown along the way.
        assert toasts(page).count() == 3
        expect_text(group_toast.locator(".wsgi-group"), f"group-ann and {BURST - 1} others")
        assert page.evaluate("window.toastsShown") == 3
        assert violations(page) == []

    # A tab opened after the burst lists the one entry, with its count.
    later, _ = open_inbox("group-ann")
    bell(later).click()
    expect_count(items(later), 3)
    assert labels(later) == ["Newer, alone", f"Comment {BURST}", "Older, alone"]
    expect_text(items(later).filter(has_text=f"Comment {BURST}").locator(".wsgi-count"), str(BURST))

    # Read, the group is closed: the next one of it is an entry, and a toast, of its own.
    grouped.get_by_role("button", name="Mark read").click()
    wait_for(lambda: toasts(looking).filter(has_text=f"Comment {BURST}").count() == 0, PUSH_MS)
    send(http, "Comment after", group="doc-42")
    expect_count(items(looking), 4)
    fresh = items(looking).filter(has_text="Comment after")
    assert fresh.get_attribute("data-count") == "1"
    assert fresh.locator(".wsgi-group").count() == 0
    wait_for(lambda: toasts(looking).filter(has_text="Comment after").count() == 1, PUSH_MS)


def test_a_grouped_change_replaces_the_kept_copy_and_moves_the_cursor_as_any_change(
    client_page: Any,
) -> None:
    result = states_eval(
        client_page,
        """
        const [gw, socket] = await connected();
        const events = recordAll(gw);
        connectFrame(socket, 10, {unread: 0, counts: counts(0)});
        // A page trimmed it; each grouped change carries the whole notification, newer in every part.
        pushNew(socket, fresh(11, {group: "g", count: 1, actors: ["Ann"], trimmed: true}), 1);
        const grouped = (version, label, count, actors) =>
            fresh(11, {version, change: "grouped", label, group: "g", count, actors});
        pushChanges(socket, [grouped(12, "second", 2, ["Bob", "Ann"])], 1);
        pushChanges(socket, [grouped(13, "third", 3, ["Cy", "Bob", "Ann"])], 1);
        pushChanges(socket, [grouped(12, "second", 2, ["Bob", "Ann"])], 1);  // again: applied already
        await sleep(0);
        const kept = gw.notifications.get(1011);
        return {events, sent: socket.sent.length, seq: gw.notifications.seq,
                kept: [kept.label, kept.count, kept.actors, kept.version, kept.change, "trimmed" in kept]};
        """,
    )
    assert result["events"] == [
        ["new", 11, False],
        ["change", 11, "grouped", False, "second"],
        ["change", 11, "grouped", False, "third"],
    ]
    assert result["sent"] == 0  # every number in order: no sync
    assert result["seq"] == 13
    assert result["kept"] == ["third", 3, ["Cy", "Bob", "Ann"], 13, "grouped", False]
