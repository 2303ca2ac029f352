"""Django's messages on the socket (wsgateway.messages): which requests push, what the storage keeps.

Django's test client runs the project's middleware with LiveMessagesMiddleware after MessageMiddleware,
on each of Django's storages. A "socket" is the in-process layer's registry entry (what the cap counts
and user_sockets() reads) and a channel in the user's group, which takes the push as a consumer would.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.checks import run_checks
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.utils.safestring import mark_safe

from wsgateway import connections, frames
from wsgateway import messages as live
from wsgateway.bridge import run_async
from wsgateway.groups import channel_layer, user_group
from wsgateway.layers import InProcessChannelLayer

pytestmark = pytest.mark.django_db(transaction=True)

STORAGES = {
    "cookie": "django.contrib.messages.storage.cookie.CookieStorage",
    "session": "django.contrib.messages.storage.session.SessionStorage",
    "fallback": "django.contrib.messages.storage.fallback.FallbackStorage",
}
MESSAGES_SERVICE = "wsgateway.services.messages.MessagesService"
SERVICES = ["wsgateway.services.notifier.NotifierService", MESSAGES_SERVICE]
DJANGO = "django.contrib.messages.middleware.MessageMiddleware"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    DJANGO,
    live.MIDDLEWARE,
]
#: What a browser's fetch() sends; a page load sends "navigate".
FETCH = {"Sec-Fetch-Mode": "cors"}
NAVIGATE = {"Sec-Fetch-Mode": "navigate"}


def add(request: HttpRequest) -> HttpResponse:
    """Adds ``n`` messages (``text``, numbered past the first), at ``level``."""
    text, level = request.GET.get("text", "Saved."), int(request.GET.get("level", messages.SUCCESS))
    for number in range(int(request.GET.get("n", "1"))):
        messages.add_message(request, level, text if number == 0 else f"{text} {number}", extra_tags="x")
    return HttpResponse("added")


def add_html(request: HttpRequest) -> HttpResponse:
    messages.warning(request, mark_safe('<img src=x onerror="alert(1)"> & <b>bold</b>'))
    return HttpResponse("added")


def add_and_show(request: HttpRequest) -> HttpResponse:
    """A fragment that renders the messages its own request added (an htmx partial)."""
    messages.info(request, "In the fragment.")
    return HttpResponse("".join(str(message) for message in get_messages(request)))


def show(request: HttpRequest) -> HttpResponse:
    """What the next page shows: the storage's messages, one a line."""
    return HttpResponse("\n".join(str(message) for message in get_messages(request)))


urlpatterns = [
    path("add/", add),
    path("add-html/", add_html),
    path("add-and-show/", add_and_show),
    path("show/", show),
]


@pytest.fixture(params=sorted(STORAGES))
def storage(request: pytest.FixtureRequest) -> Iterator[str]:
    with override_settings(
        MESSAGE_STORAGE=STORAGES[request.param],
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF=__name__,
        WSGATEWAY={"SERVICES": SERVICES},
    ):
        yield request.param


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_user("mia", password="x")


@pytest.fixture
def client(user: Any, storage: str) -> Client:
    client = Client()
    client.force_login(user)
    return client


class Socket:
    """One socket of a user as the layer knows it: in the registry and in the user's group."""

    def __init__(self, user: Any) -> None:
        layer = channel_layer()
        assert isinstance(layer, InProcessChannelLayer)
        self.layer = layer
        self.user = str(user.pk)
        self.channel = run_async(self.layer.new_channel)
        assert run_async(connections.register, self.layer, self.user, self.channel, 10)
        run_async(self.layer.group_add, user_group(user.pk), self.channel)

    def pushes(self) -> list[Any]:
        """The payloads pushed to it since the last call.

        A push from sync code is queued onto the members' loop (the layer's group_send_many_sync): one
        turn of that loop, waited for, and every push sent before this call has arrived.
        """
        loop = self.layer.members_loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=5)
        found = []
        while (event := self.layer.receive_nowait(self.channel)) is not None:
            frame = json.loads(event["text"])
            assert frame["channel"] == frames.MESSAGES_CHANNEL
            found.append(frame["payload"])
        return found

    def close(self) -> None:
        run_async(connections.unregister, self.layer, self.user, self.channel)
        run_async(self.layer.group_discard, user_group(self.user), self.channel)
        self.layer.forget_channel(self.channel)


@pytest.fixture
def socket(user: Any) -> Iterator[Socket]:
    socket = Socket(user)
    yield socket
    socket.close()


def shown(client: Client) -> list[str]:
    text = client.get("/show/", headers=NAVIGATE).content.decode()
    return text.split("\n") if text else []


# -- the rule -----------------------------------------------------------------------------


