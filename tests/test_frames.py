"""The envelope on its own: decoding client messages and encoding server frames, with no socket."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from typing import Any

import pytest

from wsgateway import frames
from wsgateway.codes import ErrorCode
from wsgateway.frames import MAX_ID_LENGTH, MAX_NESTING, Frame, FrameError, MessageTooBig

LIMIT = 1024


def text(value: Any) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": json.dumps(value)}


def refusal(message: dict[str, Any]) -> FrameError:
    with pytest.raises(FrameError) as caught:
        frames.decode(message, LIMIT)
    return caught.value


# -- decoding ---------------------------------------------------------------------------


def test_a_valid_frame_decodes_to_channel_payload_and_id() -> None:
    message = text({"channel": "clipboard", "payload": {"action": "clipboard_add", "data": 1}, "id": 4})
    assert frames.decode(message, LIMIT) == Frame("clipboard", {"action": "clipboard_add", "data": 1}, 4)


def test_payload_and_id_are_optional() -> None:
    assert frames.decode(text({"channel": "gateway"}), LIMIT) == Frame("gateway", None, None)


def test_size_is_checked_first_and_counts_utf8_bytes() -> None:
    at_limit = "é" * (LIMIT // 2)  # two bytes each: exactly LIMIT bytes
    with pytest.raises(MessageTooBig):
        frames.decode({"type": "websocket.receive", "text": at_limit + "é"}, LIMIT)
    with pytest.raises(MessageTooBig):
        frames.decode({"type": "websocket.receive", "bytes": b"\0" * (LIMIT + 1)}, LIMIT)
    assert refusal({"type": "websocket.receive", "text": at_limit}).code == ErrorCode.INVALID_JSON


def test_binary_is_binary_not_supported() -> None:
    error = refusal({"type": "websocket.receive", "bytes": b'{"channel": "gateway"}'})
    assert (error.code, error.channel, error.id) == (ErrorCode.BINARY_NOT_SUPPORTED, None, None)


@pytest.mark.parametrize("raw", ["", "nope", '{"channel": ', "NaN", '{"n": Infinity}', '{"n": -Infinity}'])
def test_text_that_is_not_json_is_invalid_json(raw: str) -> None:
    assert refusal({"type": "websocket.receive", "text": raw}).code == ErrorCode.INVALID_JSON


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400", "123456789e301", "-0.1e310"])
def test_a_number_too_big_for_a_float_is_invalid_json_not_an_infinity(number: str) -> None:
    message = {"type": "websocket.receive", "text": '{"channel": "clipboard", "payload": [' + number + "]}"}
    assert refusal(message).code == ErrorCode.INVALID_JSON


@pytest.mark.parametrize(("number", "value"), [("1e308", 1e308), ("-2.5e-400", -0.0), ("1E2", 100.0)])
def test_finite_numbers_in_exponent_form_are_read(number: str, value: float) -> None:
    frame = frames.decode(
        {"type": "websocket.receive", "text": '{"channel": "x", "payload": ' + number + "}"}, LIMIT
    )
    assert frame.payload == value


def test_nesting_up_to_the_limit_is_read_and_deeper_is_invalid_json() -> None:
    def nested(depth: int) -> str:
        # The envelope is one level; the payload brings the rest.
        return '{"channel": "gateway", "payload": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

    assert (
        frames.decode({"type": "websocket.receive", "text": nested(MAX_NESTING)}, 10**6).channel == "gateway"
    )
    with pytest.raises(FrameError) as caught:
        frames.decode({"type": "websocket.receive", "text": nested(MAX_NESTING + 1)}, 10**6)
    assert caught.value.code == ErrorCode.INVALID_JSON


@pytest.mark.parametrize("content", [[], "gateway", 3, None, True])
def test_json_that_is_not_an_object_is_invalid_frame(content: Any) -> None:
    assert refusal(text(content)).code == ErrorCode.INVALID_FRAME


@pytest.mark.parametrize("frame_id", [True, 1.5, [1], {"n": 1}, None, "x" * (MAX_ID_LENGTH + 1)], ids=repr)
def test_an_id_that_is_not_an_integer_or_a_short_string_is_invalid_id(frame_id: Any) -> None:
    error = refusal(text({"channel": "clipboard", "id": frame_id}))
    # The channel is echoed, so the client can tell which request failed; the bad id is not.
    assert (error.code, error.channel, error.id) == (ErrorCode.INVALID_ID, "clipboard", None)


@pytest.mark.parametrize("frame_id", [0, -3, "", "x" * MAX_ID_LENGTH])
def test_integers_and_strings_up_to_the_limit_are_valid_ids(frame_id: Any) -> None:
    assert frames.decode(text({"channel": "gateway", "id": frame_id}), LIMIT).id == frame_id


@pytest.mark.parametrize("content", [{}, {"channel": ""}, {"channel": 5}, {"channel": None}])
def test_a_frame_without_a_channel_name_is_missing_channel_with_its_id(content: dict[str, Any]) -> None:
    error = refusal(text({**content, "id": "r1"}))
    assert (error.code, error.channel, error.id) == (ErrorCode.MISSING_CHANNEL, None, "r1")


# -- what a database can store ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "culprit"),
    [
        ("a\x00b", "a\x00b"),
        ("\ud800", "\ud800"),
        ("x\udfff", "x\udfff"),
        ({"text": ["fine", {"deep": "\x00"}]}, "\x00"),
        ({"key\x00": 1}, "key\x00"),
        ({"\udc80": None}, "\udc80"),
        ([1, 2.5, True, None, "\ud83d"], "\ud83d"),
    ],
    ids=repr,
)
def test_unstorable_finds_nul_and_lone_surrogates_anywhere_keys_included(value: Any, culprit: str) -> None:
    assert frames.unstorable(value) == culprit


@pytest.mark.parametrize(
    "value", ["", "caf\u00e9", "\U0001f600", {"\u00e9": ["\u2028", 1]}, None, 3, [], {}], ids=repr
)
def test_unstorable_passes_any_other_text(value: Any) -> None:
    assert frames.unstorable(value) is None


def test_a_surrogate_pair_sent_escaped_is_one_character_and_storable() -> None:
    frame = frames.decode(
        {"type": "websocket.receive", "text": r'{"channel": "x", "payload": "\ud83d\ude00"}'}, LIMIT
    )
    assert frame.payload == "\U0001f600"
    assert frames.unstorable(frame.payload) is None
    lone = frames.decode(
        {"type": "websocket.receive", "text": r'{"channel": "x", "payload": "\ud83d"}'}, LIMIT
    )
    assert frames.unstorable(lone.payload) == "\ud83d"


# -- encoding ---------------------------------------------------------------------------


def test_data_frames_are_compact_and_carry_the_id_only_when_given() -> None:
    assert frames.data("gateway", {"action": "pong"}, "p1") == (
        '{"channel":"gateway","payload":{"action":"pong"},"id":"p1"}'
    )
    assert frames.data("notifications", {"unread": 2}) == '{"channel":"notifications","payload":{"unread":2}}'
    assert frames.data("x", None, 0) == '{"channel":"x","payload":null,"id":0}'


def test_error_frames_have_code_and_message() -> None:
    assert json.loads(frames.error(None, ErrorCode.INVALID_JSON, "Not JSON.")) == {
        "channel": None,
        "error": {"code": "invalid_json", "message": "Not JSON."},
    }
    assert json.loads(frames.error("clipboard", "not_found", "Gone.", 9)) == {
        "channel": "clipboard",
        "id": 9,
        "error": {"code": "not_found", "message": "Gone."},
    }


def test_text_a_client_sent_comes_back_as_ascii_even_with_lone_surrogates() -> None:
    sent = frames.data("clipboard", {"data": "caf\u00e9 \ud800"})
    assert sent.isascii()
    assert json.loads(sent)["payload"]["data"] == "caf\u00e9 \ud800"


def stable_repr(value: object) -> str:
    """``repr``, with a set's items sorted: a test's id must be the same in every process (pytest-xdist
    compares its workers' collections), and a set's order changes with the string hash's seed."""
    if isinstance(value, (set, frozenset)):
        items = "{" + ", ".join(sorted(map(repr, value))) + "}"
        return items if type(value) is set else f"{type(value).__name__}({items})"
    return repr(value)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ({"b", "a"}, ["a", "b"]),
        (frozenset({1}), [1]),
        ((1, (2, 3)), [1, [2, 3]]),
        (datetime.datetime(2026, 11, 30, 8, 5, 9, 987654, tzinfo=datetime.UTC), "2026-11-30T08:05:09.987Z"),
        (datetime.datetime(2026, 11, 30, 8, 5), "2026-11-30T08:05:00"),
        (datetime.date(2026, 2, 1), "2026-02-01"),
        (datetime.time(7, 30), "07:30:00"),
        (datetime.timedelta(days=1, seconds=2), "P1DT00H00M02S"),
        (decimal.Decimal("0.10"), "0.10"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({"deep": [{"at": datetime.date(2026, 1, 1)}]}, {"deep": [{"at": "2026-01-01"}]}),
    ],
    ids=stable_repr,
)
def test_the_encoder_writes_what_djangos_json_encoder_does_and_sets_as_arrays(
    value: Any, written: Any
) -> None:
    payload = json.loads(frames.data("x", value))["payload"]
    assert (sorted(payload) if isinstance(value, set) else payload) == written


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), [1.0, float("nan")], object(), {"key": b"bytes"}, {1j}],
    ids=["nan", "infinity", "-infinity", "nan-in-a-list", "object", "bytes", "complex-in-a-set"],
)
def test_a_value_with_no_json_form_raises_not_json(value: Any) -> None:
    with pytest.raises(frames.NotJSON):
        frames.data("x", {"value": value}, 1)


def test_a_cycle_and_nesting_too_deep_to_encode_raise_not_json() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    for value in (cycle, deep):
        with pytest.raises(frames.NotJSON):
            frames.data("x", value)


def test_an_error_frame_with_an_id_that_is_not_json_raises_not_json() -> None:
    with pytest.raises(frames.NotJSON):
        frames.error("x", ErrorCode.INTERNAL_ERROR, "Failed.", object())  # type: ignore[arg-type]
