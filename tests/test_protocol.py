"""The envelope every service shares: connect frames, ids, bad input, size limit, faulty services, signals."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test import override_settings

from tests.support.communicators import (
    TIMEOUT,
    Socket,
    communicator,
    error_frame,
    frame,
    refused,
)
from tests.support.communicators import connected as connected_as
from wsgateway import frames
from wsgateway.consumers import ClipboardConsumer, GatewayConsumer, NotifierConsumer
from wsgateway.frames import MAX_NESTING
from wsgateway.groups import apush, user_group
from wsgateway.health import LayerWatchdog
from wsgateway.models import ClipboardEntry, Notification
from wsgateway.notifications import anotify
from wsgateway.signals import client_connected, client_disconnected

pytestmark = pytest.mark.django_db(transaction=True)

#: The counts of a user with no notifications (the connect frame's and a change's "counts").
NO_COUNTS = {"unread": 0, "unseen": 0, "archived": 0, "badge": 0}

DEFAULT_SERVICES = [
    "wsgateway.services.notifier.NotifierService",
    "wsgateway.services.clipboard.ClipboardService",
]
ECHO = "tests.support.extensions.EchoService"


@pytest.fixture
async def socket(ann: Any) -> Any:
    async with connected_as(ann) as socket:
        yield socket


async def assert_nothing_stored() -> None:
    assert await Notification.objects.acount() == 0
    assert await ClipboardEntry.objects.acount() == 0


# -- connect ----------------------------------------------------------------------------


async def test_connect_sends_gateway_frame_then_each_service_frame(ann: Any) -> None:
    async with connected_as(ann, read_connect_frames=False) as socket:
        assert await socket.receive() == frame(
            "gateway",
            {
                "user": {"id": ann.pk, "username": "ann"},
                "services": ["notifications", "clipboard"],
                "window": 1024 * 1024,
            },
        )
        assert await socket.receive() == frame(
            "notifications", {"unread": 0, "category": None, "counts": NO_COUNTS, "seq": 0}
        )
        assert await socket.receive() == frame("clipboard", {"clipboard": []})


async def test_services_are_listed_in_settings_order(ann: Any) -> None:
    with override_settings(WSGATEWAY={"SERVICES": [DEFAULT_SERVICES[1], DEFAULT_SERVICES[0]]}):
        async with connected_as(ann) as socket:
            assert [f["channel"] for f in socket.connect_frames] == ["gateway", "clipboard", "notifications"]
            assert socket.connect_frames[0]["payload"]["services"] == ["clipboard", "notifications"]


async def test_ping_is_answered_with_pong_and_the_same_id(socket: Any) -> None:
    assert await socket.request("gateway", {"action": "ping"}, "p1") == frame(
        "gateway", {"action": "pong"}, "p1"
    )


async def test_ping_without_id_is_answered_without_id(socket: Any) -> None:
    await socket.send("gateway", {"action": "ping"})
    assert await socket.receive() == {"channel": "gateway", "payload": {"action": "pong"}}


async def test_connect_frames_replies_and_errors_are_encoded_like_pushes(ann: Any) -> None:
    # One encoder for the protocol: compact, whatever kind of frame.
    async with connected_as(ann, read_connect_frames=False) as socket:
        texts = [await socket.communicator.receive_from(TIMEOUT) for _ in range(3)]
        await socket.send("gateway", {"action": "ping"}, "p")
        texts.append(await socket.communicator.receive_from(TIMEOUT))
        await socket.send("nope", {}, "e")
        texts.append(await socket.communicator.receive_from(TIMEOUT))
        await apush([ann.pk], "notifications", {"unread": 1})
        texts.append(await socket.communicator.receive_from(TIMEOUT))
    assert [json.dumps(json.loads(text), separators=(",", ":")) for text in texts] == texts


# -- ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_id", ["a-string-id", 7, 0, "", -3, "x" * 128], ids=repr)
async def test_reply_carries_the_id_of_the_frame(socket: Any, frame_id: str | int) -> None:
    reply = await socket.request("gateway", {"action": "ping"}, frame_id)
    assert reply == {"channel": "gateway", "payload": {"action": "pong"}, "id": frame_id}


@pytest.mark.parametrize("frame_id", ["e-1", 12])
async def test_error_reply_carries_the_id_of_the_frame(socket: Any, frame_id: str | int) -> None:
    reply = await socket.request("nope", {}, frame_id)
    assert reply == error_frame("nope", "unknown_channel", frame_id)


@pytest.mark.parametrize("frame_id", [True, False, 1.5, 2.0, [1], {"n": 1}, None, "x" * 129], ids=repr)
async def test_id_that_is_not_a_string_or_integer_is_invalid_id(socket: Any, frame_id: Any) -> None:
    await socket.send_json(
        {"channel": "clipboard", "payload": {"action": "clipboard_add", "data": 1}, "id": frame_id}
    )
    assert await socket.receive() == error_frame("clipboard", "invalid_id")
    await socket.assert_open()
    await assert_nothing_stored()


# -- bad frames -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "{'channel': 'gateway'}", '{"channel": ', "", "NaN]"])
async def test_text_that_is_not_json_is_invalid_json(socket: Any, text: str) -> None:
    await socket.send_text(text)
    assert await socket.receive() == error_frame(None, "invalid_json")
    await socket.assert_open()
    await assert_nothing_stored()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1.5E+400"])
async def test_nan_and_infinity_are_invalid_json(socket: Any, constant: str) -> None:
    await socket.send_text(
        '{"channel": "clipboard", "payload": {"action": "clipboard_add", "data": [' + constant + "]}}"
    )
    assert await socket.receive() == error_frame(None, "invalid_json")
    await socket.assert_open()
    await assert_nothing_stored()


def nested_frame(total_depth: int) -> str:
    """A clipboard_add nested ``total_depth`` deep, counting the frame's own two levels."""
    data_depth = total_depth - 2
    return (
        '{"channel": "clipboard", "id": "deep", "payload": {"action": "clipboard_add", "data": '
        + "[" * data_depth
        + "]" * data_depth
        + "}}"
    )


