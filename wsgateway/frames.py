"""The wire envelope, ``{"channel", "payload", "id"}``: reading what a client sends, writing what the
server sends. Pure functions, with no socket and nothing of Django's but its JSON encoder and
gettext: docs/protocol.md is their specification. A :class:`FrameError`'s message is in the
language active when the frame was read: the socket's (see wsgateway.i18n).

Reading a client message is :func:`decode`: it returns a :class:`Frame`, or raises
:class:`MessageTooBig` (the socket is closed) or :class:`FrameError` (answered with an error frame,
the socket stays open). Writing is :func:`data` and :func:`error`, both through one encoder, so
every frame the server sends, reply, push or connect frame, is encoded the same way
(:func:`encode`, which is also the consumer's ``send_json`` encoder). A value it cannot write
raises :class:`NotJSON`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.functional import Promise
from django.utils.translation import gettext, pgettext

from .codes import ErrorCode

#: Longest string ``id`` a client may give a frame; the id is echoed in the reply.
MAX_ID_LENGTH = 128

#: Deepest nesting of arrays and objects in a client frame. Python's json raises
#: RecursionError near 1000, and data stored a little below that cannot be encoded
#: again inside a reply or an on-connect frame: stop well short of both.
MAX_NESTING = 100

FrameId = str | int

#: The subprotocol a client may offer in ``Sec-WebSocket-Protocol``: this protocol, version 1. Named
#: here only; see "Subprotocol" in docs/protocol.md and :func:`subprotocol`.
SUBPROTOCOL = "wsgateway.v1"

#: The gateway's own channel: the connect frame, pings, acknowledgements, and every error that
#: belongs to no service (a refusal, a revocation). No service and no request may use it.
GATEWAY_CHANNEL = "gateway"


@dataclass(frozen=True, slots=True)
class Frame:
    """A client frame that passed every envelope check."""

    channel: str
    payload: Any
    id: FrameId | None = None
    #: A client's answer to a server request (see :func:`reply_of`): the request's id, and the
    #: client's error ``(code, message)`` instead of a payload.
    reply: str | None = None
    error: tuple[str, str] | None = None


class NotJSON(ValueError):
    """A frame the server was to send holds a value with no JSON form: NaN, an infinity, an
    arbitrary object, a cycle, or nesting too deep to encode."""


class MessageTooBig(Exception):
    """A client message over the size limit: the socket is closed with 1009."""


class FrameError(Exception):
    """A client message that is not a valid envelope: answered with an error frame.

    ``channel`` and ``id`` are the frame's own, where it had usable ones, so the client
    can match the error to its request.
    """

    def __init__(
        self, code: ErrorCode, message: str | Promise, channel: str | None = None, id: FrameId | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel = channel
        self.id = id


# -- reading ----------------------------------------------------------------------------


def decode(message: Mapping[str, Any], max_size: int) -> Frame:
    """The frame in an ASGI ``websocket.receive`` message, checked in the protocol's order:
    size, then text, then JSON, then the envelope."""
    text = message.get("text")
    raw = raw_of(message)
    if too_big(raw, max_size):
        raise MessageTooBig(max_size)
    if text is None:
        raise FrameError(ErrorCode.BINARY_NOT_SUPPORTED, gettext("Frames must be JSON text, not binary."))
    return envelope(parse_json(text))


def raw_of(message: Mapping[str, Any]) -> str | bytes:
    """The text of an ASGI ``websocket.receive`` message, or its bytes, as the client sent it."""
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


def is_ack(frame: Frame) -> bool:
    """Whether ``frame`` is an acknowledgement, ``{"action": "ack", "data": "<mark>"}`` on the gateway
    channel: the echo of a :func:`mark` (see "Flow control" in docs/protocol.md)."""
    payload = frame.payload
    return frame.channel == GATEWAY_CHANNEL and isinstance(payload, dict) and payload.get("action") == "ack"


def too_big(raw: str | bytes, limit: int) -> bool:
    """True when ``raw`` is over ``limit`` bytes, counting text as UTF-8."""
    if len(raw) * 4 <= limit:  # no UTF-8 text of this many characters can be over the limit
        return False
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    return size > limit


def parse_json(text: str) -> Any:
    """``text`` as JSON nested at most :data:`MAX_NESTING` deep, or :class:`FrameError`."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        readable = not _nested_too_deep(text, value)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for Python's json
        readable = False
    if not readable:
        raise FrameError(
            ErrorCode.INVALID_JSON,
            gettext("The frame is not valid JSON nested at most %(depth)d deep.") % {"depth": MAX_NESTING},
        )
    return value


