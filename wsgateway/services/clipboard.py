"""The "clipboard" channel: a per-user clipboard synced across the user's sockets."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from channels.db import database_sync_to_async
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import router, transaction
from django.db.models import Field, Model
from django.utils.translation import gettext, gettext_lazy, pgettext

from .. import frames
from ..codes import ErrorCode
from ..columns import fits_column
from ..conf import gateway_settings, import_from_setting
from ..exceptions import GatewayError, InvalidData
from ..models import ClipboardEntry, wire_pk
from ..reads import fetch
from .base import ActionService, Service

CHANNEL = "clipboard"

#: Bytes an entry takes in a clipboard frame beyond :func:`entry_bytes`: its id, key and time at
#: their longest, and the comma before it. A data entry's are the most: ``{"id":…,"data":`` and
#: ``,"created":"…"}`` around its data, where a reference's braces are counted in its bytes.
ENTRY_OVERHEAD = (
    frames.size(
        frames.encode(
            {
                "id": 2**63 - 1,
                "data": None,
                "created": datetime.datetime.max.replace(tzinfo=datetime.UTC).isoformat(),
            }
        )
    )
    - len("null")
    + 1
)

#: Bytes of the connect frame of an empty clipboard.
SNAPSHOT_OVERHEAD = frames.size(frames.data(CHANNEL, {"clipboard": []}))


def snapshot_bound(entries: int, total_bytes: int) -> int:
    """The largest connect frame of a clipboard of ``entries`` entries of ``total_bytes`` bytes."""
    return SNAPSHOT_OVERHEAD + entries * ENTRY_OVERHEAD + total_bytes


def user_can_view(user: Any, obj: Any) -> bool:
    """Default ``CLIPBOARD_PERMISSION``: the model's view permission, globally or for this object."""
    opts = obj._meta
    perm = f"{opts.app_label}.view_{opts.model_name}"
    return bool(user.has_perm(perm) or user.has_perm(perm, obj))


def clipboard_permission() -> Callable[[Any, Any], bool]:
    """The callable named in ``CLIPBOARD_PERMISSION``; imported once, until a setting changes
    (:func:`wsgateway.conf.import_from_setting`)."""
    permission: Callable[[Any, Any], bool] = import_from_setting(gateway_settings.CLIPBOARD_PERMISSION)
    return permission


def clipboard_of(user: Any) -> list[dict[str, Any]]:
    # Read on every connect: plain SQL (see wsgateway.reads).
    return [entry.to_wire() for entry in fetch(ClipboardEntry, "user", user.pk, order_by="id")]


def clipboards_of(user_ids: Iterable[Any]) -> dict[Any, list[ClipboardEntry]]:
    """The entries of many users' clipboards, each in order, in one query (the connects of a trip:
    building it through the ORM costs once for them all); a user with none is not a key."""
    entries: dict[Any, list[ClipboardEntry]] = {}
    # The base manager: the whole table, as clipboard_of reads it.
    rows = ClipboardEntry._base_manager.using(router.db_for_read(ClipboardEntry))
    for entry in rows.filter(user__in=list(user_ids)).order_by("id"):
        entries.setdefault(entry.user_id, []).append(entry)
    return entries


def entry_bytes(wire: dict[str, Any]) -> int:
    """What an entry counts against the byte quotas, as it is sent: its data as JSON, or its
    reference (``{"model", "pk", "label"}``) as JSON; its id and time are :data:`ENTRY_OVERHEAD`'s."""
    if "data" in wire:
        return frames.size(frames.encode(wire["data"]))
    return frames.size(frames.encode({key: wire[key] for key in ("model", "pk", "label")}))


def _check_room(user: Any, adding: Iterable[dict[str, Any]]) -> None:
    """``limit_exceeded`` unless the user's clipboard has room for the entries ``adding`` (wire forms
    without id and time): their number, each one's bytes and the total. Run in the transaction that
    stores them: it locks the user's clipboard (:func:`_lock_clipboard`) until that commits."""
    _lock_clipboard(user)
    entry_limit = gateway_settings.CLIPBOARD_MAX_ENTRY_BYTES
    sizes = [entry_bytes(wire) for wire in adding]
    if any(size > entry_limit for size in sizes):
        raise GatewayError(
            ErrorCode.LIMIT_EXCEEDED,
            gettext("A clipboard entry is at most %(limit)d bytes as JSON; this one is %(size)d.")
            % {"limit": entry_limit, "size": max(sizes)},
        )
    stored = clipboard_of(user)
    count_limit = gateway_settings.CLIPBOARD_MAX_ENTRIES
    if len(stored) + len(sizes) > count_limit:
        raise GatewayError(
            ErrorCode.LIMIT_EXCEEDED,
            gettext("The clipboard holds at most %(limit)d entries.") % {"limit": count_limit},
        )
    byte_limit = gateway_settings.CLIPBOARD_MAX_BYTES
    total = sum(map(entry_bytes, stored)) + sum(sizes)
    if total > byte_limit:
        raise GatewayError(
            ErrorCode.LIMIT_EXCEEDED,
            gettext("The clipboard holds at most %(limit)d bytes of entries; this would make it %(total)d.")
            % {"limit": byte_limit, "total": total},
        )


