"""wsgateway.js on its own, in Chromium, against a scripted fake WebSocket: the client's rules
(ids, timeouts, backoff, 4401, the service helpers) without a server's timing in the way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CLIENT_JS = Path(__file__).resolve().parents[2] / "wsgateway" / "static" / "wsgateway" / "wsgateway.js"

PAGE = """<!doctype html><title>client</title>
<script src="/static/wsgateway/wsgateway.js" data-wsgateway-url="{url}"></script>
<script>
  // A WebSocket the test drives: open(), hello(), receive(frame), drop(code).
  class FakeSocket {{
    constructor(url, protocols) {{
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.at = performance.now();  // when the client opened it
      FakeSocket.all.push(this);
    }}
    send(text) {{ this.sent.push(JSON.parse(text)); }}
    close(code) {{ this.readyState = 3; this.closedWith = code; }}
    open() {{ this.readyState = 1; }}
    receive(frame) {{ this.onmessage({{data: JSON.stringify(frame)}}); }}
    hello(username = "ann", services = ["notifications", "clipboard"]) {{
      this.open();
      this.receive({{channel: "gateway", payload: {{user: {{id: 7, username}}, services}}}});
    }}
    drop(code = 1006) {{ this.readyState = 3; this.onclose({{code, reason: "", wasClean: code !== 1006}}); }}
    get last() {{ return this.sent[this.sent.length - 1]; }}
  }}
  FakeSocket.all = [];
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  function gateway(options = {{}}) {{
    const gw = new WSGateway(Object.assign({{WebSocket: FakeSocket, pingInterval: 0}}, options));
    gw.states = [];
    gw.on("state", (state, info) => gw.states.push([state, info]));
    return gw;
  }}
  async function connected(options, services) {{
    const gw = gateway(options);
    await sleep(0);
    FakeSocket.all[FakeSocket.all.length - 1].hello("ann", services);
    return [gw, FakeSocket.all[FakeSocket.all.length - 1]];
  }}
  async function nextSocket(count) {{
    const deadline = Date.now() + 2000;
    while (FakeSocket.all.length < count && Date.now() < deadline) await sleep(5);
    return FakeSocket.all[count - 1];
  }}

  // Notifications with a seq, and the frames of the catch-up (docs/protocol.md).
  const note = (seq, extra = {{}}) => Object.assign(
    {{id: 1000 + seq, seq, category: "info", label: `n${{seq}}`, is_read: false, actions: []}}, extra);
  const notes = (from, to) => Array.from({{length: to - from + 1}}, (_, i) => note(from + i));
  // Everything the page is handed, in order: ["new", seq, catchUp], ["update", seq], ["caughtUp", [seq]].
  function record(gw) {{
    const events = [];
    gw.notifications.onNotification((n, info) => events.push(["new", n.seq, info.catchUp]));
    gw.notifications.onUpdate((n) => events.push(["update", n.seq]));
    gw.notifications.onCatchUp((list) => events.push(["caughtUp", list.map((n) => n.seq)]));
    return events;
  }}
  const news = (events) => events.filter(([kind]) => kind === "new").map(([, seq]) => seq);
  function connectFrame(socket, seq, extra = {{}}) {{
    const payload = Object.assign({{unread: 0, category: null, seq}}, extra);
    socket.receive({{channel: "notifications", payload}});
  }}
  function push(socket, notification, unread = 1) {{
    const payload = {{category: notification.category, last: notification, unread}};
    socket.receive({{channel: "notifications", payload}});
  }}
  const syncs = (socket) => socket.sent.filter((frame) => frame.payload.action === "sync");
  const sinces = (socket) => syncs(socket).map((frame) => frame.payload.data);
  // Answer the latest sync request, then let the client take the reply (and send the next page).
  async function answerSync(socket, notifications, hasMore = false, extra = {{}}) {{
    const request = syncs(socket).at(-1);
    const latest = notifications.length ? notifications.at(-1).seq : request.payload.data.since;
    const payload = {{notifications, has_more: hasMore, seq: latest, unread: 0, category: null}};
    socket.receive({{channel: "notifications", id: request.id, payload: Object.assign(payload, extra)}});
    await sleep(0);
  }}
</script>"""


@pytest.fixture
def client_page(browser: Any) -> Iterator[Any]:
    """A page on http://client.test/ (served by Playwright, no network) with wsgateway.js loaded."""
    context = browser.new_context()
    context.set_default_timeout(5000)

    def serve(route: Any) -> None:
        url = route.request.url
        if url.endswith("/static/wsgateway/wsgateway.js"):
            route.fulfill(body=CLIENT_JS.read_text(), content_type="text/javascript")
        else:
            route.fulfill(body=PAGE.format(url="ws://client.test/custom/ws/"), content_type="text/html")

    context.route("**/*", serve)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("http://client.test/")
    page.uncaught_errors = errors  # a test that throws on purpose empties it
    yield page
    context.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"


def test_endpoint_comes_from_the_script_tag_and_relative_urls_resolve(client_page: Any) -> None:
    assert client_page.evaluate("WSGateway.defaults.url") == "ws://client.test/custom/ws/"
    assert client_page.evaluate("gateway({autoConnect: false}).url") == "ws://client.test/custom/ws/"
    assert client_page.evaluate("gateway({url: '/ws/', autoConnect: false}).url") == "ws://client.test/ws/"
    assert (
        client_page.evaluate("gateway({url: 'wss://other.test/ws/', autoConnect: false}).url")
        == "wss://other.test/ws/"
    )


def test_safe_url_lets_only_http_and_relative_urls_through(client_page: Any) -> None:
    urls = {
        "/exports/7/": "/exports/7/",
        "exports/7": "exports/7",
        "?page=2": "?page=2",
        "https://example.com/a": "https://example.com/a",
        "//cdn.example.com/f": "//cdn.example.com/f",
        "javascript:alert(1)": None,
        " JavaScript:alert(1)": None,
        "java\tscript:alert(1)": None,
        "data:text/html,x": None,
        "vbscript:x": None,
        "http://[::1": None,
    }
    for url, expected in urls.items():
        assert client_page.evaluate("(url) => WSGateway.safeUrl(url)", url) == expected, url
    assert client_page.evaluate("WSGateway.safeUrl(null)") is None
    assert client_page.evaluate("WSGateway.safeUrl({toString: () => 'javascript:x'})") is None


def test_connects_by_itself_and_is_open_after_the_servers_hello(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway();
            const early = gw.states.length;  // nothing yet: handlers added after `new` miss nothing
            await sleep(0);
            const socket = FakeSocket.all[0];
            const beforeHello = gw.state;
            socket.hello("ann");
            return {early, beforeHello, url: socket.url, states: gw.states.map(([s]) => s),
                    state: gw.state, user: gw.user, services: gw.services};
        }"""
    )
    assert result == {
        "early": 0,
        "beforeHello": "connecting",
        "url": "ws://client.test/custom/ws/",
        "states": ["connecting", "open"],
        "state": "open",
        "user": {"id": 7, "username": "ann"},
        "services": ["notifications", "clipboard"],
    }


def test_request_settles_with_the_reply_that_carries_its_id(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const first = gw.request("clipboard", {action: "clipboard_add", data: "a"});
            const second = gw.request("gateway", {action: "ping"});
            const [one, two] = socket.sent;
            socket.receive({channel: "gateway", id: two.id, payload: {action: "pong"}});  // out of order
            socket.receive({channel: "clipboard", id: one.id, payload: {added: [{id: 1, data: "a"}]}});
            return {sent: socket.sent, first: await first, second: await second};
        }"""
    )
    one, two = result["sent"]
    assert one == {
        "channel": "clipboard",
        "payload": {"action": "clipboard_add", "data": "a"},
        "id": one["id"],
    }
    assert two["id"] != one["id"]
    assert result["first"] == {"added": [{"id": 1, "data": "a"}]}
    assert result["second"] == {"action": "pong"}


def test_handle_answers_a_server_request_with_its_value_its_error_or_unknown_action(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const editor = gw.channel("editor");
            const heard = [];
            editor.on((payload) => heard.push(payload));
            editor.handle("where", async (data) => ({path: "/doc/" + data.doc}));
            editor.handle("nothing", () => undefined);
            editor.handle("fail", () => { throw new Error("No document is open."); });
            editor.handle("decline", async () => {
                throw Object.assign(new Error("The user said no."), {code: "declined"});
            });
            const ask = (request, action, data) =>
                socket.receive({channel: "editor", payload: {action, data}, request});
            ask("r1", "where", {doc: 7});
            ask("r2", "nothing", null);
            ask("r3", "fail", null);
            ask("r4", "decline", null);
            ask("r5", "unheard_of", null);
            await sleep(20);
            return {sent: socket.sent, heard};
        }"""
    )
    by_reply = {frame["reply"]: frame for frame in result["sent"]}
    assert by_reply["r1"] == {"channel": "editor", "reply": "r1", "payload": {"path": "/doc/7"}}
    assert by_reply["r2"] == {"channel": "editor", "reply": "r2", "payload": None}
    assert by_reply["r3"]["error"] == {"code": "client_error", "message": "No document is open."}
    assert by_reply["r4"]["error"] == {"code": "declined", "message": "The user said no."}
    assert by_reply["r5"]["error"]["code"] == "unknown_action"
    assert len(result["sent"]) == 5  # one answer each
    assert result["heard"] == []  # a request is not a push: the channel's listeners never see it


def test_a_cancel_aborts_the_handlers_signal_and_nothing_is_answered(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            let release;
            const aborted = [];
            gw.channel("editor").handle("confirm", (data, {signal}) => {
                signal.addEventListener("abort", () => aborted.push(data.n));
                return new Promise((resolve) => { release = resolve; });
            });
            socket.receive({channel: "editor", payload: {action: "confirm", data: {n: 1}}, request: "r1"});
            await sleep(0);
            socket.receive({channel: "editor", cancel: "r1"});
            release(true);  // the person answers after all: too late, the server dropped it
            await sleep(20);
            return {sent: socket.sent, aborted};
        }"""
    )
    assert result["aborted"] == [1]
    assert result["sent"] == []


