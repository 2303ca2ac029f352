"""``{% wsgateway_inbox %}``: the bell, the inbox and the toasts, in Chromium against a real daphne,
under a strict Content-Security-Policy; and the tag's markup, without a browser.

The pages are rendered by the tag in this process and served on the daphne's own origin through
Playwright's routing, with the CSP header a strict site sends: the socket, the session cookie and the
static files are the real ones, and the demo's own page (which another test module checks) is not used.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import translation

from tests.support.servers import OUTPUT, HttpSession, manage
from wsgateway.templatetags.wsgateway import inbox_html, inbox_strings

from .conftest import CHROMIUM_ARGS, Site
from .helpers import login

ROOT = Path(__file__).resolve().parents[2]
INBOX_JS = ROOT / "wsgateway" / "static" / "wsgateway" / "inbox.js"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

#: Users of this module only, one per test that counts notifications.
USERS = [
    "inbox-ann",
    "inbox-ben",
    "inbox-cat",
    "inbox-dan",
    "inbox-eve",
    "inbox-fay",
    "inbox-gus",
    "inbox-hal",
    "inbox-ivy",
    "inbox-jon",
    "inbox-kim",
]
#: "Within a second": the bound the issue sets for a change made in another tab.
OTHER_TAB_MS = 1000
PUSH_MS = 2000

# What a strict site sends: scripts only with the page's nonce, styles only from files of its own.
CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self'; "
    "connect-src 'self' {ws}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# Every CSP violation of the page, from its first script on (an init script runs before the page's).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
});
"""

# The frames the page sends on its sockets, to count its syncs.
RECORD_SENT = """
window.sentFrames = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  try { window.sentFrames.push(JSON.parse(data)); } catch (error) {}
  return send.call(this, data);
};
"""


def render(source: str, **context: object) -> str:
    return Template("{% load wsgateway %}" + source).render(Context(context))


# -- the tag, without a browser ----------------------------------------------------------


def test_the_tag_renders_the_stylesheet_the_element_and_both_scripts_with_the_nonce() -> None:
    request = RequestFactory().get("/", HTTP_HOST="localhost")
    html = render("{% wsgateway_inbox %}", request=request, csp_nonce="n0nce")
    assert '<link rel="stylesheet" href="/static/wsgateway/inbox.css" nonce="n0nce">' in html
    assert '<wsgateway-inbox theme="auto"><script type="application/json">' in html
    assert (
        '<script src="/static/wsgateway/wsgateway.js" data-wsgateway-url="ws://localhost/ws/" nonce="n0nce">'
        in html
    )
    assert '<script src="/static/wsgateway/inbox.js" defer nonce="n0nce"></script>' in html
    assert "style=" not in html  # nothing a strict style-src would refuse
    # Without a nonce in the context, none is written.
    assert "nonce" not in render("{% wsgateway_inbox %}", request=request)


def test_the_tag_takes_the_theme_the_bounds_and_a_page_that_loads_the_client_itself() -> None:
    html = render('{% wsgateway_inbox theme="dark" client=False page_size=10 max_items=40 %}')
    assert '<wsgateway-inbox theme="dark" page-size="10" max-items="40">' in html
    assert "wsgateway.js" not in html and "inbox.js" in html
    with pytest.raises(ValueError, match="theme is one of auto, light, dark, not 'blue'"):
        inbox_html(None, theme="blue")
    with pytest.raises(ValueError, match="page_size is a positive integer"):
        inbox_html(None, page_size=0)


def test_the_words_are_the_elements_keys_and_in_german_too() -> None:
    """The tag's words are the ones inbox.js reads (a key missing there would be an English word)."""
    block = re.search(r"const STRINGS = Object\.freeze\(\{(.*?)\}\);", INBOX_JS.read_text(), re.S)
    assert block
    assert set(re.findall(r"^\s*(\w+):", block.group(1), re.M)) == set(inbox_strings())
    with translation.override("de"):
        german = inbox_strings()
        html = render("{% wsgateway_inbox %}")
    assert german["bell"] == "Benachrichtigungen"
    assert german["bellUnread"] == "Benachrichtigungen, {count} ungelesen"
    assert all(value for value in german.values())
    strings = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html).group(1))  # type: ignore[union-attr]
    assert strings == german


