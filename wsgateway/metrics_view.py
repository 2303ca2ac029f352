"""The Prometheus scrape: wsgateway's series (and the rest of the registry), for staff or a bearer token."""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from . import metrics
from .conf import gateway_settings

#: prometheus-client's environment variable: the directory every process of the site writes its samples to.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


#: The files of a process's gauges that show only while it lives ("liveall", "livesum"...), by pid.
LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def forget_dead(directory: str) -> list[int]:
    """Mark dead the processes whose live gauges are in ``directory`` and that no longer run here, as
    gunicorn's ``child_exit`` hook would: daphne and uvicorn have no such hook, and a killed process's
    sockets would stay in ``wsgateway_sockets_open`` until the directory is emptied. The directory is
    one host's (prometheus-client's multiprocess mode shares files, not a network), so a pid that does
    not exist here is a process that ended. Bounded by the processes started since the directory was
    emptied. Returns the pids it forgot."""
    from prometheus_client import multiprocess

    forgotten = []
    for path in Path(directory).glob("gauge_live*_*.db"):
        if (found := LIVE_GAUGE_FILE.fullmatch(path.name)) is None:
            continue
        pid = int(found[1])
        try:
            os.kill(pid, 0)  # no signal: only whether it exists
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
            forgotten.append(pid)
        except PermissionError:
            pass  # another user's process: alive
    return forgotten


def allowed(request: HttpRequest) -> bool:
    """A staff user's session, or ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time)."""
    token = gateway_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token is not None and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


@require_GET
def view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse(
            "Staff only, or the METRICS_TOKEN bearer token.\n", status=403, content_type="text/plain"
        )
    client = metrics.prometheus_client
    if client is None:
        # Not an error of the request: a feature the site did not install.
        return HttpResponse(
            'prometheus-client is not installed: pip install "wsgateway[metrics]".\n',
            status=501,
            content_type="text/plain",
        )
    registry = client.REGISTRY
    if directory := os.environ.get(MULTIPROC_DIR):
        forget_dead(directory)
        # Every process's samples, summed (a gauge's kept per process), as prometheus-client documents:
        # a registry of its own, which this process's metrics are not registered in twice.
        from prometheus_client import multiprocess

        registry = client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return HttpResponse(client.generate_latest(registry), content_type=client.CONTENT_TYPE_LATEST)
