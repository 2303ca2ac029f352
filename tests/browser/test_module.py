"""wsgateway.mjs in Chromium: the client imported as an ES module, from the one source wsgateway.js,
and a page that both loads the script tag and imports the module getting one client class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

STATIC = Path(__file__).resolve().parents[2] / "wsgateway" / "static" / "wsgateway"

# A WebSocket that never connects anywhere: the test calls hello() to open it.
FAKE_SOCKET = """<script>
  class FakeSocket {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; FakeSocket.all.push(this); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code) { this.readyState = 3; }
    hello() {
      this.readyState = 1;
      const payload = {user: {id: 7, username: "ann"}, services: ["notifications", "clipboard"]};
      this.onmessage({data: JSON.stringify({channel: "gateway", payload})});
    }
  }
  FakeSocket.all = [];
</script>"""

IMPORTED = """<script type="module" data-wsgateway-url="ws://client.test/module/ws/">
  import Default, { WSGateway, WSGatewayError } from "/static/wsgateway/wsgateway.mjs";
  window.imported = { WSGateway, WSGatewayError, Default };
</script>"""

MODULE_ONLY = "<!doctype html><title>module</title>" + FAKE_SOCKET + IMPORTED

BOTH = (
    "<!doctype html><title>both</title>"
    + FAKE_SOCKET
    + '<script src="/static/wsgateway/wsgateway.js" data-wsgateway-url="ws://client.test/tag/ws/"></script>'
    + "<script>window.classic = WSGateway;</script>"
    + IMPORTED
)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[str], Any]]:
    """open_page(html): a page on http://client.test/ whose /static/wsgateway/ files are the package's."""
    context = browser.new_context()
    context.set_default_timeout(5000)
    errors: list[str] = []

    def serve(html: str) -> Callable[[Any], None]:
        def route(route: Any) -> None:
            url = route.request.url
            if "/static/wsgateway/" in url:
                path = STATIC / url.rsplit("/", 1)[1]
                route.fulfill(body=path.read_text(), content_type="text/javascript")
            else:
                route.fulfill(body=html, content_type="text/html")

        return route

    def open_page(html: str) -> Any:
        context.route("**/*", serve(html))
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("http://client.test/")
        page.wait_for_function("window.imported !== undefined")
        return page

    yield open_page
    context.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"


def test_the_imported_module_is_a_working_client(open_page: Callable[[str], Any]) -> None:
    page = open_page(MODULE_ONLY)
    result = page.evaluate(
        """async () => {
            const { WSGateway, WSGatewayError, Default } = window.imported;
            const gw = new WSGateway({WebSocket: FakeSocket, pingInterval: 0});
            const states = [];
            gw.on("state", (state) => states.push(state));
            await new Promise((resolve) => setTimeout(resolve, 0));
            FakeSocket.all[0].hello();
            const namespace = await import("/static/wsgateway/wsgateway.mjs");
            return {
                exports: Object.keys(namespace).sort(),
                sameAsDefault: Default === WSGateway,
                sameAsGlobal: WSGateway === window.WSGateway && WSGatewayError === window.WSGatewayError,
                url: FakeSocket.all[0].url,
                states,
                state: gw.state,
                open: gw.state === WSGateway.STATES.OPEN,
                user: gw.user,
                error: new WSGatewayError("timeout", "late") instanceof WSGateway.Error,
                statics: [WSGateway.CLOSE_UNAUTHORIZED, WSGateway.CLOSE_TOO_MANY_CONNECTIONS,
                          WSGateway.safeUrl("javascript:x"), Object.isFrozen(WSGateway.STATES)],
            };
        }"""
    )
    assert result == {
        "exports": ["WSGateway", "WSGatewayError", "default"],
        "sameAsDefault": True,
        "sameAsGlobal": True,
        # No document.currentScript in a module: the endpoint is the page's data-wsgateway-url.
        "url": "ws://client.test/module/ws/",
        "states": ["connecting", "open"],
        "state": "open",
        "open": True,
        "user": {"id": 7, "username": "ann"},
        "error": True,
        "statics": [4401, 4409, None, True],
    }


def test_a_page_with_the_tag_and_the_module_has_one_client_class(open_page: Callable[[str], Any]) -> None:
    page = open_page(BOTH)
    result = page.evaluate(
        """() => ({
            moduleIsTheTags: window.imported.WSGateway === window.classic,
            globalIsTheTags: window.WSGateway === window.classic,
            url: window.classic.defaults.url,
        })"""
    )
    # The module runs wsgateway.js a second time (modules and classic scripts are cached apart);
    # that run keeps the tag's class and its endpoint.
    assert result == {"moduleIsTheTags": True, "globalIsTheTags": True, "url": "ws://client.test/tag/ws/"}
