"""The "clipboard" channel: entries on connect, add, load, remove, flush, the quotas, the sync of sockets.

The connect frame carries the whole clipboard; a change carries only itself, ``{"added": [...]}`` or
``{"removed": [...]}``, to the asker as its reply and to the user's other sockets as a push.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings

from project.demo.models import Document
from tests.support.communicators import connected, create_user, error_frame, frame
from wsgateway.columns import fits_column
from wsgateway.models import ClipboardEntry

pytestmark = pytest.mark.django_db(transaction=True)

VIEW = "demo.view_document"


@pytest.fixture
async def ann() -> Any:
    """Not tests/conftest.py's: one who may view the documents she copies."""
    return await create_user("ann", perms=[VIEW])


@pytest.fixture
async def bob() -> Any:
    """Not tests/conftest.py's: one who may view the documents, as ``ann``."""
    return await create_user("bob", perms=[VIEW])


@pytest.fixture
async def documents() -> list[Document]:
    return [await Document.objects.acreate(title=title) for title in ("Roadmap", "Report", "Review")]


async def data_entry(pk: int) -> dict[str, Any]:
    entry = await ClipboardEntry.objects.aget(pk=pk)
    return {"id": entry.pk, "data": entry.data, "created": entry.created.isoformat()}


async def reference_entry(pk: int) -> dict[str, Any]:
    entry = await ClipboardEntry.objects.aget(pk=pk)
    return {
        "id": entry.pk,
        "model": "demo.document",
        "pk": int(entry.object_id),
        "label": entry.label,
        "created": entry.created.isoformat(),
    }


async def entries_of(user: Any) -> list[dict[str, Any]]:
    """The user's clipboard as the client must see it, oldest first."""
    return [
        await (reference_entry if entry.content_type_id else data_entry)(entry.pk)
        async for entry in ClipboardEntry.objects.filter(user=user).order_by("pk")
    ]


def clipboard(entries: list[dict[str, Any]], id: str | int | None = None, **extra: Any) -> dict[str, Any]:
    return frame("clipboard", {"clipboard": entries, **extra}, id)


def added(entries: list[dict[str, Any]], id: str | int | None = None, **extra: Any) -> dict[str, Any]:
    return frame("clipboard", {"added": entries, **extra}, id)


def removed(ids: list[int], id: str | int | None = None) -> dict[str, Any]:
    return frame("clipboard", {"removed": ids}, id)


async def connected_clipboard(user: Any) -> list[dict[str, Any]]:
    """The clipboard a new socket of ``user`` is sent on connect."""
    async with connected(user) as socket:
        entries: list[dict[str, Any]] = socket.connect_frames[2]["payload"]["clipboard"]
    return entries


def load(model: str, ids: list[Any]) -> dict[str, Any]:
    return {"model": model, "ids": ids}


# -- on connect -------------------------------------------------------------------------


async def test_connect_frame_is_an_empty_clipboard_for_a_new_user(ann: Any) -> None:
    async with connected(ann) as socket:
        assert socket.connect_frames[2] == clipboard([])


async def test_connect_frame_lists_the_users_entries_in_order_with_their_exact_shapes(
    ann: Any, bob: Any, documents: list[Document]
) -> None:
    raw = await ClipboardEntry.objects.acreate(user=ann, data={"text": "hello"})
    ref = await ClipboardEntry.objects.acreate(
        user=ann,
        content_type=await sync_to_async(ContentType.objects.get_for_model)(Document),
        object_id=str(documents[0].pk),
        label="Roadmap",
    )
    await ClipboardEntry.objects.acreate(user=bob, data="bob's")
    async with connected(ann) as socket:
        assert socket.connect_frames[2] == clipboard(
            [
                {"id": raw.pk, "data": {"text": "hello"}, "created": raw.created.isoformat()},
                {
                    "id": ref.pk,
                    "model": "demo.document",
                    "pk": documents[0].pk,
                    "label": "Roadmap",
                    "created": ref.created.isoformat(),
                },
            ]
        )


# -- clipboard_add ----------------------------------------------------------------------


