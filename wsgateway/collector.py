"""The cyclic garbage collector in a process that holds thousands of sockets.

A full collection walks every object the collector tracks, and stalls the whole process (every
socket of it) while it does. What a server process holds is mostly what start-up loaded (Django,
the apps, about 100,000 objects, alive as long as the process) and the sockets' own objects. The
first need never be walked again: :func:`freeze_start_up` takes them out of the collector's sight
once, at the process's first socket (``WSGATEWAY["GC_FREEZE"]``; see "Garbage collection" in
docs/deployment.md for what it measured). The second is kept small by the per-socket parts
(``bench/memory.py`` counts them; ``tests/test_socket_cost.py`` bounds them), and frozen too once they
have lived an interval (``GC_FREEZE_EVERY``, every 30 seconds by default): :func:`refreeze`. What is
frozen and later left as a reference cycle is not collected until the next thaw (hourly, or sooner
after as many closes as sockets open: :func:`thaw_due`). A closed socket of
wsgateway's leaves none, and no inbox either (tests/test_live_collector.py); the server's may: under
uvicorn's default protocol, websockets' ``ServerProtocol`` and its parser, a generator that holds it and
is left suspended at the close, about 21 tracked objects and 5 KiB a socket. gc.collect() does not count
such a cycle (freed by finalizing the generator), but frees it; later sockets reuse its memory.

The thresholds (``gc.set_threshold``) are left as the site set them, but for one: while the refreeze
timer runs, CPython's own full collections are held off (:func:`hold_off_full`). The timer runs one
every interval over what is not frozen, so theirs would be redundant, and under a burst of connects
they were the largest single cost of a connect (bench/README.md, "Full collections out of the way").
A burst brings the timer's collection forward instead, as often as it makes :data:`EARLY_AFTER` objects
that last (:func:`_bring_forward`): each collection then walks a bounded number, not the whole burst.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from . import metrics
from .conf import gateway_settings

logger = logging.getLogger("wsgateway")

#: Whether this process's first socket came (then the freeze was done, or not wanted).
_started = False
#: perf_counter() at the start of the full collection under way.
_full_since = 0.0
#: Seconds between two refreezes that first unfreeze everything (see :func:`refreeze`). The one pause of
#: the timer's as long as a full collection (388 to 466 ms at 5,000 uvicorn sockets, a shared machine),
#: against what closed sockets leave frozen meanwhile (5 KiB each under uvicorn): an hour of closes.
THAW_EVERY = 3600.0
#: time.monotonic() of the last refreeze that thawed first (or of the first socket).
_thawed_at = 0.0
#: The timer's next refreeze thaws sooner than :data:`THAW_EVERY` once this many sockets closed since the
#: last thaw, or as many as are open if that is more: what closed sockets leave frozen (5 KiB each under
#: uvicorn, about a fifth of an open one) then stays under a fifth of what the open sockets hold, plus
#: 5 MB; and each thaw's walk (as long as the open sockets) is paid for by as many closes, at most one
#: a tick. Without it the hour was the only bound: 36 MB an hour at two closes a second, ten times that
#: at twenty.
THAW_AFTER_CLOSES = 1000
#: Sockets of this process that came (:func:`start`) and have not ended (:func:`ended`).
_open = 0
#: Sockets that ended since the last thaw.
_closed_since_thaw = 0
#: The oldest generation's threshold while the refreeze timer runs: CPython starts a full collection
#: only after this many collections of the middle one (each of them after 700 x 10 allocations by
#: default), which is never in practice. Not 0: for the oldest generation, 0 would mean at every one.
HELD_OFF = 1_000_000_000
#: The thresholds :func:`hold_off_full` replaced, to put back; None while none are held off.
_held_from: tuple[int, int, int] | None = None
#: Objects a burst may add to the oldest generation before a refreeze is brought forward (see
#: :func:`_bring_forward`): 10 to 18 ms of collection each, measured during 5,000 uvicorn connects.
EARLY_AFTER = 50_000
#: The loop the refreeze timer runs on; an early refreeze is scheduled there.
_loop: asyncio.AbstractEventLoop | None = None
#: Whether an early refreeze is scheduled and has not run yet.
_early = False


def start() -> None:
    """At each socket: at the process's first, :func:`freeze_start_up`, :func:`time_pauses`, and the
    timer of :func:`refreeze` if ``GC_FREEZE_EVERY`` asks for it. Counted, until :func:`ended`."""
    global _open
    _open += 1
    if not _started:
        time_pauses()
        freeze_start_up()
        schedule_refreeze()


def ended() -> None:
    """At each socket's end, however it ended (refused too): counted towards the next thaw."""
    global _open, _closed_since_thaw
    _open = max(0, _open - 1)
    _closed_since_thaw += 1


