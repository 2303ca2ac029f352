"""``manage.py notify``: stores one notification per user, and says plainly whether it went out live."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import constants as levels
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.support.communicators import PASSWORD
from tests.support.extensions import SharedLayerStub
from wsgateway.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)

SHARED_LAYER = {"default": {"BACKEND": "tests.support.extensions.SharedLayerStub"}}
UNREACHABLE_LAYER = {"default": {"BACKEND": "tests.support.extensions.UnreachableLayerStub"}}


@pytest.fixture
def users() -> list[Any]:
    return [
        get_user_model().objects.create_user(name, password=PASSWORD) for name in ("alice", "bob", "carol")
    ]


def notify_command(*args: str) -> str:
    out = StringIO()
    call_command("notify", *args, stdout=out)
    return out.getvalue()


def test_stores_one_notification_per_user_with_the_category(users: list[Any]) -> None:
    notify_command("alice", "bob", "Deploy at noon", "--category", "warning")
    stored = Notification.objects.order_by("recipient__username")
    assert [(n.recipient.username, n.message, n.category) for n in stored] == [
        ("alice", "Deploy at noon", levels.WARNING),
        ("bob", "Deploy at noon", levels.WARNING),
    ]


def test_category_defaults_to_info(users: list[Any]) -> None:
    notify_command("carol", "hello")
    assert Notification.objects.get().category == levels.INFO


def test_a_username_given_twice_gets_one_notification(users: list[Any]) -> None:
    output = notify_command("alice", "alice", "once")
    assert Notification.objects.count() == 1
    assert "Stored 1 notification(s)." in output


def test_with_the_in_process_layer_says_plainly_it_was_not_delivered_live(users: list[Any]) -> None:
    output = notify_command("alice", "bob", "msg", "--category", "warning")
    assert "Stored 2 notification(s)." in output
    assert "Not delivered live" in output
    assert "next connect" in output
    assert "Pushed live" not in output
    # wsgateway's own Redis layer, not channels_redis' (the hint named that one).
    assert "set CHANNEL_LAYERS to wsgateway.layers.redis.RedisChannelLayer (the redis extra)" in output
    assert "channels_redis" not in output


@override_settings(CHANNEL_LAYERS=SHARED_LAYER)
def test_with_a_shared_layer_pushes_and_says_so(users: list[Any]) -> None:
    SharedLayerStub.sent.clear()
    output = notify_command("alice", "Deploy at noon")
    assert "Pushed live through the channel layer." in output
    assert "Not delivered live" not in output
    pushes = [(group, event) for group, event in SharedLayerStub.sent if event["type"] == "gateway.push"]
    assert [group for group, _ in pushes] == [f"wsgateway.user.{users[0].pk}"]
    assert '"label":"Deploy at noon"' in pushes[0][1]["text"]


@override_settings(CHANNEL_LAYERS=UNREACHABLE_LAYER)
def test_with_an_unreachable_shared_layer_stores_and_says_it_was_not_delivered(users: list[Any]) -> None:
    output = notify_command("alice", "bob", "Deploy at noon")
    assert Notification.objects.count() == 2
    assert "Stored 2 notification(s)." in output
    assert "Not delivered live" in output and "unreachable" in output
    assert "Pushed live" not in output


def test_unknown_username_is_a_command_error_and_nothing_is_stored(users: list[Any]) -> None:
    with pytest.raises(CommandError, match="mallory"):
        notify_command("alice", "mallory", "msg")
    assert Notification.objects.count() == 0


def test_every_unknown_username_is_named(users: list[Any]) -> None:
    with pytest.raises(CommandError, match="mallory, trudy"):
        notify_command("mallory", "bob", "trudy", "msg")
    assert Notification.objects.count() == 0


def test_unknown_category_is_a_command_error_and_nothing_is_stored(users: list[Any]) -> None:
    with pytest.raises(CommandError, match="category"):
        notify_command("alice", "msg", "--category", "loud")
    assert Notification.objects.count() == 0


def test_needs_a_username_and_a_message(users: list[Any]) -> None:
    with pytest.raises(CommandError):
        notify_command("msg")
    assert Notification.objects.count() == 0