async def test_add_answers_the_asker_and_pushes_to_the_users_other_sockets_only(ann: Any, bob: Any) -> None:
    async with connected(ann) as asker, connected(ann) as other, connected(bob) as bob_socket:
        reply = await asker.action("clipboard", "clipboard_add", {"text": "copied"}, id="add-1")
        expected = await entries_of(ann)
        assert [entry["data"] for entry in expected] == [{"text": "copied"}]
        assert reply == added(expected, "add-1")
        assert await other.receive() == added(expected)
        assert await asker.receive_nothing()
        assert await bob_socket.receive_nothing()


@pytest.mark.parametrize(
    "data", ["text", 0, 3.5, False, [], [1, "two"], {}, {"nested": {"a": [None]}}], ids=repr
)
async def test_add_stores_any_json_value_but_null(ann: Any, data: Any) -> None:
    async with connected(ann) as socket:
        reply = await socket.action("clipboard", "clipboard_add", data, id=1)
        (entry,) = reply["payload"]["added"]
        assert entry == await data_entry(entry["id"])
        assert entry["data"] == data


async def test_add_appends_after_existing_entries(ann: Any) -> None:
    async with connected(ann) as socket:
        first = await socket.action("clipboard", "clipboard_add", "first", id=1)
        second = await socket.action("clipboard", "clipboard_add", "second", id=2)
        assert [entry["data"] for entry in second["payload"]["added"]] == ["second"]
        assert second["payload"]["added"][0]["id"] > first["payload"]["added"][0]["id"]
    async with connected(ann) as socket:
        assert [entry["data"] for entry in socket.connect_frames[2]["payload"]["clipboard"]] == [
            "first",
            "second",
        ]


async def test_add_of_null_is_invalid_data_and_stores_nothing(ann: Any) -> None:
    async with connected(ann) as socket, connected(ann) as other:
        assert await socket.action("clipboard", "clipboard_add", None, id=1) == error_frame(
            "clipboard", "invalid_data", 1
        )
        assert await other.receive_nothing()
    assert await ClipboardEntry.objects.acount() == 0


@pytest.mark.parametrize(
    "data",
    ["nul \x00 inside", "\ud800", ["fine", {"deep": "\udfff"}], {"key\x00": "value"}, {"\udc00": 1}],
    ids=repr,
)
async def test_add_of_text_no_database_can_store_is_invalid_data_and_stores_nothing(
    ann: Any, data: Any
) -> None:
    async with connected(ann) as socket, connected(ann) as other:
        assert await socket.action("clipboard", "clipboard_add", data, id=1) == error_frame(
            "clipboard", "invalid_data", 1
        )
        assert await other.receive_nothing()
        await socket.assert_open()
    assert await ClipboardEntry.objects.acount() == 0


async def test_unstorable_text_sent_as_json_escapes_is_invalid_data(ann: Any) -> None:
    """The wire form: JSON escapes decode to NUL and a lone surrogate, which reached the database."""
    async with connected(ann) as socket:
        for escaped in (r'"a\u0000b"', r'{"t": "\ud800"}', r'{"\u0000": 1}'):
            await socket.send_text(
                '{"channel": "clipboard", "id": 2, "payload": {"action": "clipboard_add", "data": '
                + escaped
                + "}}"
            )
            assert await socket.receive() == error_frame("clipboard", "invalid_data", 2)
        reply = await socket.action("clipboard", "clipboard_add", "\u00e9 \U0001f600", id=3)
        assert [entry["data"] for entry in reply["payload"]["added"]] == ["\u00e9 \U0001f600"]
    assert await ClipboardEntry.objects.acount() == 1


@pytest.mark.parametrize("key", ["a\x00b", "\ud800"], ids=repr)
async def test_load_of_a_key_no_database_can_store_is_invalid_data(ann: Any, key: str) -> None:
    async with connected(ann) as socket:
        reply = await socket.action("clipboard", "clipboard_load", load("sessions.session", [key]), id=5)
        assert reply == error_frame("clipboard", "invalid_data", 5)
    assert await ClipboardEntry.objects.acount() == 0


# -- clipboard_load ---------------------------------------------------------------------


async def test_load_adds_references_and_pushes_them_to_the_other_sockets(
    ann: Any, documents: list[Document]
) -> None:
    roadmap, report, _ = documents
    async with connected(ann) as asker, connected(ann) as other:
        reply = await asker.action(
            "clipboard", "clipboard_load", load("demo.document", [report.pk, roadmap.pk]), id=4
        )
        expected = await entries_of(ann)
        assert [(entry["pk"], entry["label"]) for entry in expected] == [
            (report.pk, "Report"),
            (roadmap.pk, "Roadmap"),
        ]
        assert reply == added(expected, 4, refused=[])
        assert await other.receive() == added(expected)
        assert await asker.receive_nothing()


