"""wsgateway's channel layers: the Channels layer contract, built for per-user fan-out.

``InProcessChannelLayer`` replaces Channels' InMemoryChannelLayer; the Redis layer
lives in ``wsgateway.layers.redis`` (it needs the ``redis`` extra).
"""

from .inprocess import InProcessChannelLayer

__all__ = ["InProcessChannelLayer"]