async def test_frame_nested_up_to_max_nesting_is_read(socket: Any) -> None:
    await socket.send_text(nested_frame(MAX_NESTING))
    reply = await socket.receive()
    assert reply["id"] == "deep" and "payload" in reply, reply
    assert await ClipboardEntry.objects.acount() == 1


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 950, 5000, 30000])
async def test_frame_nested_deeper_than_max_nesting_is_invalid_json(socket: Any, depth: int) -> None:
    await socket.send_text(nested_frame(depth))
    assert await socket.receive() == error_frame(None, "invalid_json")
    await socket.assert_open()
    await assert_nothing_stored()


@pytest.mark.parametrize("data", [b'{"channel": "gateway", "payload": {"action": "ping"}}', b"\x00\xff"])
async def test_binary_frame_is_binary_not_supported(socket: Any, data: bytes) -> None:
    await socket.send_bytes(data)
    assert await socket.receive() == error_frame(None, "binary_not_supported")
    await socket.assert_open()
    await assert_nothing_stored()


@pytest.mark.parametrize(
    "content", [[], ["clipboard", {"action": "clipboard_add"}], "gateway", 3, None, True]
)
async def test_json_that_is_not_an_object_is_invalid_frame(socket: Any, content: Any) -> None:
    await socket.send_json(content)
    assert await socket.receive() == error_frame(None, "invalid_frame")
    await socket.assert_open()
    await assert_nothing_stored()


@pytest.mark.parametrize(
    "content",
    [
        {"payload": {"action": "ping"}},
        {"channel": None},
        {"channel": ""},
        {"channel": 5},
        {"channel": ["gateway"]},
    ],
    ids=["absent", "null", "empty", "number", "list"],
)
async def test_frame_without_a_channel_name_is_missing_channel(socket: Any, content: dict[str, Any]) -> None:
    await socket.send_json({**content, "id": "m1"})
    assert await socket.receive() == error_frame(None, "missing_channel", "m1")
    await socket.assert_open()
    await assert_nothing_stored()