def _lock_clipboard(user: Any) -> None:
    """Lock the user's row until the transaction ends, so that two adds from two sockets check the
    quotas one after the other. On PostgreSQL ``FOR NO KEY UPDATE``, which foreign keys to the row
    do not wait for; SQLite has no row locks, and serialises writing transactions instead."""
    model = get_user_model()
    connection = transaction.get_connection(router.db_for_write(ClipboardEntry))
    rows = model._default_manager.select_for_update(no_key=connection.features.has_select_for_no_key_update)
    list(rows.filter(pk=user.pk).values_list("pk", flat=True))


class ClipboardService(ActionService):
    __slots__ = ()

    channel = CHANNEL

    def snapshot(self, user: Any) -> Any:
        return {"clipboard": clipboard_of(user)}

    @classmethod
    def snapshots(cls, sockets: Sequence[tuple[Service, Any]]) -> list[Any]:
        entries = clipboards_of({user.pk for _, user in sockets})
        # Each socket's own list: a user's two sockets in a trip share no payload.
        return [{"clipboard": [entry.to_wire() for entry in entries.get(user.pk, ())]} for _, user in sockets]

    async def _apush_change(self, user: Any, reply: dict[str, Any]) -> dict[str, Any]:
        # The asking socket gets ``reply``; the user's other sockets get the change, if any.
        change = {key: reply[key] for key in ("added", "removed") if key in reply}
        if any(change.values()):
            await self.push_to_user(user, change)
        return reply

    async def action_clipboard_add(self, user: Any, data: Any) -> Any:
        if data is None:
            raise InvalidData(
                pgettext(
                    "JSON names of the protocol: kept as they are", "clipboard_add takes the data to store."
                ),
            )
        return await self._apush_change(user, await database_sync_to_async(self._add)(user, data))

    async def action_clipboard_load(self, user: Any, data: Any) -> Any:
        return await self._apush_change(user, await database_sync_to_async(self._load)(user, data))

    async def action_clipboard_remove(self, user: Any, data: Any) -> Any:
        if type(data) is not int:
            raise InvalidData(
                pgettext(
                    "JSON names of the protocol: kept as they are", "clipboard_remove takes an entry id."
                ),
            )
        return await self._apush_change(user, await database_sync_to_async(self._remove)(user, data))

    async def action_clipboard_flush(self, user: Any, data: Any) -> Any:
        return await self._apush_change(user, await database_sync_to_async(self._flush)(user))

    @staticmethod
    def _add(user: Any, data: Any) -> dict[str, Any]:
        with transaction.atomic():
            _check_room(user, [{"data": data}])
            entry = ClipboardEntry.objects.create(user=user, data=data)
        return {"added": [entry.to_wire()]}

    @staticmethod
    def _load(user: Any, data: Any) -> dict[str, Any]:
        resolved = _resolve_load(user, *_parse_load(data))
        added = _store_references(user, resolved.content_type, resolved.objects)
        return {"added": added, "refused": resolved.refused}

    @staticmethod
    def _remove(user: Any, entry_id: int) -> dict[str, Any]:
        deleted, _ = ClipboardEntry.objects.filter(user=user, pk=entry_id).delete()
        if not deleted:
            raise GatewayError(
                ErrorCode.NOT_FOUND, gettext("No clipboard entry of yours with id %(id)s.") % {"id": entry_id}
            )
        return {"removed": [entry_id]}

    @staticmethod
    def _flush(user: Any) -> dict[str, Any]:
        # The ids, not "everything": an entry another socket adds meanwhile is not flushed, and
        # must not vanish from this socket's copy either.
        with transaction.atomic():
            entries = ClipboardEntry.objects.filter(user=user)
            removed = sorted(entries.values_list("pk", flat=True))
            ClipboardEntry.objects.filter(pk__in=removed).delete()
        return {"removed": removed}


