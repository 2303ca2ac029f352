"""wsgateway's receivers of Django's own signals, connected in ``WsGatewayConfig.ready``.

The post_save receiver of notifications lives with the rest of their delivery,
in :mod:`wsgateway.notifications.delivery`.
"""

from __future__ import annotations

from typing import Any

from .bridge import run_async
from .groups import aclose_session_sockets


def user_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        run_async(aclose_session_sockets, user.pk, session_key)
