"""Signals wsgateway sends.

Both are sent from the consumer with ``asend``, so receivers may be sync or async.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A socket was authenticated and accepted.
#: Arguments: ``sender`` (the consumer class), ``user``, ``channel_name``, ``scope``.
client_connected = Signal()

#: An accepted socket closed, whichever side closed it.
#: Arguments: ``sender`` (the consumer class), ``user``, ``channel_name``, ``code``.
client_disconnected = Signal()