def thaw_due(now: float) -> bool:
    """Whether the timer's next refreeze thaws first: an hour since the last thaw, or as many closes
    since as :data:`THAW_AFTER_CLOSES` (or the sockets open, if more)."""
    return now - _thawed_at >= THAW_EVERY or _closed_since_thaw >= max(THAW_AFTER_CLOSES, _open)


def schedule_refreeze() -> asyncio.TimerHandle | None:
    """One timer per process (not per socket), on the running loop, every ``GC_FREEZE_EVERY`` seconds."""
    global _thawed_at
    every = gateway_settings.GC_FREEZE_EVERY
    if every is None:
        restore_thresholds()  # the setting went: so do the timer and what it stood in for
        return None
    if not _thawed_at:
        _thawed_at = time.monotonic()
    hold_off_full()
    global _loop
    _loop = asyncio.get_running_loop()
    return _loop.call_later(every, _refreeze_and_again)


def hold_off_full() -> None:
    """While the refreeze timer runs, no automatic full collection: the oldest generation's threshold
    goes to :data:`HELD_OFF`, the two younger ones are kept as the site set them.

    The timer's own collection walks, once an interval, everything that is not frozen, which is all a
    full collection of CPython's would walk; CPython's would come on top of it, as often as what
    survived grew by a quarter, which under a burst of connects at thousands of sockets held is about
    one every 400 connects. What it costs: a reference cycle that a young collection does not free
    (one that outlived two of them) now waits for the timer's collection, at most one interval, and
    one frozen meanwhile for the hourly thaw, as before (:func:`refreeze`).
    """
    global _held_from
    if _held_from is not None:
        return
    _held_from = gc.get_threshold()
    gc.set_threshold(_held_from[0], _held_from[1], HELD_OFF)


def restore_thresholds() -> None:
    """Put back the thresholds :func:`hold_off_full` replaced, if it did."""
    global _held_from
    if _held_from is None:
        return
    gc.set_threshold(*_held_from)
    _held_from = None


def _refreeze_and_again() -> None:
    global _thawed_at, _closed_since_thaw
    thaw = thaw_due(time.monotonic())
    if thaw:
        _thawed_at, _closed_since_thaw = time.monotonic(), 0
    refreeze(thaw=thaw)
    schedule_refreeze()


def refreeze(*, thaw: bool = False) -> int:
    """Collect what is not frozen yet, then freeze what is left: the objects that lived since the last
    freeze, mostly the sockets opened meanwhile. Returns how many were frozen now.

    The collection walks only what is not frozen, so it is as long as the objects made since the last
    freeze, not as long as the sockets held; CPython runs none of its own between two while the timer
    runs (:func:`hold_off_full`).

    ``thaw``: unfreeze everything first, so that this one collection walks it all (as long as a full
    collection without any freeze) and frees the reference cycles closed sockets left among the frozen
    objects: uvicorn leaves about 21 tracked objects a closed socket, daphne 51 (bench/server_memory.py),
    which would otherwise stay for the process's life. The timer does so once every :data:`THAW_EVERY`
    seconds, or sooner after many closes (:func:`thaw_due`).
    """
    start = time.perf_counter()
    if thaw:
        gc.unfreeze()
    gc.collect()
    # Counted among what is not frozen yet (the objects made since the last freeze), not with
    # gc.get_freeze_count(), which walks every frozen object, the sockets held with them.
    frozen = len(gc.get_objects())
    gc.freeze()
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "wsgateway: froze %d more objects (%d in all, %.0f ms)",
            frozen,
            gc.get_freeze_count(),
            1000 * (time.perf_counter() - start),
        )
    return frozen


