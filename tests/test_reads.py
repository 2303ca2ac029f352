"""wsgateway.reads: rows read by plain SQL come back as the ORM would build them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from wsgateway.models import ClipboardEntry
from wsgateway.reads import fetch

pytestmark = pytest.mark.django_db


def test_a_user_by_primary_key_equals_the_orms_field_for_field() -> None:
    user = get_user_model().objects.create_user("reader", password="x", is_staff=True)
    user.last_login = timezone.now()
    user.save()
    (read,) = fetch(get_user_model(), "id", user.pk)
    orm = get_user_model().objects.get(pk=user.pk)
    fields = [field.attname for field in get_user_model()._meta.concrete_fields]
    assert [getattr(read, name) for name in fields] == [getattr(orm, name) for name in fields]
    assert read.is_staff is True and timezone.is_aware(read.date_joined)
    assert not read._state.adding and read._state.db == "default"


def test_a_primary_key_as_text_is_converted_and_a_missing_one_finds_nothing() -> None:
    user = get_user_model().objects.create_user("reader")
    assert [u.pk for u in fetch(get_user_model(), "id", str(user.pk))] == [user.pk]
    assert fetch(get_user_model(), "id", user.pk + 1000) == []
    with pytest.raises(ValueError):
        fetch(get_user_model(), "id", "not a number")


def test_rows_by_foreign_key_in_order_with_json_decoded() -> None:
    user = get_user_model().objects.create_user("reader")
    other = get_user_model().objects.create_user("other")
    first = ClipboardEntry.objects.create(user=user, data={"n": [1, 2]})
    ClipboardEntry.objects.create(user=other, data="not mine")
    second = ClipboardEntry.objects.create(user=user, data=None, label="empty")
    entries = fetch(ClipboardEntry, "user", user.pk, order_by="id")
    assert [(e.pk, e.data, e.label) for e in entries] == [
        (first.pk, {"n": [1, 2]}, ""),
        (second.pk, None, "empty"),
    ]
    assert [e.to_wire() for e in entries] == [e.to_wire() for e in ClipboardEntry.objects.filter(user=user)]
