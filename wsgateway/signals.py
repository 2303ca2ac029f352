"""Signals wsgateway sends.

Each is sent from the consumer with ``asend_robust``, so receivers may be sync or async, and a
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

#: A user came online: their first socket was accepted, on any process, and they were not online
#: (wsgateway.presence). Sent once, by the process of that socket; a reconnect within
#: ``PRESENCE_GRACE`` of their last socket's end sends none.
#: Arguments: ``sender`` (the channel layer's class), ``user_id`` (the user's primary key, a string).
user_online = Signal()

#: A user went offline: no socket of theirs has been open, on any process, for ``PRESENCE_GRACE``
#: seconds (or their process died, and its sockets' registrations expired, the grace before).
#: Sent once, by one process (wsgateway.presence says which). Arguments as for ``user_online``.
user_offline = Signal()
