"""The "messages" channel: Django's messages, pushed by :class:`wsgateway.messages.LiveMessagesMiddleware`.

A socket serves it only to take those pushes, and takes no frames from its client. Its connect frame
is empty, ``{"messages": []}``: what waits in the storage is the next page's, or the next request's to
push. It is sent all the same, as every built-in service sends one: a client may count one connect
frame per service the hello lists (wsgateway's benchmark client and live tests do).
"""

from __future__ import annotations

from typing import Any

from .. import frames
from .base import Service


class MessagesService(Service):
    __slots__ = ()

    channel = frames.MESSAGES_CHANNEL

    async def on_connect(self, user: Any) -> Any:
        return frames.site_messages([])
