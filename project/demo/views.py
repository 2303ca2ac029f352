from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from wsgateway import notify
from wsgateway.models import CATEGORY_CHOICES

from .models import Document

#: The categories the demo offers (debug is for developers, not for a product's users).
DEMO_CATEGORIES = [tag for _, tag in CATEGORY_CHOICES if tag != "debug"]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request, "demo/home.html", {"documents": Document.objects.all(), "categories": DEMO_CATEGORIES}
    )


@require_POST
@login_required
def notify_me(request: HttpRequest) -> JsonResponse:
    """A view that notifies: the notification reaches the user's sockets once this request commits."""
    category = request.POST.get("category", "info")
    message = request.POST.get("message") or "Your report is ready."
    try:
        (notification,) = notify(
            request.user,
            message,
            category=category,
            actions=[{"label": "Open", "url": "/"}],
            sender=request.user,
        )
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"id": notification.pk})