@pytest.mark.parametrize("channel", ["nope", "Gateway", "notifications ", "clipboard/"])
async def test_unknown_channel_is_unknown_channel(socket: Any, channel: str) -> None:
    assert await socket.request(channel, {"action": "ping"}, "u1") == error_frame(
        channel, "unknown_channel", "u1"
    )
    await socket.assert_open()
    await assert_nothing_stored()


@pytest.mark.parametrize(
    ("channel", "payload"),
    [
        ("gateway", {"action": "pong"}),
        ("gateway", {"action": "PING"}),
        ("gateway", {}),
        ("gateway", None),
        ("gateway", "ping"),
        ("notifications", {"action": "delete_all"}),
        ("notifications", {"action": "mark-read", "data": [1]}),
        ("notifications", {"action": "_list"}),
        ("clipboard", {"action": "clipboard_paste", "data": 1}),
        ("clipboard", {"action": "_add", "data": 1}),
        ("clipboard", {"action": "on_connect"}),
    ],
)
async def test_unknown_action_is_unknown_action(socket: Any, channel: str, payload: Any) -> None:
    assert await socket.request(channel, payload, "a1") == error_frame(channel, "unknown_action", "a1")
    await socket.assert_open()
    await assert_nothing_stored()


@pytest.mark.parametrize(
    ("channel", "payload"),
    [
        ("notifications", None),
        ("notifications", "list"),
        ("notifications", ["mark_all_read"]),
        ("notifications", {"data": []}),
        ("notifications", {"action": 3}),
        ("notifications", {"action": "mark_read", "data": 5}),
        ("notifications", {"action": "mark_read", "data": ["5"]}),
        ("notifications", {"action": "mark_read", "data": [True]}),
        ("notifications", {"action": "list", "data": []}),
        ("notifications", {"action": "list", "data": {"limit": "10"}}),
        ("notifications", {"action": "list", "data": {"before": "9"}}),
        ("notifications", {"action": "list", "data": {"unread_only": 1}}),
        ("clipboard", None),
        ("clipboard", {"action": None}),
        ("clipboard", {"action": "clipboard_add"}),
        ("clipboard", {"action": "clipboard_add", "data": None}),
        ("clipboard", {"action": "clipboard_remove", "data": "1"}),
        ("clipboard", {"action": "clipboard_remove", "data": True}),
        ("clipboard", {"action": "clipboard_remove", "data": 1.0}),
        ("clipboard", {"action": "clipboard_load", "data": "demo.document"}),
        ("clipboard", {"action": "clipboard_load", "data": {"model": "demo.document"}}),
        ("clipboard", {"action": "clipboard_load", "data": {"model": "demo.document", "ids": 1}}),
        ("clipboard", {"action": "clipboard_load", "data": {"model": "demo.document", "ids": []}}),
        ("clipboard", {"action": "clipboard_load", "data": {"model": "demo.document", "ids": [None]}}),
        ("clipboard", {"action": "clipboard_load", "data": {"model": "demo.document", "ids": [[1]]}}),
        ("clipboard", {"action": "clipboard_load", "data": {"model": 3, "ids": [1]}}),
    ],
)
async def test_data_of_the_wrong_type_is_invalid_data(socket: Any, channel: str, payload: Any) -> None:
    assert await socket.request(channel, payload, "d1") == error_frame(channel, "invalid_data", "d1")
    await socket.assert_open()
    await assert_nothing_stored()


# -- size limit -------------------------------------------------------------------------


def ping_of_size(size: int) -> str:
    """A valid ping frame of exactly ``size`` bytes of UTF-8."""
    text = json.dumps({"channel": "gateway", "payload": {"action": "ping", "pad": ""}, "id": "big"})
    padding = size - len(text)
    return text.replace('"pad": ""', f'"pad": "{"x" * padding}"')


async def test_frame_of_exactly_max_message_size_is_answered(socket: Any) -> None:
    text = ping_of_size(64 * 1024)
    assert len(text.encode()) == 64 * 1024
    await socket.send_text(text)
    assert (await socket.receive())["payload"] == {"action": "pong"}


