"""The example project's receiver (project/demo/receivers.py), which docs/install.md shows: notify from a
model's signal, only when something changed, once the transaction commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import serializers

from project.demo.models import Document
from wsgateway.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Any:
    user_model = get_user_model()
    user_model.objects.create_user("bob")  # not staff: told nothing
    user_model.objects.create_user("mallory", is_staff=True, is_active=False)  # inactive: told nothing
    return user_model.objects.create_user("alice", is_staff=True)


def labels() -> list[tuple[str, str]]:
    return list(Notification.objects.values_list("recipient__username", "message").order_by("id"))


def test_a_rename_notifies_the_staff_once_it_commits(
    staff: Any, django_capture_on_commit_callbacks: Any
) -> None:
    document = Document.objects.create(title="Roadmap")
    document = Document.objects.get(pk=document.pk)
    document.title = "Roadmap 2028"
    with django_capture_on_commit_callbacks() as pushes:
        document.save()
    assert labels() == [("alice", "Renamed: Roadmap → Roadmap 2028")]
    assert len(pushes) == 1  # the push waits for the commit
    (notification,) = Notification.objects.all()
    assert notification.data == {"document": document.pk}

    document.title = "Roadmap 2029"  # the same instance again: the last saved title is the old one now
    document.save()
    assert labels()[-1] == ("alice", "Renamed: Roadmap 2028 → Roadmap 2029")


def test_saves_that_rename_nothing_notify_nobody(staff: Any) -> None:
    document = Document.objects.create(title="Report")  # created: not a change of anything
    document.save()
    loaded = Document.objects.get(pk=document.pk)
    loaded.body = "Edited, same title."
    loaded.save()
    Document.objects.only("body").get(pk=document.pk).save()  # read without its title: unknown, silent
    Document(pk=document.pk, title="Built in memory").save()  # no title read from the database either
    assert labels() == []


def test_a_fixture_load_notifies_nobody(staff: Any) -> None:
    document = Document.objects.create(title="Old")
    data = serializers.serialize("json", [document]).replace('"Old"', '"New"')
    for loaded in serializers.deserialize("json", data):
        loaded.save()  # raw, as loaddata saves
    assert labels() == []


def test_the_install_page_shows_this_receiver() -> None:
    """docs/install.md's example is this file's code: its test, and its lines that decide and send."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "install.md").read_text()
    code = (root / "project" / "demo" / "receivers.py").read_text()
    lines = [
        line for line in code.splitlines() if line.lstrip().startswith(("if created", "notify(", "staff ="))
    ]
    assert len(lines) == 3, lines
    assert [line for line in lines if line not in page] == []
    assert "from . import receivers" in page
