"""wsgateway: real-time WebSocket services for Django on Channels.

Public API: :func:`notify`, :func:`anotify`, :func:`issue_token`, :func:`close_user_sockets`,
:func:`aclose_user_sockets`, :func:`recheck_user_sockets`, :func:`arecheck_user_sockets`, :func:`ask`,
:func:`aask`, :func:`broadcast`, :func:`abroadcast`, :func:`close_sockets`, :func:`aclose_sockets`,
:func:`local_sockets`, :func:`user_sockets`, :func:`auser_sockets`, :func:`is_online`,
:func:`ais_online`, :func:`online_users`, :func:`aonline_users`, :func:`online_since`,
:func:`aonline_since`, :func:`socket_count`, :func:`asocket_count`; the consumers live in
``wsgateway.consumers`` and the URL patterns in ``wsgateway.routing``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "aask",
    "abroadcast",
    "aclose_sockets",
    "aclose_user_sockets",
    "ais_online",
    "anotify",
    "aonline_since",
    "aonline_users",
    "arecheck_user_sockets",
    "ask",
    "asocket_count",
    "auser_sockets",
    "broadcast",
    "close_sockets",
    "close_user_sockets",
    "is_online",
    "issue_token",
    "local_sockets",
    "notify",
    "online_since",
    "online_users",
    "recheck_user_sockets",
    "socket_count",
    "user_sockets",
]

#: The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.2.0.dev0"


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package does not import models before apps are ready.
    if name in ("notify", "anotify"):
        from . import notifications as module

        return getattr(module, name)
    if name == "issue_token":
        from .tokens import issue_token

        return issue_token
    if name in ("close_user_sockets", "aclose_user_sockets", "recheck_user_sockets", "arecheck_user_sockets"):
        from . import revocation

        return getattr(revocation, name)
    if name in ("ask", "aask"):
        from . import asking

        return getattr(asking, name)
    if name in ("broadcast", "abroadcast", "close_sockets", "aclose_sockets"):
        from . import broadcasts

        return getattr(broadcasts, name)
    if name in ("local_sockets", "user_sockets", "auser_sockets"):
        from . import sockets

        return getattr(sockets, name)
    if name in (
        "is_online",
        "ais_online",
        "online_users",
        "aonline_users",
        "online_since",
        "aonline_since",
        "socket_count",
        "asocket_count",
    ):
        from . import presence

        return getattr(presence, name)
    raise AttributeError(f"module 'wsgateway' has no attribute {name!r}")
