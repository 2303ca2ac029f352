"""Fixtures for the browser tests: a real daphne, the system's Chromium, logged-in pages.

Chromium is the one of the system (``WSGATEWAY_CHROMIUM``, else ``/usr/bin/chromium``, else
``chromium`` on PATH); Playwright's own browser download is not used. Without one, every
browser test is skipped and ``pytest -ra`` says why.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import OUTPUT, Daphne, manage, project_env, sqlite_database

# Without the background-networking flags Chromium keeps calling home, which floods a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Users made for the browser tests besides the demo's alice and bob, one per test that
#: counts notifications, so that no test depends on another's leftovers.
EXTRA_USERS = ["carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "olivia"]


def chromium_executable() -> str | None:
    """The system Chromium, or None."""
    configured = os.environ.get("WSGATEWAY_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Site:
    """The example project under daphne, on a SQLite file that outlives restarts."""

    daphne: Daphne
    env: dict[str, str]
    extra: list[Daphne] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.daphne.http_url

    def another_daphne(self, name: str) -> Daphne:
        """A second daphne on the same database, stopped with the site."""
        server = Daphne(self.env, name=name)
        self.extra.append(server)
        return server


NO_CHROMIUM = (
    "browser tests NOT RUN: no Chromium found (set WSGATEWAY_CHROMIUM, or install the Debian "
    "package chromium so that /usr/bin/chromium exists)"
)


@pytest.fixture(scope="package")
def chromium() -> str:
    executable = chromium_executable()
    if executable is None:
        pytest.skip(NO_CHROMIUM)
    return executable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``browser`` every test that drives Chromium (it uses the ``browser`` fixture), so that
    ``-m "not browser"`` leaves them out and keeps the template tag's tests, which need none."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Iterator[None]:
    """Say it once more after the short summary, the last thing ``make test`` prints."""
    result = yield
    skipped = terminalreporter.stats.get("skipped", [])
    if any(NO_CHROMIUM in str(report.longrepr) for report in skipped):
        terminalreporter.section("browser tests", sep="=", yellow=True, bold=True)
        terminalreporter.write_line(NO_CHROMIUM.replace("browser tests NOT RUN: ", "NOT RUN: "), yellow=True)
    return result


@pytest.fixture(scope="package")
def browser(chromium: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a dev dependency
        pytest.skip(f"browser tests NOT RUN: Playwright for Python is not installed ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def site(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    database_url = sqlite_database(tmp_path_factory.mktemp("browser-db"))
    # Snoozed notifications come back within a second (tests/browser/test_inbox's states test), not ten.
    env = project_env(
        DATABASE_URL=database_url, WSGATEWAY_EXTRA=json.dumps({"NOTIFICATIONS_SNOOZE_CHECK_INTERVAL": 1})
    )
    create_users = (
        "from django.contrib.auth.models import Permission, User\n"
        "view = Permission.objects.get(codename='view_document', content_type__app_label='demo')\n"
        f"for name in {EXTRA_USERS!r}:\n"
        "    user = User.objects.create_user(name, password=name + '-password')\n"
        "    user.user_permissions.add(view)\n"
    )
    manage(env, "shell", "-c", create_users)
    site = Site(Daphne(env, name="browser-daphne").start(), env)
    try:
        yield site
    finally:
        for server in [site.daphne, *site.extra]:
            server.stop()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``new_page()`` opens a page with no cookies; ``new_page(tab_of=page)`` opens another
    tab of the same browser session: ``page``'s cookies, so the same Django session.

    Each page gets a window of its own: a tab behind another one in the same window barely
    renders in headless Chromium, and Playwright waits for rendering before it clicks.
    Every wait is bounded (5 s unless a test says less), and a JavaScript error on any page
    fails the test.
    """
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(tab_of: Any = None) -> Any:
        context = browser.new_context(
            viewport={"width": 1280, "height": 860},
            reduced_motion="reduce",
            storage_state=tab_of.context.storage_state() if tab_of is not None else None,
        )
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def screenshot_path() -> Callable[[str], Path]:
    OUTPUT.mkdir(exist_ok=True)
    return lambda name: OUTPUT / name
