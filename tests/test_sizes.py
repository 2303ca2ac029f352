"""No frame the server sends is over ``MAX_SEND_SIZE``, and the clipboard's byte quotas.

daphne cannot send a message over its limit (1 MiB by default): the send raises, and the socket
is closed with 1011 (see wsgateway.bounds.DAPHNE_MAX_SEND). So data is refused where it enters
(notify(), clipboard_add, clipboard_load), pages are cut by bytes, and a reply that would still
be too large is answered ``too_large`` with the socket left open.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from project.demo.models import Document
from tests.support.communicators import connected, create_user, error_frame, frame
from tests.support.servers import ROOT
from wsgateway import anotify, metrics, notify
from wsgateway.bounds import DAPHNE_MAX_SEND
from wsgateway.exceptions import FrameTooLarge
from wsgateway.models import ClipboardEntry, Notification
from wsgateway.notifications.sizes import PAGE_MARGIN, TRIMMED_LABEL
from wsgateway.services.clipboard import ENTRY_OVERHEAD, snapshot_bound

pytestmark = pytest.mark.django_db(transaction=True)

DEFAULT_SERVICES = [
    "wsgateway.services.notifier.NotifierService",
    "wsgateway.services.clipboard.ClipboardService",
]


@pytest.fixture
async def ann() -> Any:
    """Not tests/conftest.py's: one who may view the documents she copies."""
    return await create_user("ann", perms=["demo.view_document"])


def text_of(size: int) -> str:
    """A string that is ``size`` bytes as JSON: its quotes and ``size - 2`` characters."""
    return "x" * (size - 2)


def wire_size(message: dict[str, Any]) -> int:
    return len(json.dumps(message, separators=(",", ":")))


# -- the clipboard's quotas -------------------------------------------------------------


@override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRY_BYTES": 1000})
async def test_an_entry_over_the_entry_quota_is_limit_exceeded_and_stores_nothing(ann: Any) -> None:
    async with connected(ann) as socket, connected(ann) as other:
        reply = await socket.action("clipboard", "clipboard_add", text_of(1000), id=1)
        assert reply["payload"]["added"][0]["data"] == text_of(1000)
        assert (await other.receive())["payload"]["added"] == reply["payload"]["added"]
        refused = await socket.action("clipboard", "clipboard_add", text_of(1001), id=2)
        assert refused == error_frame("clipboard", "limit_exceeded", 2)
        assert (
            refused["error"]["message"]
            == "A clipboard entry is at most 1000 bytes as JSON; this one is 1001."
        )
        assert await other.receive_nothing()
        await socket.assert_open()
    assert await ClipboardEntry.objects.acount() == 1


@override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRY_BYTES": 100})
async def test_the_entry_quota_counts_bytes_as_sent_not_characters(ann: Any) -> None:
    # "é" is two bytes in UTF-8 and six as sent: "\u00e9".
    async with connected(ann) as socket:
        assert (await socket.action("clipboard", "clipboard_add", "\u00e9" * 16, id=1))["payload"]["added"]
        assert await socket.action("clipboard", "clipboard_add", "\u00e9" * 17, id=2) == error_frame(
            "clipboard", "limit_exceeded", 2
        )


@override_settings(WSGATEWAY={"CLIPBOARD_MAX_BYTES": 2500})
async def test_adds_past_the_total_quota_are_limit_exceeded_until_an_entry_is_removed(ann: Any) -> None:
    async with connected(ann) as socket:
        first = await socket.action("clipboard", "clipboard_add", text_of(1000), id=1)
        await socket.action("clipboard", "clipboard_add", text_of(1000), id=2)
        refused = await socket.action("clipboard", "clipboard_add", text_of(501), id=3)
        assert refused == error_frame("clipboard", "limit_exceeded", 3)
        assert refused["error"]["message"] == (
            "The clipboard holds at most 2500 bytes of entries; this would make it 2501."
        )
        assert (await socket.action("clipboard", "clipboard_add", text_of(500), id=4))["payload"]["added"]
        await socket.action("clipboard", "clipboard_remove", first["payload"]["added"][0]["id"], id=5)
        assert (await socket.action("clipboard", "clipboard_add", text_of(1000), id=6))["payload"]["added"]
    assert await ClipboardEntry.objects.acount() == 3