def test_a_fetch_with_a_socket_open_pushes_and_the_next_page_shows_nothing(
    client: Client, socket: Socket
) -> None:
    assert client.get("/add/?text=Saved.", headers=FETCH).status_code == 200
    assert socket.pushes() == [{"messages": [{"level": "success", "tags": "x success", "text": "Saved."}]}]
    assert shown(client) == []


def test_a_user_without_a_socket_keeps_djangos_behaviour(client: Client) -> None:
    client.get("/add/?text=Saved.", headers=FETCH)
    assert shown(client) == ["Saved."]
    assert shown(client) == []  # shown once, as always


def test_a_page_load_keeps_its_messages_for_the_page_it_goes_to(client: Client, socket: Socket) -> None:
    client.get("/add/?text=Saved.", headers=NAVIGATE)
    assert socket.pushes() == []
    assert shown(client) == ["Saved."]


def test_a_request_that_does_not_say_is_taken_for_a_page_load(client: Client, socket: Socket) -> None:
    client.get("/add/?text=Saved.")
    assert socket.pushes() == []
    assert shown(client) == ["Saved."]


def test_messages_a_page_load_left_go_with_the_next_fetch(client: Client, socket: Socket) -> None:
    client.get("/add/?text=First.", headers=NAVIGATE)
    client.get("/add/?text=Second.", headers=FETCH)
    (pushed,) = socket.pushes()
    assert [message["text"] for message in pushed["messages"]] == ["First.", "Second."]
    assert shown(client) == []


def test_a_fetch_that_added_nothing_leaves_waiting_messages_alone(client: Client, socket: Socket) -> None:
    client.get("/add/?text=First.", headers=NAVIGATE)
    client.get("/add/?n=0", headers=FETCH)
    assert socket.pushes() == []
    assert shown(client) == ["First."]


def test_a_response_that_showed_its_messages_pushes_nothing(client: Client, socket: Socket) -> None:
    assert client.get("/add-and-show/", headers=FETCH).content == b"In the fragment."
    assert socket.pushes() == []
    assert shown(client) == []


def test_anonymous_users_keep_djangos_behaviour(storage: str, user: Any, socket: Socket) -> None:
    client = Client()
    client.get("/add/?text=Hello.", headers=FETCH)
    assert socket.pushes() == []
    assert shown(client) == ["Hello."]


def test_every_socket_of_the_user_gets_one_push_and_no_one_else(client: Client, user: Any) -> None:
    other = Socket(get_user_model().objects.create_user("ned", password="x"))
    tabs = [Socket(user), Socket(user)]
    try:
        client.get("/add/", headers=FETCH)
        assert [len(tab.pushes()) for tab in tabs] == [1, 1]
        assert other.pushes() == []
    finally:
        for socket in [other, *tabs]:
            socket.close()


# -- bounds and what is on the wire ---------------------------------------------------------


def test_up_to_the_most_a_request_pushes(client: Client, socket: Socket) -> None:
    client.get(f"/add/?n={live.MAX_MESSAGES}", headers=FETCH)
    (pushed,) = socket.pushes()
    assert len(pushed["messages"]) == live.MAX_MESSAGES
    assert shown(client) == []


def test_more_than_the_most_stay_for_a_page_all_of_them_in_order(client: Client, socket: Socket) -> None:
    count = live.MAX_MESSAGES + 1
    client.get(f"/add/?n={count}&text=m", headers=FETCH)
    assert socket.pushes() == []
    assert shown(client) == ["m"] + [f"m {number}" for number in range(1, count)]


def test_a_text_over_the_bound_keeps_them_all_for_a_page(client: Client, socket: Socket) -> None:
    client.get("/add/?text=short", headers=NAVIGATE)
    client.get(f"/add/?text={'y' * (live.MAX_TEXT + 1)}", headers=FETCH)
    assert socket.pushes() == []
    assert shown(client) == ["short", "y" * (live.MAX_TEXT + 1)]


def test_a_text_at_the_bound_is_pushed(client: Client, socket: Socket) -> None:
    client.get(f"/add/?text={'y' * live.MAX_TEXT}", headers=FETCH)
    (pushed,) = socket.pushes()
    assert pushed["messages"][0]["text"] == "y" * live.MAX_TEXT


def test_a_frame_over_max_send_size_stays_for_a_page(client: Client, socket: Socket) -> None:
    with override_settings(WSGATEWAY={"SERVICES": SERVICES, "MAX_SEND_SIZE": 200}):
        client.get(f"/add/?text={'z' * 300}", headers=FETCH)
    assert socket.pushes() == []
    assert shown(client) == ["z" * 300]


