"""What a site would add through settings: a service of its own, a faulty one, an API-key authenticator."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from django.contrib.auth import get_user_model

from wsgateway.auth import BaseAuthenticator, Identity, Scope, SessionAuthenticator, header
from wsgateway.exceptions import AuthenticationFailed
from wsgateway.services import ActionService, Service


class EchoService(ActionService):
    """A site's own service, configured in WSGATEWAY["SERVICES"]."""

    channel = "echo"

    async def on_connect(self, user: Any) -> Any:
        return {"hello": user.get_username()}

    async def action_echo(self, user: Any, data: Any) -> Any:
        return {"echo": data}

    async def action_shout(self, user: Any, data: Any) -> Any:
        await self.push_to_user(user, {"shout": data})
        return {"shouted": data}


class FaultyService(Service):
    """A service with a bug: every message raises an exception wsgateway does not know."""

    channel = "faulty"

    async def on_connect(self, user: Any) -> Any:
        return {}

    async def on_message(self, user: Any, payload: Any) -> Any:
        raise RuntimeError("a bug in a site's service")


class FaultyOnConnectService(Service):
    channel = "faulty_connect"

    async def on_connect(self, user: Any) -> Any:
        raise RuntimeError("a bug in on_connect")


class FaultySnapshotService(Service):
    channel = "faulty_snapshot"

    def snapshot(self, user: Any) -> Any:
        raise RuntimeError("a bug in snapshot")


class FaultyOnDisconnectService(Service):
    channel = "faulty_disconnect"

    async def on_connect(self, user: Any) -> Any:
        return {}

    async def on_disconnect(self, user: Any) -> None:
        raise RuntimeError("a bug in on_disconnect")


#: What ValuesService answers to each name: the values the protocol's one encoder has to write.
VALUES: dict[str, Any] = {
    "set": {"only"},
    "frozenset": frozenset({7}),
    "tuple": (1, "two", None),
    "datetime": datetime.datetime(2026, 11, 30, 20, 15, 1, 123456, tzinfo=datetime.UTC),
    "date": datetime.date(2026, 11, 30),
    "decimal": decimal.Decimal("10.50"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "nested": {"tags": {"a"}, "at": [datetime.date(2026, 1, 2)]},
    "nan": float("nan"),
    "infinity": float("inf"),
    "object": object(),
    "nested_nan": {"ratios": [0.5, float("nan")]},
}


class ValuesService(Service):
    """Answers a frame whose payload names one of VALUES with that value."""

    channel = "values"

    async def on_connect(self, user: Any) -> Any:
        return {}

    async def on_message(self, user: Any, payload: Any) -> Any:
        return VALUES[payload]


class NaNOnConnectService(Service):
    """A service with a bug: its connect frame holds a NaN, which has no JSON form."""

    channel = "nan_connect"

    async def on_connect(self, user: Any) -> Any:
        return {"ratio": float("nan")}


class NoChannelService(Service):
    """Misconfigured: no ``channel`` attribute."""


class GatewayChannelService(Service):
    """Misconfigured: takes the channel the gateway itself uses."""

    channel = "gateway"


#: API keys of the test site's API-key scheme, key -> username.
API_KEYS = {"key-of-carol": "carol"}


class ApiKeyAuthenticator(BaseAuthenticator):
    """``X-Api-Key: <key>``: the kind of scheme a site adds through WSGATEWAY["AUTHENTICATORS"]."""

    async def authenticate(self, scope: Scope) -> Identity | None:
        key = header(scope, b"x-api-key")
        if key is None:
            return None
        username = API_KEYS.get(key)
        if username is None:
            raise AuthenticationFailed("api_key_invalid", "Unknown API key.")
        user = await database_sync_to_async(get_user_model().objects.get)(username=username)
        return Identity(user)


class MySession(SessionAuthenticator):
    """A site's own session authenticator: cookies authenticate through it as through its base."""


def nobody_may_view(user: Any, obj: Any) -> bool:
    """A CLIPBOARD_PERMISSION that refuses everything."""
    return False


class SharedLayerStub(BaseChannelLayer):  # type: ignore[misc]
    """Stands in for a layer shared between processes (channels_redis), with no server behind it."""

    sent: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


class UnreachableLayerStub(BaseChannelLayer):  # type: ignore[misc]
    """A shared layer whose server is down."""

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("no route to the channel layer")


class InMemoryLayerSubclass(InMemoryChannelLayer):  # type: ignore[misc]
    """A site's tweak of the stock in-process layer: still process-local."""