async def test_frame_over_max_message_size_closes_with_1009(socket: Any) -> None:
    await socket.send_text(ping_of_size(64 * 1024 + 1))
    assert await socket.close_code() == 1009


async def test_binary_frame_over_max_message_size_closes_with_1009(socket: Any) -> None:
    await socket.send_bytes(b"x" * (64 * 1024 + 1))
    assert await socket.close_code() == 1009


async def test_clipboard_data_over_the_limit_closes_the_socket_and_stores_nothing(socket: Any) -> None:
    await socket.send("clipboard", {"action": "clipboard_add", "data": "x" * 64 * 1024}, "big")
    assert await socket.close_code() == 1009
    await assert_nothing_stored()


async def test_max_message_size_setting_is_honoured(ann: Any) -> None:
    with override_settings(WSGATEWAY={"MAX_MESSAGE_SIZE": 100}):
        async with connected_as(ann) as socket:
            await socket.send_text(ping_of_size(100))
            assert (await socket.receive())["payload"] == {"action": "pong"}
            await socket.send_text(ping_of_size(101))
            assert await socket.close_code() == 1009


async def test_max_message_size_counts_utf8_bytes_not_characters(ann: Any) -> None:
    with override_settings(WSGATEWAY={"MAX_MESSAGE_SIZE": 100}):
        async with connected_as(ann) as socket:
            # 60 characters, 120 bytes.
            await socket.send("gateway", {"action": "ping"}, "é" * 30)
            assert await socket.close_code() == 1009


# -- services that fail -----------------------------------------------------------------


async def test_service_that_raises_answers_internal_error_and_stays_open(ann: Any, caplog: Any) -> None:
    with override_settings(
        WSGATEWAY={"SERVICES": [*DEFAULT_SERVICES, "tests.support.extensions.FaultyService"]}
    ):
        async with connected_as(ann) as socket:
            with caplog.at_level(logging.ERROR, logger="wsgateway"):
                assert await socket.request("faulty", {"action": "anything"}, 9) == error_frame(
                    "faulty", "internal_error", 9
                )
            await socket.assert_open()
            assert await socket.action("clipboard", "clipboard_add", "still works", id=10) == frame(
                "clipboard", {"added": [await only_entry()]}, 10
            )
    assert "a bug in a site's service" in caplog.text


async def only_entry() -> dict[str, Any]:
    entry = await ClipboardEntry.objects.aget()
    return {"id": entry.pk, "data": entry.data, "created": entry.created.isoformat()}


async def test_service_whose_on_connect_raises_sends_internal_error_in_its_place(ann: Any) -> None:
    services = [DEFAULT_SERVICES[0], "tests.support.extensions.FaultyOnConnectService", DEFAULT_SERVICES[1]]
    with override_settings(WSGATEWAY={"SERVICES": services}):
        async with connected_as(ann) as socket:
            assert socket.connect_frames[1:] == [
                frame("notifications", {"unread": 0, "category": None, "counts": NO_COUNTS, "seq": 0}),
                error_frame("faulty_connect", "internal_error"),
                frame("clipboard", {"clipboard": []}),
            ]
            await socket.assert_open()


async def test_service_whose_snapshot_raises_sends_internal_error_and_the_others_still_arrive(
    ann: Any, caplog: Any
) -> None:
    services = [DEFAULT_SERVICES[0], "tests.support.extensions.FaultySnapshotService", DEFAULT_SERVICES[1]]
    with override_settings(WSGATEWAY={"SERVICES": services}), caplog.at_level(logging.ERROR, "wsgateway"):
        async with connected_as(ann) as socket:
            assert socket.connect_frames[1:] == [
                frame("notifications", {"unread": 0, "category": None, "counts": NO_COUNTS, "seq": 0}),
                error_frame("faulty_snapshot", "internal_error"),
                frame("clipboard", {"clipboard": []}),
            ]
            await socket.assert_open()
    assert "a bug in snapshot" in caplog.text