def test_request_is_rejected_by_an_error_frame_a_timeout_a_close_or_no_socket(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const outcome = (promise) => promise.then(
                (value) => ({resolved: value}),
                (error) => ({name: error.name, code: error.code, message: error.message,
                             isError: error instanceof WSGatewayError}));
            const [gw, socket] = await connected();
            const refused = outcome(gw.request("clipboard", {action: "clipboard_remove", data: 99}));
            socket.receive({channel: "clipboard", id: socket.last.id,
                            error: {code: "not_found", message: "No clipboard entry of yours with id 99."}});
            const timedOut = outcome(gw.request("gateway", {action: "ping"}, {timeout: 50}));
            const late = socket.last.id;
            const closed = outcome(gw.request("notifications", {action: "mark_all_read"}));
            const results = {refused: await refused, timedOut: await timedOut};
            socket.receive({channel: "gateway", id: late, payload: {action: "pong"}});  // too late: ignored
            socket.drop(1006);
            results.closed = await closed;
            results.offline = await outcome(gw.request("gateway", {action: "ping"}));
            return results;
        }"""
    )
    assert result["refused"] == {
        "name": "WSGatewayError",
        "code": "not_found",
        "message": "No clipboard entry of yours with id 99.",
        "isError": True,
    }
    assert result["timedOut"]["code"] == "timeout"
    assert result["closed"]["code"] == "closed"
    assert result["offline"]["code"] == "not_connected"


def test_reconnects_with_full_jitter_backoff_and_resets_after_a_hello(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 40, maxDelay: 1000});
            await sleep(0);
            const delays = [];
            for (let attempt = 0; attempt < 4; attempt++) {
                FakeSocket.all[FakeSocket.all.length - 1].drop(1006);
                const [state, info] = gw.states[gw.states.length - 1];
                delays.push([state, info.reconnectIn, info.attempt]);
                const before = FakeSocket.all.length;
                const deadline = Date.now() + 2000;
                while (FakeSocket.all.length === before && Date.now() < deadline) await sleep(5);
            }
            const sockets = FakeSocket.all.length;
            FakeSocket.all[sockets - 1].hello();
            return {delays, sockets, attemptAfterHello: gw.attempt, state: gw.state};
        }"""
    )
    assert result["sockets"] == 5  # the first and one per drop, each opened by the client itself
    for attempt, (state, delay, count) in enumerate(result["delays"]):
        assert state == "closed"
        assert 0 <= delay <= 40 * 2**attempt, (attempt, delay)
        assert count == attempt + 1
    assert result["attemptAfterHello"] == 0
    assert result["state"] == "open"

    bounds = client_page.evaluate(
        """() => {
            const gw = gateway({autoConnect: false});
            const sample = (attempt) => Array.from({length: 400}, () => gw.backoff(attempt));
            return [0, 1, 5, 6, 20].map((attempt) => {
                const values = sample(attempt);
                return [Math.min(...values), Math.max(...values)];
            });
        }"""
    )
    caps = [500, 1000, 16000, 30000, 30000]  # about 0.5 s, doubling, up to about 30 s
    for (low, high), cap in zip(bounds, caps, strict=True):
        assert 0 <= low < cap * 0.1
        assert cap * 0.9 < high <= cap  # full jitter spreads over the whole range


def test_4401_means_unauthorized_and_no_reconnect_loop(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 10});
            await sleep(0);
            const socket = FakeSocket.all[0];
            socket.open();
            const error = {code: "token_expired", message: "The token has expired."};
            socket.receive({channel: "gateway", error});
            socket.drop(4401);
            await sleep(300);  // thirty times the first backoff
            const after = {sockets: FakeSocket.all.length, states: gw.states.map(([s]) => s),
                           info: gw.states[gw.states.length - 1][1]};
            gw.connect();  // e.g. after logging in again
            after.socketsAfterConnect = FakeSocket.all.length;
            after.stateAfterConnect = gw.state;
            return after;
        }"""
    )
    assert result["sockets"] == 1
    assert result["states"] == ["connecting", "unauthorized"]
    assert result["info"]["code"] == 4401
    assert result["info"]["error"] == {"code": "token_expired", "message": "The token has expired."}
    assert result["socketsAfterConnect"] == 2
    assert result["stateAfterConnect"] == "connecting"


def test_4409_means_too_many_sockets_and_the_retry_waits_as_after_five_failures(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 40, maxDelay: 100000});
            await sleep(0);
            const socket = FakeSocket.all[0];
            socket.open();
            const error = {code: "too_many_connections", message: "Too many connections."};
            socket.receive({channel: "gateway", error});
            socket.drop(4409);
            const [state, info] = gw.states[gw.states.length - 1];
            const constant = WSGateway.CLOSE_TOO_MANY_CONNECTIONS;
            return {state, info, constant, sockets: FakeSocket.all.length};
        }"""
    )
    assert result["constant"] == 4409
    assert result["state"] == "closed"  # not "unauthorized": it reconnects, later
    assert result["info"]["code"] == 4409
    assert result["info"]["attempt"] == 6
    assert 0 <= result["info"]["reconnectIn"] <= 40 * 2**5
    assert result["sockets"] == 1


def test_4429_waits_a_pause_that_a_quick_hello_does_not_reset(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 10, maxDelay: 100000});
            await sleep(0);
            const closes = [];
            const online = FakeSocket.all.length;
            async function tooManyFrames(socket, count) {
                socket.hello();
                const attemptAfterHello = gw.attempt;
                const closedAt = performance.now();
                socket.drop(4429);
                const info = gw.states[gw.states.length - 1][1];
                if (count === 1) window.dispatchEvent(new Event("online"));  // does not cut a pause short
                const socketsAfterOnline = FakeSocket.all.length;
                const next = await nextSocket(count + 1);
                closes.push({attemptAfterHello, rule: info.rule, attempt: info.attempt,
                             delay: info.reconnectIn, waited: next.at - closedAt, socketsAfterOnline});
                return next;
            }
            let socket = await tooManyFrames(FakeSocket.all[0], 1);
            socket = await tooManyFrames(socket, 2);  // its hello came at once, and so did a 4429
            socket = await tooManyFrames(socket, 3);
            // A connection that stays open as long as the last pause resets the step.
            socket.hello();
            const heldFor = closes[2].delay;
            const stillHeld = gw.attempt;
            await sleep(heldFor + 50);
            const afterHolding = gw.attempt;
            socket.drop(1006);
            const afterHealthy = gw.states[gw.states.length - 1][1];
            return {closes, stillHeld, afterHolding, afterHealthy, online};
        }"""
    )
    first, second, third = result["closes"]
    # minDelay 10: the first pause is half to all of 10 x 2^5 ms, then of 10 x 2^6, 10 x 2^7.
    assert first["rule"] == "pause"
    assert first["attemptAfterHello"] == 0
    assert 160 <= first["delay"] <= 320
    assert first["attempt"] == 6
    assert first["socketsAfterOnline"] == 1
    for close in result["closes"]:
        assert close["waited"] >= close["delay"] - 1  # the next socket was opened after the pause, not before
    # The hello of the socket that came back did not reset the step: the next pause is longer.
    assert second["attemptAfterHello"] == 6
    assert second["attempt"] == 7
    assert 320 <= second["delay"] <= 640
    assert second["delay"] >= first["delay"]
    assert third["attemptAfterHello"] == 7
    assert 640 <= third["delay"] <= 1280
    assert third["delay"] >= second["delay"]
    assert result["stillHeld"] == 8
    assert result["afterHolding"] == 0
    assert result["afterHealthy"]["rule"] == "now"
    assert result["afterHealthy"]["attempt"] == 1
    assert 0 <= result["afterHealthy"]["reconnectIn"] <= 10


def test_the_pause_is_several_seconds_with_the_defaults_and_grows_up_to_max_delay(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway();  // minDelay 500, maxDelay 30000
            await sleep(0);
            const delays = [];
            for (let close = 0; close < 4; close++) {
                FakeSocket.all[FakeSocket.all.length - 1].hello();
                FakeSocket.all[FakeSocket.all.length - 1].drop(4429);
                delays.push(gw.states[gw.states.length - 1][1].reconnectIn);
                gw.connect();  // the page's own retry, without waiting: it does not reset the step either
            }
            const sockets = FakeSocket.all.length;
            gw.close();
            return {delays, sockets};
        }"""
    )
    first, second, third, fourth = result["delays"]
    assert 8000 <= first <= 16000
    assert 15000 <= second <= 30000  # 500 x 2^6 is over maxDelay: half of it to all of it
    assert 15000 <= third <= 30000
    assert 15000 <= fourth <= 30000
    assert result["sockets"] == 5


