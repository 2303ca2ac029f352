"""Handing one group message to many local members without holding back the messages behind it.

A broadcast (``abroadcast()``, ``close_sockets()``) is one group message with every socket of the
process as a member: 5,000 deliveries, each waking a consumer that writes a frame. Handed out in one
go, every one of those 5,000 frames is written before anything that reached the process after the
broadcast: in issue 24's soak, pushes behind a broadcast waited 6.5 s at p99 (0.6 s otherwise). So a
group with more than :data:`FAN_OUT_CHUNK` local members is handed out a chunk at a time by a task of
the loop, which yields between chunks: the consumers of a chunk write their frames, and a message
that arrived meanwhile (a user's push, a small group's) is delivered at once, in between.

What it changes: a message to a small group may reach a socket before a broadcast sent earlier, to a
large one (the broadcast has no ``seq``, and a broadcast is not stored: nothing orders them). The
messages of one large group keep their order, and so do those of any group that has one waiting
here: they wait behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

#: Members handed a group message in one turn of the event loop; more than that, a chunk a turn. What a
#: push arriving during a broadcast waits behind is one chunk's frames, not every socket's of the process;
#: a smaller chunk costs the broadcast more turns of the loop (tests/test_fan_out measures both).
FAN_OUT_CHUNK = 256
#: Messages waiting to be handed out at most (each holds its list of members: 40 KB at 5,000). Past it the
#: oldest is handed to all of its remaining members at once, as before chunking: what broadcasts sent
#: faster than a process writes them cost stays bounded, and only their interleaving with pushes is lost.
MAX_PENDING = 32

Deliver = Callable[[str, dict[str, Any], float], None]
IsMember = Callable[[str, str], bool]


class Handout:
    """One group message being handed out: to whom, and how far it got."""

    __slots__ = ("group", "members", "message", "next")

    def __init__(self, group: str, message: dict[str, Any], members: list[str], start: int) -> None:
        self.group = group
        self.message = message
        self.members = members
        self.next = start


class ChunkedFanOut:
    """The group messages of one loop's inboxes still being handed out, oldest first, and the task that
    hands them out (:data:`FAN_OUT_CHUNK` members a turn). ``deliver(channel, message, now)`` queues
    one copy; ``is_member(group, channel)``: a member that left since the message came gets nothing.
    """

    __slots__ = ("chunk", "clock", "deliver", "home", "is_member", "pending", "task")

    def __init__(
        self, deliver: Deliver, is_member: IsMember, clock: Callable[[], float], chunk: int | None = None
    ) -> None:
        self.deliver = deliver
        self.is_member = is_member
        self.clock = clock
        #: None: :data:`FAN_OUT_CHUNK` as it is when the message comes (a test may change it).
        self.chunk = chunk
        self.pending: deque[Handout] = deque()
        self.task: asyncio.Task[None] | None = None
        #: The loop the members receive in (the last that added one): only a task of that loop hands
        #: out the rest of a message. Any other caller (a thread's short-lived loop, whose tasks would
        #: die with it) hands out all of it at once, as before.
        self.home: asyncio.AbstractEventLoop | None = None

    def fan_out(self, group: str, message: dict[str, Any], members: list[str], now: float) -> None:
        """Hand ``message`` to ``members`` (``group``'s): at once up to a chunk, the rest in later turns."""
        chunk = self.chunk or FAN_OUT_CHUNK
        waiting = bool(self.pending) and any(handout.group == group for handout in self.pending)
        if not waiting:
            for channel in members[:chunk]:
                self.deliver(channel, message, now)
            if len(members) <= chunk:
                return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync caller outside any loop (the in-process layer's, paused): all now
            loop = None
        if loop is None or loop is not self.home:
            for channel in members[0 if waiting else chunk :]:
                self.deliver(channel, message, now)
            return
        self.pending.append(Handout(group, message, members, 0 if waiting else chunk))
        while len(self.pending) > MAX_PENDING:
            oldest = self.pending[0]
            self.step(len(oldest.members) - oldest.next)
        if self.task is None or self.task.get_loop() is not loop:  # none, or one of a former home
            self.task = loop.create_task(self.run(), name="wsgateway-fan-out")

    async def run(self) -> None:
        me = asyncio.current_task()
        try:
            while self.pending and self.task is me:
                # First: the consumers of the chunk just handed out write their frames, and what reached
                # the process meanwhile is delivered, before the next chunk.
                await asyncio.sleep(0)
                if self.pending and self.task is me:
                    self.step(self.chunk or FAN_OUT_CHUNK)
        finally:
            if self.task is me:
                self.task = None

    def joined(self) -> None:
        """A member was added, from the running loop if any: the loop the members receive in."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop is not self.home:
            self.home = loop

    def step(self, chunk: int) -> None:
        """Hand the oldest pending message to its next ``chunk`` members."""
        handout = self.pending[0]
        end = min(handout.next + chunk, len(handout.members))
        now = self.clock()
        group, message, is_member = handout.group, handout.message, self.is_member
        for channel in handout.members[handout.next : end]:
            if is_member(group, channel):
                self.deliver(channel, message, now)
        handout.next = end
        if end >= len(handout.members):
            self.pending.popleft()

    def flush(self) -> None:
        """Forget what is still to be handed out (the layer's flush)."""
        self.pending.clear()
        if self.task is not None:
            self.task.cancel()
            self.task = None