async def test_the_snapshots_of_all_services_are_read_in_one_trip_to_the_database_thread(
    ann: Any, database_trips: list[str]
) -> None:
    async with connected_as(ann) as socket:
        assert [f["channel"] for f in socket.connect_frames] == ["gateway", "notifications", "clipboard"]
    # The user is in the scope already (as the middleware leaves it): the snapshots are the only trip.
    assert database_trips == ["connect_reads"]


async def test_service_whose_on_disconnect_raises_is_logged_and_the_socket_still_closes(
    ann: Any, caplog: Any
) -> None:
    disconnected: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        disconnected.append(kwargs)

    client_disconnected.connect(receiver)
    try:
        services = ["tests.support.extensions.FaultyOnDisconnectService", *DEFAULT_SERVICES]
        with override_settings(WSGATEWAY={"SERVICES": services}), caplog.at_level(logging.ERROR, "wsgateway"):
            async with connected_as(ann) as socket:
                pass
            # Nothing may be sent on a socket the client has closed.
            assert socket.unread_output() == []
    finally:
        client_disconnected.disconnect(receiver)
    assert "a bug in on_disconnect" in caplog.text
    assert [kwargs["user"] for kwargs in disconnected] == [ann]


# -- encoding replies -------------------------------------------------------------------

VALUES = "tests.support.extensions.ValuesService"


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("set", ["only"]),
        ("frozenset", [7]),
        ("tuple", [1, "two", None]),
        # What Django's JSON encoder makes of them: milliseconds, and Z for UTC.
        ("datetime", "2026-11-30T20:15:01.123Z"),
        ("date", "2026-11-30"),
        ("decimal", "10.50"),
        ("uuid", "12345678-1234-5678-1234-567812345678"),
        ("nested", {"tags": ["a"], "at": ["2026-01-02"]}),
    ],
)
async def test_a_reply_is_written_by_the_protocols_one_encoder(ann: Any, name: str, payload: Any) -> None:
    with override_settings(WSGATEWAY={"SERVICES": [VALUES]}):
        async with connected_as(ann) as socket:
            await socket.send("values", name, "v1")
            text = await socket.communicator.receive_from(TIMEOUT)
            assert json.loads(text) == frame("values", payload, "v1")
            assert text.isascii() and ", " not in text and ": " not in text  # compact


@pytest.mark.parametrize("name", ["nan", "infinity", "object", "nested_nan"])
async def test_a_reply_that_is_not_json_is_internal_error_and_the_socket_stays_open(
    ann: Any, name: str, caplog: Any
) -> None:
    with override_settings(WSGATEWAY={"SERVICES": [VALUES]}), caplog.at_level(logging.ERROR, "wsgateway"):
        async with connected_as(ann) as socket:
            await socket.send("values", name, 5)
            # Read as text: Python's json.loads would accept the NaN a browser's JSON.parse refuses.
            text = await socket.communicator.receive_from(TIMEOUT)
            assert json.loads(text, parse_constant=pytest.fail) == error_frame("values", "internal_error", 5)
            await socket.assert_open()
    (record,) = [r for r in caplog.records if r.name == "wsgateway"]
    assert "'values'" in record.getMessage() and record.exc_info is not None
    assert isinstance(record.exc_info[1], frames.NotJSON)


async def test_a_connect_frame_that_is_not_json_is_internal_error_and_the_others_still_arrive(
    ann: Any, caplog: Any
) -> None:
    services = ["tests.support.extensions.NaNOnConnectService", *DEFAULT_SERVICES]
    with override_settings(WSGATEWAY={"SERVICES": services}), caplog.at_level(logging.ERROR, "wsgateway"):
        async with connected_as(ann) as socket:
            assert socket.connect_frames[1:] == [
                error_frame("nan_connect", "internal_error"),
                frame("notifications", {"unread": 0, "category": None, "counts": NO_COUNTS, "seq": 0}),
                frame("clipboard", {"clipboard": []}),
            ]
            await socket.assert_open()
    assert "'nan_connect'" in caplog.text


# -- a site's own service ---------------------------------------------------------------


