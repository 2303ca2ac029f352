"""Each user's notification preferences: the part (wsgateway.notifications.preferences) without a
socket, what notify() stores under them, the API and the page through Django's test client, and the
push of a change to every socket of the user."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client, RequestFactory, override_settings

from tests.support.communicators import AnyText, connected, frame
from tests.support.servers import manage
from wsgateway import notify
from wsgateway.models import Notification, NotificationPreferences
from wsgateway.notifications import kinds, preferences
from wsgateway.notifications.kinds import MAX_KINDS, MAX_NAME_LENGTH
from wsgateway.notifications.preferences import MAX_CHANGES, Changes, Refused
from wsgateway.preferences_views import MAX_BODY, preferences_page

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = {
    "comment": {"label": "Comments", "description": "On your documents.", "email_after": 600},
    "mention": {"label": "Mentions", "default": {"email": False}},
    "security": {"label": "Security alerts", "required": True},
    "chat": {"label": "Chat", "channels": ["inapp"]},
}
ROOT = Path(__file__).resolve().parents[1]
API = "/wsgateway/preferences/"
PAGE = "/wsgateway/preferences/page/"


@pytest.fixture(autouse=True)
def declared_kinds() -> Any:
    with override_settings(WSGATEWAY={"NOTIFICATION_KINDS": KINDS}):
        yield


# Sync users: most tests here are sync (the test client, notify()).
@pytest.fixture
def ann() -> Any:
    return get_user_model().objects.create_user("ann", password="pw")


@pytest.fixture
def bob() -> Any:
    return get_user_model().objects.create_user("bob", password="pw")


def channels_of(state: dict[str, Any]) -> dict[str, dict[str, bool]]:
    return {kind["name"]: kind["channels"] for kind in state["kinds"]}


def stored(user: Any) -> tuple[dict[str, Any], str] | None:
    row = NotificationPreferences.objects.filter(user_id=user.pk).values_list("choices", "digest").first()
    return None if row is None else (row[0], row[1])


# -- the part ---------------------------------------------------------------------------------


def test_a_new_user_has_each_kinds_defaults_and_only_the_channels_it_uses(ann: Any) -> None:
    state = preferences.state(ann)
    assert state["channels"] == ["inapp", "email"]
    assert state["digest"] == "off"
    assert state["kinds"][0] == {
        "name": "comment",
        "label": "Comments",
        "description": "On your documents.",
        "required": False,
        "channels": {"inapp": True, "email": True},
    }
    assert channels_of(state) == {
        "comment": {"inapp": True, "email": True},
        "mention": {"inapp": True, "email": False},
        "security": {"inapp": True, "email": True},
        "chat": {"inapp": True},
    }
    assert [kind["required"] for kind in state["kinds"]] == [False, False, True, False]
    assert stored(ann) is None  # reading stores nothing


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"choices": {"poll": {"inapp": False}}}, "unknown_kind"),
        ({"choices": {"": {"inapp": False}}}, "unknown_kind"),
        ({"choices": {"comment": {"sms": False}}}, "unknown_channel"),
        ({"choices": {"chat": {"email": True}}}, "unknown_channel"),  # a channel the kind does not use
        ({"choices": {"security": {"inapp": False}}}, "required_kind"),
        ({"choices": {"comment": {"inapp": "no"}}}, "invalid_data"),
        ({"choices": {"comment": {"inapp": 0}}}, "invalid_data"),
        ({"choices": {"comment": True}}, "invalid_data"),
        ({"choices": ["comment"]}, "invalid_data"),
        ({"digest": "hourly"}, "invalid_data"),
        ({"digest": None, "colour": "red"}, "invalid_data"),
        ([], "invalid_data"),
        ("comment", "invalid_data"),
    ],
)
def test_a_change_that_cannot_be_made_is_refused_with_its_code(data: Any, code: str) -> None:
    with pytest.raises(Refused) as refused:
        preferences.parse(data)
    assert refused.value.code == code
    assert refused.value.message


def test_a_change_of_every_box_of_the_most_kinds_with_the_longest_names_fits_the_body_bound(ann: Any) -> None:
    # Names that Python's json writes as \u escapes: six bytes a character.
    most = {f"{i:03d}".ljust(MAX_NAME_LENGTH, "é"): {"label": f"K{i}"} for i in range(MAX_KINDS)}
    with override_settings(WSGATEWAY={"NOTIFICATION_KINDS": most}):
        every = {"choices": {name: {"inapp": False, "email": False} for name in most}, "digest": "weekly"}
        assert len(preferences.parse(every)) == MAX_CHANGES
        assert len(json.dumps(every).encode()) < MAX_BODY
        client, token = logged_in(ann)
        response = post(client, token, every)
        assert response.status_code == 200
        assert not any(any(kind["channels"].values()) for kind in response.json()["kinds"])


def test_a_required_kind_may_be_chosen_on_and_an_empty_change_is_no_change() -> None:
    assert preferences.parse({"choices": {"security": {"inapp": True}}}) == Changes(
        {"security": {"inapp": True}}
    )
    assert preferences.parse({}) == Changes()
    assert preferences.parse({"choices": {"comment": {}}}) == Changes()


def test_apply_stores_only_what_was_chosen_and_adds_to_what_was_stored(ann: Any) -> None:
    preferences.apply(ann, preferences.parse({"choices": {"comment": {"email": False}}}))
    state = preferences.apply(
        ann, preferences.parse({"choices": {"comment": {"inapp": False}, "mention": {"email": True}}})
    )
    assert stored(ann) == ({"comment": {"email": False, "inapp": False}, "mention": {"email": True}}, "off")
    assert state == preferences.state(ann)
    assert channels_of(state)["comment"] == {"inapp": False, "email": False}
    assert channels_of(state)["mention"] == {"inapp": True, "email": True}
    state = preferences.apply(ann, preferences.parse({"digest": "weekly"}))
    assert state["digest"] == "weekly" and stored(ann) is not None and stored(ann)[1] == "weekly"  # type: ignore[index]


def test_an_empty_change_stores_nothing(ann: Any) -> None:
    assert preferences.apply(ann, Changes()) == preferences.state(ann)
    assert stored(ann) is None


def test_set_choice_refuses_with_a_value_error_and_stores_nothing(ann: Any) -> None:
    for kind, channel, on in [
        ("poll", "inapp", False),
        ("chat", "email", True),
        ("security", "email", False),
    ]:
        with pytest.raises(ValueError):
            preferences.set_choice(ann, kind, channel, on)
    assert stored(ann) is None
    preferences.set_choice(ann, "comment", "email", False)
    assert stored(ann) == ({"comment": {"email": False}}, "off")


# -- what notify() stores under them ---------------------------------------------------------


def test_a_kind_turned_off_in_app_stores_no_row_for_that_user_only(ann: Any, bob: Any) -> None:
    preferences.set_choice(ann, "comment", "inapp", False)
    sent = notify([ann, bob], "Bob commented", kind="comment")
    assert [n.recipient_id for n in sent] == [bob.pk]
    assert not Notification.objects.filter(recipient=ann).exists()
    # Its other kinds still reach it, and so does the kind again once turned back on.
    assert [n.recipient_id for n in notify(ann, "You were mentioned", kind="mention")] == [ann.pk]
    preferences.set_choice(ann, "comment", "inapp", True)
    assert [n.recipient_id for n in notify(ann, "Again", kind="comment")] == [ann.pk]


def test_a_kind_off_by_e_mail_only_still_stores_the_row_and_leaves_the_user_out_of_e_mail(ann: Any) -> None:
    preferences.set_choice(ann, "comment", "email", False)
    chosen = preferences.choose(kinds.get("comment"), [ann], "default")
    assert chosen.inapp == [ann] and chosen.email == set()
    assert len(notify(ann, "Stored all the same", kind="comment")) == 1


def test_a_required_kind_reaches_the_user_whatever_is_stored(ann: Any) -> None:
    with pytest.raises(Refused):
        preferences.set_choice(ann, "security", "inapp", False)
    # Even a choice stored by other means (by hand, or before the kind was required) is ignored.
    NotificationPreferences.objects.create(user=ann, choices={"security": {"inapp": False, "email": False}})
    assert channels_of(preferences.state(ann))["security"] == {"inapp": True, "email": True}
    assert len(notify(ann, "New sign-in", kind="security")) == 1


def test_a_channel_the_kind_does_not_use_stays_off_whatever_is_stored(ann: Any) -> None:
    NotificationPreferences.objects.create(user=ann, choices={"chat": {"email": True}})
    chosen = preferences.choose(kinds.get("chat"), [ann], "default")
    assert chosen.inapp == [ann] and chosen.email == set()
    assert channels_of(preferences.state(ann))["chat"] == {"inapp": True}


def test_a_kind_removed_from_the_settings_after_a_user_chose_is_gone_and_its_choice_ignored(ann: Any) -> None:
    preferences.set_choice(ann, "mention", "inapp", False)
    without = {name: spec for name, spec in KINDS.items() if name != "mention"}
    with override_settings(WSGATEWAY={"NOTIFICATION_KINDS": without}):
        assert "mention" not in channels_of(preferences.state(ann))
        with pytest.raises(Refused) as refused:
            preferences.parse({"choices": {"mention": {"inapp": True}}})
        assert refused.value.code == "unknown_kind"
        with pytest.raises(ValueError):
            notify(ann, "Of a kind no longer declared", kind="mention")
    # Declared again, now required: the stored "off" no longer counts.
    required = {**KINDS, "mention": {"label": "Mentions", "required": True}}
    with override_settings(WSGATEWAY={"NOTIFICATION_KINDS": required}):
        assert channels_of(preferences.state(ann))["mention"] == {"inapp": True, "email": True}
        assert len(notify(ann, "Mentioned", kind="mention")) == 1


# -- the API -----------------------------------------------------------------------------------


def logged_in(user: Any) -> tuple[Client, str]:
    """A client with ``user``'s session and CSRF checks on, and its CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(PAGE)  # a page with a form: it sets the CSRF cookie
    return client, client.cookies["csrftoken"].value