def envelope(content: Any) -> Frame:
    """The :class:`Frame` of a parsed JSON value: an object with a valid ``id`` and a ``channel``."""
    if not isinstance(content, dict):
        raise FrameError(
            ErrorCode.INVALID_FRAME,
            pgettext(
                "JSON names of the protocol: kept as they are",
                'A frame is a JSON object: {"channel", "payload", "id"}.',
            ),
        )
    channel = content.get("channel")
    frame_id = content.get("id")
    if "id" in content and not valid_id(frame_id):
        raise FrameError(
            ErrorCode.INVALID_ID,
            pgettext(
                "JSON names of the protocol: kept as they are",
                '"id" must be an integer or a string of at most %(length)d characters.',
            )
            % {"length": MAX_ID_LENGTH},
            channel if isinstance(channel, str) else None,
        )
    if not isinstance(channel, str) or not channel:
        raise FrameError(
            ErrorCode.MISSING_CHANNEL,
            pgettext("JSON names of the protocol: kept as they are", 'The frame has no "channel".'),
            None,
            frame_id,
        )
    if "reply" in content:
        return reply_of(content, channel, frame_id)
    return Frame(channel, content.get("payload"), frame_id)


def reply_of(content: dict[str, Any], channel: str, frame_id: FrameId | None) -> Frame:
    """A client's answer to a server request: ``{"channel", "reply": "<id>", "payload"}``, or with
    ``"error": {"code", "message"}`` (two strings) instead of the payload. Anything else is
    ``invalid_frame``."""
    reply, error = content["reply"], content.get("error")
    if not (type(reply) is str and len(reply) <= MAX_ID_LENGTH) or (
        "error" in content
        and (
            "payload" in content
            or not isinstance(error, dict)
            or not isinstance(error.get("code"), str)
            or not isinstance(error.get("message"), str)
        )
    ):
        raise FrameError(
            ErrorCode.INVALID_FRAME,
            pgettext(
                "JSON names of the protocol: kept as they are",
                'A reply is {"channel", "reply": "<request id>", "payload"} or {"channel", "reply", '
                '"error": {"code": "...", "message": "..."}}, with a "reply" string of at most '
                "%(length)d characters.",
            )
            % {"length": MAX_ID_LENGTH},
            channel,
            frame_id,
        )
    if error is not None:
        return Frame(channel, None, frame_id, reply, (error["code"], error["message"]))
    return Frame(channel, content.get("payload"), frame_id, reply)


def valid_id(value: Any) -> bool:
    """An id is an integer (not a boolean) or a string of at most :data:`MAX_ID_LENGTH` characters."""
    return type(value) is int or (type(value) is str and len(value) <= MAX_ID_LENGTH)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: they could be stored, but never sent back to a browser.
    raise ValueError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    # 1e999 is valid JSON syntax that Python reads as an infinity: no more storable or sendable
    # than the Infinity _reject_constant refuses.
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal} is not a finite number")
    return value


