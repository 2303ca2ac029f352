from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from wsgateway import aask, notify
from wsgateway.exceptions import RequestFailed, RequestRejected
from wsgateway.models import CATEGORY_CHOICES
from wsgateway.services.presence import served as presence_served

from .models import Document

#: The categories the demo offers (debug is for developers, not for a product's users).
DEMO_CATEGORIES = [tag for _, tag in CATEGORY_CHOICES if tag != "debug"]


#: Most people the demo's "Who is online" card shows (a socket watches at most 100).
MAX_PEOPLE = 20


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # The other users, a dot each, when the site serves the presence channel (WSGATEWAY_PRESENCE_CHANNEL=1).
    others = get_user_model().objects.exclude(pk=request.user.pk).order_by("username")
    people = list(others[:MAX_PEOPLE]) if presence_served() else None
    context = {"documents": Document.objects.all(), "categories": DEMO_CATEGORIES, "people": people}
    return render(request, "demo/home.html", context)


#: Most notifications one request of the demo may send itself (a burst, to watch the catch-up).
MAX_BURST = 1000


@require_POST
@login_required
def notify_me(request: HttpRequest) -> JsonResponse:
    """A view that notifies: the notification reaches the user's sockets once this request commits.

    ``count`` (1 to MAX_BURST) sends that many in one notify() call; ``kind``, one of the site's kinds;
    ``group`` groups it with the user's unread one of that group (docs/away.md, "Grouping").
    """
    category = request.POST.get("category", "info")
    kind = request.POST.get("kind", "")
    message = request.POST.get("message") or "Your report is ready."
    count = request.POST.get("count", "1")
    if not count.isdigit() or not 1 <= int(count) <= MAX_BURST:
        return JsonResponse({"error": f"count is a whole number from 1 to {MAX_BURST}."}, status=400)
    try:
        sent = notify(
            [request.user] * int(count),
            message,
            category=category,
            group=request.POST.get("group", ""),
            kind=kind,
            actions=[{"label": "Open", "url": "/"}],
            sender=request.user,
        )
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    # A kind the user turned off in-app stores nothing: no id then.
    return JsonResponse({"id": sent[-1].pk if sent else None, "count": int(count)})


#: The levels the demo's message form offers, by the names the toasts use.
MESSAGE_LEVELS = {
    "info": messages.INFO,
    "success": messages.SUCCESS,
    "warning": messages.WARNING,
    "error": messages.ERROR,
}


@require_POST
@login_required
def message_me(request: HttpRequest) -> HttpResponseBase:
    """A view that adds one of Django's messages, ``messages.add_message(request, ...)``, and nothing else.

    From the page's fetch() (``Accept: application/json``) the message goes to every open tab of the
    user, this one's included, as a toast (wsgateway.messages); the form sent without JavaScript is a
    page load, and the page it is redirected to shows the message, as Django always did.
    """
    text = request.POST.get("message", "").strip()[:200] or "Saved, said Django's messages."
    messages.add_message(request, MESSAGE_LEVELS.get(request.POST.get("level", ""), messages.INFO), text)
    if "json" in request.headers.get("Accept", ""):
        return JsonResponse({"added": text})
    return redirect("home")


#: Seconds the demo waits for another tab: a tab in the background answers as fast as one in front.
ASK_TIMEOUT = 5.0


@require_POST
@login_required
async def ask_tabs(request: HttpRequest) -> JsonResponse:
    """Ask the user's other tabs something only a browser knows: which page each has open.

    An async view, with ``aask``: a sync view's ``ask()`` would hold the thread that the site's sync
    views share for as long as the tabs take. The asking tab sends its own id (``tab``), and its
    handler declines with an error answer, which loses to any other tab's answer.
    """
    user = await request.auser()
    try:
        answer = await aask(
            user,
            "demo",
            {"action": "where", "data": {"asker": request.POST.get("tab", "")}},
            timeout=ASK_TIMEOUT,
        )
    except RequestRejected as exc:  # every tab declined: this one is the only one open
        return JsonResponse({"answer": None, "code": exc.code, "message": exc.message})
    except RequestFailed as exc:
        return JsonResponse({"error": exc.message, "code": exc.code}, status=504)
    return JsonResponse({"answer": answer})
