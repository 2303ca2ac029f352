"""One clipboard_add of a user, in a process of its own, with time between the quota check and the insert.

``python -m tests.support.clipboard_race USERNAME MAX_ENTRIES START`` adds one entry under
``CLIPBOARD_MAX_ENTRIES = MAX_ENTRIES`` at the time ``START`` (seconds since the epoch, so that
processes that took different times to start add together) and prints ``added`` or the code it was
refused with. The check is followed by a pause of 0.3 s inside the transaction, so that the adds all
check before any of them inserts, unless the check waits for the others' commits.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def add(username: str, max_entries: int, start: float) -> None:
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    from wsgateway.exceptions import GatewayError
    from wsgateway.services import clipboard

    checked = clipboard._check_room

    def check_then_wait(*args: Any) -> None:
        checked(*args)
        time.sleep(0.3)

    clipboard._check_room = check_then_wait  # type: ignore[assignment]
    user = get_user_model().objects.get(username=username)
    time.sleep(max(0.0, start - time.time()))
    with override_settings(WSGATEWAY={"CLIPBOARD_MAX_ENTRIES": max_entries}):
        try:
            clipboard.ClipboardService._add(user, "raced")
        except GatewayError as exc:
            print(exc.code)
        else:
            print("added")


if __name__ == "__main__":
    import django

    django.setup()
    add(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