def post(client: Client, token: str | None, body: Any, **extra: Any) -> Any:
    headers = {"X-CSRFToken": token} if token else {}
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(API, text, content_type="application/json", headers=headers, **extra)


def test_the_api_answers_the_users_preferences(ann: Any) -> None:
    client, _ = logged_in(ann)
    response = client.get(API)
    assert response.status_code == 200
    assert response.json() == preferences.state(ann)


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_api_answers_anonymous_with_json_401(method: str) -> None:
    response = getattr(Client(enforce_csrf_checks=True), method)(API)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized", "message": AnyText()}}


def test_a_change_is_stored_and_answered_with_the_preferences_after_it(ann: Any) -> None:
    client, token = logged_in(ann)
    response = post(client, token, {"choices": {"comment": {"email": False}}, "digest": "daily"})
    assert response.status_code == 200
    assert response.json() == preferences.state(ann)
    assert stored(ann) == ({"comment": {"email": False}}, "daily")


def test_a_change_without_the_csrf_token_is_refused_and_stores_nothing(ann: Any) -> None:
    client, _ = logged_in(ann)
    response = post(client, None, {"choices": {"comment": {"email": False}}})
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "csrf_failed", "message": AnyText()}}
    assert stored(ann) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"choices": {"comment": {"email": False}, "poll": {"inapp": False}}}, "unknown_kind"),
        ({"choices": {"comment": {"email": False}, "chat": {"email": True}}}, "unknown_channel"),
        ({"choices": {"comment": {"email": False}, "security": {"email": False}}}, "required_kind"),
        ({"choices": {"comment": {"email": False}}, "digest": "hourly"}, "invalid_data"),
        ('{"choices": {"comment": {"email": false}}', "invalid_json"),
        ('{"choices": {"comment": {"email": NaN}}}', "invalid_json"),
        (
            '{"choices": {"comment": {"email": false}}, "digest": ' + "[" * 5000 + "]" * 5000 + "}",
            "invalid_json",
        ),
        ('{"choices": {"comment": {"email": false}}, "digest": "\\u0000"}', "invalid_data"),
    ],
)
def test_a_change_with_anything_wrong_is_refused_whole(ann: Any, body: Any, code: str) -> None:
    client, token = logged_in(ann)
    preferences.set_choice(ann, "mention", "email", True)
    response = post(client, token, body)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": code, "message": AnyText()}}
    # The good choice beside the bad one was not stored either.
    assert stored(ann) == ({"mention": {"email": True}}, "off")