async def test_load_accepts_keys_as_strings_and_sends_integer_keys_back(
    ann: Any, documents: list[Document]
) -> None:
    async with connected(ann) as socket:
        reply = await socket.action(
            "clipboard", "clipboard_load", load("demo.document", [str(documents[0].pk)])
        )
        assert reply["payload"]["refused"] == []
        assert [entry["pk"] for entry in reply["payload"]["added"]] == [documents[0].pk]


async def test_load_model_name_is_case_insensitive_like_django(ann: Any, documents: list[Document]) -> None:
    async with connected(ann) as socket:
        reply = await socket.action("clipboard", "clipboard_load", load("demo.Document", [documents[0].pk]))
        assert [entry["model"] for entry in reply["payload"]["added"]] == ["demo.document"]


NOT_FOUND = "No such object, or you may not view it."


async def test_load_without_view_permission_refuses_each_id_as_not_found(documents: list[Document]) -> None:
    carl = await create_user("carl")
    ids = [documents[0].pk, documents[1].pk]
    async with connected(carl) as socket, connected(carl) as other:
        reply = await socket.action("clipboard", "clipboard_load", load("demo.document", ids), id="f")
        assert reply == added(
            [],
            "f",
            refused=[
                {"id": ids[0], "code": "not_found", "message": NOT_FOUND},
                {"id": ids[1], "code": "not_found", "message": NOT_FOUND},
            ],
        )
        assert await other.receive_nothing()  # nothing changed
    assert await ClipboardEntry.objects.acount() == 0


async def test_superuser_may_load_without_an_explicit_permission(documents: list[Document]) -> None:
    root = await create_user("root", is_superuser=True)
    async with connected(root) as socket:
        reply = await socket.action("clipboard", "clipboard_load", load("demo.document", [documents[2].pk]))
        assert reply["payload"]["refused"] == []
        assert [entry["label"] for entry in reply["payload"]["added"]] == ["Review"]


async def test_load_follows_the_clipboard_permission_setting(documents: list[Document]) -> None:
    root = await create_user("root", is_superuser=True)
    with override_settings(WSGATEWAY={"CLIPBOARD_PERMISSION": "tests.support.extensions.nobody_may_view"}):
        async with connected(root) as socket:
            reply = await socket.action(
                "clipboard", "clipboard_load", load("demo.document", [documents[0].pk])
            )
            assert [item["code"] for item in reply["payload"]["refused"]] == ["not_found"]
            assert reply["payload"]["added"] == []


async def test_load_refuses_ids_that_do_not_exist_as_not_found_and_adds_the_rest(
    ann: Any, documents: list[Document]
) -> None:
    missing = documents[-1].pk + 100
    async with connected(ann) as socket:
        reply = await socket.action(
            "clipboard", "clipboard_load", load("demo.document", [missing, documents[0].pk, 2**63 - 1]), id=1
        )
        assert reply == added(
            await entries_of(ann),
            1,
            refused=[
                {"id": missing, "code": "not_found", "message": NOT_FOUND},
                {"id": 2**63 - 1, "code": "not_found", "message": NOT_FOUND},
            ],
        )
    assert [entry.object_id async for entry in ClipboardEntry.objects.all()] == [str(documents[0].pk)]


@pytest.mark.parametrize(
    ("model", "existing"),
    [("auth.user", "ann"), ("sessions.session", "session"), ("demo.document", "document")],
)
async def test_load_answers_the_same_for_rows_that_exist_and_rows_that_do_not(
    ann: Any, documents: list[Document], model: str, existing: str
) -> None:
    """No existence oracle: for a row the user may not view, the reply is the one for no row at all."""
    from django.contrib.sessions.backends.db import SessionStore

    carl = await create_user("carl")  # no view permission on anything
    if existing == "session":
        store = SessionStore()
        await sync_to_async(store.create)()
        present: Any = store.session_key
        absent: Any = "x" * len(present)
    else:
        present = ann.pk if existing == "ann" else documents[0].pk
        absent = 10**9
    async with connected(carl) as socket, connected(carl) as other:
        for key in (present, absent):
            reply = await socket.action("clipboard", "clipboard_load", load(model, [key]), id=1)
            assert reply == added([], 1, refused=[{"id": key, "code": "not_found", "message": NOT_FOUND}])
            assert await other.receive_nothing()
    assert await ClipboardEntry.objects.acount() == 0


