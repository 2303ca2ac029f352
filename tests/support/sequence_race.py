"""Writers and a reader of one user's notifications at the same time, each a process of its own.

``python -m tests.support.sequence_race writer USERNAME COUNT SEED`` stores COUNT notifications, each
in a transaction that stays open a random few milliseconds after the insert (so that transactions
overlap and commit in another order than they started), alternating notify() and
Notification.objects.create(), and rolling back every fifth. ``reader USERNAME EXPECTED`` follows
the user's notifications as a client's cursor does (``seq`` greater than the last one read) until it
has EXPECTED of them, and prints the seqs it read, in order, as JSON.
"""

from __future__ import annotations

import json
import random
import sys
import time


class _RollBack(Exception):
    pass


def write(username: str, count: int, seed: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from wsgateway.models import Notification
    from wsgateway.notifications import notify

    user = get_user_model().objects.get(username=username)
    rng = random.Random(seed)
    stored = 0
    attempt = 0
    while stored < count:
        attempt += 1
        try:
            with transaction.atomic():
                if attempt % 2:
                    notify(user, f"writer {seed}, attempt {attempt}")
                else:
                    Notification.objects.create(recipient=user, message=f"writer {seed}, attempt {attempt}")
                time.sleep(rng.uniform(0, 0.015))
                if attempt % 5 == 0:
                    raise _RollBack
        except _RollBack:
            continue
        stored += 1


def read(username: str, expected: int) -> None:
    from django.contrib.auth import get_user_model

    from wsgateway.notifications import history

    user = get_user_model().objects.get(username=username)
    cursor, seen = 0, []
    deadline = time.monotonic() + 90
    while len(seen) < expected and time.monotonic() < deadline:
        for notification in history.since(user, cursor, 100)["notifications"]:
            seen.append(notification["seq"])
            cursor = notification["seq"]
        time.sleep(0.001)
    print(json.dumps(seen))


if __name__ == "__main__":
    import django

    django.setup()
    role, username, *numbers = sys.argv[1:]
    if role == "writer":
        write(username, int(numbers[0]), int(numbers[1]))
    else:
        read(username, int(numbers[0]))
