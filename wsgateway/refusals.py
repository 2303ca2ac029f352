"""What every wsgateway endpoint does with a handshake before any other work, and the one way it
refuses a socket: the origin check, the subprotocol, then accept, say why on the gateway channel,
and close with a code that tells the client what to do (wsgateway.codes).

:class:`RefusingConsumer` is that and nothing else, for a retired path.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy, pgettext_lazy

from . import frames, i18n, maintenance, metrics
from .codes import CloseCode, ErrorCode
from .origin import origin_allowed
from .transport import send_close

logger = logging.getLogger("wsgateway")

GONE_MESSAGE = gettext_lazy("This address is no longer served.")
#: Close reasons: a close frame holds at most 123 bytes of reason, so a translation stays short.
GONE_REASON = pgettext_lazy("close reason, at most 123 bytes", "Gone: do not reconnect.")
MAINTENANCE_REASON = pgettext_lazy("close reason, at most 123 bytes", "Maintenance: come back later.")


class Handshake:
    """The handshake's checks and the refusal, for a Channels WebSocket consumer.

    Every accept selects the subprotocol the client was granted, a refusal's too: a browser that
    offered the subprotocol fails a connection whose answer selects none, before it could read why
    it was refused. Every error frame and close reason is written in the socket's language.
    """

    scope: dict[str, Any]
    base_send: Any
    #: The subprotocol selected for this socket: :data:`frames.SUBPROTOCOL`, or None for a client
    #: that offered none.
    subprotocol: str | None = None
    #: The language of the words this socket sends, chosen from its handshake (see wsgateway.i18n);
    #: None until then, which sends the untranslated (English) text.
    language: str | None = None

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol or self.subprotocol, headers)  # type: ignore[misc]

    if TYPE_CHECKING:  # Channels' WebSocket consumer's

        async def send(self, text_data: str | None = None) -> None: ...

    async def close(self, code: int | bool | None = None, reason: str | Promise | None = None) -> None:
        """Close, with a reason cut to the 123 bytes a close frame holds, in the socket's language;
        or, before accept, refuse the handshake (HTTP 403 under daphne)."""
        if code is None or code is True:
            await self.base_send({"type": "websocket.close"})
            return
        with self.speaking():
            await send_close(self.base_send, code, reason)

    def speaking(self) -> translation.override:
        """This socket's language, for code that may run in a task the socket did not start (the
        watchdog's resync): every error frame and close reason is written in it."""
        return translation.override(self.language)

    def error_text(
        self,
        channel: str | None,
        code: str,
        message: str | Promise,
        frame_id: frames.FrameId | None = None,
        *,
        details: dict[str, Any] | None = None,
    ) -> str:
        """An error frame, a lazy ``message`` (``gettext_lazy``) rendered in the socket's language."""
        with self.speaking():
            return frames.error(channel, code, message, frame_id, details=details)

    async def handshake_allowed(self) -> bool:
        """Whether to go on with this handshake; if not, it is closed before accept (HTTP 403)."""
        if not origin_allowed(self.scope):
            await self.close()
            return False
        offered = self.scope.get("subprotocols") or []
        try:
            self.subprotocol = frames.subprotocol(offered)
        except frames.UnsupportedSubprotocol:
            # A client that asked for another protocol (a later version, say) is not served this
            # one silently; a browser would fail the connection anyway (see frames.subprotocol).
            metrics.increment(metrics.CONNECTIONS_SUBPROTOCOL_REFUSED)
            logger.info(
                "wsgateway: refused a handshake offering the subprotocols %r, not %r",
                [str(name)[:40] for name in offered[:8]],
                frames.SUBPROTOCOL,
            )
            await self.close()
            return False
        return True

    async def refuse(
        self,
        code: str,
        message: str | Promise,
        close_code: int = CloseCode.UNAUTHORIZED,
        *,
        details: dict[str, Any] | None = None,
        reason: str | Promise | None = None,
    ) -> None:
        """Accept, say why, and close: by default with 4401, "log in first", not "network down".

        ``details``: the error frame's other fields (a maintenance's ``retry_after``); ``reason``:
        the close frame's. The error frame carries the reason for every server: daphne drops the
        close frame's (see "Close codes" in docs/protocol.md).
        """
        text = self.error_text(frames.GATEWAY_CHANNEL, code, message, details=details)
        await self.accept()
        await self.send(text_data=text)
        await self.close(close_code, reason)

    async def refuse_over_cap(self, user_id: Any, limit: int) -> None:
        """Close with 4409: the user has ``limit`` sockets open already (wsgateway.connections)."""
        metrics.increment(metrics.CONNECTIONS_REFUSED)
        logger.warning(
            "wsgateway: refused a socket of user %r with 4409: %d open already (MAX_CONNECTIONS_PER_USER)",
            user_id,
            limit,
        )
        message = gettext(
            "Too many connections: at most %(limit)d per user. Close another tab or device, or retry later."
        )
        await self.refuse(
            ErrorCode.TOO_MANY_CONNECTIONS, message % {"limit": limit}, CloseCode.TOO_MANY_CONNECTIONS
        )

    async def refuse_maintenance(self, state: maintenance.State) -> None:
        """Accept, say why and when to come back, and close with 4503 (see wsgateway.maintenance)."""
        maintenance.refused(state)
        with self.speaking():
            # The operator's words, translated if the catalogs know them (as a revocation's reason).
            message = gettext(state.reason) if state.reason else str(maintenance.DEFAULT_MESSAGE)
        await self.refuse(
            ErrorCode.MAINTENANCE,
            message,
            CloseCode.SERVICE_UNAVAILABLE,
            details={"retry_after": state.retry_after},
            reason=MAINTENANCE_REASON,
        )


class RefusingConsumer(Handshake, AsyncWebsocketConsumer):  # type: ignore[misc]
    """For a retired path: accepts, says why, and closes with a code that tells the client not to
    reconnect, as the reference's ``RejectWebSocketHandler``. No authentication, no channel layer,
    no database::

        path("ws/old/", RefusingConsumer.as_asgi(reason=_("Use /ws/ instead."))),

    ``as_asgi`` takes ``reason`` (what the client reads, a lazy translation or text), ``code`` (the
    close code: :attr:`CloseCode.GONE` by default) and ``error`` (the error frame's code).
    """

    reason: str | Promise = GONE_MESSAGE
    code: int = CloseCode.GONE
    error: str = ErrorCode.GONE
    #: No channel layer: nothing reaches this socket but its own refusal.
    channel_layer_alias = None

    def __init__(self, **initkwargs: Any) -> None:
        super().__init__()
        for name, value in initkwargs.items():
            setattr(self, name, value)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        # As Django's View.as_view: a misspelt argument fails where the route is written, not on a connect.
        for name in initkwargs:
            if name not in ("reason", "code", "error"):
                raise TypeError(f"{cls.__name__}.as_asgi() takes reason, code and error, not {name!r}")
        if "code" in initkwargs and not 4000 <= int(initkwargs["code"]) <= 4999:
            raise ValueError(f"A refusal's close code is one of 4000 to 4999, not {initkwargs['code']!r}")
        return super().as_asgi(**initkwargs)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        if not await self.handshake_allowed():
            return
        self.language = i18n.language_of(self.scope)
        metrics.increment(metrics.CONNECTIONS_GONE)
        await self.refuse(
            self.error, self.reason, self.code, reason=GONE_REASON if self.code == CloseCode.GONE else None
        )