@pytest.mark.parametrize("key", ["abc", "1.5", "", " ", 2**63, 2**70, -(2**70), str(2**70)], ids=repr)
async def test_load_refuses_invalid_keys_as_invalid_data(
    ann: Any, documents: list[Document], key: Any
) -> None:
    async with connected(ann) as socket:
        reply = await socket.action(
            "clipboard", "clipboard_load", load("demo.document", [key, documents[0].pk]), id="k"
        )
        assert reply == added(
            await entries_of(ann),
            "k",
            refused=[{"id": key, "code": "invalid_data", "message": "Not a valid key."}],
        )
        assert len(reply["payload"]["added"]) == 1


@pytest.mark.parametrize("model", ["demo.nothing", "nowhere.document", "document", "", "demo.document.extra"])
async def test_load_of_an_unknown_model_is_invalid_data(
    ann: Any, documents: list[Document], model: str
) -> None:
    async with connected(ann) as socket, connected(ann) as other:
        assert await socket.action("clipboard", "clipboard_load", load(model, [documents[0].pk]), id=2) == (
            error_frame("clipboard", "invalid_data", 2)
        )
        assert await other.receive_nothing()
        await socket.assert_open()
    assert await ClipboardEntry.objects.acount() == 0


async def test_loading_the_same_object_twice_does_not_duplicate_it(
    ann: Any, documents: list[Document]
) -> None:
    pk = documents[0].pk
    async with connected(ann) as socket, connected(ann) as other:
        first = await socket.action(
            "clipboard", "clipboard_load", load("demo.document", [pk, pk, str(pk)]), id=1
        )
        assert len(first["payload"]["added"]) == 1
        assert await other.receive() == added(first["payload"]["added"])
        second = await socket.action("clipboard", "clipboard_load", load("demo.document", [str(pk)]), id=2)
        assert second == added([], 2, refused=[])
        assert await other.receive_nothing()
    assert await ClipboardEntry.objects.acount() == 1


async def test_the_same_object_on_two_users_clipboards(ann: Any, bob: Any, documents: list[Document]) -> None:
    pk = documents[1].pk
    async with connected(ann) as ann_socket, connected(bob) as bob_socket:
        await ann_socket.action("clipboard", "clipboard_load", load("demo.document", [pk]))
        reply = await bob_socket.action("clipboard", "clipboard_load", load("demo.document", [pk]))
        assert [entry["pk"] for entry in reply["payload"]["added"]] == [pk]
        assert await ann_socket.receive_nothing()
    assert await ClipboardEntry.objects.acount() == 2


# -- clipboard_remove -------------------------------------------------------------------


async def test_remove_deletes_an_own_entry_and_pushes_its_id(ann: Any) -> None:
    keep = await ClipboardEntry.objects.acreate(user=ann, data="keep")
    drop = await ClipboardEntry.objects.acreate(user=ann, data="drop")
    async with connected(ann) as asker, connected(ann) as other:
        assert await asker.action("clipboard", "clipboard_remove", drop.pk, id="rm") == removed(
            [drop.pk], "rm"
        )
        assert await other.receive() == removed([drop.pk])
        assert [entry["id"] for entry in (await connected_clipboard(ann))] == [keep.pk]
        assert await asker.receive_nothing()
    assert not await ClipboardEntry.objects.filter(pk=drop.pk).aexists()


async def test_remove_of_another_users_entry_is_not_found_and_deletes_nothing(ann: Any, bob: Any) -> None:
    theirs = await ClipboardEntry.objects.acreate(user=bob, data="bob's")
    async with connected(ann) as socket, connected(bob) as bob_socket:
        assert await socket.action("clipboard", "clipboard_remove", theirs.pk, id=3) == error_frame(
            "clipboard", "not_found", 3
        )
        assert await bob_socket.receive_nothing()
        await socket.assert_open()
    assert await ClipboardEntry.objects.filter(pk=theirs.pk).aexists()