def test_4408_waits_a_pause_that_a_quick_hello_does_not_reset(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 10, maxDelay: 100000});
            await sleep(0);
            const closes = [];
            let socket = FakeSocket.all[0];
            for (let count = 1; count <= 2; count++) {
                socket.hello();
                const closedAt = performance.now();
                socket.drop(4408);
                const info = gw.states[gw.states.length - 1][1];
                socket = await nextSocket(count + 1);
                closes.push({rule: info.rule, delay: info.reconnectIn, attempt: info.attempt,
                             waited: socket.at - closedAt});
            }
            return {closes, constant: WSGateway.RECONNECT[4408]};
        }"""
    )
    first, second = result["closes"]
    assert result["constant"] == "pause"
    assert first["rule"] == second["rule"] == "pause"
    assert 160 <= first["delay"] <= 320
    assert 320 <= second["delay"] <= 640  # not sooner than the first: the hello between did not reset it
    assert (first["attempt"], second["attempt"]) == (6, 7)
    for close in result["closes"]:
        assert close["waited"] >= close["delay"] - 1


def test_close_codes_follow_one_frozen_table_and_unknown_ones_go_by_range(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const table = WSGateway.RECONNECT;
            const frozen = Object.isFrozen(table) && Object.isFrozen(WSGateway.RECONNECT_RANGES);
            try { table[4429] = "now"; } catch (error) { /* strict mode throws; either way it stays */ }
            const rules = [1006, 4000, 4001, 4401, 4403, 4410, 4429, 4503, 4002, 3000, 4999, 999]
                .map((code) => [code, WSGateway.reconnectRule(code)]);
            // An unknown 4xxx refusal waits a pause; an unknown 4002 reconnects on the backoff.
            const gw = gateway({minDelay: 10, maxDelay: 100000});
            await sleep(0);
            FakeSocket.all[0].hello();
            FakeSocket.all[0].drop(4403);
            const refused = gw.states[gw.states.length - 1][1];
            gw.close();
            const other = gateway({minDelay: 10, maxDelay: 100000});
            await sleep(0);
            FakeSocket.all[FakeSocket.all.length - 1].hello();
            FakeSocket.all[FakeSocket.all.length - 1].drop(4002);
            const own = other.states[other.states.length - 1][1];
            other.close();
            return {frozen, still: table[4429], rules, refused, own, names: WSGateway.RULES};
        }"""
    )
    assert result["frozen"]
    assert result["still"] == "pause"
    assert result["names"] == {"STOP": "stop", "NOW": "now", "PAUSE": "pause", "RETRY_AFTER": "retry_after"}
    assert dict(result["rules"]) == {
        1006: "now",
        4000: "now",
        4001: "now",
        4401: "stop",
        4403: "pause",
        4410: "stop",
        4429: "pause",
        4503: "retry_after",
        4002: "now",
        3000: "now",
        4999: "pause",
        999: "now",
    }
    assert result["refused"]["rule"] == "pause"
    assert 160 <= result["refused"]["reconnectIn"] <= 320
    assert result["own"]["rule"] == "now"
    assert 0 <= result["own"]["reconnectIn"] <= 10


def test_the_close_reason_comes_from_the_error_frame_when_the_server_drops_it(client_page: Any) -> None:
    """daphne sends every close frame without its reason: the error frame before it says the same."""
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 10});
            await sleep(0);
            let socket = FakeSocket.all[0];
            socket.hello();
            const closing = {code: "closing", message: "Deploying; reconnect."};
            socket.receive({channel: "gateway", error: closing});
            socket.drop(4001);  // "" as daphne sends it
            const underDaphne = gw.states[gw.states.length - 1][1];
            socket = await nextSocket(2);
            socket.hello();
            socket.receive({channel: "gateway", error: closing});
            socket.readyState = 3;
            socket.onclose({code: 4001, reason: "Deploying; reconnect (uvicorn).", wasClean: true});
            const underUvicorn = gw.states[gw.states.length - 1][1];
            socket = await nextSocket(3);
            socket.hello();
            socket.drop(1006);
            const noFrame = gw.states[gw.states.length - 1][1];
            gw.close();
            return {underDaphne, underUvicorn, noFrame};
        }"""
    )
    assert result["underDaphne"]["reason"] == "Deploying; reconnect."
    assert result["underDaphne"]["error"] == {"code": "closing", "message": "Deploying; reconnect."}
    assert result["underUvicorn"]["reason"] == "Deploying; reconnect (uvicorn)."
    assert result["underUvicorn"]["error"] == {"code": "closing", "message": "Deploying; reconnect."}
    assert result["noFrame"]["reason"] == ""
    assert "error" not in result["noFrame"]


def test_4410_means_gone_and_no_reconnect_with_the_servers_reason(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 10});
            await sleep(0);
            const socket = FakeSocket.all[0];
            socket.open();
            socket.receive({channel: "gateway", error: {code: "gone", message: "Use /ws/ instead."}});
            socket.drop(4410);
            await sleep(300);  // thirty times the first backoff
            const [state, info] = gw.states[gw.states.length - 1];
            return {state, info, sockets: FakeSocket.all.length, constant: WSGateway.CLOSE_GONE};
        }"""
    )
    assert result["constant"] == 4410
    assert result["sockets"] == 1
    assert result["state"] == "gone"
    assert result["info"]["code"] == 4410
    assert result["info"]["error"] == {"code": "gone", "message": "Use /ws/ instead."}


def test_maintenance_waits_retry_after_spread_and_says_why_then_reconnects_by_itself(
    client_page: Any,
) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 1, maxDelay: 5});  // a backoff would be back within 5 ms
            const seen = [];
            gw.on("maintenance", (info) => seen.push(info));
            await sleep(0);
            const socket = FakeSocket.all[0];
            socket.open();
            const error = {code: "maintenance", message: "Upgrading", retry_after: 0.2};
            socket.receive({channel: "gateway", error});
            socket.drop(4503);
            const [state, info] = gw.states[gw.states.length - 1];
            await sleep(150);
            const socketsBefore = FakeSocket.all.length;  // still 1: 200 ms were asked for
            const next = await nextSocket(2);
            return {state, info, seen, socketsBefore, reconnected: !!next,
                    constant: WSGateway.CLOSE_SERVICE_UNAVAILABLE};
        }"""
    )
    assert result["constant"] == 4503
    assert result["state"] == "closed"
    assert result["seen"] == [result["info"]["maintenance"]]
    maintenance = result["info"]["maintenance"]
    assert maintenance["reason"] == "Upgrading" and maintenance["retryAfter"] == 0.2
    # retry_after, and a spread of up to a second (at least MAINTENANCE_MIN_SPREAD) on top.
    assert 200 <= maintenance["reconnectIn"] <= 1200
    assert result["info"]["reconnectIn"] == maintenance["reconnectIn"]
    assert result["socketsBefore"] == 1
    assert result["reconnected"]


def test_offers_the_wsgateway_v1_subprotocol_unless_told_to_offer_none(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            gateway();
            gateway({protocols: []});
            await sleep(0);
            return {offered: FakeSocket.all.map((socket) => socket.protocols ?? null),
                    constant: WSGateway.SUBPROTOCOL};
        }"""
    )
    assert result == {"offered": [["wsgateway.v1"], None], "constant": "wsgateway.v1"}


def test_4001_means_closed_by_the_server_and_reconnects_from_the_first_backoff(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 40, maxDelay: 100000});
            const errors = [];
            gw.on("error", (error) => errors.push(error.code));
            await sleep(0);
            const socket = FakeSocket.all[0];
            socket.hello("ann");
            const error = {code: "closing", message: "The server closed the connection; reconnect."};
            socket.receive({channel: "gateway", error});
            socket.drop(4001);
            const [state, info] = gw.states[gw.states.length - 1];
            const deadline = Date.now() + 2000;
            while (FakeSocket.all.length === 1 && Date.now() < deadline) await sleep(5);
            return {state, info, errors, constant: WSGateway.CLOSE_RECONNECT, sockets: FakeSocket.all.length};
        }"""
    )
    assert result["constant"] == 4001
    assert result["errors"] == ["closing"]
    assert result["state"] == "closed"  # not "unauthorized"
    assert result["info"]["code"] == 4001
    assert result["info"]["attempt"] == 1
    assert 0 <= result["info"]["reconnectIn"] <= 40
    assert result["sockets"] == 2  # the client reconnected by itself


def test_a_close_with_retry_after_waits_that_long_without_a_maintenance_event(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 1, maxDelay: 5});  // a backoff would be back within 5 ms
            const seen = [];
            gw.on("maintenance", (info) => seen.push(info));
            await sleep(0);
            const socket = FakeSocket.all[0];
            socket.hello("ann");
            const error = {code: "closing", message: "Back in a moment.", retry_after: 0.2};
            socket.receive({channel: "gateway", error});
            socket.drop(4001);
            const [state, info] = gw.states[gw.states.length - 1];
            await sleep(150);
            const socketsBefore = FakeSocket.all.length;
            const next = await nextSocket(2);
            return {state, info, seen, socketsBefore, reconnected: !!next};
        }"""
    )
    assert result["state"] == "closed"
    assert result["seen"] == []  # not a maintenance: no maintenance event, no maintenance info
    assert "maintenance" not in result["info"]
    assert 200 <= result["info"]["reconnectIn"] <= 1200  # retry_after and its spread, not the 5 ms backoff
    assert result["socketsBefore"] == 1
    assert result["reconnected"]


def test_a_4429_with_retry_after_waits_the_cooldown_not_the_pause(client_page: Any) -> None:
    # The server's 4429 says when the user's cool-down ends (RATE_LIMIT_COOLDOWN): before it, a new
    # socket would only be refused again. Here 0.2 s, against a pause that maxDelay caps at 5 ms: the
    # wait is the retry_after and its spread.
    result = client_page.evaluate(
        """async () => {
            const gw = gateway({minDelay: 10, maxDelay: 5});
            await sleep(0);
            const socket = FakeSocket.all[0];
            socket.hello("ann");
            const error = {code: "too_many_frames", message: "Too many frames.", retry_after: 0.2};
            socket.receive({channel: "gateway", error});
            socket.drop(4429);
            const [state, info] = gw.states[gw.states.length - 1];
            await sleep(150);
            const socketsBefore = FakeSocket.all.length;
            const next = await nextSocket(2);
            return {state, info, socketsBefore, reconnected: !!next};
        }"""
    )
    assert result["state"] == "closed"
    assert result["info"]["rule"] == "pause" and result["info"]["error"]["code"] == "too_many_frames"
    assert 200 <= result["info"]["reconnectIn"] <= 1200
    assert result["socketsBefore"] == 1
    assert result["reconnected"]


