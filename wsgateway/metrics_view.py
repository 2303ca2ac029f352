"""The Prometheus scrape: wsgateway's series (and the rest of the registry), for staff or a bearer token."""

from __future__ import annotations

import hmac
import os

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from . import metrics
from .conf import gateway_settings

#: prometheus-client's environment variable: the directory every process of the site writes its samples to.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


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
    if os.environ.get(MULTIPROC_DIR):
        # Every process's samples, summed (a gauge's kept per process), as prometheus-client documents:
        # a registry of its own, which this process's metrics are not registered in twice.
        from prometheus_client import multiprocess

        registry = client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return HttpResponse(client.generate_latest(registry), content_type=client.CONTENT_TYPE_LATEST)
