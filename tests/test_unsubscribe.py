"""The one-click unsubscribe (RFC 8058): a signed link per user and kind, that asks on GET and turns off
that kind's e-mail, for that user only, on a POST without a login or a CSRF token."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import signing
from django.test import Client

from wsgateway import unsubscribe
from wsgateway.models import Digest, NotificationPreferences
from wsgateway.notifications import kinds, preferences
from wsgateway.notifications.emails import notification_email

pytestmark = pytest.mark.django_db

KINDS = {
    "comment": {"label": "Comments on your documents", "email_after": 600},
    "mention": {"label": "Mentions", "email_after": 600},
    "security": {"label": "Security alerts", "required": True, "email_if_offline": True},
    "quiet": {"label": "Quiet", "channels": ["inapp"]},
}
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture(autouse=True)
def site(settings: Any) -> None:
    settings.WSGATEWAY = {"NOTIFICATION_KINDS": KINDS, "EMAIL_SITE_URL": "https://example.com"}


@pytest.fixture
def users(django_user_model: Any) -> tuple[Any, Any]:
    make = django_user_model.objects.create_user
    return make("alice", "alice@example.com", "x"), make("bob", "bob@example.com", "x")


@pytest.fixture
def client() -> Client:
    """No login, and CSRF enforced as in production: the mail provider's POST has neither."""
    return Client(enforce_csrf_checks=True)


def path_of(user: Any, kind: str | None) -> str:
    return unsubscribe.url(user.pk, kind).removeprefix("https://example.com")


def email_on(user: Any, kind: str) -> bool:
    return preferences.allows(user, kinds.get(kind), "email")


def one_click(client: Client, path: str) -> Any:
    return client.post(path, ONE_CLICK, content_type="application/x-www-form-urlencoded")


def test_the_link_of_an_email_posted_without_login_turns_off_that_kind_for_that_user_only(
    client: Client, users: tuple[Any, Any]
) -> None:
    alice, bob = users
    header = notification_email(alice, kinds.get("comment"), "Hi").extra_headers["List-Unsubscribe"]
    path = header.strip("<>").removeprefix("https://example.com")
    response = one_click(client, path)
    assert response.status_code == 200
    assert b"no more e-mails about" in response.content
    assert not email_on(alice, "comment")
    assert email_on(alice, "mention") and email_on(bob, "comment")
    assert preferences.allows(alice, kinds.get("comment"), "inapp")
    assert NotificationPreferences.objects.get(user_id=alice.pk).choices == {"comment": {"email": False}}
    assert one_click(client, path).status_code == 200  # again: the same state, no error


def test_a_get_asks_and_changes_nothing(client: Client, users: tuple[Any, Any]) -> None:
    alice, _ = users
    response = client.get(path_of(alice, "comment"))
    assert response.status_code == 200
    assert b'<form method="post">' in response.content and b"Comments on your documents" in response.content
    assert email_on(alice, "comment") and not NotificationPreferences.objects.exists()
    # The page's button posts the form: a browser's POST from the page does it, as the provider's does.
    assert client.post(path_of(alice, "comment"), {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert not email_on(alice, "comment")


SALT = unsubscribe.SALT


@pytest.mark.parametrize(
    "make",
    [
        lambda pk: "nonsense",
        lambda pk: "x" * 300,
        lambda pk: signing.dumps({"u": str(pk), "k": "comment"}),  # signed, not with the unsubscribe salt
        lambda pk: signing.dumps({"u": str(pk), "k": "comment"}, salt="other"),
        lambda pk: signing.dumps([str(pk), "comment"], salt=SALT),  # our salt, not our shape
        lambda pk: signing.dumps({"u": pk, "k": "comment"}, salt=SALT),
        lambda pk: signing.dumps({"u": str(pk), "k": 5}, salt=SALT),
        lambda pk: signing.dumps({"u": "999999", "k": "comment"}, salt=SALT),  # no such user
        lambda pk: signing.dumps({"u": str(pk), "k": "gone"}, salt=SALT),  # a kind no longer declared
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_or_tampered_link_is_a_400_page_and_changes_nothing(
    client: Client, users: tuple[Any, Any], make: Any, method: str
) -> None:
    alice, _ = users
    response = getattr(client, method)(f"/wsgateway/unsubscribe/{make(alice.pk)}/")
    assert response.status_code == 400
    assert b"This link is not valid" in response.content
    assert not NotificationPreferences.objects.exists()


def test_a_link_with_one_character_changed_is_refused(client: Client, users: tuple[Any, Any]) -> None:
    alice, bob = users
    value = unsubscribe.token(alice.pk, "comment")
    tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
    assert one_click(client, f"/wsgateway/unsubscribe/{tampered}/").status_code == 400
    assert email_on(alice, "comment") and email_on(bob, "comment")


def test_a_required_kind_is_explained_and_not_turned_off(client: Client, users: tuple[Any, Any]) -> None:
    alice, _ = users
    path = path_of(alice, "security")
    page = client.get(path)
    assert (
        page.status_code == 200 and b"cannot be turned off" in page.content and b"<form" not in page.content
    )
    assert one_click(client, path).status_code == 409
    assert email_on(alice, "security") and not NotificationPreferences.objects.exists()
    quiet = path_of(alice, "quiet")  # a kind that sends no e-mail
    assert b"are not e-mailed" in client.get(quiet).content and one_click(client, quiet).status_code == 409
    assert not NotificationPreferences.objects.exists()


def test_the_digests_link_turns_the_digest_off(client: Client, users: tuple[Any, Any]) -> None:
    alice, bob = users
    for user in users:
        NotificationPreferences.objects.create(user_id=user.pk, digest=Digest.WEEKLY)
    assert b"Stop the digest" in client.get(path_of(alice, unsubscribe.DIGEST)).content
    assert one_click(client, path_of(alice, unsubscribe.DIGEST)).status_code == 200
    assert NotificationPreferences.objects.get(user_id=alice.pk).digest == Digest.OFF
    assert NotificationPreferences.objects.get(user_id=bob.pk).digest == Digest.WEEKLY


def test_other_methods_are_refused(client: Client, users: tuple[Any, Any]) -> None:
    alice, _ = users
    assert client.put(path_of(alice, "comment")).status_code == 405
    assert email_on(alice, "comment")


def test_the_token_names_the_user_and_kind_and_nothing_else() -> None:
    value = unsubscribe.token(42, "comment")
    assert unsubscribe.read(value) == ("42", "comment")
    assert unsubscribe.read(unsubscribe.token("7c9e", None)) == ("7c9e", None)
    assert unsubscribe.url(42, "comment") == f"https://example.com/wsgateway/unsubscribe/{value}/"