def test_close_stops_reconnecting(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected({minDelay: 10});
            gw.close();
            await sleep(200);
            return {sockets: FakeSocket.all.length, closedWith: socket.closedWith, state: gw.state,
                    info: gw.states[gw.states.length - 1][1]};
        }"""
    )
    assert result["sockets"] == 1
    assert result["closedWith"] == 1000
    assert result["state"] == "closed"
    assert result["info"]["reconnectIn"] is None


def test_a_socket_that_stops_answering_pings_is_replaced(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected({pingInterval: 30, pingTimeout: 30, minDelay: 10});
            await sleep(45);
            const ping = socket.last;
            const deadline = Date.now() + 2000;
            while (FakeSocket.all.length === 1 && Date.now() < deadline) await sleep(5);
            return {ping, closedWith: socket.closedWith, sockets: FakeSocket.all.length};
        }"""
    )
    assert result["ping"]["channel"] == "gateway"
    assert result["ping"]["payload"] == {"action": "ping"}
    assert result["closedWith"] == 4000
    assert result["sockets"] == 2


def test_notifications_helper_follows_snapshots_pushes_and_replies(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const changes = [], pushed = [];
            gw.notifications.onChange((state) => changes.push(state));
            gw.notifications.onNotification((item) => pushed.push(item.id));
            socket.receive({channel: "notifications", payload: {unread: 2, category: "warning"}});
            const last = {id: 9, category: "error", label: "Disk full", is_read: false, actions: []};
            socket.receive({channel: "notifications", payload: {category: "error", last, unread: 3}});
            const afterPush = [gw.notifications.unread, gw.notifications.category, gw.notifications.last.id];

            const marking = gw.notifications.markRead(9);
            const markFrame = socket.last;
            const state = {unread: 2, category: "warning"};
            socket.receive({channel: "notifications", id: markFrame.id, payload: state});
            await marking;
            const allRead = gw.notifications.markAllRead();
            const allFrame = socket.last;
            socket.receive({channel: "notifications", id: allFrame.id, payload: {unread: 0, category: null}});
            await allRead;

            const listing = gw.notifications.list({before: 9, limit: 5, unreadOnly: true});
            const listFrame = socket.last;
            const changesBeforeList = changes.length;
            socket.receive({channel: "notifications", id: listFrame.id,
                            payload: {notifications: [], has_more: false, unread: 0, category: null}});
            const page = await listing;
            return {changes, pushed, afterPush, markFrame, allFrame, listFrame, page,
                    listChanged: changes.length !== changesBeforeList,
                    final: [gw.notifications.unread, gw.notifications.category],
                    cursor: gw.notifications.seq, syncs: syncs(socket).length};
        }"""
    )
    assert result["changes"] == [
        {"unread": 2, "category": "warning"},
        {"unread": 3, "category": "error"},
        {"unread": 2, "category": "warning"},
        {"unread": 0, "category": None},
    ]
    assert result["pushed"] == [9]
    assert result["afterPush"] == [3, "error", 9]
    assert result["markFrame"]["payload"] == {"action": "mark_read", "data": [9]}
    assert result["allFrame"]["payload"] == {"action": "mark_all_read", "data": None}
    assert result["listFrame"]["payload"] == {
        "action": "list",
        "data": {"before": 9, "limit": 5, "unread_only": True},
    }
    assert result["page"] == {"notifications": [], "has_more": False, "unread": 0, "category": None}
    assert result["listChanged"] is False
    assert result["final"] == [0, None]
    # A server without seqs: no cursor, no sync, every push handed over as it comes.
    assert result["cursor"] is None
    assert result["syncs"] == 0


def test_clipboard_helper_and_state_after_a_reconnect(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected({minDelay: 10});
            const seen = [];
            gw.clipboard.onChange((entries) => seen.push(entries.map((entry) => entry.id)));
            socket.receive({channel: "clipboard", payload: {clipboard: [{id: 1, data: "a"}]}});
            const frames = [];
            const answer = (payload) => {
                frames.push(socket.last.payload);
                socket.receive({channel: "clipboard", id: socket.last.id, payload});
            };
            let pending = gw.clipboard.add({text: "b"});
            answer({added: [{id: 2, data: {text: "b"}}]});
            await pending;
            pending = gw.clipboard.load("demo.document", 3);
            answer({added: [{id: 3, model: "demo.document", pk: 3, label: "Roadmap"}],
                    refused: [{id: 4, code: "not_found", message: "No such object."}]});
            const loaded = await pending;
            pending = gw.clipboard.remove(1);
            answer({removed: [1]});
            await pending;
            // Another tab's changes arrive as pushes: crossed adds land in id order, a repeat once.
            socket.receive({channel: "clipboard", payload: {added: [{id: 8, data: "later"}]}});
            socket.receive({channel: "clipboard", payload: {added: [{id: 7, data: "earlier"}]}});
            socket.receive({channel: "clipboard", payload: {added: [{id: 7, data: "earlier"}]}});
            pending = gw.clipboard.flush();
            answer({removed: [2, 3, 7, 8]});
            await pending;
            socket.receive({channel: "clipboard", payload: {added: [{id: 5, data: "other tab"}]}});
            // A reply that changed nothing (every id refused) tells no one.
            pending = gw.clipboard.load("demo.document", 9);
            answer({added: [], refused: [{id: 9, code: "not_found", message: "No such object."}]});
            await pending;

            // The server restarts; the new socket's on-connect frames are the truth.
            socket.drop(1006);
            const deadline = Date.now() + 2000;
            while (FakeSocket.all.length === 1 && Date.now() < deadline) await sleep(5);
            const next = FakeSocket.all[1];
            next.hello();
            next.receive({channel: "notifications", payload: {unread: 4, category: "info"}});
            const restored = [{id: 5, data: "other tab"}, {id: 6, data: "c"}];
            next.receive({channel: "clipboard", payload: {clipboard: restored}});
            return {seen, frames, refused: loaded.refused, entries: gw.clipboard.entries.map((e) => e.id),
                    unread: gw.notifications.unread, state: gw.state};
        }"""
    )
    assert result["frames"] == [
        {"action": "clipboard_add", "data": {"text": "b"}},
        {"action": "clipboard_load", "data": {"model": "demo.document", "ids": [3]}},
        {"action": "clipboard_remove", "data": 1},
        {"action": "clipboard_flush", "data": None},
        {"action": "clipboard_load", "data": {"model": "demo.document", "ids": [9]}},
    ]
    assert result["refused"] == [{"id": 4, "code": "not_found", "message": "No such object."}]
    assert result["seen"] == [
        [1],
        [1, 2],
        [1, 2, 3],
        [2, 3],
        [2, 3, 8],
        [2, 3, 7, 8],
        [2, 3, 7, 8],
        [],
        [5],
        [5, 6],
    ]
    assert result["entries"] == [5, 6]
    assert result["unread"] == 4
    assert result["state"] == "open"


def test_a_failing_handler_does_not_stop_the_others(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const errors = [];
            window.addEventListener("error", (event) => {
                errors.push(event.message);
                event.preventDefault();
            });
            const got = [];
            gw.on("demo", () => { throw new Error("broken handler"); });
            const off = gw.on("demo", (payload) => got.push(payload.n));
            socket.receive({channel: "demo", payload: {n: 1}});
            off();
            socket.receive({channel: "demo", payload: {n: 2}});
            await sleep(20);
            return {got, errors, state: gw.state};
        }"""
    )
    assert result["got"] == [1]
    # Each handler failure is still reported (as an uncaught error), once per frame.
    assert len(result["errors"]) == 2 and all("broken handler" in error for error in result["errors"])
    assert result["state"] == "open"
    client_page.uncaught_errors.clear()


# A site's own service, the "echo" of docs/protocol.md ("Adding a service"): actions "echo" (replies
# {echo: data}) and "shout" (replies {shouted: data}, pushes {shout: data} to the user's other sockets).
ECHO_SERVICES = '["notifications", "clipboard", "echo"]'


def test_services_register_with_the_socket_and_a_sites_own_the_same_way(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            class Chat {
                constructor(gateway) { this.channel = gateway.channel("chat"); this.heard = [];
                                       this.channel.on((payload) => this.heard.push(payload)); }
            }
            WSGateway.addService("chat", (gateway) => new Chat(gateway));
            const refused = [];
            for (const property of ["chat", "notifications", "clipboard", "connect", "attempt", "", 7]) {
                try { WSGateway.addService(property, () => null); } catch (error) {
                    refused.push([property, error instanceof TypeError]);
                }
            }
            try { WSGateway.addService("other", "not a function"); } catch (error) {
                refused.push(["other", error instanceof TypeError]);
            }
            const [gw, socket] = await connected();
            socket.receive({channel: "chat", payload: {text: "hi"}});
            return {refused, heard: gw.chat.heard, sameChannel: gw.chat.channel === gw.channel("chat"),
                    builtIn: [typeof gw.notifications.onNotification, typeof gw.clipboard.onChange],
                    own: Object.keys(gw).filter((key) => !key.startsWith("_"))};
        }"""
    )
    assert result["refused"] == [
        ["chat", True],
        ["notifications", True],
        ["clipboard", True],
        ["connect", True],
        ["attempt", True],
        ["", True],
        [7, True],
        ["other", True],
    ]
    assert result["heard"] == [{"text": "hi"}]
    assert result["sameChannel"]
    assert result["builtIn"] == ["function", "function"]
    # In the order they registered; "states" is this page's gateway() recording them.
    own = [
        "options",
        "url",
        "state",
        "user",
        "services",
        "notifications",
        "clipboard",
        "presence",
        "chat",
        "states",
    ]
    assert result["own"] == own