def _nested_too_deep(text: str, value: Any) -> bool:
    """True when arrays and objects in ``value`` (parsed from ``text``) nest deeper than MAX_NESTING."""
    if text.count("[") + text.count("{") <= MAX_NESTING:  # cannot nest deeper than it has brackets
        return False
    stack = [(value, 1)]
    while stack:  # not recursive: the point is to stay clear of the recursion limit
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def unstorable(value: Any) -> str | None:
    """The first string in ``value`` (keys included) that a database cannot store, or ``None``.

    NUL and lone surrogates are valid in JSON text (``"\\u0000"``, ``"\\ud800"``) but not in a
    PostgreSQL ``text`` or ``jsonb`` value, and a lone surrogate is not even UTF-8, which every
    database driver encodes to.
    """
    stack = [value]
    while stack:  # not recursive, as _nested_too_deep
        item = stack.pop()
        if isinstance(item, str):
            if not _storable(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: json.loads joins the halves of a pair
        return False
    return True


class UnsupportedSubprotocol(Exception):
    """A client offered subprotocols, none of them :data:`SUBPROTOCOL`: the handshake is refused."""

    def __init__(self, offered: Sequence[str]) -> None:
        super().__init__(f"none of the subprotocols offered is {SUBPROTOCOL}: {list(offered)!r}")
        self.offered = list(offered)


def subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol the server selects for a client that offered ``offered``.

    None for a client that offers none (it is served version 1, as before there was a name);
    :data:`SUBPROTOCOL` when it is among those offered. A client that offers others only asked for
    something this server does not speak: :class:`UnsupportedSubprotocol`. Serving it anyway would
    not work either, as a browser fails a connection whose answer selects none of the offered
    subprotocols (WHATWG WebSockets, "establish a WebSocket connection").
    """
    if not offered:
        return None
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    raise UnsupportedSubprotocol(offered)


# -- writing ----------------------------------------------------------------------------


class _Encoder(DjangoJSONEncoder):
    """Django's JSON encoder (datetimes, dates, times and durations in ISO 8601, decimals and
    UUIDs as strings, lazy translations as text), with sets and frozensets as arrays."""

    def default(self, o: Any) -> Any:
        if isinstance(o, set | frozenset):
            return list(o)
        return super().default(o)


#: Every frame the server sends: compact; ASCII-only (a lone surrogate a client sent comes
#: back escaped instead of failing the transport's UTF-8 encoding); no NaN or Infinity,
#: which Python would write and a browser's JSON.parse refuses.
_encoder = _Encoder(separators=(",", ":"), allow_nan=False)


def encode(frame: dict[str, Any]) -> str:
    """The text of a frame the server sends; the one encoder of the protocol.

    Raises :class:`NotJSON` for a value with no JSON form.
    """
    try:
        return _encoder.encode(frame)
    except (TypeError, ValueError, RecursionError) as exc:
        # TypeError: an object the encoder does not know; ValueError: NaN, an infinity or a cycle.
        raise NotJSON(f"The frame cannot be written as JSON: {exc}") from exc


def size(text: str) -> int:
    """Bytes of a frame :func:`encode` wrote: its text is ASCII, one byte a character."""
    return len(text)


def data(channel: str, payload: Any, id: FrameId | None = None) -> str:
    """A data frame: a reply (with the request's ``id``), a push or a connect frame (without).

    Raises :class:`NotJSON` when ``payload`` has no JSON form.
    """
    frame: dict[str, Any] = {"channel": channel, "payload": payload}
    if id is not None:
        frame["id"] = id
    return encode(frame)


def mark(token: str) -> str:
    """A mark in the stream, ``{"channel": "gateway", "payload": {"action": "mark", "data": "<mark>"}}``:
    the client acknowledges what it read up to it by echoing ``token`` (see wsgateway.flow)."""
    return encode({"channel": GATEWAY_CHANNEL, "payload": {"action": "mark", "data": token}})


def request(channel: str, payload: Any, request_id: str) -> str:
    """A server request: ``{"channel", "payload", "request": "<id>"}``, which the client answers with
    a reply carrying that id (see wsgateway.asking). Raises :class:`NotJSON`."""
    return encode({"channel": channel, "payload": payload, "request": request_id})


def cancel(channel: str, request_id: str) -> str:
    """The server no longer waits for the answer to a request: ``{"channel", "cancel": "<id>"}``."""
    return encode({"channel": channel, "cancel": request_id})


def error(
    channel: str | None,
    code: ErrorCode | str,
    message: str | Promise,
    id: FrameId | None = None,
    *,
    details: Mapping[str, Any] | None = None,
) -> str:
    """An error frame: ``{"channel", "id"?, "error": {"code", "message", ...details}}``; a lazy
    ``message`` (``gettext_lazy``) is rendered in the active language. ``details`` are the fields
    an error code adds (``maintenance``'s ``retry_after``)."""
    frame: dict[str, Any] = {"channel": channel}
    if id is not None:
        frame["id"] = id
    frame["error"] = {"code": str(code), "message": message, **(details or {})}
    return encode(frame)


# -- Django's messages ------------------------------------------------------------------

#: The channel of Django's messages on the socket (wsgateway.messages): a push only, the client sends
#: nothing on it.
MESSAGES_CHANNEL = "messages"

#: Django's message levels by name (django.contrib.messages.constants), highest first: a custom level
#: is named by the highest of these at or under it, and anything under DEBUG is "debug".
MESSAGE_LEVELS = ((40, "error"), (30, "warning"), (25, "success"), (20, "info"), (10, "debug"))


def message_level(level: int) -> str:
    """The name a client maps to its look (``"success"``), for Django's numeric ``level``."""
    return next((name for floor, name in MESSAGE_LEVELS if level >= floor), "debug")


def site_messages(messages: Sequence[tuple[int, str, str]]) -> dict[str, Any]:
    """The payload of a push on :data:`MESSAGES_CHANNEL`: ``{"messages": [{"level", "tags", "text"}]}``,
    from ``(level, tags, text)`` in the order they were added. ``text`` is plain text whatever Django
    made of it (``mark_safe`` included): a client shows it as text, never as HTML; ``tags`` are the
    message's own (its level's tag and ``extra_tags``), for a site that styles by them."""
    return {
        "messages": [
            {"level": message_level(level), "tags": tags, "text": text} for level, tags, text in messages
        ]
    }