async def test_service_added_in_settings_is_listed_and_sends_its_connect_frame(ann: Any) -> None:
    with override_settings(WSGATEWAY={"SERVICES": [*DEFAULT_SERVICES, ECHO]}):
        async with connected_as(ann) as socket:
            assert socket.connect_frames[0]["payload"]["services"] == ["notifications", "clipboard", "echo"]
            assert socket.connect_frames[3] == frame("echo", {"hello": "ann"})


async def test_service_added_in_settings_answers_its_actions(ann: Any) -> None:
    with override_settings(WSGATEWAY={"SERVICES": [*DEFAULT_SERVICES, ECHO]}):
        async with connected_as(ann) as socket:
            assert await socket.action("echo", "echo", {"n": [1, 2]}, id="e1") == frame(
                "echo", {"echo": {"n": [1, 2]}}, "e1"
            )
            assert await socket.action("echo", "whisper", id="e2") == error_frame(
                "echo", "unknown_action", "e2"
            )


async def test_service_added_in_settings_pushes_to_the_users_other_sockets(ann: Any) -> None:
    with override_settings(WSGATEWAY={"SERVICES": [*DEFAULT_SERVICES, ECHO]}):
        async with connected_as(ann) as first, connected_as(ann) as second:
            assert await first.action("echo", "shout", "hi", id=1) == frame("echo", {"shouted": "hi"}, 1)
            assert await second.receive() == frame("echo", {"shout": "hi"})
            assert await first.receive_nothing()


# -- one-service endpoints --------------------------------------------------------------


async def test_notifier_consumer_serves_only_notifications(ann: Any) -> None:
    async with connected_as(ann, NotifierConsumer) as socket:
        assert socket.connect_frames == [
            frame(
                "gateway",
                {
                    "user": {"id": ann.pk, "username": "ann"},
                    "services": ["notifications"],
                    "window": 1024 * 1024,
                },
            ),
            frame("notifications", {"unread": 0, "category": None, "counts": NO_COUNTS, "seq": 0}),
        ]
        assert await socket.action("clipboard", "clipboard_add", 1, id=1) == error_frame(
            "clipboard", "unknown_channel", 1
        )
        assert await socket.action("notifications", "mark_all_read", id=2) == frame(
            "notifications",
            {"unread": 0, "category": None, "counts": NO_COUNTS, "changed": 0, "has_more": False},
            2,
        )
        # A change of read state is pushed to every socket of the user, this one too.
        assert await socket.receive() == frame(
            "notifications", {"unread": 0, "category": None, "counts": NO_COUNTS}
        )
        await socket.assert_open()
    await assert_nothing_stored()


async def test_clipboard_consumer_serves_only_the_clipboard(ann: Any) -> None:
    async with connected_as(ann, ClipboardConsumer) as socket:
        assert socket.connect_frames == [
            frame(
                "gateway",
                {"user": {"id": ann.pk, "username": "ann"}, "services": ["clipboard"], "window": 1024 * 1024},
            ),
            frame("clipboard", {"clipboard": []}),
        ]
        assert await socket.action("notifications", "mark_all_read", id=1) == error_frame(
            "notifications", "unknown_channel", 1
        )
        assert await socket.action("clipboard", "clipboard_flush", id=2) == frame(
            "clipboard", {"removed": []}, 2
        )
        await socket.assert_open()


async def test_one_service_endpoint_ignores_services_added_in_settings(ann: Any) -> None:
    with override_settings(WSGATEWAY={"SERVICES": [*DEFAULT_SERVICES, ECHO]}):
        async with connected_as(ann, NotifierConsumer) as socket:
            assert socket.connect_frames[0]["payload"]["services"] == ["notifications"]
            assert await socket.action("echo", "echo", 1, id=1) == error_frame("echo", "unknown_channel", 1)


async def test_one_service_endpoints_get_only_their_own_pushes(ann: Any) -> None:
    async with (
        connected_as(ann) as gateway,
        connected_as(ann, NotifierConsumer) as notifier,
        connected_as(ann, ClipboardConsumer) as clipboard,
    ):
        reply = await gateway.action("clipboard", "clipboard_add", "text", id=1)
        assert await clipboard.receive() == frame("clipboard", reply["payload"])
        assert await notifier.receive_nothing()

        (notification,) = await anotify(ann, "hello")
        pushed = await notifier.receive()
        assert pushed["channel"] == "notifications" and pushed["payload"]["last"]["id"] == notification.pk
        assert await gateway.receive() == pushed
        assert await clipboard.receive_nothing()