def test_html_is_plain_text_on_the_wire(client: Client, socket: Socket) -> None:
    client.get("/add-html/", headers=FETCH)
    (pushed,) = socket.pushes()
    assert pushed == {
        "messages": [
            {"level": "warning", "tags": "warning", "text": '<img src=x onerror="alert(1)"> & <b>bold</b>'}
        ]
    }


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (5, "debug"),
        (10, "debug"),
        (20, "info"),
        (25, "success"),
        (30, "warning"),
        (35, "warning"),
        (40, "error"),
        (50, "error"),
    ],
)
def test_levels_by_name(level: int, name: str) -> None:
    assert frames.message_level(level) == name


def test_a_custom_level_goes_by_the_standard_one_under_it(client: Client, socket: Socket) -> None:
    client.get("/add/?level=35", headers=FETCH)
    (pushed,) = socket.pushes()
    assert pushed["messages"][0]["level"] == "warning"


# -- what keeps them ---------------------------------------------------------------------------


def test_without_the_service_nothing_is_pushed(client: Client, socket: Socket) -> None:
    with override_settings(WSGATEWAY={}):
        client.get("/add/", headers=FETCH)
    assert socket.pushes() == []
    assert shown(client) == ["Saved."]


def test_a_layer_that_fails_keeps_them(
    client: Client, socket: Socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(*args: Any) -> None:
        raise ConnectionError("layer down")

    monkeypatch.setattr(live, "send_to_groups", down)
    with caplog.at_level(logging.WARNING, "wsgateway"):
        client.get("/add/", headers=FETCH)
    assert shown(client) == ["Saved."]
    assert "not pushed (layer down)" in caplog.text
    assert "Traceback" not in caplog.text


def test_sockets_unknown_keeps_them(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(user: Any) -> list[str]:
        raise ConnectionError("layer down")

    monkeypatch.setattr(live, "user_sockets", down)
    with caplog.at_level(logging.WARNING, "wsgateway"):
        client.get("/add/", headers=FETCH)
    assert shown(client) == ["Saved."]
    assert "sockets unknown (layer down)" in caplog.text


@pytest.mark.django_db(transaction=False)
def test_inside_a_transaction_the_push_waits_for_the_commit(
    client: Client, socket: Socket, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        client.get("/add/", headers=FETCH)
        assert socket.pushes() == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert len(socket.pushes()) == 1
    assert shown(client) == []


async def test_an_async_stack_pushes_too(storage: str, user: Any, socket: Socket) -> None:
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get("/add/?text=Async.", headers=FETCH)
    assert response.status_code == 200
    assert socket.pushes() == [{"messages": [{"level": "success", "tags": "x success", "text": "Async."}]}]


# -- checks ---------------------------------------------------------------------------------


def check_ids() -> list[str]:
    return [str(message.id) for message in live.check_live_messages()]


@override_settings(MIDDLEWARE=MIDDLEWARE, WSGATEWAY={"SERVICES": SERVICES})
def test_no_check_fires_on_a_good_configuration() -> None:
    assert check_ids() == []
    assert not [m for m in run_checks() if m.id in ("wsgateway.E019", "wsgateway.W013")]


@override_settings(WSGATEWAY={})
def test_no_check_fires_without_the_middleware() -> None:
    assert check_ids() == []


@pytest.mark.parametrize(
    "middleware",
    [
        [m for m in MIDDLEWARE if m != DJANGO],
        [*[m for m in MIDDLEWARE if m not in (DJANGO, live.MIDDLEWARE)], live.MIDDLEWARE, DJANGO],
    ],
    ids=["missing", "after"],
)
def test_e019_without_djangos_middleware_before(middleware: list[str]) -> None:
    with override_settings(MIDDLEWARE=middleware, WSGATEWAY={"SERVICES": SERVICES}):
        (message,) = live.check_live_messages()
        assert message.id == "wsgateway.E019"
        assert message.hint
        assert "wsgateway.E019" in [m.id for m in run_checks()]


@override_settings(MIDDLEWARE=MIDDLEWARE, WSGATEWAY={})
def test_w013_without_the_service() -> None:
    (message,) = live.check_live_messages()
    assert message.id == "wsgateway.W013"
    assert message.hint and MESSAGES_SERVICE in message.hint


async def test_the_service_sends_an_empty_connect_frame_and_takes_no_frames() -> None:
    from wsgateway.exceptions import GatewayError
    from wsgateway.services.messages import MessagesService

    service = MessagesService(connection=None)  # type: ignore[arg-type]  # it uses nothing of its socket
    assert service.channel == frames.MESSAGES_CHANNEL
    assert not service.has_snapshot()  # no trip to the database thread
    assert await service.on_connect(None) == {"messages": []}
    with pytest.raises(GatewayError) as raised:
        await service.on_message(None, {"action": "x"})
    assert raised.value.code == "unknown_action"
