"""The demo page fits its window, from a phone to a laptop, and follows the system's dark scheme."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Site
from .helpers import login

pytestmark = pytest.mark.daphne

#: What sticks out past the window's right edge, for the message of a failure.
OVERFLOWING = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
  .slice(0, 8)
  .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${[...e.classList].join(".")}: `
    + Math.round(e.getBoundingClientRect().right))"""


def scrolls_sideways(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth"))


@pytest.mark.parametrize("width", [1024, 768, 375, 320])
def test_the_demo_page_does_not_scroll_sideways(
    site: Site, new_page: Callable[..., Any], screenshot_path: Callable[[str], Path], width: int
) -> None:
    page = new_page()
    page.set_viewport_size({"width": width, "height": 800})
    login(page, site.url, "bob")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    page.screenshot(path=screenshot_path(f"demo-{width}px.png"), full_page=True)
    assert not scrolls_sideways(page), page.evaluate(OVERFLOWING)

    # The inbox open under the bell in the top bar fits too, inside the window.
    page.locator("wsgateway-inbox .wsgi-bell").click()
    panel = page.locator("wsgateway-inbox [role=dialog]")
    expect(panel).to_be_visible()
    page.screenshot(path=screenshot_path(f"demo-{width}px-inbox.png"))
    assert not scrolls_sideways(page), page.evaluate(OVERFLOWING)
    box = panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box


@pytest.mark.parametrize("width", [1024, 375])
def test_the_login_page_does_not_scroll_sideways(
    site: Site, new_page: Callable[..., Any], width: int
) -> None:
    page = new_page()
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(site.url + "/accounts/login/")
    assert not scrolls_sideways(page), page.evaluate(OVERFLOWING)


BACKGROUND = "getComputedStyle(document.documentElement).backgroundColor"  # the page's, on :root
TEXT = "getComputedStyle(document.body).color"


def luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of an ``rgb(...)``/``rgba(...)`` colour."""
    red, green, blue = (
        int(float(part)) / 255 for part in css_color.split("(")[1].split(")")[0].split(",")[:3]
    )
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    lighter, darker = sorted([luminance(first), luminance(second)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_the_demo_page_follows_the_dark_scheme(
    site: Site, new_page: Callable[..., Any], screenshot_path: Callable[[str], Path]
) -> None:
    page = new_page()
    login(page, site.url, "bob")
    page.emulate_media(color_scheme="light")
    light = page.evaluate(BACKGROUND)
    page.emulate_media(color_scheme="dark")
    dark, text = page.evaluate(BACKGROUND), page.evaluate(TEXT)
    assert luminance(light) > 0.7, light
    assert luminance(dark) < 0.05, dark
    assert contrast(dark, text) >= 7, (dark, text)
    cards = page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor")
    assert luminance(cards) < 0.05, cards  # the cards turn dark too, not only the page behind them
    page.screenshot(path=screenshot_path("demo-dark.png"), full_page=True)