async def test_references_count_against_the_total_quota_all_or_none(ann: Any) -> None:
    documents = [await Document.objects.acreate(title="t" * 200) for _ in range(3)]
    ids = [document.pk for document in documents]
    one = len(json.dumps({"model": "demo.document", "pk": ids[0], "label": "t" * 200}, separators=(",", ":")))
    with override_settings(WSGATEWAY={"CLIPBOARD_MAX_BYTES": 2 * one + 10}):
        async with connected(ann) as socket:
            reply = await socket.action(
                "clipboard", "clipboard_load", {"model": "demo.document", "ids": ids}, 1
            )
            assert reply == error_frame("clipboard", "limit_exceeded", 1)
            reply = await socket.action(
                "clipboard", "clipboard_load", {"model": "demo.document", "ids": ids[:2]}, 2
            )
            assert [entry["pk"] for entry in reply["payload"]["added"]] == ids[:2]
    assert await ClipboardEntry.objects.acount() == 2


async def test_a_full_clipboard_at_the_default_quotas_is_one_frame_within_max_send_size(ann: Any) -> None:
    # Four entries of 64 KiB are the 256 KiB total: the next add is refused, and the connect frame fits.
    for _ in range(4):
        await ClipboardEntry.objects.acreate(user=ann, data=text_of(64 * 1024))
    async with connected(ann) as socket:
        snapshot = socket.connect_frames[2]
        assert len(snapshot["payload"]["clipboard"]) == 4
        assert wire_size(snapshot) <= snapshot_bound(4, 4 * 64 * 1024) <= 512 * 1024
        assert await socket.action("clipboard", "clipboard_add", 1, id=9) == error_frame(
            "clipboard", "limit_exceeded", 9
        )


def test_an_entry_overhead_covers_the_longest_id_and_time() -> None:
    longest = {"id": 2**63 - 1, "data": 1, "created": "9999-12-31T23:59:59.999999+00:00"}
    assert wire_size(longest) - len("1") + len(",") == ENTRY_OVERHEAD


# -- notify() ---------------------------------------------------------------------------


@override_settings(WSGATEWAY={"MAX_SEND_SIZE": 10_000})
async def test_notify_over_max_send_size_raises_names_the_setting_and_stores_nothing(ann: Any) -> None:
    async with connected(ann) as socket:
        with pytest.raises(FrameTooLarge, match=r"MAX_SEND_SIZE'\] \(10000 bytes\)") as raised:
            await anotify(ann, "Too big", data={"blob": "x" * 10_000})
        assert isinstance(raised.value, ValueError)
        assert raised.value.size > 10_000 and raised.value.limit == 10_000
        with pytest.raises(FrameTooLarge):
            await sync_to_async(notify)(ann, "x" * 10_000)
        assert await socket.receive_nothing()
        await socket.assert_open()
    assert await Notification.objects.acount() == 0


@override_settings(WSGATEWAY={"MAX_SEND_SIZE": 10_000})
async def test_notify_just_under_the_limit_is_pushed_and_listed_within_it(ann: Any) -> None:
    # The largest notification notify() takes: its push and a page of it fit, whatever the ids.
    # (What a push holds beside the data, its states and counts included, is under 800 bytes.)
    size = 10_000 - PAGE_MARGIN - 800
    await anotify(ann, "Fits", data={"blob": "x" * size})
    with pytest.raises(FrameTooLarge):
        await anotify(ann, "Does not", data={"blob": "x" * (size + 800)})
    async with connected(ann) as socket:
        page = await socket.action("notifications", "list", {"limit": 1}, id="i" * 128)
        assert page["payload"]["notifications"][0]["data"] == {"blob": "x" * size}
        assert wire_size(page) <= 10_000


# -- pages are bounded by bytes -----------------------------------------------------------


async def notifications_of(user: Any, count: int, size: int) -> None:
    for index in range(count):
        await anotify(user, f"n{index}", data={"blob": "x" * size})


@override_settings(WSGATEWAY={"MAX_SEND_SIZE": 20_000})
async def test_a_list_page_is_cut_short_by_bytes_and_has_more(ann: Any) -> None:
    await notifications_of(ann, 10, 4000)
    async with connected(ann) as socket:
        seen: list[int] = []
        before = None
        while True:
            data = {"limit": 100} if before is None else {"limit": 100, "before": before}
            page = await socket.action("notifications", "list", data, id="list")
            assert wire_size(page) <= 20_000
            found = page["payload"]["notifications"]
            assert 1 <= len(found) < 10
            seen += [item["id"] for item in found]
            if not page["payload"]["has_more"]:
                break
            before = found[-1]["id"]
    assert seen == [pk async for pk in Notification.objects.order_by("-id").values_list("pk", flat=True)]


@override_settings(WSGATEWAY={"MAX_SEND_SIZE": 20_000})
async def test_a_sync_page_is_cut_short_by_bytes_and_the_cursor_moves_past_it(ann: Any) -> None:
    await notifications_of(ann, 10, 4000)
    async with connected(ann) as socket:
        page = await socket.action("notifications", "sync", {"since": 0}, id="sync")
        found = page["payload"]["notifications"]
        assert wire_size(page) <= 20_000 and page["payload"]["has_more"]
        assert [item["seq"] for item in found] == list(range(1, len(found) + 1))
        assert page["payload"]["seq"] == found[-1]["seq"]