@pytest.mark.parametrize("entry_id", [0, -1, 10**6, 2**63, 2**70])
async def test_remove_of_an_id_that_does_not_exist_is_not_found(ann: Any, entry_id: int) -> None:
    await ClipboardEntry.objects.acreate(user=ann, data="stays")
    async with connected(ann) as socket:
        assert await socket.action("clipboard", "clipboard_remove", entry_id, id=4) == error_frame(
            "clipboard", "not_found", 4
        )
    assert await ClipboardEntry.objects.acount() == 1


# -- clipboard_flush --------------------------------------------------------------------


async def test_flush_empties_only_the_users_clipboard(ann: Any, bob: Any) -> None:
    one = await ClipboardEntry.objects.acreate(user=ann, data=1)
    two = await ClipboardEntry.objects.acreate(user=ann, data=2)
    await ClipboardEntry.objects.acreate(user=bob, data=3)
    async with connected(ann) as asker, connected(ann) as other, connected(bob) as bob_socket:
        assert await asker.action("clipboard", "clipboard_flush", id="fl") == removed([one.pk, two.pk], "fl")
        assert await other.receive() == removed([one.pk, two.pk])
        assert await asker.receive_nothing()
        assert await bob_socket.receive_nothing()
    assert [entry.data async for entry in ClipboardEntry.objects.all()] == [3]


async def test_flush_of_an_empty_clipboard_answers_and_pushes_nothing(ann: Any) -> None:
    async with connected(ann) as asker, connected(ann) as other:
        assert await asker.action("clipboard", "clipboard_flush", id="fl") == removed([], "fl")
        assert await other.receive_nothing()


# -- the limit --------------------------------------------------------------------------


@override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRIES": 2})
async def test_add_over_the_limit_is_limit_exceeded_and_stores_nothing(ann: Any) -> None:
    async with connected(ann) as socket, connected(ann) as other:
        await socket.action("clipboard", "clipboard_add", 1, id=1)
        await socket.action("clipboard", "clipboard_add", 2, id=2)
        assert await other.receive() == added((await entries_of(ann))[:1])
        assert await other.receive() == added((await entries_of(ann))[1:])
        assert await socket.action("clipboard", "clipboard_add", 3, id=3) == error_frame(
            "clipboard", "limit_exceeded", 3
        )
        assert await other.receive_nothing()
        await socket.assert_open()
    assert [entry.data async for entry in ClipboardEntry.objects.order_by("pk")] == [1, 2]


@override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRIES": 2})
async def test_load_over_the_limit_is_limit_exceeded_and_stores_none_of_it(
    ann: Any, documents: list[Document]
) -> None:
    await ClipboardEntry.objects.acreate(user=ann, data="one")
    async with connected(ann) as socket:
        ids = [documents[0].pk, documents[1].pk]
        assert await socket.action(
            "clipboard", "clipboard_load", load("demo.document", ids), id=1
        ) == error_frame("clipboard", "limit_exceeded", 1)
        # What is already there takes no room again.
        await socket.action("clipboard", "clipboard_load", load("demo.document", ids[:1]), id=2)
        reply = await socket.action("clipboard", "clipboard_load", load("demo.document", ids[:1]), id=3)
        assert reply == added([], 3, refused=[])
    assert await ClipboardEntry.objects.acount() == 2


@override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRIES": 1})
async def test_limit_is_per_user(ann: Any, bob: Any) -> None:
    await ClipboardEntry.objects.acreate(user=bob, data="bob's")
    async with connected(ann) as socket:
        reply = await socket.action("clipboard", "clipboard_add", "ann's", id=1)
        assert [entry["data"] for entry in reply["payload"]["added"]] == ["ann's"]


# -- keys that fit the column (wsgateway.columns.fits_column, shared with mark_read) -------


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        (1, True),
        ("12", True),
        (2**63 - 1, True),
        (-(2**63), True),
        (2**63, False),
        (-(2**63) - 1, False),
        (str(2**63), False),
        ("abc", False),
        ("1.5", False),
        ("", False),
    ],
    ids=repr,
)
def test_an_integer_key_fits_its_column_if_the_field_reads_it_within_the_columns_range(
    value: Any, fits: bool
) -> None:
    assert fits_column(Document._meta.pk, value) is fits


def test_a_text_value_fits_its_column_up_to_the_fields_max_length() -> None:
    field = ClipboardEntry._meta.get_field("object_id")
    assert fits_column(field, "k" * 255)
    assert not fits_column(field, "k" * 256)
