"""The admin's page of who is online in Chromium: the demo's superuser sees her other tab's socket, and
axe-core finds no violation in the page's content, light or dark."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Site
from .helpers import login, open_home

PAGE = "/admin/wsgateway/onlineuser/"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violation_on_the_page_of_who_is_online(
    site: Site, new_page: Callable[..., Any], scheme: str
) -> None:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci`; the accessibility check must not be skipped")
    page = login(new_page(), site.url, "alice")
    open_home(new_page(tab_of=page), site.url)  # a socket that stays open while the first tab leaves
    page.emulate_media(color_scheme=scheme)
    page.goto(site.url + PAGE)
    alice = page.locator("#result_list tbody tr", has_text="alice")
    # The other tab's socket; the first tab's too until the server has seen it close as the tab left.
    expect(alice.locator("td.sockets")).to_have_text(re.compile(r"^[12]$"))
    expect(alice.get_by_role("button", name="Close the sockets of alice")).to_be_visible()
    page.evaluate(AXE.read_text())
    result = page.evaluate("axe.run('#content').then((r) => r.violations)")
    assert [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in result] == []
