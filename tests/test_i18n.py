"""Languages: a socket's words in the language its handshake asks for; codes and pushes untouched."""

from __future__ import annotations

import ast
import gettext
import json
import re
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client, override_settings
from django.utils import translation
from django.utils.translation import gettext_lazy

import wsgateway
from tests.support.communicators import Socket, connected, cookie, error_frame, refused
from wsgateway import anotify, connections, refusals, revocation
from wsgateway.consumers import GatewayConsumer
from wsgateway.i18n import language_of

pytestmark = pytest.mark.django_db(transaction=True)

GERMAN = (b"accept-language", b"de-DE,de;q=0.9,en;q=0.5")
LOCALE = Path(wsgateway.__file__).parent / "locale"


def handshake(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "websocket", "headers": list(headers)}


async def error_of(socket: Socket, channel: str | None, code: str, id: Any = None) -> str:
    """The next frame, which must be the error ``code``: its message."""
    received = await socket.receive()
    assert received == error_frame(channel, code, id)  # the code is the same in every language
    return str(received["error"]["message"])


# -- choosing the language ------------------------------------------------------------------


def test_the_language_is_the_first_of_accept_language_that_the_site_has() -> None:
    assert language_of(handshake(GERMAN)) == "de"
    assert language_of(handshake((b"accept-language", b"xx, de-AT;q=0.8"))) == "de"


def test_the_language_cookie_wins_over_accept_language() -> None:
    scope = handshake(GERMAN, cookie(**{settings.LANGUAGE_COOKIE_NAME: "en"}))
    assert language_of(scope) == "en"


@override_settings(LANGUAGES=[("en", "English"), ("de", "German")], LANGUAGE_CODE="en")
def test_a_language_the_site_does_not_list_falls_back_to_language_code() -> None:
    assert language_of(handshake((b"accept-language", b"fr-FR,fr;q=0.9"))) == "en"
    assert language_of(handshake(cookie(**{settings.LANGUAGE_COOKIE_NAME: "fr"}))) == "en"
    assert language_of(handshake()) == "en"


@override_settings(USE_I18N=False, LANGUAGE_CODE="en")
def test_without_i18n_every_socket_speaks_language_code() -> None:
    assert language_of(handshake(GERMAN)) == "en"


# -- what a socket is told ------------------------------------------------------------------


async def test_an_unknown_action_is_answered_in_the_sockets_language(alice: Any) -> None:
    async with connected(alice, headers=[GERMAN]) as german, connected(alice) as english:
        await german.send("gateway", {"action": "dance"}, id=1)
        await english.send("gateway", {"action": "dance"}, id=1)
        assert await error_of(german, "gateway", "unknown_action", 1) == (
            'Der Kanal gateway nimmt nur {"action": "ping"} und "ack" an.'
        )
        assert await error_of(english, "gateway", "unknown_action", 1) == (
            'The gateway channel takes only {"action": "ping"} and "ack".'
        )


async def test_an_envelope_error_and_a_service_error_in_the_database_thread_are_translated(
    alice: Any,
) -> None:
    async with connected(alice, headers=[GERMAN]) as socket:
        await socket.send_text("not json")
        assert await error_of(socket, None, "invalid_json") == (
            "Der Frame ist kein gültiges JSON mit höchstens 100 Verschachtelungsebenen."
        )
        # Raised in Channels' database thread: the language goes there with the handler's context.
        reply = await socket.action("clipboard", "clipboard_remove", 99999, id=2)
        assert reply == error_frame("clipboard", "not_found", 2)
        assert reply["error"]["message"] == "Ihre Zwischenablage hat keinen Eintrag mit der ID 99999."


