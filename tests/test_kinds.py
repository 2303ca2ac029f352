"""Kinds of notification: their declaration, its check (wsgateway.E016), and notify(kind=...)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from wsgateway.checks import check_settings
from wsgateway.models import Notification
from wsgateway.notifications import kinds, notify
from wsgateway.notifications.kinds import EMAIL, INAPP, NO_KIND, declaration_errors

COMMENT = {"label": "Comments", "email_after": 600}
SECURITY = {"label": "Security", "channels": ["inapp", "email"], "required": True, "email_if_offline": True}


def with_kinds(value: Any) -> Any:
    return override_settings(WSGATEWAY={"NOTIFICATION_KINDS": value})


def test_a_declared_kind_is_built_with_its_defaults() -> None:
    with with_kinds({"comment": COMMENT, "security": SECURITY}):
        comment = kinds.get("comment")
        assert (comment.label, comment.channels, comment.required) == ("Comments", (INAPP, EMAIL), False)
        assert comment.default_for(INAPP) and comment.default_for(EMAIL)
        assert comment.email_after == 600 and comment.emails
        assert kinds.get("security").required and kinds.get("security").email_if_offline


def test_a_channel_the_kind_does_not_use_is_off_whatever_its_default() -> None:
    with with_kinds({"news": {"label": "News", "channels": ["inapp"]}}):
        news = kinds.get("news")
        assert news.default_for(INAPP) and not news.default_for(EMAIL) and not news.emails


def test_no_kind_is_in_app_only_and_required() -> None:
    assert kinds.get("") is NO_KIND
    assert NO_KIND.channels == (INAPP,) and NO_KIND.required and not NO_KIND.emails


def test_an_undeclared_kind_is_refused() -> None:
    with (
        with_kinds({"comment": COMMENT}),
        pytest.raises(ValueError, match="Unknown notification kind 'mention'"),
    ):
        kinds.get("mention")


def test_the_kinds_are_read_again_after_the_setting_changes() -> None:
    with with_kinds({"comment": COMMENT}):
        assert kinds.get("comment").label == "Comments"
    with with_kinds({"comment": {"label": "Remarks"}}):
        assert kinds.get("comment").label == "Remarks"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a dict"),
        ({"": COMMENT}, "kind name ''"),
        ({"x" * 51: COMMENT}, "at most 50 characters"),
        ({"comment": "Comments"}, "['comment'] must be a dict"),
        ({"comment": {}}, "needs a label"),
        ({"comment": {"label": "C", "colour": "red"}}, "unknown key 'colour'"),
        ({"comment": {"label": "C", "channels": ["sms"]}}, "'channels' must be"),
        ({"comment": {"label": "C", "channels": []}}, "'channels' must be"),
        ({"comment": {"label": "C", "required": "yes"}}, "'required' must be True or False"),
        ({"comment": {"label": "C", "default": {"email": 1}}}, "'default' must map"),
        (
            {"comment": {"label": "C", "channels": ["inapp"], "default": {"email": False}}},
            "'default' must map",
        ),
        ({"comment": {"label": "C", "email_after": -1}}, "'email_after' must be"),
        ({"comment": {"label": "C", "email_after": 10**9}}, "'email_after' must be"),
        ({"comment": {"label": "C", "email_after": True}}, "'email_after' must be"),
        ({"comment": {"label": "C", "channels": ["inapp"], "email_after": 60}}, "must include 'email'"),
        ({f"k{i}": {"label": "K"} for i in range(101)}, "more than 100"),
    ],
)
def test_each_mistake_in_a_declaration_is_reported_by_e016(value: Any, message: str) -> None:
    errors = declaration_errors(value)
    assert any(message in error for error in errors), errors
    with override_settings(WSGATEWAY={"NOTIFICATION_KINDS": value}):
        reported = [e for e in check_settings() if e.id in ("wsgateway.E016", "wsgateway.E007")]
        assert reported, "the check reports nothing"
        with pytest.raises(ValueError):
            kinds.declared()


def test_a_right_declaration_raises_no_error() -> None:
    assert declaration_errors({"comment": COMMENT, "security": SECURITY}) == []
    with with_kinds({"comment": COMMENT, "security": SECURITY}):
        assert [e for e in check_settings() if e.id == "wsgateway.E016"] == []


@pytest.mark.django_db
def test_notify_stores_the_kind(django_user_model: Any) -> None:
    ann = django_user_model.objects.create_user("ann")
    with with_kinds({"comment": COMMENT}):
        (row,) = notify(ann, "Bob commented", kind="comment")
    assert Notification.objects.get(pk=row.pk).kind == "comment"
    assert row.to_wire()["kind"] == "comment"


@pytest.mark.django_db
def test_notify_with_an_undeclared_kind_stores_nothing(django_user_model: Any) -> None:
    ann = django_user_model.objects.create_user("ann")
    with with_kinds({"comment": COMMENT}), pytest.raises(ValueError, match="Unknown notification kind"):
        notify(ann, "Bob mentioned you", kind="mention")
    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_the_notify_command_takes_a_kind_and_refuses_an_unknown_one(django_user_model: Any) -> None:
    django_user_model.objects.create_user("ann")
    with with_kinds({"comment": COMMENT}):
        call_command("notify", "ann", "Bob commented", "--kind", "comment", stdout=StringIO())
        with pytest.raises(CommandError, match=r"Unknown notification kind 'mention'.*Nothing was sent"):
            call_command("notify", "ann", "Bob mentioned you", "--kind", "mention", stdout=StringIO())
    assert list(Notification.objects.values_list("kind", flat=True)) == ["comment"]
