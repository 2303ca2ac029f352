"""The admin's page of who is online (wsgateway.admin_online): who may see it and close sockets from it,
the list from the process-local presence and from a real Redis, its pages, the close through
close_user_sockets with a real socket, CSRF, and a layer that does not answer.
tests/test_live_admin.py drives it under daphne."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import translation

from tests.support.communicators import PASSWORD, connected, error_frame
from tests.support.servers import free_port
from wsgateway import presence
from wsgateway.admin_online import OnlineUserAdmin, close_sockets_action
from wsgateway.bridge import run_async
from wsgateway.layers.redis import RedisChannelLayer
from wsgateway.models import OnlineUser

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/admin/wsgateway/onlineuser/"
CLOSE = "/admin/wsgateway/onlineuser/close/"
VIEW = "wsgateway.view_onlineuser"
CLOSE_SOCKETS = "wsgateway.close_sockets"


def make_user(username: str, *perms: str, is_staff: bool = True) -> Any:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=is_staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def client_of(user: Any, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def rows(html: str) -> list[tuple[str, str]]:
    """The page's users, as (the user's key, their open sockets)."""
    found = re.findall(r'<tr data-user="([^"]+)">.*?<td class="sockets">(\d+)', html, re.S)
    return [(user, sockets) for user, sockets in found]


@pytest.fixture
def page_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Sets the registered page's size for a test."""

    def set_size(size: int) -> None:
        monkeypatch.setattr(admin.site._registry[OnlineUser], "list_per_page", size)

    yield set_size


# -- who may see it ---------------------------------------------------------------------------------


def test_the_page_is_in_the_admin_index_under_the_app_for_who_may_see_it() -> None:
    viewer = client_of(make_user("viewer", VIEW))
    index = viewer.get("/admin/").content.decode()
    assert 'href="/admin/wsgateway/onlineuser/"' in index and "Online users" in index
    assert "/admin/wsgateway/onlineuser/add/" not in index, "nothing to add"
    other = client_of(make_user("other")).get("/admin/").content.decode()
    assert "Online users" not in other


def test_anonymous_and_non_staff_are_sent_to_the_admin_login() -> None:
    for client in (Client(), client_of(make_user("member", VIEW, CLOSE_SOCKETS, is_staff=False))):
        response = client.get(PAGE)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
        response = client.post(CLOSE, {"user": "1"})
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_staff_without_the_permissions_are_refused() -> None:
    staff = client_of(make_user("staff"))
    assert staff.get(PAGE).status_code == 403
    viewer = client_of(make_user("viewer", VIEW))
    assert viewer.post(CLOSE, {"user": "1"}).status_code == 403
    assert "Close the sockets" not in viewer.get(PAGE).content.decode(), "no button without the permission"


def test_the_models_other_urls_are_not_served() -> None:
    superuser = client_of(make_user("root", is_staff=True))
    get_user_model().objects.filter(username="root").update(is_superuser=True)
    for path in ("add/", "1/change/", "1/delete/", "1/history/", "1/"):
        assert superuser.get(PAGE + path).status_code in (302, 404), path  # the admin's catch-all redirect
    assert superuser.get(CLOSE).status_code == 405


# -- the list ---------------------------------------------------------------------------------------


async def test_the_list_shows_each_online_user_with_sockets_since_and_a_link() -> None:
    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    viewer = await sync_to_async(make_user)("viewer", VIEW, CLOSE_SOCKETS)
    async with connected(alice), connected(alice), connected(bob):
        client = await sync_to_async(client_of)(viewer)
        html = (await sync_to_async(client.get)(PAGE)).content.decode()
    assert rows(html) == [(str(alice.pk), "2"), (str(bob.pk), "1")], "the longest online first"
    assert f'href="/admin/auth/user/{alice.pk}/change/">alice</a>' in html
    since = presence._local.since[str(alice.pk)]
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d">', html)
    assert "2 users online" in html and "Close the sockets of alice" in html
    assert since <= presence._local.since[str(bob.pk)]


def test_a_user_within_the_grace_and_a_key_no_user_has() -> None:
    viewer = make_user("viewer", VIEW)
    presence._local.join(str(viewer.pk), "ws.gone")
    presence._local.leave(str(viewer.pk), "ws.gone")
    presence._local.join("999999", "ws.x")
    html = client_of(viewer).get(PAGE).content.decode()
    assert rows(html) == [(str(viewer.pk), "0"), ("999999", "0")]
    assert "reconnecting within the grace" in html and "999999 (no such user)" in html