# -- signals ----------------------------------------------------------------------------


async def test_client_connected_and_disconnected_signals_fire_with_their_arguments(ann: Any) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def on_connected(**kwargs: Any) -> None:
        events.append(("connected", kwargs))

    def on_disconnected(**kwargs: Any) -> None:
        events.append(("disconnected", kwargs))

    client_connected.connect(on_connected)
    client_disconnected.connect(on_disconnected)
    try:
        async with connected_as(ann, NotifierConsumer) as socket:
            await socket.assert_open()  # the consumer has finished connecting
            assert [name for name, _ in events] == ["connected"]
            connected = events[0][1]
            assert connected["sender"] is NotifierConsumer
            assert connected["user"] == ann
            assert connected["scope"]["path"] == "/ws/"
            # The channel name is this socket's: a push sent to it arrives.
            await get_channel_layer().send(
                connected["channel_name"],
                {"type": "gateway.push", "channel": "notifications", "text": '{"channel":"notifications"}'},
            )
            assert await socket.receive() == {"channel": "notifications"}
            await socket.communicator.disconnect(code=4000)
    finally:
        client_connected.disconnect(on_connected)
        client_disconnected.disconnect(on_disconnected)
    assert [name for name, _ in events] == ["connected", "disconnected"]
    disconnected = events[1][1]
    assert disconnected == {
        "signal": client_disconnected,
        "sender": NotifierConsumer,
        "user": ann,
        "channel_name": connected["channel_name"],
        "code": 4000,
    }


async def test_signals_do_not_fire_for_a_refused_socket() -> None:
    events: list[Any] = []

    def receiver(**kwargs: Any) -> None:
        events.append(kwargs)

    client_connected.connect(receiver)
    client_disconnected.connect(receiver)
    try:
        async with refused() as socket:
            assert await socket.receive() == error_frame("gateway", "unauthorized")
            assert await socket.close_code() == 4401
    finally:
        client_connected.disconnect(receiver)
        client_disconnected.disconnect(receiver)
    assert events == []


# -- the message loops: one handler at a time, no task per message ---------------------


class SiteConsumer(GatewayConsumer):
    """A site's subclass: an event type of its own, and a ping that waits for the test."""

    release: asyncio.Event
    connected: ClassVar[list[GatewayConsumer]] = []
    layer_events = GatewayConsumer.layer_events | {"site.explode"}

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await super().websocket_connect(message)
        SiteConsumer.connected.append(self)

    async def site_explode(self, event: dict[str, Any]) -> None:
        raise RuntimeError("a bug in a site's handler")

    async def gateway_message(self, payload: Any) -> Any:
        if payload == {"action": "slow"}:
            await self.release.wait()
            return {"action": "done"}
        return await super().gateway_message(payload)


async def test_a_layer_event_whose_handler_raises_ends_the_consumer_with_its_exception(ann: Any) -> None:
    socket = Socket(communicator(ann, SiteConsumer))
    accepted, _ = await socket.communicator.connect(timeout=TIMEOUT)
    assert accepted
    assert len([await socket.receive() for _ in range(3)]) == 3  # gateway, notifications, clipboard
    await get_channel_layer().group_send(user_group(ann.pk), {"type": "site.explode"})
    # By itself: the communicator's wait() would cancel it at its timeout, which is not ending.
    application = socket.communicator.future
    await asyncio.wait([application], timeout=TIMEOUT)
    assert application.done()
    with pytest.raises(RuntimeError, match="a bug in a site's handler"):
        application.result()


async def test_a_push_waits_while_a_client_frame_is_being_handled(ann: Any) -> None:
    SiteConsumer.release = asyncio.Event()
    async with connected_as(ann, SiteConsumer) as socket:
        await socket.send("gateway", {"action": "slow"}, "s1")
        await asyncio.sleep(0.05)  # the handler is waiting
        await apush([ann.pk], "notifications", {"unread": 7})
        assert await socket.receive_nothing(0.2)
        SiteConsumer.release.set()
        assert await socket.receive() == frame("gateway", {"action": "done"}, "s1")
        assert await socket.receive() == frame("notifications", {"unread": 7})