def test_channel_is_one_object_per_name(client_page: Any) -> None:
    result = client_page.evaluate(
        """() => {
            const gw = gateway({autoConnect: false});
            const other = gateway({autoConnect: false});
            let refused = null;
            try { gw.channel(7); } catch (error) { refused = error.name; }
            return {same: gw.channel("echo") === gw.channel("echo"),
                    distinct: gw.channel("echo") !== gw.channel("echo2"),
                    perGateway: gw.channel("echo") !== other.channel("echo"),
                    name: gw.channel("echo").name,
                    methods: ["on", "request", "action"].map((m) => typeof gw.channel("echo")[m]),
                    builtIn: [gw.notifications.channel === gw.channel("notifications"),
                              gw.clipboard.channel === gw.channel("clipboard")],
                    refused};
        }"""
    )
    assert result == {
        "same": True,
        "distinct": True,
        "perGateway": True,
        "name": "echo",
        "methods": ["function", "function", "function"],
        "builtIn": [True, True],
        "refused": "TypeError",
    }


def test_channel_on_gets_what_the_server_sends_by_itself_on_that_channel_only(client_page: Any) -> None:
    result = client_page.evaluate(
        f"""async () => {{
            const [gw, socket] = await connected({{}}, {ECHO_SERVICES});
            const echo = gw.channel("echo");
            const first = [], second = [], errors = [];
            const offFirst = echo.on((payload, frame) => first.push([payload, frame]));
            echo.on((payload) => second.push(payload));
            gw.on("error", (error) => errors.push(error.code));

            socket.receive({{channel: "echo", payload: {{hello: "ann", notes: 3}}}});  // on-connect frame
            socket.receive({{channel: "clipboard", payload: {{clipboard: []}}}});  // other channels
            socket.receive({{channel: "echo2", payload: {{shout: "not mine"}}}});
            socket.receive({{channel: "gateway", payload: {{action: "pong"}}}});
            socket.receive({{channel: "echo", payload: {{shout: "from another tab"}}}});  // a push
            // An error frame goes to gw.on("error"), not to the channel's handlers.
            socket.receive({{channel: "echo", error: {{code: "internal_error", message: "Oops."}}}});
            offFirst();
            socket.receive({{channel: "echo", payload: {{shout: "after off"}}}});
            return {{first, second, errors}};
        }}"""
    )
    assert result["first"] == [
        [{"hello": "ann", "notes": 3}, {"channel": "echo", "payload": {"hello": "ann", "notes": 3}}],
        [{"shout": "from another tab"}, {"channel": "echo", "payload": {"shout": "from another tab"}}],
    ]
    # Unsubscribing one handler leaves the others.
    assert result["second"] == [
        {"hello": "ann", "notes": 3},
        {"shout": "from another tab"},
        {"shout": "after off"},
    ]
    assert result["errors"] == ["internal_error"]


def test_gw_on_and_off_reach_the_same_handlers_as_the_channel(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const got = [];
            const handler = (payload) => got.push(payload.n);
            gw.channel("echo").on(handler);
            socket.receive({channel: "echo", payload: {n: 1}});
            gw.off("echo", handler);
            socket.receive({channel: "echo", payload: {n: 2}});
            const offAgain = gw.on("echo", handler);
            socket.receive({channel: "echo", payload: {n: 3}});
            offAgain();
            socket.receive({channel: "echo", payload: {n: 4}});
            return got;
        }"""
    )
    assert result == [1, 3]


def test_channel_action_and_request_send_a_frame_with_an_id_and_resolve_with_the_replys_payload(
    client_page: Any,
) -> None:
    result = client_page.evaluate(
        f"""async () => {{
            const [gw, socket] = await connected({{}}, {ECHO_SERVICES});
            const echo = gw.channel("echo");
            const pushed = [];
            echo.on((payload) => pushed.push(payload));

            const echoing = echo.action("echo", {{n: [1, 2]}});
            const echoFrame = socket.last;
            const shouting = echo.request({{action: "shout", data: "hi"}});
            const shoutFrame = socket.last;
            const bare = echo.action("echo");
            const bareFrame = socket.last;
            // A push may come between a request and its reply; replies may come in any order.
            socket.receive({{channel: "echo", payload: {{shout: "from another tab"}}}});
            socket.receive({{channel: "echo", id: shoutFrame.id, payload: {{shouted: "hi"}}}});
            socket.receive({{channel: "echo", id: echoFrame.id, payload: {{echo: {{n: [1, 2]}}}}}});
            socket.receive({{channel: "echo", id: bareFrame.id, payload: {{echo: null}}}});
            return {{echoFrame, shoutFrame, bareFrame, echoed: await echoing, shouted: await shouting,
                     bare: await bare, pushed}};
        }}"""
    )
    assert result["echoFrame"] == {
        "channel": "echo",
        "payload": {"action": "echo", "data": {"n": [1, 2]}},
        "id": result["echoFrame"]["id"],
    }
    assert result["shoutFrame"] == {
        "channel": "echo",
        "payload": {"action": "shout", "data": "hi"},
        "id": result["shoutFrame"]["id"],
    }
    assert isinstance(result["echoFrame"]["id"], int)
    assert result["shoutFrame"]["id"] != result["echoFrame"]["id"]
    # Without data the payload is {"action"} alone, as in the protocol's examples.
    assert result["bareFrame"]["payload"] == {"action": "echo"}
    assert result["echoed"] == {"echo": {"n": [1, 2]}}
    assert result["shouted"] == {"shouted": "hi"}
    assert result["bare"] == {"echo": None}
    assert result["pushed"] == [{"shout": "from another tab"}]  # replies go to their Promise, not to on()


def test_channel_request_is_rejected_with_the_servers_error_code(client_page: Any) -> None:
    result = client_page.evaluate(
        f"""async () => {{
            const outcome = (promise) => promise.then(
                (value) => ({{resolved: value}}),
                (error) => ({{name: error.name, code: error.code, message: error.message, frame: error.frame,
                             isError: error instanceof WSGatewayError && error instanceof WSGateway.Error}}));
            const [gw, socket] = await connected({{}}, {ECHO_SERVICES});
            const echo = gw.channel("echo");
            const errors = [];
            gw.on("error", (error) => errors.push(error.code));
            const whisper = outcome(echo.action("whisper", "psst"));
            const error = {{code: "unknown_action", message: "No action 'whisper' on channel echo."}};
            socket.receive({{channel: "echo", id: socket.last.id, error}});
            // The options reach the request: 30 ms, not the default 10 s.
            const started = Date.now();
            const timedOut = await outcome(echo.action("shout", "hi", {{timeout: 30}}));
            timedOut.elapsed = Date.now() - started;
            const results = {{whisper: await whisper, timedOut, errors}};
            socket.drop(1006);
            results.offline = await outcome(echo.action("echo", 1));
            return results;
        }}"""
    )
    assert result["whisper"] == {
        "name": "WSGatewayError",
        "code": "unknown_action",
        "message": "No action 'whisper' on channel echo.",
        "frame": {
            "channel": "echo",
            "id": result["whisper"]["frame"]["id"],
            "error": {"code": "unknown_action", "message": "No action 'whisper' on channel echo."},
        },
        "isError": True,
    }
    assert result["errors"] == []  # the request's error, not one for gw.on("error")
    assert result["timedOut"]["code"] == "timeout"
    assert result["timedOut"]["elapsed"] < 1000
    assert result["offline"]["code"] == "not_connected"


def test_a_service_named_like_an_event_is_reached_through_its_channel(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const frames = [], events = [];
            gw.channel("state").on((payload) => frames.push(payload));
            gw.on("state", (state) => events.push(state));
            socket.receive({channel: "state", payload: {level: 3}});
            gw.close();
            return {frames, events};
        }"""
    )
    assert result["frames"] == [{"level": 3}]
    assert result["events"] == ["closed"]


def test_states_are_one_frozen_table_and_the_state_events_use_its_values(client_page: Any) -> None:
    table = client_page.evaluate(
        """() => {
            "use strict";
            const attempt = (change) => {
                try { change(); return "changed"; } catch (error) { return error.name; }
            };
            return {
                states: Object.assign({}, WSGateway.STATES),
                frozen: Object.isFrozen(WSGateway.STATES),
                assign: attempt(() => { WSGateway.STATES.OPEN = "ready"; }),
                add: attempt(() => { WSGateway.STATES.PAUSED = "paused"; }),
                open: WSGateway.STATES.OPEN,
            };
        }"""
    )
    assert table == {
        "states": {
            "CONNECTING": "connecting",
            "OPEN": "open",
            "CLOSED": "closed",
            "UNAUTHORIZED": "unauthorized",
            "GONE": "gone",
        },
        "frozen": True,
        "assign": "TypeError",
        "add": "TypeError",
        "open": "open",
    }

    result = client_page.evaluate(
        """async () => {
            const names = Object.fromEntries(Object.entries(WSGateway.STATES).map(([k, v]) => [v, k]));
            const gw = gateway({minDelay: 10});
            const initial = names[gw.state];
            await sleep(0);
            FakeSocket.all[0].hello();
            FakeSocket.all[0].drop(1006);
            const deadline = Date.now() + 2000;
            while (FakeSocket.all.length === 1 && Date.now() < deadline) await sleep(5);
            FakeSocket.all[1].open();
            FakeSocket.all[1].drop(4401);
            const events = gw.states.map(([state]) => names[state] || state);
            return {initial, events, last: names[gw.state]};
        }"""
    )
    assert result == {
        "initial": "CLOSED",
        "events": ["CONNECTING", "OPEN", "CLOSED", "CONNECTING", "UNAUTHORIZED"],
        "last": "UNAUTHORIZED",
    }


