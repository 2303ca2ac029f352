"""Signals wsgateway sends.

Both are sent from the consumer with ``asend_robust``, so receivers may be sync or async, and a
receiver that raises does not stop the others: Django logs its exception, with the traceback, on
the ``django.dispatch`` logger, and the socket carries on (``client_connected``) or its cleanup
does (``client_disconnected``).
"""

from __future__ import annotations

from django.dispatch import Signal

#: A socket was authenticated and accepted, and its connect frames were sent.
#: Arguments: ``sender`` (the consumer class), ``user``, ``channel_name``, ``scope``.
client_connected = Signal()

#: An accepted socket ended, once per socket, however it ended: either side closed it, the
#: connection broke, or the consumer stopped on an exception or was cancelled (then ``code``
#: is ``None``). Sent after each service's ``on_disconnect`` and after the socket left its
#: user's group.
#: Arguments: ``sender`` (the consumer class), ``user``, ``channel_name``, ``code``.
client_disconnected = Signal()
