"""The demo site in a real Chromium, against a real daphne: what a user of wsgateway sees."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.servers import HttpSession, manage

from .conftest import Site
from .helpers import PUSH_TIMEOUT_MS, login, open_home, password

pytestmark = pytest.mark.daphne


# The demo's bell, inbox and toasts are the drop-in <wsgateway-inbox> in its top bar.


def bell(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-bell")


def badge(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-badge")


def toasts(page: Any) -> Any:
    """Newest last: the inbox stacks them upwards from the window's corner."""
    return page.locator("wsgateway-inbox .wsgi-toast")


def items(page: Any) -> Any:
    """The open inbox's list, newest first."""
    return page.locator("wsgateway-inbox .wsgi-item")


def unread_items(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-item[data-read=false]")


def open_inbox(page: Any, tab: str = "Unread") -> None:
    """Open the inbox under the bell, on ``tab`` (a click elsewhere in the page closes it again)."""
    if bell(page).get_attribute("aria-expanded") != "true":
        bell(page).click()
    chosen = page.locator("wsgateway-inbox").get_by_role("tab", name=tab)
    chosen.click()
    expect(chosen).to_have_attribute("aria-selected", "true")


def expect_badge_colour(page: Any, category: str) -> None:
    """The badge is in the newest unread notification's colour (demo.css's --badge-<category>)."""
    colour = page.evaluate(
        "(name) => getComputedStyle(document.querySelector('wsgateway-inbox')).getPropertyValue(name).trim()",
        f"--badge-{category}",
    )
    assert re.fullmatch(r"#[0-9a-f]{6}", colour), colour
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    expect(badge(page)).to_have_css("background-color", f"rgb({red}, {green}, {blue})")


def send_from_form(page: Any, message: str, category: str) -> None:
    """Use the demo's "Notify me" form: a POST (with CSRF) to the notify-me view."""
    page.locator("#notify-message").fill(message)
    page.locator(f"label.segment--{category}").click()
    page.get_by_role("button", name="Notify me").click()


def clipboard_texts(page: Any) -> Any:
    return page.locator("#clipboard-list .clip-text")


def test_login_shows_unread_count(site: Site, new_page: Callable[..., Any]) -> None:
    # Notifications stored while carol has no socket open.
    http = HttpSession(site.url).login("carol", password("carol"))
    for category in ["info", "warning", "error"]:
        status, body = http.post("/notify-me/", {"message": f"Stored {category}", "category": category})
        assert status == 200, body

    page = login(new_page(), site.url, "carol")

    expect(badge(page)).to_have_text("3")
    expect_badge_colour(page, "error")  # the newest unread's category
    expect(bell(page)).to_have_attribute("aria-label", "Notifications, 3 unread")
    open_inbox(page)
    expect(unread_items(page)).to_have_count(3)
    expect(items(page).first.locator(".wsgi-label")).to_have_text("Stored error")
    expect(page.locator("#connection")).to_have_text(re.compile("Live"))
    expect(page).to_have_title("(3) Inbox · wsgateway demo")


def test_wrong_password_stays_on_the_login_page(site: Site, new_page: Callable[..., Any]) -> None:
    page = new_page()
    page.goto(site.url + "/")
    page.wait_for_url(re.compile(r"/accounts/login/\?next=/$"))
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    assert "/accounts/login/" in page.url


def test_notification_from_another_tab_arrives_as_toast_and_badge_within_2s(
    site: Site, new_page: Callable[..., Any]
) -> None:
    watching = login(new_page(), site.url, "dave")
    sending = open_home(new_page(tab_of=watching), site.url)
    expect(badge(watching)).to_be_hidden()

    started = time.monotonic()
    send_from_form(sending, "Build #42 deployed to staging", "success")

    toast = toasts(watching).filter(has_text="Build #42 deployed to staging")
    expect(toast).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(badge(watching)).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    elapsed = time.monotonic() - started
    assert elapsed < PUSH_TIMEOUT_MS / 1000, f"the notification took {elapsed:.2f}s"

    expect(toast).to_have_attribute("data-category", "success")
    expect_badge_colour(watching, "success")
    # The inbox's toast is the label alone; the item in the inbox carries the notification's link.
    open_inbox(watching)
    newest_item = items(watching).first
    expect(newest_item).to_contain_text("Build #42")
    expect(newest_item.get_by_role("link", name="Open")).to_have_attribute("href", "/")
    # Who sent it reaches the page (the inbox does not show it): the sender is dave, from his own form.
    listed = watching.evaluate("gateway.notifications.list({limit: 1})")
    assert listed["notifications"][0]["metainfo"]["createdUser"] == "dave"
    # The tab that pressed the button is one of dave's tabs too.
    expect(toasts(sending).filter(has_text="Build #42")).to_be_visible(timeout=PUSH_TIMEOUT_MS)

    # A second one, in another colour, stacks next to the first, nearer the corner; the open list
    # gets it on top.
    send_from_form(sending, "Disk almost full", "error")
    newest = toasts(watching).last
    expect(newest).to_have_text(re.compile("Disk almost full"), timeout=PUSH_TIMEOUT_MS)
    expect(newest).to_have_attribute("data-category", "error")
    expect(toasts(watching)).to_have_text([re.compile("Build #42"), re.compile("Disk almost full")])
    expect(badge(watching)).to_have_text("2", timeout=PUSH_TIMEOUT_MS)
    expect_badge_colour(watching, "error")
    expect(items(watching).first).to_contain_text("Disk almost full")


def test_two_tabs_share_the_clipboard_and_the_read_state(site: Site, new_page: Callable[..., Any]) -> None:
    first = login(new_page(), site.url, "erin")
    second = open_home(new_page(tab_of=first), site.url)

    # Added in one tab, shown in the other.
    first.get_by_label("Text to add to the clipboard").fill("Shared via the first tab")
    first.get_by_role("button", name="Add", exact=True).click()
    expect(clipboard_texts(second)).to_have_text(["Shared via the first tab"], timeout=PUSH_TIMEOUT_MS)

    # A reference to a demo Document, copied in the second tab.
    second.get_by_role("button", name="Copy Roadmap 2027 to the clipboard").click()
    expect(clipboard_texts(first)).to_have_text(
        ["Roadmap 2027", "Shared via the first tab"], timeout=PUSH_TIMEOUT_MS
    )
    expect(first.locator("#clipboard-list .clip--reference .clip-meta")).to_contain_text("demo.document #")
    expect(first.locator(".document", has_text="Roadmap 2027").locator(".document-copied")).to_be_visible()

    # Removed in the first tab, gone from the second.
    first.get_by_role("button", name="Remove Shared via the first tab").click()
    expect(clipboard_texts(second)).to_have_text(["Roadmap 2027"], timeout=PUSH_TIMEOUT_MS)

    # Unread in both tabs; "mark all read" in one clears the badge in both.
    send_from_form(first, "First of two", "info")
    expect(badge(second)).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    send_from_form(first, "Second of two", "warning")
    expect(badge(first)).to_have_text("2", timeout=PUSH_TIMEOUT_MS)
    expect(badge(second)).to_have_text("2", timeout=PUSH_TIMEOUT_MS)
    open_inbox(second)
    expect(unread_items(second)).to_have_count(2)
    # The first tab's inbox is open too: it follows what the second does, without a reload.
    open_inbox(first, "All")
    expect(unread_items(first)).to_have_count(2)

    second.get_by_role("button", name="Mark all read").click()
    expect(badge(second)).to_be_hidden(timeout=PUSH_TIMEOUT_MS)
    expect(badge(first)).to_be_hidden(timeout=PUSH_TIMEOUT_MS)
    expect(unread_items(first)).to_have_count(0, timeout=PUSH_TIMEOUT_MS)
    expect(items(first)).to_have_count(2)

    # "Mark read" on one notification, and flushing the clipboard, reach the other tab too.
    send_from_form(second, "Third", "info")
    expect(badge(first)).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    third = items(first).filter(has_text="Third")
    expect(third).to_have_attribute("data-read", "false")
    third.get_by_role("button", name="Mark read").click()
    expect(badge(second)).to_be_hidden(timeout=PUSH_TIMEOUT_MS)
    expect(third).to_have_attribute("data-read", "true")
    second.get_by_role("button", name="Clear").click()
    expect(first.locator("#clipboard-empty")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(clipboard_texts(first)).to_have_count(0)


def test_page_reconnects_by_itself_after_a_server_restart(site: Site, new_page: Callable[..., Any]) -> None:
    server = site.another_daphne("restart-daphne").start()
    page = login(new_page(), server.http_url, "frank")
    page.get_by_label("Text to add to the clipboard").fill("Survives restarts")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(clipboard_texts(page)).to_have_text(["Survives restarts"], timeout=PUSH_TIMEOUT_MS)
    expect(badge(page)).to_be_hidden()
    page.evaluate("window.notReloaded = true")

    server.stop()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "open")
    expect(page.locator("#connection")).to_contain_text(re.compile("Offline|Reconnecting"))
    expect(page.get_by_role("button", name="Add", exact=True)).to_be_disabled()

    # Stored while no server runs; the page learns of it only from the on-connect frames.
    result = manage(site.env, "notify", "frank", "Sent while you were offline", "--category", "warning")
    assert "Stored 1 notification" in result.stdout

    server.start()  # the same port, the same database
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=20_000)
    assert page.evaluate("window.notReloaded") is True
    expect(badge(page)).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    expect_badge_colour(page, "warning")
    open_inbox(page)
    expect(unread_items(page)).to_have_text(
        [re.compile("Sent while you were offline")], timeout=PUSH_TIMEOUT_MS
    )
    expect(clipboard_texts(page)).to_have_text(["Survives restarts"])
    # And it works again: a push after the reconnect arrives live.
    send_from_form(page, "Back online", "success")
    expect(toasts(page).filter(has_text="Back online")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(badge(page)).to_have_text("2", timeout=PUSH_TIMEOUT_MS)


def test_a_tab_offline_while_notifications_arrive_shows_each_once_after_it_reconnects(
    site: Site, new_page: Callable[..., Any]
) -> None:
    server = site.another_daphne("offline-daphne").start()
    page = login(new_page(), server.http_url, "ivan")
    # What the page's code is handed: each notification's seq, in order.
    page.evaluate(
        "() => { window.handed = [];"
        " gateway.notifications.onNotification((n) => window.handed.push(n.seq)); }"
    )
    start = page.evaluate("gateway.notifications.seq")
    open_inbox(page)  # open through the outage: the catch-up goes into the list shown

    server.stop()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "open")
    # Stored while no server runs: twenty, from another process, one notify() each.
    for n in range(20):
        manage(site.env, "notify", "ivan", f"While you were away {n}")

    server.start()
    # Twenty manage.py runs can outlast the backoff's growth: the next attempt may then be
    # as far as maxDelay away (the client's promise), plus the time the attempt itself takes.
    retry_within_ms = page.evaluate("gateway.options.maxDelay") + 10_000
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=retry_within_ms)
    expect(page.locator("#catch-up-note")).to_contain_text("20", timeout=PUSH_TIMEOUT_MS)
    away = items(page).filter(has_text="While you were away")
    expect(away).to_have_count(20, timeout=PUSH_TIMEOUT_MS)  # each once, in the inbox left open
    newest_first = [f"While you were away {n}" for n in reversed(range(20))]
    expect(away.locator(".wsgi-label")).to_have_text(newest_first)
    expect(badge(page)).to_have_text("20")
    assert toasts(page).count() == 0  # what a catch-up brings is not toasted, one by one
    send_from_form(page, "Back online", "success")  # and a live one after the catch-up
    expect(toasts(page).filter(has_text="Back online")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(toasts(page)).to_have_count(1)
    # Each once, in order: the twenty numbered one after another while no tab was there to change
    # anything, the live one after them (past the numbers the open inbox's mark_seen took since).
    handed = page.evaluate("window.handed")
    assert handed[:20] == list(range(start + 1, start + 21))
    assert len(handed) == 21 and handed[20] > start + 20
    # Opened again, from the server's list: the 20 once each (the second page comes on scrolling).
    open_inbox(page, "All")
    expect(items(page).first).to_contain_text("Back online")
    page.locator("wsgateway-inbox .wsgi-scroll").evaluate("(box) => { box.scrollTop = box.scrollHeight; }")
    expect(items(page)).to_have_count(21, timeout=PUSH_TIMEOUT_MS)
    expect(items(page).filter(has_text="While you were away")).to_have_count(20)


def test_another_user_sees_nothing_of_the_first(
    site: Site, new_page: Callable[..., Any], screenshot_path: Callable[[str], Path]
) -> None:
    alice = login(new_page(), site.url, "alice")
    bob = login(new_page(), site.url, "bob")

    alice.get_by_label("Text to add to the clipboard").fill("Draft: Q3 pricing for ACME")
    alice.get_by_role("button", name="Add", exact=True).click()
    alice.get_by_role("button", name="Copy Quarterly report to the clipboard").click()
    expect(clipboard_texts(alice)).to_have_count(2, timeout=PUSH_TIMEOUT_MS)
    for message, category in [
        ("Welcome to the workspace, alice!", "info"),
        ("Storage is 90% full: archive old files soon.", "warning"),
        ("Your quarterly report is ready to download.", "success"),
    ]:
        send_from_form(alice, message, category)
        expect(toasts(alice).filter(has_text=message)).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(badge(alice)).to_have_text("3", timeout=PUSH_TIMEOUT_MS)

    # bob's own notification is pushed after all of alice's: once it is there, anything of
    # alice's that leaked to bob's socket would be there too.
    send_from_form(bob, "Only for bob", "info")
    expect(toasts(bob).filter(has_text="Only for bob")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(toasts(bob)).to_have_count(1)
    expect(badge(bob)).to_have_text("1")
    open_inbox(bob, "All")
    expect(items(bob)).to_have_text([re.compile("Only for bob")])
    expect(bob.locator("#clipboard-empty")).to_be_visible()
    expect(clipboard_texts(bob)).to_have_count(0)
    # Straight from bob's socket, not only from what the page shows.
    page = bob.evaluate("gateway.notifications.list({limit: 100})")
    assert [item["label"] for item in page["notifications"]] == ["Only for bob"]
    assert bob.evaluate("gateway.clipboard.entries") == []
    assert bob.evaluate("gateway.user.username") == "bob"
    expect(badge(alice)).to_have_text("3")
    expect(toasts(alice).filter(has_text="Only for bob")).to_have_count(0)

    alice.locator("#notify-message").fill("The nightly import failed on row 1,204.")
    alice.locator("label.segment--error").click()
    alice.get_by_role("button", name="Notify me").click()
    expect(toasts(alice).last).to_contain_text("nightly import failed", timeout=PUSH_TIMEOUT_MS)
    for _ in range(toasts(alice).count() - 1):  # the older ones go; the newest, last, stays
        toasts(alice).first.get_by_role("button", name="Dismiss").click()
    expect(toasts(alice)).to_have_text([re.compile("nightly import failed")])
    expect(alice.locator("#notify-button")).not_to_have_class(re.compile(r"\bis-done\b"))  # the "sent" flash
    alice.set_viewport_size({"width": 1280, "height": 1000})
    # The README's picture (docs/screenshot.png is this file): the inbox open under the bell in the top bar.
    open_inbox(alice)
    expect(unread_items(alice)).to_have_count(4)
    alice.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    alice.mouse.move(0, 0)
    alice.screenshot(path=screenshot_path("demo.png"))
    bob.screenshot(path=screenshot_path("demo-bob.png"))
    assert screenshot_path("demo.png").stat().st_size > 10_000


class _ForeignPage(BaseHTTPRequestHandler):
    """Serves one page that tries to open a socket to the demo from another origin."""

    target = ""

    def do_GET(self) -> None:
        body = f"""<!doctype html><title>elsewhere</title><script>
          window.result = {{opened: false, messages: []}};
          const socket = new WebSocket({self.target!r});
          socket.onopen = () => {{ window.result.opened = true; }};
          socket.onmessage = (event) => {{ window.result.messages.push(event.data); }};
          socket.onerror = () => {{ window.result.error = true; }};
          socket.onclose = (event) => {{ window.result.closed = event.code; }};
        </script>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(params=["127.0.0.2", "127.0.0.1"], ids=["another host", "another port of the same host"])
def foreign_origin(site: Site, request: pytest.FixtureRequest) -> Iterator[str]:
    """http://127.0.0.2:<port>/: loopback too, but a host the project does not allow; or
    http://127.0.0.1:<port>/: the site's own host, which the project allows, on another port
    (the browser sends the site's cookies there too: cookies do not tell ports apart)."""
    handler = type("ForeignPage", (_ForeignPage,), {"target": site.daphne.ws_url + "/ws/"})
    server = ThreadingHTTPServer((request.param, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{request.param}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_foreign_origin_cannot_open_a_socket(
    site: Site, new_page: Callable[..., Any], foreign_origin: str
) -> None:
    assert site.url.startswith("http://127.0.0.1:")  # the second page is on the same host
    page = login(new_page(), site.url, "heidi")  # the browser holds heidi's session cookie
    rejected_before = site.daphne.log().count("WSREJECT /ws/")

    page.goto(foreign_origin)
    page.wait_for_function("window.result && window.result.closed !== undefined", timeout=5000)
    result = page.evaluate("window.result")
    assert result["opened"] is False, result
    assert result["messages"] == [], result
    assert result["closed"] == 1006, result  # the handshake failed: there was never a socket
    deadline = time.monotonic() + 5
    while site.daphne.log().count("WSREJECT /ws/") == rejected_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert site.daphne.log().count("WSREJECT /ws/") == rejected_before + 1

    # The same script from the site's own origin opens, authenticated: the origin made the difference.
    page.goto(site.url + "/accounts/login/")
    page.evaluate(
        """(url) => new Promise((resolve) => {
            const socket = new WebSocket(url);
            window.result = {opened: false, messages: []};
            socket.onopen = () => { window.result.opened = true; };
            socket.onmessage = (event) => { window.result.messages.push(JSON.parse(event.data)); resolve(); };
            setTimeout(resolve, 4000);
        })""",
        site.daphne.ws_url + "/ws/",
    )
    result = page.evaluate("window.result")
    assert result["opened"] is True
    assert result["messages"][0]["payload"]["user"]["username"] == "heidi"


def test_a_signed_out_tab_stops_reconnecting(site: Site, new_page: Callable[..., Any]) -> None:
    staying = login(new_page(), site.url, "grace")
    leaving = open_home(new_page(tab_of=staying), site.url)

    leaving.get_by_role("button", name="Log out").click()
    leaving.wait_for_url(re.compile(r"/accounts/login/$"))

    # The server closes the other tab's socket with 4401: "log in first", not "network down".
    connection = staying.locator("#connection")
    expect(connection).to_have_attribute("data-state", "unauthorized", timeout=PUSH_TIMEOUT_MS)
    expect(staying.locator("#signed-out")).to_be_visible()
    expect(staying.locator("#signed-out")).to_contain_text("You logged out in another tab.")
    connects = site.daphne.log().count("WSCONNECTING /ws/")
    staying.wait_for_timeout(1500)  # longer than the first backoff (at most 0.5 s) and then some
    assert staying.evaluate("[gateway.state, gateway.attempt]") == ["unauthorized", 0]
    assert site.daphne.log().count("WSCONNECTING /ws/") == connects
    expect(staying.locator("#signed-out").get_by_role("link", name="Sign in again")).to_have_attribute(
        "href", "/accounts/login/?next=/"
    )


def test_an_action_url_that_is_not_http_is_shown_but_never_a_link(
    site: Site, new_page: Callable[..., Any]
) -> None:
    """notify() refuses such a URL; a row saved another way (the admin, the ORM) is rendered safely."""
    create = (
        "from django.contrib.auth.models import User\n"
        "from wsgateway.models import Notification\n"
        "Notification.objects.create(recipient=User.objects.get(username='judy'), message='Odd actions', "
        "actions=[{'label': 'Run', 'url': 'javascript:window.pwned=1'}, "
        "{'label': 'Data', 'url': 'data:text/html,<script>parent.pwned=1</script>'}, "
        "{'label': 'Open', 'url': '/accounts/login/'}])\n"
    )
    manage(site.env, "shell", "-c", create)
    page = login(new_page(), site.url, "judy")
    open_inbox(page)
    row = items(page).filter(has_text="Odd actions")
    expect(row).to_have_count(1, timeout=PUSH_TIMEOUT_MS)
    expect(row.locator("a.wsgi-link")).to_have_text(["Open"])
    assert row.locator("a.wsgi-link").get_attribute("href") == "/accounts/login/"
    for label in ("Run", "Data"):
        action = row.locator(".wsgi-link", has_text=label)
        expect(action).to_have_count(1)
        assert action.evaluate("node => node.tagName") == "SPAN"
        assert action.get_attribute("href") is None
        action.click()
    assert page.evaluate("window.pwned") is None
    assert page.url == site.url + "/"


def test_a_view_asks_another_tab_which_page_it_has_open_and_shows_its_answer(
    site: Site, new_page: Callable[..., Any]
) -> None:
    """A request from the server, answered by a real tab: the view's aask() reaches both of the
    user's tabs, the asking tab declines, and the other tab's handler answers with what only that
    browser knows (its address, and the text typed in its form)."""
    asking = login(new_page(), site.url, "ivan")
    asking.get_by_role("button", name="Ask my other tabs which page they have open").click()
    expect(asking.locator("#ask-answer")).to_have_text("No other tab of yours is open.")

    other = new_page(tab_of=asking)
    other.goto(site.url + "/#drafts")
    expect(other.locator("#connection")).to_have_attribute("data-state", "open")
    other.locator("#notify-message").fill("Half-written message")
    asking.get_by_role("button", name="Ask my other tabs which page they have open").click()
    expect(asking.locator("#ask-answer")).to_contain_text("has /#drafts open")
    expect(asking.locator("#ask-answer")).to_contain_text("with “Half-written message” typed")
    expect(other.locator("#activity-log")).to_contain_text("another tab asked which page this one has open")


def test_maintenance_shows_its_reason_and_the_tab_comes_back_by_itself_after_retry_after(
    site: Site, new_page: Callable[..., Any]
) -> None:
    page = login(new_page(), site.url, "olivia")
    connection = page.locator("#connection")
    manage(site.env, "wsgateway_maintenance", "on", "--reason", "Upgrading the inbox", "--retry-after", "2")
    try:
        # The open socket stays open; a reload's new one is refused once this daphne has read the
        # state, within MAINTENANCE_CHECK_INTERVAL (2 s): a few reloads at most.
        for _ in range(10):
            page.reload()
            try:
                expect(connection).to_have_attribute("data-maintenance", "on", timeout=3000)
                break
            except AssertionError:
                continue
        # The server's reason, and the wait wsgateway.js took from retry_after (2 s, spread by up to 1 s).
        expect(connection).to_contain_text(re.compile(r"Maintenance: Upgrading the inbox · back in [23] s"))
        expect(connection).to_have_attribute("data-state", "closed")
    finally:
        manage(site.env, "wsgateway_maintenance", "off")
    # No reload: the tab reconnects by itself once the server accepts again.
    expect(connection).to_have_attribute("data-state", "open", timeout=20_000)
    expect(connection).to_have_text(re.compile("Live"))
    expect(connection).to_have_attribute("data-maintenance", "")