def test_a_failed_helper_action_leaves_the_helpers_state_alone(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const changes = [];
            gw.clipboard.onChange((entries) => changes.push(entries.length));
            gw.notifications.onChange((state) => changes.push(state.unread));
            socket.receive({channel: "clipboard", payload: {clipboard: [{id: 1, data: "a"}]}});
            socket.receive({channel: "notifications", payload: {unread: 2, category: "info"}});
            const removing = gw.clipboard.remove(99).catch((error) => error.code);
            socket.receive({channel: "clipboard", id: socket.last.id,
                            error: {code: "not_found", message: "No clipboard entry of yours with id 99."}});
            const marking = gw.notifications.markRead(99).catch((error) => error.code);
            socket.receive({channel: "notifications", id: socket.last.id,
                            error: {code: "not_found", message: "No notifications of yours with ids [99]."}});
            return {codes: [await removing, await marking], changes,
                    entries: gw.clipboard.entries.map((entry) => entry.id), unread: gw.notifications.unread};
        }"""
    )
    assert result == {"codes": ["not_found", "not_found"], "changes": [1, 2], "entries": [1], "unread": 2}


def test_a_helper_action_is_its_channels_action(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const seen = [];
            gw.clipboard.onChange((entries) => seen.push(entries.map((entry) => entry.id)));
            // The site may talk to a built-in service itself; the helper follows the pushes all the same.
            const raw = gw.channel("clipboard").action("clipboard_add", "x");
            const rawFrame = socket.last;
            const viaHelper = gw.clipboard.add("x");
            const helperFrame = socket.last;
            const entries = [{id: 1, data: "x"}, {id: 2, data: "x"}];
            const first = entries.slice(0, 1);
            socket.receive({channel: "clipboard", id: rawFrame.id, payload: {clipboard: first}});
            socket.receive({channel: "clipboard", id: helperFrame.id, payload: {clipboard: entries}});
            await raw;
            const reply = await viaHelper;
            socket.receive({channel: "clipboard", payload: {clipboard: entries}});  // the push that follows
            return {rawPayload: rawFrame.payload, helperPayload: helperFrame.payload, seen,
                    reply: reply.clipboard.length};
        }"""
    )
    assert result["rawPayload"] == result["helperPayload"] == {"action": "clipboard_add", "data": "x"}
    # The raw action's reply is the caller's; the helper's reply and the push update the helper.
    assert result["seen"] == [[1, 2], [1, 2]]
    assert result["reply"] == 2


# -- catching up: the cursor, sync, and each notification handed over once and in order ----------

SYNC = {"action": "sync", "data": {"since": 10, "limit": 100}}


def test_the_first_connect_starts_the_cursor_at_the_servers_seq_and_syncs_nothing(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            const before = gw.notifications.seq;
            connectFrame(socket, 41, {unread: 3, category: "info"});
            await sleep(0);
            const atConnect = gw.notifications.seq;
            push(socket, note(42), 4);
            push(socket, note(42), 4);  // the same notification pushed again
            await sleep(0);
            return {before, atConnect, events, seq: gw.notifications.seq, sent: socket.sent,
                    unread: gw.notifications.unread};
        }"""
    )
    assert result["before"] is None
    assert result["atConnect"] == 41  # history is list()'s to show, not a replay
    assert result["events"] == [["new", 42, False], ["update", 42]]
    assert result["seq"] == 42
    assert result["sent"] == []  # no sync: nothing was missed
    assert result["unread"] == 4


def test_a_notification_saved_again_goes_to_on_update_only(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            const changes = [];
            gw.notifications.onChange((state) => changes.push(state.unread));
            connectFrame(socket, 41, {unread: 3, category: "info"});
            const edited = note(40, {label: "edited", is_read: true});
            const updated = [];
            gw.notifications.onUpdate((n) => updated.push(n.label));
            push(socket, edited, 2);
            await sleep(0);
            return {events, updated, changes, seq: gw.notifications.seq, syncs: syncs(socket).length};
        }"""
    )
    assert result["events"] == [["update", 40]]
    assert result["updated"] == ["edited"]
    assert result["changes"] == [3, 2]  # the unread state still follows every frame
    assert result["seq"] == 41
    assert result["syncs"] == 0


def test_a_gap_starts_one_sync_and_pushes_racing_it_reach_the_page_once_in_order(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            connectFrame(socket, 10);
            push(socket, note(12));  // 11 never came
            const requests = syncs(socket).map((frame) => frame.payload);
            push(socket, note(13));  // racing the sync
            push(socket, note(12));  // and 12 again
            const beforeReply = events.slice();
            const duringSync = syncs(socket).length;
            await answerSync(socket, notes(11, 13));
            push(socket, note(13));  // 13's push, late behind the sync that brought it
            push(socket, note(14));
            await sleep(0);
            return {requests, beforeReply, duringSync, events, seq: gw.notifications.seq,
                    syncs: syncs(socket).length};
        }"""
    )
    assert result["requests"] == [SYNC]
    assert result["beforeReply"] == []  # 12 and 13 wait for 11
    assert result["duringSync"] == 1
    assert result["events"] == [
        ["new", 11, True],
        ["new", 12, False],
        ["new", 13, False],
        ["caughtUp", [11]],
        ["update", 13],  # not new again
        ["new", 14, False],
    ]
    assert result["seq"] == 14
    assert result["syncs"] == 1


def test_sync_pages_on_from_the_last_seq_of_each_page_while_has_more(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            connectFrame(socket, 0);
            push(socket, note(250));
            await answerSync(socket, notes(1, 100), true, {seq: 250});
            const afterFirstPage = news(events).length;
            await answerSync(socket, notes(101, 200), true, {seq: 250});
            await answerSync(socket, notes(201, 250), false, {seq: 250});
            return {sinces: sinces(socket), afterFirstPage, news: news(events), seq: gw.notifications.seq,
                    caughtUp: events.filter(([kind]) => kind === "caughtUp")};
        }"""
    )
    assert [data["since"] for data in result["sinces"]] == [0, 100, 200]
    assert all(data["limit"] == 100 for data in result["sinces"])
    assert result["afterFirstPage"] == 100  # each page is handed over as it comes
    assert result["news"] == list(range(1, 251))
    assert result["seq"] == 250
    # One event for the whole catch-up; 250 came as a push, live, so it is not in it.
    assert result["caughtUp"] == [["caughtUp", list(range(1, 250))]]


def test_a_sync_page_the_server_rate_limits_is_asked_for_again_after_a_pause(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            const errors = [];
            gw.on("error", (error) => errors.push(error.code));
            connectFrame(socket, 0);
            push(socket, note(3));
            const first = syncs(socket).at(-1);
            socket.receive({channel: "notifications", id: first.id,
                            error: {code: "rate_limited", message: "Too many frames. Retry in 0.05 s."}});
            await sleep(600);  // the client's first pause is 500 ms
            await answerSync(socket, notes(1, 3));
            return {sinces: sinces(socket).map((data) => data.since), news: news(events), errors,
                    seq: gw.notifications.seq};
        }"""
    )
    assert result["sinces"] == [0, 0]  # the same page again, not an error
    assert result["news"] == [1, 2, 3]
    assert result["errors"] == []
    assert result["seq"] == 3


def test_a_reconnect_syncs_from_the_cursor(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected({minDelay: 10});
            const events = record(gw);
            connectFrame(socket, 5);
            push(socket, note(6));
            socket.drop(1006);
            const next = await nextSocket(2);
            next.hello();
            connectFrame(next, 9, {unread: 4, category: "warning"});
            const requests = sinces(next);
            await answerSync(next, notes(7, 9), false, {unread: 4, category: "warning"});
            const state = [gw.notifications.seq, gw.notifications.unread, gw.notifications.category];
            next.drop(1006);  // and again, with nothing new this time
            const third = await nextSocket(3);
            third.hello();
            connectFrame(third, 9, {unread: 4, category: "warning"});
            await sleep(0);
            return {requests, state, events, thirdSyncs: syncs(third).length};
        }"""
    )
    assert result["requests"] == [{"since": 6, "limit": 100}]
    assert result["state"] == [9, 4, "warning"]
    assert result["events"] == [
        ["new", 6, False],
        ["new", 7, True],
        ["new", 8, True],
        ["new", 9, True],
        ["caughtUp", [7, 8, 9]],
    ]
    assert result["thirdSyncs"] == 0  # the connect frame's seq is the cursor: nothing to fetch