def test_the_words_cannot_close_their_script_element() -> None:
    """json_script escapes <, > and &: a translation with "</script>" stays data."""
    with translation.override("en"):
        html = inbox_html(None)
    assert html.count("</script>") == 2  # the JSON's and inbox.js's


# -- in Chromium ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inbox_users(site: Site) -> list[str]:
    create = (
        "from django.contrib.auth.models import User\n"
        f"for name in {USERS!r}:\n"
        "    User.objects.create_user(name, password=name + '-password')\n"
    )
    manage(site.env, "shell", "-c", create)
    return USERS


def session_of(site: Site, username: str) -> HttpSession:
    return HttpSession(site.url).login(username, f"{username}-password")


def send(http: HttpSession, message: str, count: int = 1, category: str = "info") -> int:
    status, body = http.post("/notify-me/", {"message": message, "category": category, "count": str(count)})
    assert status == 200, body
    return int(json.loads(body)["id"])


def page_html(site: Site, nonce: str, language: str, **tag: Any) -> str:
    request = RequestFactory().get("/", HTTP_HOST=site.url.split("//", 1)[1])
    arguments = " ".join(f"{name}={value!r}" for name, value in tag.items())
    with translation.override(language):
        inbox = render(f"{{% wsgateway_inbox {arguments} %}}", request=request, csp_nonce=nonce)
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"><title>A site</title>'
        '<meta name="color-scheme" content="light dark"><link rel="stylesheet" href="site.css"></head>'
        f"<body><header><p>A site</p>{inbox}</header>"
        "<main><h1>Page</h1><p>Its content.</p></main></body></html>"
    )


# The page's own look, a file as a strict site's would be: the bell at the header's end.
SITE_CSS = """
body { margin: 0; font-family: system-ui, sans-serif; }
header { display: flex; align-items: center; justify-content: space-between; padding: 0.5rem 1.5rem;
         border-bottom: 1px solid #8885; }
main { padding: 0 1.5rem; }
"""


