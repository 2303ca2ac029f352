"""What a notification is about: the kinds a site declares, once, in ``WSGATEWAY["NOTIFICATION_KINDS"]``.

A kind names a sort of notification ("comment", "mention", "security") beside its level (info,
warning, ...): a label the user reads on the preferences page, the channels it may reach the user on,
whether the user may turn it off, what it does until the user chooses, and when it falls back to
e-mail. Everything that reads preferences, groups or schedules an e-mail asks this module.

A notification sent without a kind (``kind=""``, what every notify() before kinds sent) is in-app
only, cannot be turned off and sends no e-mail: a site that declares no kinds behaves as it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.core.signals import setting_changed

#: The channels a notification can reach a user on. The preferences are kept per channel, so a
#: channel added here (push, SMS) needs no change of their shape.
INAPP = "inapp"
EMAIL = "email"
CHANNELS = (INAPP, EMAIL)

#: Longest kind name: ``Notification.kind``'s column.
MAX_NAME_LENGTH = 50
#: Most kinds a site may declare: each is a row of the preferences page and a key of each user's choices.
MAX_KINDS = 100
#: Longest delay of an e-mail after an unread notification: a week, in seconds.
MAX_EMAIL_AFTER = 7 * 24 * 60 * 60

#: What a kind's declaration may say.
FIELDS = ("label", "channels", "required", "default", "email_after", "email_if_offline", "description")


@dataclass(frozen=True, slots=True)
class Kind:
    """One declared kind (see the module's docstring and docs/away.md)."""

    name: str
    label: str
    channels: tuple[str, ...] = CHANNELS
    #: The user may not turn it off (a security alert, a receipt): the page shows it, greyed.
    required: bool = False
    #: Each channel's state until the user chooses.
    default: Mapping[str, bool] = field(default_factory=dict)
    #: Seconds after which a notification of this kind still unread is e-mailed; None: never.
    email_after: int | None = None
    #: E-mail at once when the user has no open socket.
    email_if_offline: bool = False
    description: str = ""

    def allows(self, channel: str) -> bool:
        return channel in self.channels

    def default_for(self, channel: str) -> bool:
        return self.allows(channel) and self.default.get(channel, True)

    @property
    def emails(self) -> bool:
        """Whether a notification of this kind can fall back to e-mail at all."""
        return self.allows(EMAIL) and (self.email_after is not None or self.email_if_offline)


#: The kind of a notification sent without one.
NO_KIND = Kind(name="", label="", channels=(INAPP,), required=True)


def declaration_errors(value: Any) -> list[str]:
    """What is wrong with a ``NOTIFICATION_KINDS`` value, one message each; empty when it is right.

    The system check (``wsgateway.E016``) reports these; :func:`declared` refuses to build from a value
    with any, so a mistake is reported at start-up, not at the first notify().
    """
    if not isinstance(value, Mapping):
        return [f"must be a dict of kind name to its declaration, not {type(value).__name__}"]
    if len(value) > MAX_KINDS:
        return [f"declares {len(value)} kinds, more than {MAX_KINDS}"]
    errors: list[str] = []
    for name, spec in value.items():
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            errors.append(
                f"has a kind name {name!r}: a non-empty string of at most {MAX_NAME_LENGTH} characters"
            )
            continue
        if not isinstance(spec, Mapping):
            errors.append(f"[{name!r}] must be a dict, not {type(spec).__name__}")
            continue
        errors += [f"[{name!r}] {message}" for message in _spec_errors(spec)]
    return errors


def _spec_errors(spec: Mapping[str, Any]) -> list[str]:
    errors = [f"has an unknown key {key!r} (known: {', '.join(FIELDS)})" for key in spec if key not in FIELDS]
    if "label" not in spec:
        errors.append("needs a label")
    channels = spec.get("channels", CHANNELS)
    if not isinstance(channels, (list, tuple)) or not channels or any(c not in CHANNELS for c in channels):
        errors.append(
            f"'channels' must be a non-empty list of {', '.join(map(repr, CHANNELS))}, not {channels!r}"
        )
        channels = CHANNELS
    for flag in ("required", "email_if_offline"):
        if not isinstance(spec.get(flag, False), bool):
            errors.append(f"{flag!r} must be True or False, not {spec[flag]!r}")
    default = spec.get("default", {})
    if not isinstance(default, Mapping) or any(
        c not in channels or not isinstance(on, bool) for c, on in default.items()
    ):
        errors.append(f"'default' must map some of its channels to True or False, not {default!r}")
    after = spec.get("email_after")
    if after is not None and (type(after) is not int or not 0 <= after <= MAX_EMAIL_AFTER):
        errors.append(f"'email_after' must be None or seconds from 0 to {MAX_EMAIL_AFTER}, not {after!r}")
    if (after is not None or spec.get("email_if_offline")) and EMAIL not in channels:
        errors.append("falls back to e-mail, so its channels must include 'email'")
    return errors


def build(value: Mapping[str, Mapping[str, Any]]) -> dict[str, Kind]:
    """The kinds of a declaration :func:`declaration_errors` found right."""
    return {
        name: Kind(
            name=name,
            label=spec["label"],
            channels=tuple(spec.get("channels", CHANNELS)),
            required=spec.get("required", False),
            default=dict(spec.get("default", {})),
            email_after=spec.get("email_after"),
            email_if_offline=spec.get("email_if_offline", False),
            description=spec.get("description", ""),
        )
        for name, spec in value.items()
    }


@cache
def declared() -> dict[str, Kind]:
    """The site's kinds, by name; built once, and again after ``WSGATEWAY`` changes (tests)."""
    from ..conf import gateway_settings

    value = gateway_settings.get("NOTIFICATION_KINDS")  # as given: dict() would hide a list
    if errors := declaration_errors(value):
        raise ValueError(f"WSGATEWAY['NOTIFICATION_KINDS'] {errors[0]} (check wsgateway.E016)")
    return build(value)


def get(name: str) -> Kind:
    """The kind named ``name`` (``""``: :data:`NO_KIND`); ValueError if the site declares none such."""
    if name == "":
        return NO_KIND
    try:
        return declared()[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown notification kind {name!r}: declare it in WSGATEWAY['NOTIFICATION_KINDS']"
        ) from None


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "WSGATEWAY":
        declared.cache_clear()


setting_changed.connect(_forget, dispatch_uid="wsgateway.notifications.kinds")
