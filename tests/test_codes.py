"""The close codes' reconnect rules: ``wsgateway.codes.RECONNECT``, and wsgateway.js's copy of it.

The JS is read two ways: as text (its ``RECONNECT`` and ``RECONNECT_RANGES`` literals, parsed line by
line, so that a line the parser does not know fails rather than slips by), and, where node is installed,
run, so that ``WSGateway.reconnectRule`` is asked about every code from 0 to 5000.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from wsgateway.codes import RECONNECT, RECONNECT_RANGES, ClientCloseCode, CloseCode, Reconnect, reconnect_rule

CLIENT_JS = Path(__file__).resolve().parents[1] / "wsgateway" / "static" / "wsgateway" / "wsgateway.js"

TABLE_ENTRY = re.compile(r'^(\d{4}): "([a-z_]+)",(?:\s*//.*)?$')
RANGE_ENTRY = re.compile(r'^Object\.freeze\(\[(\d{4}), (\d{4}), "([a-z_]+)"\]\),(?:\s*//.*)?$')


def literal_lines(source: str, opening: str, closing: str) -> list[str]:
    """The lines between ``opening`` and the first ``closing`` after it, stripped, blank ones left out."""
    start = source.index(opening) + len(opening)
    end = source.index(closing, start)
    return [line.strip() for line in source[start:end].splitlines() if line.strip()]


def parse_js_tables() -> tuple[dict[int, str], list[tuple[int, int, str]]]:
    source = CLIENT_JS.read_text()
    table: dict[int, str] = {}
    for line in literal_lines(source, "const RECONNECT = Object.freeze({", "});"):
        match = TABLE_ENTRY.match(line)
        assert match, f"a line of wsgateway.js's RECONNECT this test cannot read: {line!r}"
        code = int(match[1])
        assert code not in table, f"{code} twice in wsgateway.js's RECONNECT"
        table[code] = match[2]
    ranges = []
    for line in literal_lines(source, "const RECONNECT_RANGES = Object.freeze([", "]);"):
        match = RANGE_ENTRY.match(line)
        assert match, f"a line of wsgateway.js's RECONNECT_RANGES this test cannot read: {line!r}"
        ranges.append((int(match[1]), int(match[2]), match[3]))
    return table, ranges


def test_every_code_the_server_sends_or_a_client_sees_has_a_rule() -> None:
    for code in [*CloseCode, *ClientCloseCode]:
        assert code in RECONNECT, code
    assert set(RECONNECT) == {*CloseCode, *ClientCloseCode}
    assert len({*CloseCode} & {*ClientCloseCode}) == 0


def test_the_rules() -> None:
    assert reconnect_rule(CloseCode.UNAUTHORIZED) is Reconnect.STOP
    assert reconnect_rule(CloseCode.GONE) is Reconnect.STOP
    assert reconnect_rule(CloseCode.TOO_MANY_REQUESTS) is Reconnect.PAUSE
    assert reconnect_rule(CloseCode.NOT_READING) is Reconnect.PAUSE
    assert reconnect_rule(CloseCode.TOO_MANY_CONNECTIONS) is Reconnect.PAUSE
    assert reconnect_rule(CloseCode.SERVICE_UNAVAILABLE) is Reconnect.RETRY_AFTER
    assert reconnect_rule(CloseCode.RECONNECT) is Reconnect.NOW
    assert reconnect_rule(CloseCode.MESSAGE_TOO_BIG) is Reconnect.NOW
    assert reconnect_rule(CloseCode.CONTENT_TOO_LARGE) is Reconnect.NOW
    assert reconnect_rule(ClientCloseCode.ABNORMAL_CLOSURE) is Reconnect.NOW
    assert reconnect_rule(ClientCloseCode.PING_TIMEOUT) is Reconnect.NOW
    assert reconnect_rule(ClientCloseCode.TRY_AGAIN_LATER) is Reconnect.PAUSE


def test_a_code_not_in_the_table_goes_by_its_range_and_never_stops() -> None:
    assert reconnect_rule(1005) is Reconnect.NOW  # the browser's "no status"
    assert reconnect_rule(3000) is Reconnect.NOW
    assert reconnect_rule(4002) is Reconnect.NOW  # a site's own close_sockets() code
    assert reconnect_rule(4403) is Reconnect.PAUSE  # a refusal this client does not know
    assert reconnect_rule(4500) is Reconnect.PAUSE
    assert reconnect_rule(4999) is Reconnect.PAUSE
    assert reconnect_rule(999) is Reconnect.NOW
    assert reconnect_rule(5000) is Reconnect.NOW
    assert all(rule is not Reconnect.STOP for _, _, rule in RECONNECT_RANGES)
    # In order, not overlapping, and together 1000-4999 without a hole.
    edges = [(first, last) for first, last, _ in RECONNECT_RANGES]
    assert edges[0][0] == 1000 and edges[-1][1] == 4999
    for (_, last), (first, _) in itertools.pairwise(edges):
        assert first == last + 1


def test_wsgateway_js_holds_the_same_table_as_codes_py() -> None:
    table, ranges = parse_js_tables()
    assert table == {int(code): str(rule) for code, rule in RECONNECT.items()}
    assert ranges == [(first, last, str(rule)) for first, last, rule in RECONNECT_RANGES]


def test_the_parser_fails_on_a_table_that_differs() -> None:
    """The comparison above can fail: a rule changed in the JS's text is seen."""
    source = CLIENT_JS.read_text().replace('4429: "pause"', '4429: "now"', 1)
    lines = literal_lines(source, "const RECONNECT = Object.freeze({", "});")
    parsed = {int(m[1]): m[2] for m in map(TABLE_ENTRY.match, lines) if m}
    assert parsed[4429] == "now" != str(RECONNECT[4429])


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed: the JS's tables are compared as text only")
def test_wsgateway_js_decides_as_codes_py_for_every_code() -> None:
    script = (
        f"require({json.dumps(str(CLIENT_JS))});"
        "const W = globalThis.WSGateway;"
        "const rules = {};"
        "for (let code = 0; code <= 5000; code++) rules[code] = W.reconnectRule(code);"
        "process.stdout.write(JSON.stringify({rules, names: W.RULES, frozen: Object.isFrozen(W.RECONNECT)}));"
    )
    result = json.loads(
        subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True).stdout
    )
    assert result["names"] == {rule.name: rule.value for rule in Reconnect}
    assert result["frozen"]
    expected = {str(code): str(reconnect_rule(code)) for code in range(5001)}
    assert result["rules"] == expected