@pytest.fixture(scope="module")
def inbox_browser(browser: Any, chromium: str) -> Iterator[Any]:
    """A Chromium of this module's own: a page Playwright serves has no address, and Chromium's
    local-network checks take it for a public page and block its socket to 127.0.0.1. The page
    stands for the site's own, on the daphne's origin, so those checks are turned off here.
    Launched by the package's Playwright (one per process), which ``browser`` brings; asking for it
    is also what marks these tests ``browser``."""
    args = [*CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks"]
    own = browser.browser_type.launch(executable_path=chromium, args=args, timeout=30_000)
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def open_inbox(
    inbox_browser: Any, site: Site, inbox_users: list[str]
) -> Iterator[Callable[..., tuple[Any, HttpSession]]]:
    """open_inbox(username, color_scheme="light", language="en", **tag): a tab signed in as ``username``
    on a page with ``{% wsgateway_inbox **tag %}``, served under the strict CSP; waits for the socket.
    Returns the page and the user's HTTP session (to send notifications with)."""
    contexts: list[Any] = []
    errors: list[str] = []
    sessions: dict[str, HttpSession] = {}
    host = site.url.split("//", 1)[1]

    def open_page(
        username: str, color_scheme: str = "light", language: str = "en", **tag: Any
    ) -> tuple[Any, HttpSession]:
        http = sessions.get(username) or sessions.setdefault(username, session_of(site, username))
        context = inbox_browser.new_context(
            viewport={"width": 1100, "height": 720}, reduced_motion="reduce", color_scheme=color_scheme
        )
        context.set_default_timeout(5000)
        contexts.append(context)
        context.add_cookies(
            [{"name": cookie.name, "value": cookie.value or "", "url": site.url} for cookie in http.jar]
        )
        context.add_init_script(RECORD_VIOLATIONS)
        context.add_init_script(RECORD_SENT)
        nonce = secrets.token_urlsafe(16)

        def serve(route: Any) -> None:
            route.fulfill(
                status=200,
                content_type="text/html; charset=utf-8",
                headers={"Content-Security-Policy": CSP.format(nonce=nonce, ws=f"ws://{host}")},
                body=page_html(site, nonce, language, **tag),
            )

        context.route(site.url + "/inbox-page/", serve)
        context.route(
            site.url + "/inbox-page/site.css",
            lambda route: route.fulfill(status=200, content_type="text/css", body=SITE_CSS),
        )
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(site.url + "/inbox-page/")
        page.locator("wsgateway-inbox[data-state=open]").wait_for()
        return page, http

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def bell(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-bell")


def badge(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-badge")


def items(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-item")


def toasts(page: Any) -> Any:
    return page.locator("wsgateway-inbox .wsgi-toast")


def violations(page: Any) -> list[str]:
    return list(page.evaluate("window.cspViolations"))


def focused(page: Any) -> str:
    """What has the focus: its class and text, to compare and to read in a failure."""
    return str(
        page.evaluate(
            "(() => { const e = document.activeElement; return `${e.className}|${e.textContent}`; })()"
        )
    )


def wait_for(condition: Callable[[], bool], within_ms: int) -> float:
    """Poll until ``condition()`` holds; the ms it took. Fails past ``within_ms``."""
    started = time.monotonic()
    while not condition():
        elapsed = (time.monotonic() - started) * 1000
        assert elapsed < within_ms, f"not within {within_ms} ms"
        time.sleep(0.01)
    return (time.monotonic() - started) * 1000


@pytest.mark.daphne
def test_the_badge_counts_what_is_unread_and_the_page_breaks_no_csp_rule(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    page, http = open_inbox("inbox-ann")
    expect_text(badge(page), "", hidden=True)
    send(http, "Three at once", count=3, category="warning")
    expect_text(badge(page), "3")
    assert bell(page).get_attribute("aria-label") == "Notifications, 3 unread"
    assert bell(page).get_attribute("aria-expanded") == "false"

    # A tab opened now starts from the count the connect frame carries.
    second, _ = open_inbox("inbox-ann")
    expect_text(badge(second), "3")
    bell(second).click()
    expect_count(items(second), 3)
    assert violations(page) == [] and violations(second) == []


@pytest.mark.daphne
def test_keyboard_only_opens_moves_keeps_the_focus_inside_and_returns_it(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    page, http = open_inbox("inbox-ben")
    for number in range(3):
        send(http, f"Report {number}")
    expect_text(badge(page), "3")

    page.keyboard.press("Tab")
    assert "wsgi-bell" in focused(page)
    page.keyboard.press("Enter")
    panel = page.locator("wsgateway-inbox [role=dialog]")
    panel.wait_for(state="visible")
    assert bell(page).get_attribute("aria-expanded") == "true"
    assert focused(page) == "wsgi-tab|Unread"
    expect_count(items(page), 3)

    # The arrows move between the tabs and select them.
    page.keyboard.press("ArrowRight")
    assert focused(page) == "wsgi-tab|All"
    assert page.locator("wsgateway-inbox [role=tab][aria-selected=true]").text_content() == "All"
    expect_count(items(page), 3)
    # Down into the list, down again to the next item; Tab reaches the item's button, Space presses it.
    page.keyboard.press("ArrowDown")
    assert focused(page).startswith("wsgi-item|")
    page.keyboard.press("ArrowDown")
    second_label = items(page).nth(1).locator(".wsgi-label").text_content()
    assert second_label == "Report 1"  # newest first
    assert focused(page).startswith(f"wsgi-item|{second_label}")
    page.keyboard.press("Tab")
    assert focused(page) == "wsgi-link|Open"  # the notification's own link (notify-me's action)
    page.keyboard.press("Tab")
    assert focused(page) == "wsgi-button wsgi-action|Mark read"
    page.keyboard.press("Space")
    expect_text(badge(page), "2")
    assert items(page).nth(1).get_attribute("data-read") == "true"

    # Tab and Shift+Tab go round the panel and never leave it.
    inside = "document.querySelector('wsgateway-inbox [role=dialog]').contains(document.activeElement)"
    for key in ["Tab"] * 12 + ["Shift+Tab"] * 12:
        page.keyboard.press(key)
        assert page.evaluate(inside), f"the focus left the inbox after {key}: {focused(page)}"

    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    assert "wsgi-bell" in focused(page)
    assert bell(page).get_attribute("aria-expanded") == "false"
    # Space opens it too; Escape closes it again.
    page.keyboard.press("Space")
    panel.wait_for(state="visible")
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    assert "wsgi-bell" in focused(page)


@pytest.mark.daphne
def test_a_new_notification_shows_a_toast_in_every_tab_and_reading_it_in_one_clears_the_other(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    first, http = open_inbox("inbox-cat")
    second, _ = open_inbox("inbox-cat")
    send(http, "Older, stays unread")
    send(http, "Build #42 deployed", category="success")
    for page in (first, second):
        expect_text(badge(page), "2")
        toasts(page).filter(has_text="Build #42 deployed").wait_for(timeout=PUSH_MS)
        live = page.locator("wsgateway-inbox [role=status]")
        page.wait_for_function(
            "(text) => document.querySelector('wsgateway-inbox [role=status]').textContent === text",
            arg="New notification: Build #42 deployed",
        )
        assert live.get_attribute("aria-live") == "polite"
    bell(second).click()
    expect_count(items(second), 2)

    # Read in the first tab: the second's toast goes, its badge and its open list follow, within a second.
    bell(first).click()
    items(first).filter(has_text="Build #42 deployed").get_by_role("button", name="Mark read").click()
    took = wait_for(
        lambda: (
            toasts(second).filter(has_text="Build #42 deployed").count() == 0
            and badge(second).text_content() == "1"
            and items(second).filter(has_text="Build #42 deployed").get_attribute("data-read") == "true"
        ),
        OTHER_TAB_MS,
    )
    assert took < OTHER_TAB_MS
    # The other notification is still unread there, and its toast still shown.
    assert items(second).filter(has_text="Older, stays unread").get_attribute("data-read") == "false"
    assert toasts(second).filter(has_text="Older, stays unread").count() == 1
    # The acting tab's own toast goes with its reply (or its push), which may be processed a moment
    # after the other tab's push under load.
    wait_for(lambda: toasts(first).filter(has_text="Build #42 deployed").count() == 0, PUSH_MS)
    assert violations(first) == [] and violations(second) == []


@pytest.mark.daphne
def test_a_toast_goes_away_by_itself(open_inbox: Callable[..., tuple[Any, HttpSession]]) -> None:
    page, http = open_inbox("inbox-dan")
    page.evaluate("document.querySelector('wsgateway-inbox')._toastTimeout = 300")
    send(http, "Short-lived")
    toasts(page).first.wait_for(timeout=PUSH_MS)
    toasts(page).first.wait_for(state="detached", timeout=PUSH_MS)
    expect_text(badge(page), "1")  # gone from view, still unread


@pytest.mark.daphne
def test_mark_all_read_reaches_every_tab(open_inbox: Callable[..., tuple[Any, HttpSession]]) -> None:
    first, http = open_inbox("inbox-eve")
    second, _ = open_inbox("inbox-eve")
    send(http, "One of four", count=4)
    for page in (first, second):
        expect_text(badge(page), "4")
        bell(page).click()
        expect_count(items(page), 4)
    first.get_by_role("button", name="Mark all read").click()
    wait_for(
        lambda: (
            badge(second).is_hidden()
            and second.locator("wsgateway-inbox .wsgi-item[data-read=false]").count() == 0
            and toasts(second).count() == 0
        ),
        OTHER_TAB_MS,
    )
    # Waited for as the other tab is: this tab shows it when its request's reply comes, which may come
    # after the push has reached the other tab (two frames, on two sockets: no order between them).
    wait_for(
        lambda: (
            badge(first).is_hidden()
            and first.locator("wsgateway-inbox .wsgi-item[data-read=true]").count() == 4
        ),
        OTHER_TAB_MS,
    )
    assert first.get_by_role("button", name="Mark all read").is_disabled()


@pytest.mark.daphne
def test_infinite_scroll_loads_the_next_page_and_keeps_at_most_the_bound(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    page, http = open_inbox("inbox-fay", page_size=10, max_items=30)
    first_id = send(http, "Oldest")
    send(http, "Middle", count=68)
    newest_id = send(http, "Newest")
    expect_text(badge(page), "70")
    bell(page).click()
    page.get_by_role("tab", name="All").click()
    expect_count(items(page), 10)
    assert items(page).first.get_attribute("data-id") == str(newest_id)

    scroller = page.locator("wsgateway-inbox .wsgi-scroll")
    seen: list[int] = []
    for _ in range(20):
        scroller.evaluate("(box) => { box.scrollTop = box.scrollHeight; }")
        page.wait_for_timeout(150)
        count = items(page).count()
        seen.append(count)
        assert count <= 30, f"the page holds {count} items, over its bound of 30"
        if items(page).last.get_attribute("data-id") == str(first_id):
            break
    assert items(page).last.get_attribute("data-id") == str(first_id), f"never reached the oldest: {seen}"
    assert 20 in seen  # the second page came after the first
    assert items(page).count() == 30
    # The newest were dropped: a button brings them back.
    back = page.get_by_role("button", name="Back to the newest")
    assert back.is_visible()
    back.click()
    expect_count(items(page), 10)
    assert items(page).first.get_attribute("data-id") == str(newest_id)
    ids = [int(i) for i in items(page).evaluate_all("(all) => all.map((item) => item.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


@pytest.mark.daphne
def test_a_server_that_counts_states_gets_every_tab_and_action_and_an_older_one_read_alone(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    """The connect frame's `counts` says the server numbers states: the archived tab and the actions
    past "mark read" show (in German here); a connect frame without them (an older server) hides them."""
    page, http = open_inbox("inbox-gus", language="de")
    send(http, "Hallo")
    expect_text(badge(page), "1")
    assert bell(page).get_attribute("aria-label") == "Benachrichtigungen, 1 ungelesen"
    bell(page).click()
    tabs = page.locator("wsgateway-inbox [role=tab]:visible")
    assert tabs.all_text_contents() == ["Ungelesen", "Alle", "Archiviert"]
    expect_count(items(page), 1)
    buttons = items(page).first.locator("button:visible").all_text_contents()
    assert buttons == ["Als gelesen markieren", "Archivieren", "Zurückstellen", "Löschen"]
    assert items(page).first.locator(".wsgi-sender").text_content() == "von inbox-gus"

    # The frame an older server sends on connect: no counts.
    page.evaluate(
        "document.querySelector('wsgateway-inbox')._connectFrame({seq: 1, unread: 1, category: null})"
    )
    assert tabs.all_text_contents() == ["Ungelesen", "Alle"]
    buttons = items(page).first.locator("button:visible").all_text_contents()
    assert buttons == ["Als gelesen markieren"]


@pytest.mark.daphne
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violation_open_or_closed(
    open_inbox: Callable[..., tuple[Any, HttpSession]], scheme: str
) -> None:
    if not AXE.is_file():
        pytest.fail(
            f"{AXE} is missing: run `npm ci` (make test does, through node_modules/.installed); "
            "the accessibility check must not be skipped"
        )
    page, http = open_inbox({"light": "inbox-hal", "dark": "inbox-ivy"}[scheme], color_scheme=scheme)
    # The toasts stay while axe looks at them.
    page.evaluate("document.querySelector('wsgateway-inbox')._toastTimeout = 0")
    send(http, "Invoice #7 is overdue", category="error")
    send(http, "Export finished", category="success")
    toasts(page).filter(has_text="Export finished").wait_for(timeout=PUSH_MS)
    # Evaluated through the DevTools protocol, which the page's CSP does not govern.
    page.evaluate(AXE.read_text())

    def axe() -> list[str]:
        result = page.evaluate("axe.run('wsgateway-inbox').then((r) => r.violations)")
        return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in result]

    assert axe() == [], "closed"
    bell(page).click()
    page.get_by_role("tab", name="All").click()
    expect_count(items(page), 2, at_least=True)
    # With every control an item has: the snooze's choices shown too.
    items(page).first.get_by_role("button", name="Snooze").click()
    items(page).first.get_by_role("button", name="For an hour").wait_for()
    assert axe() == [], "open"
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=OUTPUT / f"inbox-{scheme}.png", animations="disabled")
    assert violations(page) == []


# -- small waits, bounded ------------------------------------------------------------------


def expect_text(locator: Any, text: str, hidden: bool = False) -> None:
    if hidden:
        locator.wait_for(state="hidden", timeout=PUSH_MS)
        return
    wait_for(lambda: locator.is_visible() and locator.text_content() == text, PUSH_MS)


def expect_count(locator: Any, count: int, at_least: bool = False) -> None:
    wait_for(lambda: locator.count() >= count if at_least else locator.count() == count, PUSH_MS)


@pytest.mark.daphne
def test_the_demo_shares_its_socket_with_the_inbox(
    site: Site, new_page: Callable[..., Any], inbox_users: list[str]
) -> None:
    """The demo's tag (demo/home.html) names its global (gateway="gateway"): one socket per tab, not two."""
    page = login(new_page(), site.url, "inbox-hal")
    page.locator("wsgateway-inbox[data-state=open]").wait_for()
    assert page.evaluate("document.querySelector('wsgateway-inbox').gateway === window.gateway")
    page.screenshot(path=OUTPUT / "inbox-demo.png")


# -- every state, in three tabs ------------------------------------------------------------------


def inbox_rows(page: Any) -> list[list[Any]]:
    """What the inbox lists, item by item: id, label, read, seen."""
    return list(
        page.evaluate(
            "() => Array.from(document.querySelectorAll('wsgateway-inbox .wsgi-item')).map((item) =>"
            " [Number(item.dataset.id), item.querySelector('.wsgi-label').textContent,"
            " item.dataset.read, item.dataset.seen])"
        )
    )


def item(page: Any, label: str) -> Any:
    return items(page).filter(has_text=label)


def syncs_sent(page: Any) -> int:
    return int(
        page.evaluate("window.sentFrames.filter((f) => f.payload && f.payload.action === 'sync').length")
    )


def known(page: Any, ids: list[int], key: str) -> list[Any]:
    """The states the page's gw.notifications holds for ``ids`` (its copy, which the inbox follows)."""
    return list(
        page.evaluate(
            "([ids, key]) => ids.map((id) => { const n = document.querySelector('wsgateway-inbox')"
            ".gateway.notifications.get(id); return n ? n[key] : null; })",
            [ids, key],
        )
    )


@pytest.mark.daphne
@pytest.mark.slow
def test_every_state_changed_in_one_tab_shows_in_another_within_a_second_and_in_a_third_after_it_was_away(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    first, http = open_inbox("inbox-jon")
    second, _ = open_inbox("inbox-jon")
    third, _ = open_inbox("inbox-jon")
    second.evaluate("document.querySelector('wsgateway-inbox')._toastTimeout = 0")
    labels = [
        "Read me",
        "Flip me back",
        "Archive me",
        "Bring me back",
        "Delete me",
        "Snooze me",
        "Snooze briefly",
    ]
    ids = {label: send(http, label) for label in labels}
    for page in (first, second, third):
        expect_text(badge(page), "7")
    toasts(second).filter(has_text="Snooze briefly").wait_for(timeout=PUSH_MS)
    took: dict[str, float] = {}

    def in_second(name: str, condition: Callable[[], bool]) -> None:
        took[name] = wait_for(condition, OTHER_TAB_MS)

    # Seen: the first tab's inbox shows them (one mark_seen); the others know within a second.
    bell(first).click()
    expect_count(items(first), 7)
    everyone = list(ids.values())
    in_second("seen", lambda: known(second, everyone, "seen") == [True] * 7)
    wait_for(lambda: known(third, everyone, "seen") == [True] * 7, OTHER_TAB_MS)
    for page in (first, second, third):
        if not page.locator("wsgateway-inbox [role=dialog]").is_visible():
            bell(page).click()
        page.get_by_role("tab", name="All").click()
        expect_count(items(page), 7)
    assert inbox_rows(third) == inbox_rows(first)

    # The third tab goes away: its socket closed, no reconnect until it is told.
    third.evaluate("document.querySelector('wsgateway-inbox').gateway.close()")
    third.locator("wsgateway-inbox[data-state=closed]").wait_for()

    item(first, "Read me").get_by_role("button", name="Mark read").click()
    in_second(
        "read",
        lambda: (
            item(second, "Read me").get_attribute("data-read") == "true"
            and toasts(second).filter(has_text="Read me").count() == 0
        ),
    )
    item(first, "Flip me back").get_by_role("button", name="Mark read").click()
    wait_for(lambda: item(second, "Flip me back").get_attribute("data-read") == "true", OTHER_TAB_MS)
    item(first, "Flip me back").get_by_role("button", name="Mark unread").click()
    in_second("unread", lambda: item(second, "Flip me back").get_attribute("data-read") == "false")
    item(first, "Archive me").get_by_role("button", name="Archive").click()
    in_second(
        "archived",
        lambda: (
            item(second, "Archive me").count() == 0
            and toasts(second).filter(has_text="Archive me").count() == 0
        ),
    )
    item(first, "Bring me back").get_by_role("button", name="Archive").click()
    wait_for(lambda: item(second, "Bring me back").count() == 0, OTHER_TAB_MS)
    first.get_by_role("tab", name="Archived").click()
    expect_count(items(first), 2)
    item(first, "Bring me back").get_by_role("button", name="Unarchive").click()
    in_second("unarchived", lambda: item(second, "Bring me back").count() == 1)
    first.get_by_role("tab", name="All").click()
    expect_count(items(first), 6)
    item(first, "Delete me").get_by_role("button", name="Delete").click()
    in_second(
        "deleted",
        lambda: (
            item(second, "Delete me").count() == 0
            and toasts(second).filter(has_text="Delete me").count() == 0
        ),
    )
    # Snoozed from the menu (an hour): gone from every tab.
    snooze = item(first, "Snooze me").get_by_role("button", name="Snooze")
    snooze.click()
    assert snooze.get_attribute("aria-expanded") == "true"
    item(first, "Snooze me").get_by_role("button", name="For an hour").click()
    in_second("snoozed", lambda: item(second, "Snooze me").count() == 0)
    # Snoozed for two seconds: it goes, and comes back as new (unread, a toast) by the server's clock.
    first.evaluate(
        "(id) => document.querySelector('wsgateway-inbox').gateway.notifications"
        ".snooze([id], new Date(Date.now() + 2000))",
        ids["Snooze briefly"],
    )
    wait_for(lambda: item(second, "Snooze briefly").count() == 0, OTHER_TAB_MS)
    # Back within its two seconds, the clock's one (NOTIFICATIONS_SNOOZE_CHECK_INTERVAL) and a margin.
    took["back from a snooze of 2 s"] = wait_for(
        lambda: (
            item(second, "Snooze briefly").count() == 1
            and item(second, "Snooze briefly").get_attribute("data-read") == "false"
        ),
        2000 + 1000 + 2000,
    )
    toasts(second).filter(has_text="Snooze briefly").wait_for(timeout=PUSH_MS)
    arrived = send(http, "Arrived while the third was away")
    wait_for(lambda: item(second, "Arrived while").count() == 1, PUSH_MS)
    # Both open inboxes showed what came back and what arrived: seen, once they have said so.
    wait_for(lambda: known(second, [arrived, ids["Snooze briefly"]], "seen") == [True, True], PUSH_MS)
    assert all(ms < OTHER_TAB_MS for name, ms in took.items() if not name.startswith("back")), took
    assert syncs_sent(first) == 0 and syncs_sent(second) == 0  # every change came in order: no sync

    # The third comes back and catches up: the same inbox as the tabs that never left, item by item.
    third.evaluate("document.querySelector('wsgateway-inbox').gateway.connect()")
    expected = inbox_rows(first)
    assert inbox_rows(second) == expected
    wait_for(lambda: inbox_rows(third) == expected, PUSH_MS)
    rows = inbox_rows(third)
    assert len({row[0] for row in rows}) == len(rows)  # nothing twice
    assert [row[1] for row in rows] == [
        "Arrived while the third was away",
        "Snooze briefly",
        "Bring me back",
        "Flip me back",
        "Read me",
    ]
    assert [row[2] for row in rows] == ["false", "false", "false", "false", "true"]
    assert [row[3] for row in rows] == ["true"] * 5
    assert syncs_sent(third) == 1  # the catch-up: one page of changes
    # A tab opened now, from the server's list, shows the same; and the archived tab is the same everywhere.
    fourth, _ = open_inbox("inbox-jon")
    bell(fourth).click()
    fourth.get_by_role("tab", name="All").click()
    wait_for(lambda: inbox_rows(fourth) == expected, PUSH_MS)

    def archived_only(page: Any) -> Callable[[], bool]:
        return lambda: [row[1] for row in inbox_rows(page)] == ["Archive me"]

    for page in (first, second, third, fourth):
        page.get_by_role("tab", name="Archived").click()
        wait_for(archived_only(page), PUSH_MS)
    for page in (first, second, third, fourth):
        expect_text(badge(page), "4")
    print(f"other tab took (ms): { {name: round(ms) for name, ms in took.items()} }")


@pytest.mark.daphne
def test_a_change_while_the_snooze_choices_are_open_keeps_them_open_and_the_focus_on_them(
    open_inbox: Callable[..., tuple[Any, HttpSession]],
) -> None:
    page, http = open_inbox("inbox-kim")
    notification = send(http, "Keep me open")
    bell(page).click()
    page.get_by_role("tab", name="All").click()
    expect_count(items(page), 1)
    wait_for(lambda: items(page).first.get_attribute("data-seen") == "true", PUSH_MS)
    snooze = items(page).first.get_by_role("button", name="Snooze")
    snooze.focus()
    page.keyboard.press("Enter")
    assert snooze.get_attribute("aria-expanded") == "true"
    assert focused(page) == "wsgi-button wsgi-choice|For an hour"
    # Read meanwhile (as in another tab): the item is filled again from the change push.
    page.evaluate(
        "(id) => document.querySelector('wsgateway-inbox').gateway.notifications.markRead([id])", notification
    )
    wait_for(lambda: items(page).first.get_attribute("data-read") == "true", PUSH_MS)
    assert snooze.get_attribute("aria-expanded") == "true"
    assert focused(page) == "wsgi-button wsgi-choice|For an hour"
    # Escape closes the choices, not the inbox, and gives the focus back to their button.
    page.keyboard.press("Escape")
    assert snooze.get_attribute("aria-expanded") == "false"
    assert focused(page) == "wsgi-button wsgi-action|Snooze"
    assert page.locator("wsgateway-inbox [role=dialog]").is_visible()
