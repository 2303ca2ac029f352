"""The types of the channel-layer events wsgateway sends, named once.

A consumer handles an event with the method of the same name, "." read as "_" (``gateway.push``
is ``gateway_push``). Only the types a socket takes from the layer are dispatched from it (see
:attr:`wsgateway.runtime.TurnTakingConsumer.layer_events`); the others go to a requester's reply
channel or to a group no socket joins.
"""

from __future__ import annotations

#: A frame for the sockets of a group (wsgateway.groups builds it, encoded once).
PUSH = "gateway.push"
#: Close the matching sockets of a group: a login that ended, a logout, ``close_sockets()``
#: (wsgateway.revocation builds it).
REVOKE = "gateway.revoke"
#: "Re-check your login now": a change no signal reports (``QuerySet.update()``, raw SQL), told by
#: the site (wsgateway.revocation.recheck_user_sockets); each socket of the user reads it at once.
RECHECK = "gateway.recheck"
#: A request for a socket to pass on to its client (wsgateway.asking).
REQUEST = "gateway.request"
#: "Drop that request": another socket answered it, or its requester gave up.
REQUEST_CANCEL = "gateway.request.cancel"
#: A socket's answer, on a requester's reply channel; no socket takes it.
REPLY = "gateway.reply"
#: A health probe, sent to a group no socket joins (wsgateway.health).
PROBE = "gateway.probe"
#: "Catch up from the database": a push to the user failed somewhere, and the layer takes sends again
#: (wsgateway.repairs); each socket of the user does what it does after an overflow.
RESYNC = "gateway.resync"

#: Events that wait for nothing: wsgateway's layers keep them apart from a channel's queue, outside
#: its capacity and expiry, and hand them to the socket as they arrive (the ``urgent`` extension).
#: A revocation must reach a socket whose client stopped reading, however many pushes wait for it.
URGENT_EVENTS = frozenset({REVOKE})

#: What a socket takes from the layer; anything else is logged and dropped.
SOCKET_EVENTS = frozenset({PUSH, REVOKE, RECHECK, RESYNC, REQUEST, REQUEST_CANCEL})
