"""The admin's page of who is online now, from presence (wsgateway.presence), and its "close this
user's sockets" button, which goes through :func:`wsgateway.revocation.close_user_sockets`.

The page belongs to :class:`~wsgateway.models.OnlineUser`, a model without a table, so that it sits in
the admin's index under the app and is granted as any other: ``wsgateway.view_onlineuser`` to see it,
``wsgateway.close_sockets`` to close a user's sockets (a superuser has both). Only two URLs: the list
and the close; none of a model's others, which would read the table that is not there.

Bounded: a page shows at most ``presence.MAX_PAGE`` users, read in two round trips to Redis whatever
its number (presence.aonline_page), and no page starts at or past ``presence.MAX_ONLINE_USERS``. A
layer that fails shows an error on the page (503), logged in one line, with no traceback.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from . import presence
from .revocation import close_user_sockets

logger = logging.getLogger("wsgateway")

#: The query parameter of the page's number, from 1, as the admin's own lists name it.
PAGE_VAR = "p"
#: The most users the "close their sockets" action takes at once from a user changelist.
MAX_ACTION_USERS = 1000
#: The permission that closes a user's sockets, from this page or the action.
CLOSE_PERMISSION = "wsgateway.close_sockets"


class Row(NamedTuple):
    """One online user as the page shows them."""

    user_id: str
    #: The user's ``str()``, or None for a primary key the database no longer has.
    name: str | None
    #: The user's change page in this admin site, or None where it has none.
    url: str | None
    since: datetime
    sockets: int


class OnlineUserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Who is online now, the longest online first, a page at a time. Register it on a site's own
    AdminSite as on the default one: ``site.register(OnlineUser, OnlineUserAdmin)``."""

    #: Users a page shows: at most presence.MAX_PAGE.
    list_per_page = 50
    change_list_template = "admin/wsgateway/onlineuser/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_close_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(CLOSE_PERMISSION))

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path("close/", self.admin_site.admin_view(self.close_view), name="{}_{}_close".format(*info)),
            path("", self.admin_site.admin_view(self.changelist_view), name="{}_{}_changelist".format(*info)),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        per_page = min(self.list_per_page, presence.MAX_PAGE)
        number = page_number(request.GET.get(PAGE_VAR, "1"), per_page)
        error, status = None, 200
        try:
            total, online = presence.online_page((number - 1) * per_page, per_page)
        except Exception as exc:  # a layer down: said on the page and logged, the admin stays up
            logger.warning("wsgateway: the admin could not read who is online: %s", exc)
            total, online, status = 0, [], 503
            error = _("Who is online cannot be read now: the channel layer did not answer (%(error)s).") % {
                "error": type(exc).__name__
            }
        if number > 1 and not online and not error:
            raise Http404(_("There is no page %(number)s.") % {"number": number})
        paginator = Paginator(range(total), per_page)
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Who is online"),
            "subtitle": None,
            "rows": self.rows(online),
            "total": total,
            "page": number,
            "page_range": paginator.get_elided_page_range(number) if paginator.num_pages > 1 else [],
            "page_var": PAGE_VAR,
            "ellipsis": Paginator.ELLIPSIS,
            "error": error,
            "can_close": self.has_close_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.change_list_template, context, status=status)

    def rows(self, online: list[presence.OnlineUser]) -> list[Row]:
        """The page's users with their names and change pages: one query for the page."""
        users = users_by_key([entry.user_id for entry in online])
        return [
            Row(
                entry.user_id,
                str(users[entry.user_id]) if entry.user_id in users else None,
                self.user_url(entry.user_id) if entry.user_id in users else None,
                datetime.fromtimestamp(entry.since, tz=UTC),
                entry.sockets,
            )
            for entry in online
        ]

    def user_url(self, user_id: str) -> str | None:
        opts = get_user_model()._meta
        try:
            return reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[user_id],
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:  # the user model is not in this site
            return None

    def close_view(self, request: HttpRequest) -> HttpResponse:
        """POST ``user`` (a primary key): close that user's sockets on every process. The admin site's
        view wrapper checks the CSRF token and the login; this checks the permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_close_permission(request):
            raise PermissionDenied
        back = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )
        number = request.POST.get(PAGE_VAR, "")
        if number.isdigit() and number != "1":
            back += f"?{PAGE_VAR}={number}"
        user_id = request.POST.get("user", "")
        user = users_by_key([user_id]).get(user_id)
        if user is None:
            messages.error(request, _("There is no user with the key %(key)r.") % {"key": user_id[:40]})
            return HttpResponseRedirect(back)
        if close_sockets_of(self, request, user):
            messages.success(request, _("The sockets of %(user)s are closing.") % {"user": user})
        return HttpResponseRedirect(back)


def page_number(raw: str, per_page: int) -> int:
    """The page asked for, from 1; 404 for one that is no number or starts past presence's bound."""
    if not raw.isdigit() or not 1 <= int(raw) <= presence.MAX_ONLINE_USERS // per_page:
        raise Http404(_("There is no page %(number)s.") % {"number": raw[:20]})
    return int(raw)


def users_by_key(keys: list[str]) -> dict[str, Model]:
    """The users whose primary keys (as presence keeps them, strings) are ``keys``, by key, in one
    query; a key that is no valid primary key, or no longer a user's, is left out."""
    model = get_user_model()
    valid = []
    for key in keys:
        try:
            valid.append(model._meta.pk.to_python(key))
        except ValidationError:
            continue
    if not valid:
        return {}
    return {str(pk): user for pk, user in model._default_manager.in_bulk(valid).items()}


def close_sockets_of(model_admin: admin.ModelAdmin[Any], request: HttpRequest, user: Model) -> bool:
    """Close ``user``'s sockets, logged (who closed whose) and in the user's admin history; False, with
    an error message for the admin, when the channel layer failed."""
    try:
        close_user_sockets(user)
    except Exception as exc:  # a layer down: the admin is told, nothing was sent
        logger.warning("wsgateway: the admin could not close the sockets of user %s: %s", user.pk, exc)
        messages.error(
            request,
            _("The sockets of %(user)s could not be closed: the channel layer did not answer (%(error)s).")
            % {"user": user, "error": type(exc).__name__},
        )
        return False
    logger.info("wsgateway: user %s closed the sockets of user %s from the admin", request.user.pk, user.pk)
    model_admin.log_change(request, user, "Closed their sockets.")
    return True


@admin.action(description=gettext_lazy("Close the selected users' sockets"))
def close_sockets_action(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    """An action for a site's user changelist (``actions = [close_sockets_action]`` on its UserAdmin):
    closes the sockets of at most MAX_ACTION_USERS selected users, for staff with ``close_sockets``."""
    if not request.user.has_perm(CLOSE_PERMISSION):
        raise PermissionDenied
    users = list(queryset[: MAX_ACTION_USERS + 1])
    if len(users) > MAX_ACTION_USERS:
        messages.error(request, _("Select at most %(count)d users.") % {"count": MAX_ACTION_USERS})
        return
    closed = sum(close_sockets_of(model_admin, request, user) for user in users)
    if closed:
        messages.success(
            request,
            ngettext(
                "The sockets of %(count)d user are closing.",
                "The sockets of %(count)d users are closing.",
                closed,
            )
            % {"count": closed},
        )
