"""The channel layers the tests run against, by name: wsgateway's and the stock ones they replace."""

from __future__ import annotations

from typing import Any

from channels.layers import BaseChannelLayer, InMemoryChannelLayer

from wsgateway.layers import InProcessChannelLayer


def make_layer(kind: str, redis_url: str | None, **config: Any) -> BaseChannelLayer:
    if kind == "stock-inmemory":
        return InMemoryChannelLayer(**config)
    if kind == "inprocess":
        return InProcessChannelLayer(**config)
    assert redis_url is not None
    if kind == "stock-redis-core":
        from channels_redis.core import RedisChannelLayer

        return RedisChannelLayer(hosts=[redis_url], **config)
    if kind == "stock-redis-pubsub":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        return RedisPubSubChannelLayer(hosts=[redis_url], **config)
    from wsgateway.layers.redis import RedisChannelLayer

    # "redis-3": the URLs of three nodes, joined with commas (conftest's redis_for).
    return RedisChannelLayer(hosts=redis_url.split(","), **config)
