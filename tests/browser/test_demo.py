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


def badge(page: Any) -> Any:
    return page.locator("#bell-badge")


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
    expect(badge(page)).to_have_class(re.compile(r"\bbadge--error\b"))  # the newest unread's category
    expect(page.locator("#bell")).to_have_attribute("aria-label", "Notifications, 3 unread")
    expect(page.locator("#notification-list .notification.is-unread")).to_have_count(3)
    expect(page.locator("#notification-list .notification-message").first).to_have_text("Stored error")
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

    toast = watching.locator(".toast", has_text="Build #42 deployed to staging")
    expect(toast).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(badge(watching)).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    elapsed = time.monotonic() - started
    assert elapsed < PUSH_TIMEOUT_MS / 1000, f"the notification took {elapsed:.2f}s"

    expect(toast).to_have_class(re.compile(r"\btoast--success\b"))
    expect(toast.get_by_role("link", name="Open")).to_have_attribute("href", "/")
    expect(toast).to_contain_text("from dave")
    expect(badge(watching)).to_have_class(re.compile(r"\bbadge--success\b"))
    expect(watching.locator("#notification-list .notification").first).to_contain_text("Build #42")
    # The tab that pressed the button is one of dave's tabs too.
    expect(sending.locator(".toast", has_text="Build #42")).to_be_visible(timeout=PUSH_TIMEOUT_MS)

    # A second one, in another colour, stacks above the first.
    send_from_form(sending, "Disk almost full", "error")
    newest = watching.locator(".toast").first
    expect(newest).to_have_text(re.compile("Disk almost full"), timeout=PUSH_TIMEOUT_MS)
    expect(newest).to_have_class(re.compile(r"\btoast--error\b"))
    expect(badge(watching)).to_have_text("2", timeout=PUSH_TIMEOUT_MS)


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
    expect(second.locator("#notification-list .notification.is-unread")).to_have_count(2)

    second.get_by_role("button", name="Mark all read").click()
    expect(badge(second)).to_be_hidden(timeout=PUSH_TIMEOUT_MS)
    expect(badge(first)).to_be_hidden(timeout=PUSH_TIMEOUT_MS)
    expect(first.locator("#notification-list .notification.is-unread")).to_have_count(0)
    expect(first.locator("#notification-list .notification")).to_have_count(2)

    # "Mark read" on one notification, and flushing the clipboard, reach the other tab too.
    send_from_form(second, "Third", "info")
    expect(badge(first)).to_have_text("1", timeout=PUSH_TIMEOUT_MS)
    first.locator(".notification", has_text="Third").get_by_role("button", name="Mark read").click()
    expect(badge(second)).to_be_hidden(timeout=PUSH_TIMEOUT_MS)
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
    expect(badge(page)).to_have_class(re.compile(r"\bbadge--warning\b"))
    expect(page.locator("#notification-list .notification.is-unread")).to_have_text(
        [re.compile("Sent while you were offline")], timeout=PUSH_TIMEOUT_MS
    )
    expect(clipboard_texts(page)).to_have_text(["Survives restarts"])
    # And it works again: a push after the reconnect arrives live.
    send_from_form(page, "Back online", "success")
    expect(page.locator(".toast", has_text="Back online")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
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
    send_from_form(page, "Back online", "success")  # and a live one after the catch-up
    expect(page.locator(".toast", has_text="Back online")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    assert page.evaluate("window.handed") == list(range(start + 1, start + 22))
    expect(page.locator("#notification-list .notification", has_text="While you were away")).to_have_count(20)


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
        expect(alice.locator(".toast", has_text=message)).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(badge(alice)).to_have_text("3", timeout=PUSH_TIMEOUT_MS)

    # bob's own notification is pushed after all of alice's: once it is there, anything of
    # alice's that leaked to bob's socket would be there too.
    send_from_form(bob, "Only for bob", "info")
    expect(bob.locator(".toast", has_text="Only for bob")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(bob.locator(".toast")).to_have_count(1)
    expect(badge(bob)).to_have_text("1")
    expect(bob.locator("#notification-list .notification")).to_have_text([re.compile("Only for bob")])
    expect(bob.locator("#clipboard-empty")).to_be_visible()
    expect(clipboard_texts(bob)).to_have_count(0)
    # Straight from bob's socket, not only from what the page shows.
    page = bob.evaluate("gateway.notifications.list({limit: 100})")
    assert [item["label"] for item in page["notifications"]] == ["Only for bob"]
    assert bob.evaluate("gateway.clipboard.entries") == []
    assert bob.evaluate("gateway.user.username") == "bob"
    expect(badge(alice)).to_have_text("3")
    expect(alice.locator(".toast", has_text="Only for bob")).to_have_count(0)

    alice.locator("#notify-message").fill("The nightly import failed on row 1,204.")
    alice.locator("label.segment--error").click()
    alice.get_by_role("button", name="Notify me").click()
    expect(alice.locator(".toast").first).to_contain_text("nightly import failed", timeout=PUSH_TIMEOUT_MS)
    for extra in alice.locator(".toast").all()[1:]:
        extra.get_by_role("button", name="Dismiss").click()
    expect(alice.locator(".toast")).to_have_count(1)
    expect(alice.locator("#notify-button")).not_to_have_class(re.compile(r"\bis-done\b"))  # the "sent" flash
    alice.set_viewport_size({"width": 1280, "height": 1000})
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
    row = page.locator("#notification-list .notification", has_text="Odd actions")
    expect(row).to_have_count(1, timeout=PUSH_TIMEOUT_MS)
    expect(row.locator("a.action-link")).to_have_text(["Open"])
    assert row.locator("a.action-link").get_attribute("href") == "/accounts/login/"
    for label in ("Run", "Data"):
        action = row.locator(".action-link", has_text=label)
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