async def test_a_row_stored_too_large_past_notify_is_not_pushed_and_is_listed_trimmed(ann: Any) -> None:
    """A save() that bypasses notify()'s check: no socket is closed by it, and the pages move on."""
    with override_settings(WSGATEWAY={"MAX_SEND_SIZE": 10_000}):
        async with connected(ann) as socket:
            before = metrics.value(metrics.SEND_TOO_LARGE)
            big = await sync_to_async(Notification.objects.create)(
                recipient=ann, message="m" * 5000, data={"blob": "x" * 20_000}
            )
            assert await socket.receive_nothing()
            assert metrics.value(metrics.SEND_TOO_LARGE) == before + 1
            await anotify(ann, "small")
            pushed = await socket.receive()
            assert pushed["payload"]["last"]["label"] == "small"
            page = await socket.action("notifications", "sync", {"since": 0}, id=1)
            assert wire_size(page) <= 10_000
            trimmed, small = page["payload"]["notifications"]
            assert trimmed["id"] == big.pk and trimmed["trimmed"] is True
            assert trimmed["data"] == {} and trimmed["label"] == "m" * TRIMMED_LABEL
            assert small["label"] == "small" and "trimmed" not in small
            assert page["payload"]["has_more"] is False
            await socket.assert_open()


# -- a reply or a connect frame over the limit ---------------------------------------------


async def test_a_reply_over_max_send_size_is_answered_too_large_and_the_socket_stays_open(ann: Any) -> None:
    services = [*DEFAULT_SERVICES, "tests.support.extensions.EchoService"]
    with override_settings(WSGATEWAY={"SERVICES": services, "MAX_SEND_SIZE": 1000}):
        async with connected(ann) as socket:
            before = metrics.value(metrics.SEND_TOO_LARGE)
            reply = await socket.action("echo", "echo", "x" * 1000, id="big")
            assert reply == error_frame("echo", "too_large", "big")
            assert reply["error"]["message"] == "The answer is over the server's limit of 1000 bytes."
            assert metrics.value(metrics.SEND_TOO_LARGE) == before + 1
            assert await socket.action("echo", "echo", "small", id="small") == frame(
                "echo", {"echo": "small"}, "small"
            )


async def test_a_clipboard_too_large_to_send_on_connect_is_too_large_and_can_still_be_flushed(
    ann: Any,
) -> None:
    """Quotas lowered (or MAX_SEND_SIZE) after the entries were stored: the socket still opens."""
    entries = [await ClipboardEntry.objects.acreate(user=ann, data="x" * 600) for _ in range(3)]
    with override_settings(WSGATEWAY={"MAX_SEND_SIZE": 1500}):
        async with connected(ann) as socket:
            assert socket.connect_frames[2] == error_frame("clipboard", "too_large")
            flushed = await socket.action("clipboard", "clipboard_flush", id="fl")
            assert flushed == frame("clipboard", {"removed": [entry.pk for entry in entries]}, "fl")
        async with connected(ann) as socket:
            assert socket.connect_frames[2] == frame("clipboard", {"clipboard": []})


def test_daphne_sends_a_mebibyte_by_default() -> None:
    assert DAPHNE_MAX_SEND == 1024 * 1024


# -- a push encoded elsewhere -------------------------------------------------------------


async def test_a_push_over_this_processs_limit_is_dropped_not_sent(ann: Any) -> None:
    """Encoded by a process with a larger MAX_SEND_SIZE: sent, it would close the socket."""
    from channels.layers import get_channel_layer

    from wsgateway import events
    from wsgateway.groups import user_group

    with override_settings(WSGATEWAY={"MAX_SEND_SIZE": 1000}):
        async with connected(ann) as socket:
            before = metrics.value(metrics.SEND_TOO_LARGE)
            event = {"type": events.PUSH, "channel": "clipboard", "text": "x" * 1001, "exclude": None}
            await get_channel_layer().group_send(user_group(ann.pk), event)
            assert await socket.receive_nothing()
            assert metrics.value(metrics.SEND_TOO_LARGE) == before + 1
            await socket.assert_open()


# -- concurrent adds on PostgreSQL ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_adds_from_four_processes_at_once_never_pass_the_quota_together(postgres_env: dict[str, str]) -> None:
    """Each checks the quota, then waits 0.3 s before inserting: only the lock of the user's row
    keeps all four from finding room for one more."""
    start = str(time.time() + 5)  # every process started and set up by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.clipboard_race", "alice", "2", start],
            cwd=ROOT,
            env=postgres_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["added", "added", "limit_exceeded", "limit_exceeded"]