def time_pauses() -> None:
    """Time every full collection from now on, into ``wsgateway_gc_pause_seconds``. The callback runs
    at every collection (two calls, a dict lookup each) and times only those of the oldest generation,
    the ones that walk everything: a young collection is the ordinary cost of allocating. After one of
    the middle generation it also looks whether a burst brings the refreeze forward
    (:func:`_bring_forward`)."""
    if _time_full not in gc.callbacks:
        gc.callbacks.append(_time_full)


def _time_full(phase: str, info: dict[str, Any]) -> None:
    global _full_since
    if info["generation"] == 1 and phase == "stop" and _held_from is not None:
        _bring_forward(_held_from)
    if info["generation"] != 2:
        return
    if phase == "start":
        _full_since = time.perf_counter()
    else:
        metrics.gc_paused(time.perf_counter() - _full_since)


def _bring_forward(held_from: tuple[int, int, int]) -> None:
    """After a collection of the middle generation, while full collections are held off: refreeze soon,
    on the timer's loop, once the oldest generation may have grown by :data:`EARLY_AFTER` objects.

    A burst of connects made all its sockets' objects between two ticks of the timer, and its next
    collection walked them all at once (383 to 681 ms after 5,000 uvicorn connects): brought forward
    so, a burst is collected and frozen a few tens of thousands of objects at a time. Each collection of
    the middle generation moves at most what ``t0 x t1`` allocations left alive into the oldest, and
    ``gc.get_count()[2]`` counts them since the last full collection (the refreeze's). Not from here:
    a collection cannot start inside a collector's callback. If the timer's loop is gone (a test's, a
    thread's), nothing stands in for CPython's full collections any more: the thresholds go back.
    """
    global _early, _loop
    if _loop is None:
        return
    if _loop.is_closed():  # an early refreeze scheduled there, if any, will not run either
        _loop, _early = None, False
        restore_thresholds()
        return
    if _early or gc.get_count()[2] * held_from[0] * held_from[1] < EARLY_AFTER:
        return
    _early = True
    _loop.call_soon_threadsafe(_refreeze_early)


def _refreeze_early() -> None:
    global _early
    _early = False
    refreeze()


def freeze_start_up() -> bool:
    """At this process's first socket, once: collect, then freeze whatever is left (start-up's
    objects), when ``GC_FREEZE`` is on. True when it froze now.

    Collected first, so that no garbage is frozen: what is frozen is what is alive, and stays
    alive as long as the process, except the first socket's own objects (about 10 KB, made before
    its connect), which the collector then never frees. A frozen object that loses its last
    reference is still freed at once; only a reference cycle among frozen objects outlives it.
    """
    global _started
    if _started:
        return False
    _started = True
    if not gateway_settings.GC_FREEZE:
        return False
    start = time.perf_counter()
    gc.collect()
    gc.freeze()
    # Debug, as the refreeze's: once a process, routine; the pause it cost is in wsgateway_gc_pause_seconds.
    logger.debug(
        "wsgateway: froze %d objects loaded at start-up out of the cyclic collector's sight (%.0f ms)",
        gc.get_freeze_count(),
        1000 * (time.perf_counter() - start),
    )
    return True


def reset() -> None:
    """Forget that the first socket came (a test that freezes again), and put back the thresholds held
    off for the timer; does not unfreeze."""
    global _started, _loop, _early
    _started, _loop, _early = False, None, False
    restore_thresholds()