def test_the_page_speaks_german() -> None:
    viewer = make_user("viewer", VIEW, CLOSE_SOCKETS)
    presence._local.join(str(viewer.pk), "ws.a")
    with translation.override("de"):
        html = client_of(viewer).get(PAGE).content.decode()
    assert (
        "Online seit" in html and "1 Benutzer online" in html and "Die Sockets von viewer schließen" in html
    )


def test_no_one_online() -> None:
    html = client_of(make_user("viewer", VIEW)).get(PAGE).content.decode()
    assert "No one is online." in html and "0 users online" in html


def test_the_list_comes_a_bounded_page_at_a_time(page_of: Any) -> None:
    page_of(2)
    viewer = client_of(make_user("viewer", VIEW))
    for n in range(5):
        presence._local.join(str(1000 + n), f"ws.{n}")
    seen = []
    for number in (1, 2, 3):
        html = viewer.get(PAGE, {"p": number}).content.decode()
        seen.append([user for user, _ in rows(html)])
        assert "5 users online" in html
    assert seen == [["1000", "1001"], ["1002", "1003"], ["1004"]]
    assert 'aria-current="page">3</span>' in html and 'href="?p=1"' in html
    for bad in ("4", "0", "-1", "x", "1.5", str(presence.MAX_ONLINE_USERS)):
        assert viewer.get(PAGE, {"p": bad}).status_code == 404, bad


def test_a_page_is_never_larger_than_presence_reads_in_one_call(page_of: Any) -> None:
    page_of(1000)
    for n in range(presence.MAX_PAGE + 5):
        presence._local.join(str(1000 + n), f"ws.{n}")
    html = client_of(make_user("viewer", VIEW)).get(PAGE).content.decode()
    assert len(rows(html)) == presence.MAX_PAGE


@pytest.fixture
def redis_layer(redis_url: str) -> Iterator[RedisChannelLayer]:
    """wsgateway's Redis layer as the site's, on a prefix of this test's."""
    config = {"BACKEND": "wsgateway.layers.redis.RedisChannelLayer"}
    config["CONFIG"] = {"hosts": [redis_url], "prefix": f"admin-{secrets.token_hex(4)}"}  # type: ignore[assignment]
    with override_settings(CHANNEL_LAYERS={"default": config}):
        from wsgateway.groups import channel_layer

        layer = channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        yield layer
        run_async(forget, layer)


async def forget(layer: RedisChannelLayer) -> None:
    await layer._state().client.delete(layer.online_key, layer.since_key)
    await layer.close()


@pytest.mark.redis
def test_the_list_from_redis_with_every_processs_sockets(
    redis_layer: RedisChannelLayer, page_of: Any
) -> None:
    page_of(2)
    viewer = make_user("viewer", VIEW)
    users = [make_user(name) for name in ("u1", "u2", "u3")]
    for user, sockets in zip(users, (2, 0, 1), strict=True):
        run_async(redis_layer.presence_join, str(user.pk))
        for n in range(sockets):  # as the processes' connects register them
            run_async(redis_layer.connection_add, str(user.pk), f"ws.{user.pk}.{n}", 5)
    client = client_of(viewer)
    first, second = client.get(PAGE).content.decode(), client.get(PAGE, {"p": 2}).content.decode()
    assert rows(first) + rows(second) == [
        (str(users[0].pk), "2"),
        (str(users[1].pk), "0"),
        (str(users[2].pk), "1"),
    ]
    assert "3 users online" in first
    since = run_async(presence.aonline_since, users)
    assert list(since) == [str(user.pk) for user in users] and all(since.values())


def test_a_layer_that_does_not_answer_is_an_error_on_the_page_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    viewer = client_of(make_user("viewer", VIEW, CLOSE_SOCKETS))
    target = make_user("target")
    dead = {
        "BACKEND": "wsgateway.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
    }
    caplog.set_level(logging.INFO, logger="wsgateway")
    with override_settings(CHANNEL_LAYERS={"default": dead}):
        response = viewer.get(PAGE)
        assert response.status_code == 503
        html = response.content.decode()
        assert "Who is online cannot be read now: the channel layer did not answer (ConnectionError)" in html
        response = viewer.post(CLOSE, {"user": str(target.pk)}, follow=True)
        assert "could not be closed: the channel layer did not answer" in response.content.decode()
    assert not LogEntry.objects.exists(), "nothing closed, nothing logged as closed"
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "wsgateway" and r.levelno >= logging.WARNING
    ]
    assert [w.split(":")[1] for w in warnings] == [
        " the admin could not read who is online",
        f" the admin could not close the sockets of user {target.pk}",
        " the admin could not read who is online",  # the page the close sent the admin back to
    ]
    assert not any(record.exc_info for record in caplog.records)


