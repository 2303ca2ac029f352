"""Steps the browser tests share: signing in, opening the demo, reading its state."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

#: Upper bound of every wait for something the server pushes ("within 2 seconds").
PUSH_TIMEOUT_MS = 2000


def password(username: str) -> str:
    return f"{username}-password"


def login(page: Any, site_url: str, username: str, secret: str | None = None) -> Any:
    """Sign in through the login form and wait until the page's socket is open."""
    page.goto(site_url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(secret or password(username))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site_url + "/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page


def open_home(page: Any, site_url: str) -> Any:
    """Load the demo in a tab whose context is already logged in; wait for the socket."""
    page.goto(site_url + "/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    return page