def test_a_sync_cut_by_a_closed_socket_is_retried_at_the_next_connect(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected({minDelay: 10});
            const events = record(gw);
            const errors = [];
            gw.on("error", (error) => errors.push(error.code));
            connectFrame(socket, 5);
            push(socket, note(7));  // a gap: sync
            const first = sinces(socket);
            socket.drop(1006);
            const next = await nextSocket(2);
            next.hello();
            connectFrame(next, 8);
            const second = sinces(next);
            await answerSync(next, notes(6, 8));
            const afterRetry = events.slice();

            // The same with the new socket's connect frame in the same task as the close, before the
            // cut sync's failure is known: the sync still follows.
            push(next, note(10));
            next.drop(1006);
            gw.connect();
            const last = FakeSocket.all[2];
            last.hello();
            connectFrame(last, 10);
            await sleep(0);
            const third = sinces(last);
            await answerSync(last, notes(9, 10));
            return {first, second, third, afterRetry, events, errors, seq: gw.notifications.seq};
        }"""
    )
    assert result["first"] == [{"since": 5, "limit": 100}]
    assert result["second"] == [{"since": 5, "limit": 100}]
    assert result["afterRetry"] == [
        ["new", 6, True],
        ["new", 7, False],
        ["new", 8, True],
        ["caughtUp", [6, 8]],
    ]
    assert result["third"] == [{"since": 8, "limit": 100}]
    assert result["events"][4:] == [["new", 9, True], ["new", 10, False], ["caughtUp", [9]]]
    assert result["errors"] == []  # a closed socket is no error: the next connect retries
    assert result["seq"] == 10


def test_a_resync_hands_over_the_missed_ones_and_syncs_the_rest(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            connectFrame(socket, 5);
            socket.receive({channel: "gateway", payload: {resync: true}});
            connectFrame(socket, 9, {unread: 4, category: "info", missed: notes(6, 7), has_more: true});
            const afterFrame = events.slice();
            const requests = sinces(socket);
            await answerSync(socket, notes(8, 9));
            // A resync whose missed list is all of it (9 was brought by the sync already): no sync.
            socket.receive({channel: "gateway", payload: {resync: true}});
            connectFrame(socket, 11, {unread: 6, category: "info", missed: notes(9, 11), has_more: false});
            await sleep(0);
            return {afterFrame, requests, events, syncs: syncs(socket).length, seq: gw.notifications.seq};
        }"""
    )
    assert result["afterFrame"] == [["new", 6, True], ["new", 7, True]]
    assert result["requests"] == [{"since": 7, "limit": 100}]
    assert result["events"] == [
        ["new", 6, True],
        ["new", 7, True],
        ["new", 8, True],
        ["new", 9, True],
        ["caughtUp", [6, 7, 8, 9]],
        ["new", 10, True],
        ["new", 11, True],
        ["caughtUp", [10, 11]],
    ]
    assert result["syncs"] == 1
    assert result["seq"] == 11


def test_the_buffer_of_early_pushes_is_bounded_and_the_sync_brings_what_it_dropped(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            connectFrame(socket, 0);
            for (let seq = 2; seq <= 300; seq++) push(socket, note(seq));  // 1 is missing
            const duringSync = syncs(socket).length;
            await answerSync(socket, notes(1, 2));  // answered before 3 existed
            const afterFirstSync = news(events);
            await answerSync(socket, notes(3, 102), true, {seq: 300});
            await answerSync(socket, notes(103, 202), true, {seq: 300});
            await answerSync(socket, notes(203, 300), false, {seq: 300});
            return {duringSync, afterFirstSync, sinces: sinces(socket).map((data) => data.since),
                    news: news(events), seq: gw.notifications.seq};
        }"""
    )
    assert result["duringSync"] == 1
    # 299 pushes waited for 1: more than the client keeps (256), so it let them go rather than
    # hand them over from memory...
    assert result["afterFirstSync"] == [1, 2]
    # ...and synced again from the cursor for them.
    assert result["sinces"] == [0, 2, 102, 202]
    assert result["news"] == list(range(1, 301))
    assert result["seq"] == 300


def test_deleted_notifications_do_not_hold_the_cursor_back(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            connectFrame(socket, 5);
            push(socket, note(8));  // 6 and 7 missed
            await answerSync(socket, [note(6)], false, {seq: 8});  // 7 and 8 were deleted meanwhile
            push(socket, note(9));
            await sleep(0);
            return {events, seq: gw.notifications.seq, syncs: syncs(socket).length};
        }"""
    )
    assert result["events"] == [["new", 6, True], ["caughtUp", [6]], ["new", 9, False]]
    assert result["seq"] == 9
    assert result["syncs"] == 1  # not a sync for ever for 7


def test_a_failed_sync_is_reported_and_retried_by_the_next_push_not_in_a_loop(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const events = record(gw);
            const errors = [];
            gw.on("error", (error) => errors.push(error.code));
            connectFrame(socket, 5);
            push(socket, note(7));
            const error = {code: "invalid_data", message: "No."};
            socket.receive({channel: "notifications", id: syncs(socket).at(-1).id, error});
            await sleep(50);
            const afterFailure = syncs(socket).length;
            push(socket, note(8));
            const afterPush = syncs(socket).length;
            await answerSync(socket, notes(6, 8));
            return {errors, afterFailure, afterPush, news: news(events), seq: gw.notifications.seq};
        }"""
    )
    assert result["errors"] == ["invalid_data"]
    assert result["afterFailure"] == 1
    assert result["afterPush"] == 2
    assert result["news"] == [6, 7, 8]
    assert result["seq"] == 8


def test_the_cursor_starts_over_for_a_new_count_or_another_user(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected({minDelay: 10});
            const events = record(gw);
            connectFrame(socket, 10);
            push(socket, note(11));
            // The server's count went back (a restored database): the old cursor would take 4 for an edit.
            socket.receive({channel: "gateway", payload: {resync: true}});
            connectFrame(socket, 3);
            push(socket, note(4));
            const restarted = [gw.notifications.seq, syncs(socket).length];
            // Another user signed in in another tab, and this tab connects again as that user.
            socket.drop(1006);
            const next = await nextSocket(2);
            next.open();
            const bob = {user: {id: 8, username: "bob"}, services: ["notifications"]};
            next.receive({channel: "gateway", payload: bob});
            connectFrame(next, 50);
            await sleep(0);
            return {events, restarted, seq: gw.notifications.seq, syncs: syncs(next).length};
        }"""
    )
    assert result["events"] == [["new", 11, False], ["new", 4, False]]
    assert result["restarted"] == [4, 0]
    assert result["seq"] == 50  # bob's latest, not a sync of bob's from ann's cursor
    assert result["syncs"] == 0


def test_echoes_each_mark_as_it_reads_it_and_hands_marks_to_no_listener(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            const heard = [];
            gw.channel("gateway").on((payload) => heard.push(payload));
            gw.channel("echo").on((payload) => heard.push(payload));
            const acks = [];
            for (let n = 0; n < 3; n++) {
                socket.receive({channel: "echo", payload: n});
                acks.push(socket.sent.length);
                socket.receive({channel: "gateway", payload: {action: "mark", data: `m${n}`}});
                acks.push(socket.last);
            }
            // Not a mark the server writes: nothing to echo.
            socket.receive({channel: "gateway", payload: {action: "mark", data: 12}});
            return {heard, acks, sent: socket.sent};
        }"""
    )
    # Each mark echoed at once, right after the frames before it were read; nothing else sent.
    assert result["acks"] == [
        0,
        {"channel": "gateway", "payload": {"action": "ack", "data": "m0"}},
        1,
        {"channel": "gateway", "payload": {"action": "ack", "data": "m1"}},
        2,
        {"channel": "gateway", "payload": {"action": "ack", "data": "m2"}},
    ]
    assert len(result["sent"]) == 3
    assert result["heard"] == [0, 1, 2]


def test_a_client_that_is_sent_no_mark_sends_no_acknowledgement(client_page: Any) -> None:
    """It no longer counts bytes: however much it reads, it acknowledges only a mark."""
    sent = client_page.evaluate(
        """async () => {
            const [gw, socket] = await connected();
            for (let n = 0; n < 50; n++) socket.receive({channel: "echo", payload: "x".repeat(10000)});
            return socket.sent;
        }"""
    )
    assert sent == []


# -- states: one sequence of changes (docs/protocol.md, "States and changes") ---------------------

STATES_HELPERS = """
    const counts = (unread, extra = {}) =>
        Object.assign({unread, unseen: unread, archived: 0, badge: unread}, extra);
    // A notification as a server that numbers changes sends it: its version is its seq until it changes.
    const fresh = (seq, extra = {}) => note(seq, Object.assign({version: seq, change: "created", seen: false,
        archived: false, deleted: false, snoozed_until: null, expires_at: null}, extra));
    // A change item: id, seq, is_read and states (no content), numbered `version`.
    const changed = (seq, version, change, states = {}) => Object.assign({id: 1000 + seq, seq,
        is_read: false, version, change, seen: false, archived: false, deleted: false, snoozed_until: null,
        expires_at: null}, states);
    function pushChanges(socket, items, unread = 0) {
        const payload = {changes: items, unread, category: null, counts: counts(unread)};
        socket.receive({channel: "notifications", payload});
    }
    function pushNew(socket, notification, unread) {
        const payload = {category: notification.category, last: notification, unread, counts: counts(unread)};
        socket.receive({channel: "notifications", payload});
    }
    function recordAll(gw) {
        const events = record(gw);
        gw.notifications.onNotificationChange((n, info) =>
            events.push(["change", n.seq, info.change, info.catchUp, n.label || null]));
        gw.notifications.onReset(() => events.push(["reset"]));
        return events;
    }
