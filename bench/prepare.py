"""Migrate a fresh database, create the benchmark's users in bulk, and write a bearer token for each.

python -m bench.prepare --users N --out tokens.json   (DATABASE_URL and bench.settings from the env)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from wsgateway.tokens import issue_token

    call_command("migrate", interactive=False, verbosity=0)
    user_model = get_user_model()
    password = make_password(None)  # unusable, and no hashing per user
    users = list(
        user_model._default_manager.filter(username__startswith="bench-").order_by("pk")[: args.users]
    )
    if len(users) < args.users:
        user_model._default_manager.bulk_create(
            [user_model(username=f"bench-{i:06d}", password=password) for i in range(len(users), args.users)],
            batch_size=1000,
        )
        users = list(
            user_model._default_manager.filter(username__startswith="bench-").order_by("pk")[: args.users]
        )
    args.out.write_text(json.dumps([[user.pk, issue_token(user)] for user in users]))


if __name__ == "__main__":
    main()
