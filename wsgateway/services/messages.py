"""The "messages" channel: Django's messages, pushed by :class:`wsgateway.messages.LiveMessagesMiddleware`.

A socket serves it only to take those pushes: it has no connect frame (what waits in the storage is
shown by the next page, or pushed by the next request) and takes no frames from its client.
"""

from __future__ import annotations

from .. import frames
from .base import Service


class MessagesService(Service):
    channel = frames.MESSAGES_CHANNEL