# -- closing a user's sockets -----------------------------------------------------------------------


async def test_the_close_button_closes_the_users_sockets_through_close_user_sockets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    closer = await sync_to_async(make_user)("closer", VIEW, CLOSE_SOCKETS)
    client = await sync_to_async(client_of)(closer, enforce_csrf_checks=True)
    page = await sync_to_async(client.get)(PAGE)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None, "the button's form carries the CSRF token"
    caplog.set_level(logging.INFO, logger="wsgateway")
    async with connected(alice) as tab, connected(alice) as phone, connected(bob) as bobs:
        refused = await sync_to_async(client.post)(CLOSE, {"user": str(alice.pk)})
        assert refused.status_code == 403, "no CSRF token"
        assert await tab.receive_nothing()
        response = await sync_to_async(client.post)(
            CLOSE, {"user": str(alice.pk), "p": "2", "csrfmiddlewaretoken": token[1]}
        )
        assert response.status_code == 302 and response["Location"] == PAGE + "?p=2"
        for socket in (tab, phone):
            assert await socket.receive() == error_frame("gateway", "revoked")
            assert await socket.close_code() == 4401
        assert await bobs.receive_nothing()
    followed = await sync_to_async(client.get)(PAGE)
    assert "The sockets of alice are closing." in followed.content.decode()
    entry = await LogEntry.objects.aget()
    assert (entry.user_id, entry.object_id, entry.change_message) == (
        closer.pk,
        str(alice.pk),
        "Closed their sockets.",
    )
    assert (
        f"wsgateway: user {closer.pk} closed the sockets of user {alice.pk} from the admin" in caplog.messages
    )


def test_closing_for_a_key_no_user_has_sends_nothing() -> None:
    closer = client_of(make_user("closer", VIEW, CLOSE_SOCKETS))
    for key in ("999999", "x", ""):
        response = closer.post(CLOSE, {"user": key}, follow=True)
        assert "There is no user with the key" in response.content.decode(), key
    assert not LogEntry.objects.exists()


def test_the_page_and_the_close_under_a_sites_own_admin_site() -> None:
    site = admin.AdminSite(name="ops")
    site.register(OnlineUser, OnlineUserAdmin)
    site.register(get_user_model())
    from django.urls import path

    urls = type("urls", (), {"urlpatterns": [path("ops/", site.urls)]})
    with override_settings(ROOT_URLCONF=urls):
        viewer = make_user("viewer", VIEW)
        presence._local.join(str(viewer.pk), "ws.a")
        html = client_of(viewer).get("/ops/wsgateway/onlineuser/").content.decode()
        assert rows(html) == [(str(viewer.pk), "0")]
        assert f'href="/ops/auth/user/{viewer.pk}/change/"' in html and 'href="/ops/"' in html
        assert reverse("ops:wsgateway_onlineuser_close") == "/ops/wsgateway/onlineuser/close/"


# -- the action for a user changelist ---------------------------------------------------------------


async def test_the_action_closes_the_selected_users_sockets() -> None:
    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    closer = await sync_to_async(make_user)("closer", CLOSE_SOCKETS)
    request = await sync_to_async(request_of)(closer)
    model_admin = admin.site._registry[get_user_model()]
    async with connected(alice) as tab, connected(bob) as bobs:
        users = get_user_model().objects.filter(pk=alice.pk)
        await sync_to_async(close_sockets_action)(model_admin, request, users)
        assert await tab.receive() == error_frame("gateway", "revoked")
        assert await tab.close_code() == 4401
        assert await bobs.receive_nothing()
    assert [str(m) for m in request._messages] == ["The sockets of 1 user are closing."]


def test_the_action_needs_the_permission_and_takes_a_bounded_selection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_admin = admin.site._registry[get_user_model()]
    users = get_user_model().objects.all()
    with pytest.raises(PermissionDenied):
        close_sockets_action(model_admin, request_of(make_user("staff")), users)
    monkeypatch.setattr("wsgateway.admin_online.MAX_ACTION_USERS", 1)
    make_user("one")
    request = request_of(make_user("closer", CLOSE_SOCKETS))
    close_sockets_action(model_admin, request, users)
    assert [str(m) for m in request._messages] == ["Select at most 1 users."]
    assert not LogEntry.objects.exists(), "none closed"


def request_of(user: Any) -> Any:
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.test import RequestFactory

    request = RequestFactory().post("/admin/auth/user/")
    request.user = user
    request.session = {}  # type: ignore[assignment]
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    return request