"""


def states_eval(page: Any, body: str) -> Any:
    return page.evaluate(f"async () => {{ {STATES_HELPERS} {body} }}")


def test_change_pushes_in_order_update_the_copy_and_the_counts_and_send_no_sync(client_page: Any) -> None:
    result = states_eval(
        client_page,
        """
        const [gw, socket] = await connected();
        const events = recordAll(gw);
        const states = [];
        gw.notifications.onChange((state) => states.push(state.counts && state.counts.badge));
        connectFrame(socket, 10, {unread: 0, counts: counts(0)});
        pushNew(socket, fresh(11), 1);
        pushNew(socket, fresh(12), 2);
        pushChanges(socket, [changed(11, 13, "seen", {seen: true})], 2);
        pushChanges(socket, [changed(11, 14, "read", {is_read: true, seen: true}),
                             changed(12, 15, "archived", {archived: true})], 0);
        pushChanges(socket, [changed(11, 14, "read", {is_read: true, seen: true})], 0);  // again: ignored
        pushChanges(socket, [changed(12, 16, "deleted", {archived: true, deleted: true})], 0);
        await sleep(0);
        const kept = gw.notifications.get(1011);
        return {events, sent: socket.sent.length, seq: gw.notifications.seq, states,
                kept: [kept.label, kept.is_read, kept.version, kept.change], counts: gw.notifications.counts};
        """,
    )
    assert result["events"] == [
        ["new", 11, False],
        ["new", 12, False],
        ["change", 11, "seen", False, "n11"],  # the copy's content, the change's states
        ["change", 11, "read", False, "n11"],
        ["change", 12, "archived", False, "n12"],
        ["change", 12, "deleted", False, "n12"],
    ]
    assert result["sent"] == 0  # no sync for nothing: every number came in order
    assert result["seq"] == 16
    assert result["kept"] == ["n11", True, 14, "read"]
    assert result["states"] == [0, 1, 2, 2, 0, 0, 0]
    assert result["counts"] == {"unread": 0, "unseen": 0, "archived": 0, "badge": 0}


def test_a_gap_in_changes_syncs_changes_and_each_arrives_once(client_page: Any) -> None:
    result = states_eval(
        client_page,
        """
        const [gw, socket] = await connected();
        const events = recordAll(gw);
        connectFrame(socket, 10, {unread: 1, counts: counts(1)});
        const start = gw.notifications.seq;
        // 11..14 were missed; 15 comes: a gap.
        pushChanges(socket, [changed(9, 15, "archived", {archived: true})], 1);
        const requests = syncs(socket).map((frame) => frame.payload.data);
        pushChanges(socket, [changed(8, 16, "read", {is_read: true, seen: true})], 0);  // racing the sync
        const beforeReply = events.slice();
        // The page: 8 unread then (at 11; read again at 16, after the page was read), 12 created and read
        // since, 9 archived at 15, a tombstone of 13 (created and deleted while away).
        const request = syncs(socket).at(-1);
        socket.receive({channel: "notifications", id: request.id, payload: {changes: [
            changed(8, 11, "unread"),
            fresh(12, {version: 14, change: "read", is_read: true, seen: true}),
            changed(9, 15, "archived", {archived: true}),
            changed(13, 13, "deleted", {deleted: true}),
        ].sort((a, b) => a.version - b.version), has_more: false, seq: 15, unread: 0, category: null,
        counts: counts(0)}});
        await sleep(0);
        pushChanges(socket, [changed(12, 17, "unread")], 1);
        await sleep(0);
        return {start, requests, beforeReply, events, seq: gw.notifications.seq, syncs: syncs(socket).length};
        """,
    )
    assert result["start"] == 10
    assert result["requests"] == [{"since": 10, "limit": 100, "changes": True}]
    assert result["beforeReply"] == []  # 15 and 16 wait for 11 to 14
    assert result["events"] == [
        ["change", 8, "unread", True, None],
        ["new", 12, True],  # new to the page, in its state now (read): handed over once
        ["change", 9, "archived", False, None],  # the pushed one, once (the page's copy is the same)
        ["change", 8, "read", False, None],
        ["caughtUp", [12]],
        ["change", 12, "unread", False, "n12"],
    ]
    assert result["seq"] == 17
    assert result["syncs"] == 1


def test_a_reset_reloads_and_the_cursor_moves_to_the_servers_latest(client_page: Any) -> None:
    result = states_eval(
        client_page,
        """
        const [gw, socket] = await connected();
        const events = recordAll(gw);
        connectFrame(socket, 10, {unread: 0, counts: counts(0)});
        socket.drop();
        const next = await nextSocket(2);
        next.hello();
        connectFrame(next, 500, {unread: 4, counts: counts(4)});
        const request = syncs(next).at(-1);
        next.receive({channel: "notifications", id: request.id, payload: {changes: [], has_more: false,
            reset: true, seq: 500, unread: 4, category: "info", counts: counts(4)}});
        await sleep(0);
        push(next, fresh(501), 5);
        await sleep(0);
        return {events, seq: gw.notifications.seq, request: request.payload.data, syncs: syncs(next).length};
        """,
    )
    assert result["request"] == {"since": 10, "limit": 100, "changes": True}
    assert result["events"] == [["reset"], ["new", 501, False]]
    assert result["seq"] == 501
    assert result["syncs"] == 1


def test_the_state_actions_send_the_protocols_frames(client_page: Any) -> None:
    result = states_eval(
        client_page,
        """
        const [gw, socket] = await connected();
        connectFrame(socket, 10, {unread: 0, counts: counts(0)});
        const calls = [
            () => gw.notifications.markUnread([1]),
            () => gw.notifications.markSeen([1, 2]),
            () => gw.notifications.archive(3),
            () => gw.notifications.unarchive([3]),
            () => gw.notifications.delete([4]),
            () => gw.notifications.snooze([5], new Date(Date.UTC(2030, 0, 2, 3, 4, 5))),
            () => gw.notifications.unsnooze([5]),
            () => gw.notifications.markAllSeen(),
            () => gw.notifications.list({view: "archived", limit: 5}),
        ];
        const sent = [];
        for (const call of calls) {
            const done = call();
            const frame = socket.last;
            sent.push(frame.payload);
            socket.receive({channel: "notifications", id: frame.id, payload: {unread: 0, category: null,
                counts: counts(0), notifications: [], has_more: false, changed: 0}});
            await done;
        }
        // A bulk action asks again while the server says has_more.
        const bulk = gw.notifications.archiveAllRead();
        for (const [changed, more] of [[5000, true], [7, false]]) {
            await sleep(0);
            socket.receive({channel: "notifications", id: socket.last.id, payload: {unread: 0, category: null,
                counts: counts(0), changed, has_more: more}});
        }
        const reply = await bulk;
        return {sent, bulk: socket.sent.slice(-2).map((f) => f.payload.action), changed: reply.changed};
        """,
    )
    assert result["sent"] == [
        {"action": "mark_unread", "data": [1]},
        {"action": "mark_seen", "data": [1, 2]},
        {"action": "archive", "data": [3]},
        {"action": "unarchive", "data": [3]},
        {"action": "delete", "data": [4]},
        {"action": "snooze", "data": {"ids": [5], "until": "2030-01-02T03:04:05.000Z"}},
        {"action": "unsnooze", "data": [5]},
        {"action": "mark_all_seen", "data": None},
        {"action": "list", "data": {"limit": 5, "view": "archived"}},
    ]
    assert result["bulk"] == ["archive_all_read", "archive_all_read"]
    assert result["changed"] == 5007


def test_the_local_copy_is_bounded_and_a_list_page_never_undoes_a_newer_change(client_page: Any) -> None:
    result = states_eval(
        client_page,
        """
        const [gw, socket] = await connected();
        connectFrame(socket, 0, {unread: 0, counts: counts(0)});
        for (let seq = 1; seq <= 700; seq += 1) push(socket, fresh(seq), seq);
        const size = gw.notifications._copy.size;
        pushChanges(socket, [changed(700, 701, "read", {is_read: true, seen: true})], 699);
        // A list page read before that change, arriving after it.
        const listing = gw.notifications.list({limit: 1});
        socket.receive({channel: "notifications", id: socket.last.id, payload: {notifications: [fresh(700)],
            has_more: true, unread: 699, category: null, counts: counts(699)}});
        const page = await listing;
        return {size, listed: [page.notifications[0].is_read, page.notifications[0].version],
                oldest: gw.notifications.get(1001), newest: gw.notifications.get(1700).is_read,
                sent: socket.sent.filter((f) => f.payload.action === "sync").length};
        """,
    )
    assert result["size"] == 500
    assert result["listed"] == [True, 701]
    assert result["oldest"] is None  # forgotten: past the bound
    assert result["newest"] is True
    assert result["sent"] == 0


def test_presence_helper_keeps_the_states_and_watches_again_on_a_new_socket(client_page: Any) -> None:
    result = client_page.evaluate(
        """async () => {
            const services = ["notifications", "clipboard", "presence"];
            const [gw, socket] = await connected({minDelay: 10}, services);
            const seen = [];
            gw.presence.onChange((id, online) => seen.push([id, online]));
            const answer = (on, payload) => on.receive({channel: "presence", id: on.last.id, payload});
            let pending = gw.presence.watch([42, "7", "9"]);
            const asked = socket.last.payload;
            answer(socket, {users: {"42": true, "7": false}, refused: ["9"]});
            const reply = await pending;
            socket.receive({channel: "presence", payload: {user: "7", online: true}});
            pending = gw.presence.watch(["5"]);
            socket.receive({channel: "presence", id: socket.last.id,
                            error: {code: "limit_exceeded", message: "At most 100."}});
            const refused = await pending.catch((error) => error.code);
            pending = gw.presence.unwatch("42");
            answer(socket, {unwatched: ["42"]});
            await pending;
            // A push that crossed the unwatch is dropped.
            socket.receive({channel: "presence", payload: {user: "42", online: false}});
            const before = {online: Object.fromEntries(gw.presence.online), dot: gw.presence.isOnline(7)};

            // A new socket watches nothing: the helper watches what the page still watches.
            socket.drop(1006);
            const next = await nextSocket(2);
            next.hello("ann", services);
            const again = next.last.payload;
            answer(next, {users: {"7": false}, refused: []});
            await sleep(0);
            return {asked, reply, refused, before, again, seen, after: gw.presence.isOnline("7")};
        }"""
    )
    assert result["asked"] == {"action": "watch", "data": {"users": ["42", "7", "9"]}}
    assert result["reply"] == {"users": {"42": True, "7": False}, "refused": ["9"]}
    assert result["refused"] == "limit_exceeded"
    assert result["before"] == {"online": {"7": True}, "dot": True}
    assert result["again"] == {"action": "watch", "data": {"users": ["7"]}}, "not 9 (refused), 5 or 42"
    # A reply's states in the order JavaScript keeps an object's keys: integer-like ones ascending.
    assert result["seen"] == [["7", False], ["42", True], ["7", True], ["7", False]]
    assert result["after"] is False
