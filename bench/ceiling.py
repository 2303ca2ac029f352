"""The process-local ceiling: what a push costs with no channel layer on its path at all.

The consumer is wsgateway's own; it also registers itself in a dict of this process, and the
fan-out view sends to the registered consumers directly. Only daphne and the consumers remain.
"""

from __future__ import annotations

from typing import Any

from wsgateway.consumers import GatewayConsumer

#: user id -> the consumers of that user's sockets, in this process.
REGISTRY: dict[Any, set[GatewayConsumer]] = {}


class CeilingConsumer(GatewayConsumer):
    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await super().websocket_connect(message)
        if self.user is not None:  # authenticated and accepted
            REGISTRY.setdefault(self.user.pk, set()).add(self)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.user is not None:
            consumers = REGISTRY.get(self.user.pk)
            if consumers is not None:
                consumers.discard(self)
                if not consumers:
                    del REGISTRY[self.user.pk]
        await super().websocket_disconnect(message)
