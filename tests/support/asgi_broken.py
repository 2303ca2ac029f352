"""An asgi.py that fails as it is imported (tests/test_checks.py, E015)."""

raise RuntimeError("REDIS_URL is not set")