async def test_internal_error_is_in_the_sockets_language(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def fails(self: GatewayConsumer, payload: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(GatewayConsumer, "gateway_message", fails)
    async with connected(alice, headers=[GERMAN]) as socket:
        await socket.send("gateway", {"action": "ping"}, id=1)
        assert await error_of(socket, "gateway", "internal_error", 1) == (
            "Der Server konnte diesen Frame nicht verarbeiten."
        )


@override_settings(WSGATEWAY={"RATE_LIMIT": 1, "RATE_BURST": 1, "RATE_LIMIT_CLOSE_AFTER": 1})
async def test_rate_limited_and_the_4429_close_reason_are_in_the_sockets_language(alice: Any) -> None:
    async with connected(alice, headers=[GERMAN]) as socket:
        for frame_id in (1, 2, 3):
            await socket.send("gateway", {"action": "ping"}, id=frame_id)
        # The refusal and the close are sent as frames 2 and 3 are read: maybe before frame 1's turn,
        # which the close then drops.
        outputs = [await socket.communicator.receive_output()]
        while outputs[-1]["type"] != "websocket.close":
            outputs.append(await socket.communicator.receive_output())
        (close,) = [output for output in outputs if output["type"] == "websocket.close"]
        assert close == {"type": "websocket.close", "code": 4429, "reason": "Zu viele Frames."}
        frames = [json.loads(output["text"]) for output in outputs if output is not close]
        refusal = next(frame for frame in frames if "error" in frame)
        assert refusal == error_frame("gateway", "rate_limited", 2)
        assert re.fullmatch(
            r"Zu viele Frames: dieser wurde nicht verarbeitet\. Versuchen Sie es in \d+\.\d\d s erneut\.",
            refusal["error"]["message"],
        ), refusal


async def test_the_4401_refusal_is_in_the_handshakes_language() -> None:
    async with refused(headers=[GERMAN]) as socket:
        assert await error_of(socket, "gateway", "unauthorized") == (
            "Melden Sie sich an oder legen Sie ein Bearer-Token vor, um sich zu verbinden."
        )
        assert await socket.close_code() == 4401
    async with refused() as socket:
        assert await error_of(socket, "gateway", "unauthorized") == (
            "Log in, or present a bearer token, to connect."
        )
        assert await socket.close_code() == 4401


async def test_the_unavailable_refusal_is_in_the_handshakes_language(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def layer_down(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("the layer is down")

    monkeypatch.setattr(connections, "register", layer_down)
    monkeypatch.setattr(refusals, "layer_outage", refusals.LayerOutage())
    async with refused(alice, headers=[GERMAN]) as socket:
        error = (await socket.receive())["error"]
        assert (error["code"], error["message"]) == (
            "unavailable",
            "Der Server kann gerade keine Verbindungen annehmen. "
            "Versuchen Sie es in einigen Sekunden erneut.",
        )
        assert await socket.close_code() == 4503


@override_settings(LANGUAGES=[("en", "English"), ("de", "German")], LANGUAGE_CODE="en")
async def test_a_socket_asking_for_an_unlisted_language_is_answered_in_language_code(alice: Any) -> None:
    async with connected(alice, headers=[(b"accept-language", b"fr")]) as socket:
        await socket.send("nowhere", {}, id=1)
        assert await error_of(socket, "nowhere", "unknown_channel", 1) == "No service on channel 'nowhere'."


async def test_a_revocation_reason_is_translated_at_each_socket_whatever_the_senders_language(
    alice: Any,
) -> None:
    async with connected(alice, headers=[GERMAN]) as german, connected(alice) as english:
        with translation.override("de"):  # a request of a German page, say: the reason travels in English
            await wsgateway.aclose_user_sockets(alice, reason=gettext_lazy(revocation.DEFAULT_REASON))
        assert await error_of(german, "gateway", "revoked") == (
            "Ihre Anmeldung wurde widerrufen; melden Sie sich erneut an."
        )
        assert await error_of(english, "gateway", "revoked") == "Your login was revoked; log in again."
        assert await german.close_code() == await english.close_code() == 4401


async def test_a_push_is_forwarded_as_encoded_whatever_the_sockets_language(alice: Any) -> None:
    async with connected(alice, headers=[GERMAN]) as german, connected(alice) as english:
        await anotify(alice, "Report ready", category="success")
        texts = [await socket.communicator.receive_from() for socket in (german, english)]
        assert texts[0] == texts[1]


@sync_to_async
def token_error(**headers: str) -> dict[str, Any]:
    middleware = [*settings.MIDDLEWARE]
    middleware.insert(middleware.index("django.middleware.common.CommonMiddleware"), LOCALE_MIDDLEWARE)
    with override_settings(MIDDLEWARE=middleware):
        response = Client().post("/wsgateway/token/", **headers)  # type: ignore[arg-type]
    assert response.status_code == 401
    return response.json()  # type: ignore[no-any-return]


LOCALE_MIDDLEWARE = "django.middleware.locale.LocaleMiddleware"


async def test_the_token_views_errors_are_in_the_requests_language() -> None:
    assert await token_error(HTTP_ACCEPT_LANGUAGE="de") == {
        "error": {"code": "unauthorized", "message": "Melden Sie sich an, um ein Token zu erhalten."}
    }
    assert await token_error() == {"error": {"code": "unauthorized", "message": "Log in to get a token."}}


# -- the catalogs ---------------------------------------------------------------------------


def po_entries(path: Path) -> dict[tuple[str | None, str], str | tuple[str, str]]:
    """(msgctxt, msgid) -> msgstr of a .po file, the header left out; a message with a plural form
    -> its two forms (German has two: ``nplurals=2``)."""
    entries: dict[tuple[str | None, str], str | tuple[str, str]] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            if line.startswith('"'):
                assert key is not None
                fields[key] += ast.literal_eval(line)
            else:
                key, _, value = line.partition(" ")
                fields[key] = ast.literal_eval(value)
        if fields.get("msgid_plural"):
            entries[fields.get("msgctxt"), fields["msgid"]] = (fields["msgstr[0]"], fields["msgstr[1]"])
        elif fields.get("msgid"):
            entries[fields.get("msgctxt"), fields["msgid"]] = fields["msgstr"]
    return entries


@pytest.mark.parametrize("language", ["de"])
def test_every_message_is_translated_and_the_compiled_catalog_is_up_to_date(language: str) -> None:
    messages = LOCALE / language / "LC_MESSAGES"
    entries = po_entries(messages / "django.po")
    assert len(entries) > 40
    with (messages / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    for (context, msgid), msgstr in entries.items():
        if isinstance(msgstr, tuple):  # one and many: the compiled catalog's plural forms
            assert all(msgstr), f"not translated: {msgid!r}"
            found: str | tuple[str, str] = (compiled.ngettext(msgid, "", 1), compiled.ngettext(msgid, "", 2))
        else:
            assert msgstr, f"not translated: {msgid!r}"
            found = compiled.pgettext(context, msgid) if context else compiled.gettext(msgid)
        assert found == msgstr, f"{msgid!r}: run `make messages` to compile the .po again"
        # The placeholders a message fills are the translation's too.
        for form in msgstr if isinstance(msgstr, tuple) else (msgstr,):
            assert sorted(re.findall(r"%\(\w+\)", msgid)) == sorted(re.findall(r"%\(\w+\)", form)), msgid


async def test_a_close_reason_longer_than_a_close_frame_holds_is_cut_to_fit() -> None:
    consumer = GatewayConsumer()
    sent: list[dict[str, Any]] = []

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)

    consumer.base_send = record
    await consumer.close(4000, "ü" * 100)  # two bytes each
    assert sent == [{"type": "websocket.close", "code": 4000, "reason": "ü" * 61}]