def test_a_body_that_is_not_utf_8_is_not_json(ann: Any) -> None:
    client, token = logged_in(ann)
    response = client.post(
        API, b"\xff\xfe{}", content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_body_over_the_bound_is_refused_unread(ann: Any) -> None:
    client, token = logged_in(ann)
    response = post(client, token, {"choices": {}, "digest": "off" + " " * MAX_BODY})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert stored(ann) is None


def test_the_api_takes_get_and_post_only(ann: Any) -> None:
    client, token = logged_in(ann)
    assert client.put(API, "{}", headers={"X-CSRFToken": token}).status_code == 405


# -- the page ---------------------------------------------------------------------------------


def test_the_page_sends_anonymous_to_log_in() -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_the_page_is_a_table_of_kinds_by_channel_with_required_ones_disabled_and_checked(ann: Any) -> None:
    preferences.set_choice(ann, "comment", "email", False)
    client, _ = logged_in(ann)
    html = client.get(PAGE).content.decode()
    assert '<input type="checkbox" name="comment.inapp" data-kind="comment" data-channel="inapp"' in html
    assert 'aria-label="Comments: In the app" checked>' in html
    assert (
        'name="comment.email" data-kind="comment" data-channel="email" aria-label="Comments: By e-mail">'
        in html
    )
    assert 'aria-label="Security alerts: By e-mail" checked disabled>' in html
    # No box for a channel the kind does not use.
    assert 'name="chat.inapp"' in html and 'name="chat.email"' not in html
    assert '<option value="off" selected>' in html
    assert 'data-api="/wsgateway/preferences/"' in html
    assert "wsgateway/preferences.js" in html and "<wsgateway-inbox" in html


def test_the_pages_scripts_carry_the_csp_nonce(ann: Any) -> None:
    request = RequestFactory().get(PAGE)
    request.user = ann
    request.csp_nonce = "n0nce"  # type: ignore[attr-defined]  # as django-csp's middleware sets it
    html = preferences_page(request).content.decode()
    scripts = re.findall(r"<script src=[^>]*>", html)  # the JSON data script runs nothing
    assert any("preferences.js" in tag for tag in scripts)
    assert scripts and all('nonce="n0nce"' in tag for tag in scripts)


def test_the_form_saves_without_a_script_and_stores_only_what_differs(ann: Any) -> None:
    client, token = logged_in(ann)
    # Comments: in-app only now; mentions: as they were (in-app); security's boxes are never sent.
    form = {
        "csrfmiddlewaretoken": token,
        "kinds": ["comment", "mention", "security", "chat"],
        "comment.inapp": "on",
        "mention.inapp": "on",
        "chat.inapp": "on",
        "digest": "weekly",
    }
    response = client.post(PAGE, form)
    assert response.status_code == 303 and response["Location"] == PAGE + "?saved=1"
    assert stored(ann) == ({"comment": {"email": False}}, "weekly")
    assert "Saved." in client.get(response["Location"]).content.decode()


def test_a_refused_form_shows_why_with_400_and_stores_nothing(ann: Any) -> None:
    client, token = logged_in(ann)
    form = {"csrfmiddlewaretoken": token, "kinds": ["comment", "poll"], "digest": "off"}
    response = client.post(PAGE, form)
    assert response.status_code == 400
    assert 'data-code="unknown_kind"' in response.content.decode()
    assert stored(ann) is None


def test_the_form_needs_the_csrf_token(ann: Any) -> None:
    client, _ = logged_in(ann)
    assert client.post(PAGE, {"kinds": ["comment"], "digest": "off"}).status_code == 403
    assert stored(ann) is None


# -- the push to the user's sockets -------------------------------------------------------------


async def test_a_change_reaches_every_socket_of_the_user_after_commit_and_no_one_else(
    ann: Any, bob: Any
) -> None:
    async with connected(ann) as first, connected(ann) as second, connected(bob) as other:
        state = await sync_to_async(preferences.apply)(
            ann, preferences.parse({"choices": {"comment": {"inapp": False}}})
        )
        assert channels_of(state)["comment"]["inapp"] is False
        assert await first.receive() == frame("notifications", {"preferences": state})
        assert await second.receive() == frame("notifications", {"preferences": state})
        assert await other.receive_nothing()


async def test_a_refused_change_and_a_rolled_back_one_push_nothing(ann: Any) -> None:

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            preferences.apply(ann, preferences.parse({"digest": "daily"}))
            raise RuntimeError("rolled back")

    async with connected(ann) as socket:
        with pytest.raises(Refused):
            await sync_to_async(preferences.set_choice)(ann, "security", "inapp", False)
        await sync_to_async(rolled_back)()
        assert await socket.receive_nothing()
    assert await sync_to_async(stored)(ann) is None


# -- two tabs at once, on PostgreSQL's row locks --------------------------------------------------

RACERS = 6
#: The demo's kinds and one more per racing process, each toggling its own.
RACE_KINDS = {f"race{i}": {"label": f"Race {i}"} for i in range(RACERS)}

RACE = """
import time
from django.contrib.auth.models import User
from wsgateway.notifications import preferences
user = User.objects.get(username="alice")
time.sleep(max(0.0, {start} - time.time()))
for step in range(20):
    preferences.set_choice(user, "race{i}", "inapp", step % 2 == 0)  # ends off (step 19)
preferences.set_choice(user, "race{i}", "email", False)
"""


@pytest.fixture(scope="module")
def race_env(postgres_env: dict[str, str]) -> dict[str, str]:
    return {**postgres_env, "WSGATEWAY_EXTRA": json.dumps({"NOTIFICATION_KINDS": RACE_KINDS})}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_changes_at_once_from_many_processes_each_keep_what_the_others_stored(
    race_env: dict[str, str],
) -> None:
    start = time.time() + 3  # past every process's start-up
    racers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", RACE.format(start=start, i=i)],
            cwd=ROOT,
            env=race_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(RACERS)
    ]
    for racer in racers:
        _, err = racer.communicate(timeout=90)
        assert racer.returncode == 0, err
    read = (
        "import json; from wsgateway.models import NotificationPreferences as P; "
        "print(json.dumps(P.objects.get(user__username='alice').choices))"
    )
    # The last line: the shell may say first what it imported.
    choices = json.loads(manage(race_env, "shell", "-c", read).stdout.strip().splitlines()[-1])
    assert choices == {f"race{i}": {"inapp": False, "email": False} for i in range(RACERS)}