# -- clipboard_load: parse, resolve, store ------------------------------------------------


class _Resolved(NamedTuple):
    """What a clipboard_load names: the model's content type, the objects to add by key, the refusals."""

    content_type: ContentType
    objects: dict[str, Any]
    refused: list[dict[str, Any]]


def _parse_load(data: Any) -> tuple[str, list[int | str]]:
    """The model label and the ids of a clipboard_load request; INVALID_DATA if it has another shape."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("model"), str)
        or not isinstance(data.get("ids"), list)
    ):
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                'clipboard_load takes {"model": "app_label.model", "ids": [...]}.',
            ),
        )
    ids = data["ids"]
    if not ids or not all(type(pk) in (int, str) for pk in ids):
        raise InvalidData(
            pgettext(
                "JSON names of the protocol: kept as they are",
                '"ids" must be a non-empty list of primary keys.',
            ),
        )
    return data["model"], ids


def _resolve_load(user: Any, label: str, ids: list[int | str]) -> _Resolved:
    """The objects ``ids`` name that ``user`` may view; every other id refused, with its reason."""
    model = _model(label)
    can_view = clipboard_permission()
    content_type = ContentType.objects.get_for_model(model)
    wanted, refused = _keys(model._meta.pk, ids)
    found = {str(obj.pk): obj for obj in model._default_manager.filter(pk__in=list(wanted))}
    objects: dict[str, Any] = {}
    for key, raw in wanted.items():
        obj = found.get(key)
        # One answer for "no such object" and "not yours to see": two would tell anyone whether
        # a row exists in any installed model (a user, a session).
        if obj is None or not can_view(user, obj):
            refused.append(_refusal(raw, ErrorCode.NOT_FOUND))
        else:
            objects[key] = obj
    return _Resolved(content_type, objects, refused)


def _model(label: str) -> type[Model]:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        raise InvalidData(gettext("Unknown model %(label)s.") % {"label": repr(label)}) from None


def _keys(
    pk_field: Field[Any, Any], ids: list[int | str]
) -> tuple[dict[str, int | str], list[dict[str, Any]]]:
    """The ids that are keys of the column, by the key as ``object_id`` stores it, and the others refused."""
    wanted: dict[str, int | str] = {}
    refused: list[dict[str, Any]] = []
    for raw in ids:
        if fits_column(pk_field, raw):
            wanted[str(pk_field.to_python(raw))] = raw
        else:
            refused.append(_refusal(raw, ErrorCode.INVALID_DATA))
    return wanted, refused


def _refusal(raw: int | str, code: ErrorCode) -> dict[str, Any]:
    # Rendered now, in the language of the socket whose request this is (see wsgateway.i18n).
    return {"id": raw, "code": code, "message": str(_REFUSALS[code])}


_REFUSALS = {
    ErrorCode.INVALID_DATA: gettext_lazy("Not a valid key."),
    ErrorCode.NOT_FOUND: gettext_lazy("No such object, or you may not view it."),
}


def _store_references(user: Any, content_type: ContentType, objects: dict[str, Any]) -> list[dict[str, Any]]:
    """Add the objects not on the user's clipboard yet, all or none (the quotas); the entries added."""
    with transaction.atomic():
        _lock_clipboard(user)  # before reading what is present: a concurrent load adds no duplicate
        present = set(
            ClipboardEntry.objects.filter(user=user, content_type=content_type).values_list(
                "object_id", flat=True
            )
        )
        new = [
            ClipboardEntry(user=user, content_type=content_type, object_id=key, label=str(obj)[:255])
            for key, obj in objects.items()
            if key not in present
        ]
        _check_room(user, [_reference(content_type, entry) for entry in new])
        created = ClipboardEntry.objects.bulk_create(new)
    if any(entry.pk is None for entry in created):  # a database that returns no ids from a bulk insert
        keys = [entry.object_id for entry in new]
        created = list(
            ClipboardEntry.objects.filter(user=user, content_type=content_type, object_id__in=keys)
        )
    return [entry.to_wire() for entry in sorted(created, key=lambda entry: entry.pk)]


def _reference(content_type: ContentType, entry: ClipboardEntry) -> dict[str, Any]:
    """The wire form of an unsaved reference entry, without id and time, to count its bytes."""
    return {
        "model": f"{content_type.app_label}.{content_type.model}",
        "pk": wire_pk(entry.object_id),
        "label": entry.label,
    }
