"""E-mail with real processes: an SMTP sink in the test process, the Tasks database backend's workers,
and the example project under daphne with both, for tests/test_live_email.py and the browser's.

Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

import django
from aiosmtpd.controller import Controller

from tests.support.servers import HOST, OUTPUT, ROOT, Daphne, free_port, manage, running, site_env


@dataclass
class Sink:
    """An SMTP server that keeps what it is sent."""

    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def wait(self, predicate: Callable[[], bool], within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return predicate()


class Worker:
    """One ``manage.py db_worker``, its output in test-output/."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        # DEBUG off, as a worker runs in production: with it on, a SIGTERM that lands during a query
        # (the fixture stops the workers so) lets Django's debug cursor print an "Exception ignored"
        # traceback at exit, once in a while, which the test would take for the worker's own failure.
        self.env, self.name = {**env, "DJANGO_DEBUG": "0"}, name
        self.proc: subprocess.Popen[bytes] | None = None
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"db_worker-{name}-{env['DJANGO_EMAIL_PORT']}.log"
        self.log_path.write_bytes(b"")

    def start(self) -> Worker:
        command = [sys.executable, str(ROOT / "manage.py"), "db_worker", "--no-reload", "--no-startup-delay"]
        command += ["--interval", "0.2", "--worker-id", self.name]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Site:
    env: dict[str, str]
    daphne: Daphne
    sink: Sink
    workers: list[Worker]

    def shell(self, code: str) -> str:
        """Run ``code`` in the project (``manage.py shell``) and return the last line it printed (before
        it, Django 5.2's shell says what it imported)."""
        lines = manage(self.env, "shell", "-c", code).stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def notify(self, username: str, message: str, kind: str = "comment") -> int:
        return int(
            self.shell(
                "from django.contrib.auth import get_user_model; from wsgateway.notifications import notify; "
                f"print(notify(get_user_model().objects.get(username={username!r}), {message!r}, "
                f"kind={kind!r})[0].pk)"
            )
        )

    def logs(self) -> str:
        return "".join(worker.log() for worker in self.workers)


@contextmanager
def mail_site(
    directory: Path, name: str, kinds: dict[str, Any], users: dict[str, str], **extra: str
) -> Iterator[Site]:
    """The example project under daphne declaring ``kinds``, two workers and an SMTP sink, on a database
    of its own in ``directory``, and ``extra`` in its environment (``REDIS_URL``); ``users`` (username:
    address) get those addresses and their name + "-password" as password. On the way out,
    fails if a worker died or logged a traceback."""
    sink = Sink()
    controller = Controller(sink, hostname=HOST, port=free_port())
    controller.start()
    port = free_port()
    settings = {"NOTIFICATION_KINDS": kinds, "EMAIL_SITE_URL": f"http://{HOST}:{port}"}
    env = site_env(
        directory, DJANGO_EMAIL_PORT=str(controller.port), WSGATEWAY_EXTRA=json.dumps(settings), **extra
    )
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; U = get_user_model()\n"
        f"for n, e in {users!r}.items():\n"
        "    u, _ = U.objects.update_or_create(username=n, defaults={'email': e}); "
        "u.set_password(n + '-password'); u.save()",
    )
    workers = [Worker(env, f"{name}-one"), Worker(env, f"{name}-two")]
    try:
        with running(Daphne(env, name=name, port=port)) as daphne:
            for worker in workers:
                worker.start()
            yield Site(env, daphne, sink, workers)
            for worker in workers:
                assert worker.proc is None or worker.proc.poll() is None, (
                    f"{worker.name} died: {worker.log()}"
                )
    finally:
        for worker in workers:
            worker.stop()
        controller.stop()
    logs = "".join(worker.log() for worker in workers)
    assert "Traceback" not in logs, logs


def use_mail_backend(settings: Any, path: str) -> None:
    """Send the test's e-mails through the backend ``path`` (pytest-django's ``settings``): in ``MAILERS``
    on Django 6.1, which deprecates ``EMAIL_BACKEND`` and cannot read it beside ``MAILERS``; else there."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": path}}
    else:
        settings.EMAIL_BACKEND = path