async def test_an_idle_socket_runs_one_task_and_a_push_at_most_one_while_it_is_dispatched(ann: Any) -> None:
    before = len(asyncio.all_tasks())
    async with connected_as(ann) as socket:
        # The consumer's own (the server's application instance) only: nothing waits on the layer (its
        # ``queued`` extension calls the consumer back); besides it, one membership refresher for the
        # whole event loop, not one per socket.
        refreshers = [t for t in asyncio.all_tasks() if t.get_name() == "wsgateway-membership-refresher"]
        assert len(refreshers) == 1
        assert len(asyncio.all_tasks()) - before == 1 + 1
        async with connected_as(ann):
            assert len(asyncio.all_tasks()) - before == 1 + 1 + 1
        loop = asyncio.get_running_loop()
        started: list[str] = []

        def count_tasks(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            started.append(getattr(coro, "__qualname__", repr(coro)))
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(count_tasks)
        try:
            for n in range(20):
                await apush([ann.pk], "notifications", {"n": n})
                assert await socket.receive() == frame("notifications", {"n": n})
        finally:
            loop.set_task_factory(None)
        # One dispatcher at a time, which ends once nothing is queued (none while one runs).
        assert 1 <= len(started) <= 20
        assert set(started) == {"TurnTakingConsumer.dispatch_layer"}
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) - before == 1 + 1


async def test_a_resync_rejoins_the_users_group_and_resends_the_connect_frames(ann: Any) -> None:
    async with connected_as(ann, SiteConsumer) as socket:
        consumer = SiteConsumer.connected[-1]
        consumer.watchdog = LayerWatchdog(consumer.channel_layer)  # as on a layer that can fail
        # What an outage of Redis does to RedisChannelLayer's groups.
        await consumer.channel_layer.group_discard(user_group(ann.pk), consumer.channel_name)
        await consumer.resync()
        assert await socket.receive() == frame("gateway", {"resync": True})
        assert await socket.receive() == frame(
            "notifications", {"unread": 0, "category": None, "counts": NO_COUNTS, "seq": 0}
        )
        assert await socket.receive() == frame("clipboard", {"clipboard": []})
        await apush([ann.pk], "notifications", {"unread": 3})
        assert await socket.receive() == frame("notifications", {"unread": 3})


async def test_a_resync_after_an_outage_rechecks_the_login_and_closes_a_revoked_socket(ann: Any) -> None:
    """The outage lost the revocation with the rest (here: a password changed by an UPDATE, which
    sends none): the resync sends nothing of the user's, only why it closes."""
    async with connected_as(ann, SiteConsumer) as socket:
        consumer = SiteConsumer.connected[-1]
        consumer.watchdog = LayerWatchdog(consumer.channel_layer)
        await get_user_model().objects.filter(pk=ann.pk).aupdate(password=make_password("changed"))
        await consumer.resync()
        assert await socket.receive() == error_frame("gateway", "revoked")
        assert await socket.close_code() == 4401


async def test_a_resync_waits_while_a_client_frame_is_being_handled(ann: Any) -> None:
    SiteConsumer.release = asyncio.Event()
    async with connected_as(ann, SiteConsumer) as socket:
        consumer = SiteConsumer.connected[-1]
        consumer.watchdog = LayerWatchdog(consumer.channel_layer)
        await socket.send("gateway", {"action": "slow"}, "s1")
        await asyncio.sleep(0.05)  # the handler is waiting
        resync = asyncio.ensure_future(consumer.resync())
        assert await socket.receive_nothing(0.2)
        SiteConsumer.release.set()
        assert await socket.receive() == frame("gateway", {"action": "done"}, "s1")
        assert await socket.receive() == frame("gateway", {"resync": True})
        assert [(await socket.receive())["channel"] for _ in range(2)] == ["notifications", "clipboard"]
        await resync
