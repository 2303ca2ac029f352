from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from wsgateway.consumers import GatewayConsumer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_connect_sends_gateway_frame_then_each_service_frame() -> None:
    user = await get_user_model().objects.acreate(username="ann")
    communicator = WebsocketCommunicator(GatewayConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = user
    communicator.scope["session"] = None
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {
        "channel": "gateway",
        "payload": {"user": {"id": user.pk, "username": "ann"}, "services": ["notifications", "clipboard"]},
    }
    assert await communicator.receive_json_from() == {
        "channel": "notifications", "payload": {"unread": 0, "category": None}
    }
    assert await communicator.receive_json_from() == {"channel": "clipboard", "payload": {"clipboard": []}}
    await communicator.disconnect()
