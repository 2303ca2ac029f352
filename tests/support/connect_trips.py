"""Count what one authenticated connect costs, step by step: the database queries, the Redis round
trips, and the time of each step of ``GatewayConsumer.websocket_connect``.

:class:`ConnectTrips` wraps the connect's steps (each a function the consumer calls) for as long as it
is entered, and counts, for the step running at the time:

- a database query: every ``CursorWrapper`` execution, in any thread (the step is a context variable,
  which Channels' database thread copies with the call);
- a Redis round trip: a command of redis-py's asyncio client, a pipeline (one trip for all its
  commands) and a pub/sub command (a ``SUBSCRIBE``). A script's first call on a connection is two
  (``EVALSHA``, refused ``NOSCRIPT``, then ``EVAL``): a connect measured after a warm-up one counts one.

What runs outside the named steps is counted under "other"; what runs in another socket's tasks is not
counted at all. Counts do not depend on the machine's
load; the microseconds do, and are for orientation only. ``scripts/connect_trips.py`` prints the table
for a session connect and a token connect on the in-process layer and on a real Redis;
``tests/test_connect_trips.py`` asserts the counts.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.db.backends.utils import CursorWrapper
from redis.asyncio.client import Pipeline, PubSub, Redis

from tests.support.communicators import bearer, cookie, create_user
from wsgateway import consumers, maintenance, presence
from wsgateway.sessions import session_store
from wsgateway.tokens import issue_token

_step: contextvars.ContextVar[str] = contextvars.ContextVar("connect_step", default="other")
#: Set by the consumer's ``websocket_connect`` while :meth:`ConnectTrips.counted`: only what runs in its
#: context (its awaits, the database thread's calls, the tasks it starts) is counted, not another
#: socket's timers and tasks. (asgiref's communicator runs each application in a context of its own.)
_counted: contextvars.ContextVar[bool] = contextvars.ContextVar("connect_counted", default=False)


@dataclass
class Step:
    queries: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    seconds: float = 0.0
    calls: int = 0


#: The connect's steps, in the order the consumer runs them: (name, what it covers).
STEPS = (
    ("maintenance", "the maintenance flag (maintenance.in_effect)"),
    ("authenticate", "the authenticators (session: the session and its user)"),
    ("place", "the cap, the cool-down and the joins (take_place)"),
    ("reads", "the database thread: the token's user, the credentials, the snapshots"),
    ("accept", "the accept"),
    ("presence", "presence.arrive"),
    ("frames", "the services' connect frames (send_service_snapshots)"),
    ("signal", "client_connected's receivers"),
    ("other", "the rest of websocket_connect"),
)


class ConnectTrips:
    """While entered, count the queries, Redis round trips and time of each connect step."""

    def __init__(self) -> None:
        self.steps: dict[str, Step] = {name: Step() for name, _ in STEPS}
        self.counting = False
        #: Each step's seconds in every :meth:`counted` block so far, for a median (clear it to start
        #: another series): one connect's time, on a shared machine, is mostly its wait for a core.
        self.history: dict[str, list[float]] = {}

    def reset(self) -> None:
        self.steps = {name: Step() for name, _ in STEPS}

    @property
    def queries(self) -> int:
        return sum(len(step.queries) for step in self.steps.values())

    @property
    def round_trips(self) -> int:
        return sum(len(step.commands) for step in self.steps.values())

    def table(self, title: str) -> list[str]:
        """The steps of the last connect counted as a markdown table: step, queries, Redis round trips,
        and µs: the median of :attr:`history`."""
        runs = max((len(times) for times in self.history.values()), default=0)
        lines = [
            f"{title}: {self.queries} queries, {self.round_trips} Redis round trips",
            "",
            f"| step | queries | Redis round trips | µs (median of {runs}) |",
            "|------|---------|-------------------|----|",
        ]
        for name, _ in STEPS:
            step = self.steps[name]
            commands = f" ({', '.join(step.commands)})" if step.commands else ""
            times = self.history.get(name)
            micros = f"{statistics.median(times) * 1e6:,.0f}" if times else "-"
            lines.append(f"| {name} | {len(step.queries)} | {len(step.commands)}{commands} | {micros} |")
        return lines

    def _query(self, sql: str) -> None:
        if self.counting and _counted.get():
            self.steps[_step.get()].queries.append(" ".join(str(sql).split())[:80])

    def _command(self, name: str) -> None:
        if self.counting and _counted.get():
            self.steps[_step.get()].commands.append(name)

    def _wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        trips = self

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                token = _step.set(name)
                start = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    trips._took(name, time.perf_counter() - start)
                    _step.reset(token)

            return timed_async

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            token = _step.set(name)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                trips._took(name, time.perf_counter() - start)
                _step.reset(token)

        return timed

    def _took(self, name: str, seconds: float) -> None:
        if self.counting:
            self.steps[name].seconds += seconds
            self.steps[name].calls += 1

    @contextmanager
    def counted(self) -> Iterator[ConnectTrips]:
        """Count from here to the block's end (the patches stay as they are)."""
        self.reset()
        self.counting = True
        try:
            yield self
        finally:
            self.counting = False
            for name, step in self.steps.items():
                if step.calls:
                    self.history.setdefault(name, []).append(step.seconds)

    @contextmanager
    def installed(self) -> Iterator[ConnectTrips]:
        trips = self
        consumer = consumers.GatewayConsumer
        with ExitStack() as stack:

            def patch(target: Any, attribute: str, name: str) -> None:
                stack.enter_context(
                    mock.patch.object(target, attribute, self._wrap(name, getattr(target, attribute)))
                )

            original_connect = consumer.websocket_connect

            async def websocket_connect(socket: Any, message: Any) -> None:
                token = _counted.set(trips.counting)
                try:
                    await original_connect(socket, message)
                finally:
                    _counted.reset(token)

            stack.enter_context(mock.patch.object(consumer, "websocket_connect", websocket_connect))
            patch(maintenance, "in_effect", "maintenance")
            patch(consumers, "authenticate", "authenticate")
            patch(consumer, "take_place", "place")
            # Where the connect asks (each connect's reads run in its own context, in a trip it may
            # share: wsgateway.connect_reads).
            patch(consumers, "read_together", "reads")
            patch(consumer, "accept", "accept")
            patch(presence, "arrive", "presence")
            patch(consumer, "send_service_snapshots", "frames")
            patch(consumers.client_connected, "asend_robust", "signal")

            original_execute = CursorWrapper._execute_with_wrappers

            def execute(cursor: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
                trips._query(sql)
                return original_execute(cursor, sql, *args, **kwargs)

            stack.enter_context(mock.patch.object(CursorWrapper, "_execute_with_wrappers", execute))

            original_command = Redis.execute_command

            async def command(client: Any, *args: Any, **options: Any) -> Any:
                trips._command(str(args[0]))
                return await original_command(client, *args, **options)

            stack.enter_context(mock.patch.object(Redis, "execute_command", command))

            original_pipeline = Pipeline.execute

            async def pipeline(pipe: Any, *args: Any, **kwargs: Any) -> Any:
                trips._command(f"pipeline of {len(pipe.command_stack)}")
                return await original_pipeline(pipe, *args, **kwargs)

            stack.enter_context(mock.patch.object(Pipeline, "execute", pipeline))

            original_pubsub = PubSub.execute_command

            async def pubsub(sub: Any, *args: Any) -> Any:
                trips._command(str(args[0]))
                return await original_pubsub(sub, *args)

            stack.enter_context(mock.patch.object(PubSub, "execute_command", pubsub))
            yield self


def session_of(user: Any) -> str:
    """A logged-in session of ``user``, as django.contrib.auth.login leaves it; its key."""
    store = session_store(None)  # type: ignore[arg-type]
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return str(store.session_key)


async def credentials(kind: str, name: str) -> list[tuple[bytes, bytes]]:
    """The headers of a new user ``name``'s connect: a session cookie (``kind`` "session") or a token."""
    user = await create_user(name)
    if kind == "session":
        return [cookie(**{settings.SESSION_COOKIE_NAME: await database_sync_to_async(session_of)(user)})]
    return [bearer(issue_token(user))]


#: The backends the sessions below may name: ``ModelBackend``, and one that gets users its own way.
SESSION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django.contrib.auth.backends.RemoteUserBackend",
]
#: A SECRET_KEY a session's hash was made with before the current one (``SECRET_KEY_FALLBACKS``).
OLDER_SECRET = "an older secret key, long enough to be one, and a bit longer than that"
#: What can become of a session or its user between the login and a connect.
SESSION_CHANGES = ["none", "inactive", "password", "deleted", "other backend", "no hash", "fallback secret"]
SESSION_CHANGES += ["expired"]


def changed_sessions(change: str, name: str) -> tuple[Any, list[str]]:
    """A user ``name`` and two sessions of it (one for wsgateway's read, one for Django's ``get_user``,
    which may cycle or flush its own), after ``change`` (one of :data:`SESSION_CHANGES`). Sync: the
    database. Read them with ``AUTHENTICATION_BACKENDS=SESSION_BACKENDS``, and for "fallback secret"
    with ``SECRET_KEY_FALLBACKS=[OLDER_SECRET]``."""
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    user = get_user_model().objects.create_user(name, password="x")
    if change == "fallback secret":
        with override_settings(SECRET_KEY=OLDER_SECRET):
            keys = [session_of(user), session_of(user)]
    else:
        keys = [session_of(user), session_of(user)]
    for key in keys:
        store = session_store(key)
        if change in ("other backend", "no hash"):
            store[BACKEND_SESSION_KEY if change == "other backend" else HASH_SESSION_KEY] = (
                SESSION_BACKENDS[1] if change == "other backend" else ""
            )
            store.save()
        elif change == "expired":
            store.set_expiry(-1)
            store.save()
    if change == "inactive":
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    elif change == "password":
        user.set_password("y")
        user.save()
    elif change == "deleted":
        user.delete()
    return user, keys
