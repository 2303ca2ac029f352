"""``manage.py demo_users``, which ``make run`` calls on every start: it must not sign anyone out."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def demo_users(*args: str) -> str:
    out = StringIO()
    call_command("demo_users", *args, stdout=out)
    return out.getvalue()


def test_a_second_run_leaves_passwords_and_so_sessions_alone() -> None:
    demo_users()
    alice = get_user_model().objects.get(username="alice")
    assert alice.check_password("alice-password") and alice.is_superuser
    session_hash = alice.get_session_auth_hash()

    output = demo_users()

    alice.refresh_from_db()
    # A session stores this hash at login; Django signs the session out when it differs.
    assert alice.get_session_auth_hash() == session_hash
    assert "alice / alice-password (an existing user: password left as it is)" in output


def test_a_password_the_user_changed_survives_a_restart() -> None:
    demo_users()
    bob = get_user_model().objects.get(username="bob")
    bob.set_password("bobs-own-password")
    bob.save()

    demo_users()

    bob.refresh_from_db()
    assert bob.check_password("bobs-own-password")


def test_reset_passwords_sets_them_back() -> None:
    demo_users()
    bob = get_user_model().objects.get(username="bob")
    bob.set_password("bobs-own-password")
    bob.save()

    output = demo_users("--reset-passwords")

    bob.refresh_from_db()
    assert bob.check_password("bob-password")
    assert "bob / bob-password\n" in output
