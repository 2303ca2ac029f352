"""The hard ceilings of the settings: the bounds the ``WSGATEWAY`` table (wsgateway.conf) gives its keys,
and the limits beside them that code outside the table enforces with the same numbers.

Apart from the table so that ``conf.py`` is the keys; each bound says why it is where it is.
"""

from __future__ import annotations

from channels.layers import BaseChannelLayer

#: Most notifications one "list" page may hold, whatever the client asks for.
MAX_PAGE_SIZE = 100

#: Longest user id a group name leaves room for: a 64-bit integer primary key,
#: "-9223372036854775808" or "18446744073709551615", is 20 characters.
MAX_USER_ID_LENGTH = 20

#: Longest ``GROUP_PREFIX``: Channels refuses a group name of ``MAX_NAME_LENGTH``
#: (100) characters or more, and :func:`wsgateway.groups.user_group` appends
#: ``".user."`` and the user id. A site whose user model has a longer primary key
#: (a UUID is 36 characters) needs a prefix that much shorter. The one other group every
#: socket joins, :func:`wsgateway.groups.all_group` (``".all"`` appended), is shorter than any of these.
MAX_GROUP_PREFIX_LENGTH = BaseChannelLayer.MAX_NAME_LENGTH - 1 - len(".user.") - MAX_USER_ID_LENGTH


#: Longest ``GC_FREEZE_EVERY``: an hour; sockets opened since the last freeze are walked by every
#: full collection until the next.
MAX_GC_FREEZE_EVERY = 3600

#: Largest value of the rate-limit keys: a client may not be allowed to flood.
MAX_RATE = 10_000

#: Longest ``PRESENCE_GRACE``: ten minutes; past that a user who left long ago still looks online.
MAX_PRESENCE_GRACE = 600
#: Longest ``RATE_LIMIT_COOLDOWN``: ten minutes; a person who set off the limit by mistake waits no longer.
MAX_RATE_LIMIT_COOLDOWN = 600

#: Bounds of ``OUTBOUND_WINDOW``: below the least, a connect frame with a full clipboard would not
#: fit; over the most, a few thousand sockets that do not read would hold the server's memory.
MIN_OUTBOUND_WINDOW = 64 * 1024
MAX_OUTBOUND_WINDOW = 64 * 1024 * 1024
#: Longest ``ACK_TIMEOUT``: a socket that does not read holds its window and its turn this long.
MAX_ACK_TIMEOUT = 300
#: Largest ``MAX_CONNECTIONS_PER_USER``: far above one person's tabs and devices, and half the 2000
#: sockets one session was seen to open before there was a cap (issue 13).
MAX_CONNECTIONS_BOUND = 1000
#: Largest message daphne sends by default, in bytes: 1 MiB.
#:
#: What limits a send, read in daphne 4.2.3 and autobahn 26.10.2 and measured on a live daphne:
#: daphne gives autobahn one ``websocket_max_message_size`` (its ``--websocket-max-message-size``,
#: default 1048576) as ``maxMessagePayloadSize``, and autobahn's ``sendMessage`` applies that same
#: bound to what the server *sends* (after compression, which daphne does not enable): a frame of
#: 1048576 bytes arrives, one of 1048577 raises ``PayloadExceededError`` inside the application's
#: ``send``. The consumer dies of it, daphne closes the socket with 1011 and logs the traceback.
#: ``maxFramePayloadSize`` bounds only what the server receives. Raising daphne's option raises
#: both directions at once; 0 removes both.
DAPHNE_MAX_SEND = 1024 * 1024

#: Largest ``MAX_SEND_SIZE`` at all, whatever daphne allows: every push crosses the channel layer,
#: and Redis drops a pub/sub subscriber (every socket of a daphne) whose output buffer holds over
#: 8 MB for 60 s or 32 MB at once (``client-output-buffer-limit pubsub``). Measured by the red team:
#: a 32 MB push dropped every daphne's subscriber. A quarter of the soft limit leaves room for the
#: frames to other sockets queued behind it.
MAX_SEND_CEILING = 4 * 1024 * 1024

#: Largest ``MAX_PENDING_REQUESTS``: each entry is a few hundred bytes, but a page answers them one by one.
MAX_PENDING_BOUND = 1000
#: Largest ``MAX_REQUEST_TIMEOUT``: an hour; a request waits for a person at most, not for a process.
MAX_REQUEST_TIMEOUT_BOUND = 3600
#: Longest ``LAYER_CONNECT_TIMEOUT``: a connect past it waits on a layer that does not answer.
MAX_LAYER_CONNECT_TIMEOUT = 60
#: Largest ``RESYNC_RATE``: a process of issue 24's soak held 5,000 sockets, and this resyncs them all
#: within a second of a node's return: faster is no pacing at all (every push of the process waits
#: behind the resyncs' database reads and joins).
MAX_RESYNC_RATE = 5000
#: Largest ``MAX_PENDING_REPAIRS``: a user kept is a dict entry of about 100 bytes, so 100 MB a process.
MAX_PENDING_REPAIRS_BOUND = 1_000_000
#: Longest ``MAINTENANCE_CHECK_INTERVAL``: ``on`` and ``off`` take effect within it on every process.
MAX_MAINTENANCE_CHECK_INTERVAL = 60
#: Longest ``NOTIFICATIONS_SNOOZE_CHECK_INTERVAL``: a snoozed notification comes back within it.
MAX_SNOOZE_CHECK_INTERVAL = 300
#: Largest ``NOTIFICATIONS_PRUNE_BATCH``: the rows one DELETE may look at, by primary key range, so
#: that no statement holds its locks for long (measured in bench/README.md).
MAX_PRUNE_BATCH = 10_000
#: Longest age in days a pruning setting may give: about 27 years.
MAX_KEEP_DAYS = 10_000

#: Longest ``retry_after`` of a maintenance, in seconds (an hour): a client told to come back later than
#: that would sit offline after the site is back; the next refusal tells it again anyway.
MAX_RETRY_AFTER = 60 * 60
