#!/usr/bin/env python3
"""`make run-fleet` (store part): Redis behind webdis for the fleet ledger, on fixed demo ports.

Redis listens on 127.0.0.1:6390 (shipped fleet/redis.conf: AOF, restricted default user),
webdis on 127.0.0.1:7390 (shipped fleet/webdis.json: EVAL and EVALSHA only). Data stays in
.fleet/demo, so the ledger survives a restart of this script. The Envoys point their `fleet`
cluster at webdis. Runs until Ctrl-C; both processes are stopped on the way out.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.fleet import FleetStore  # noqa: E402

REDIS_PORT = 6390
WEBDIS_PORT = 7390
DATA = REPO / ".fleet" / "demo"


def demo_store() -> FleetStore:
    """The demo store, not started yet: use it as a context manager."""
    return FleetStore(workdir=DATA, redis_port=REDIS_PORT, webdis_port=WEBDIS_PORT)


def main() -> None:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with demo_store() as store:
        print(
            f"Fleet ledger store: webdis {store.url} -> Redis 127.0.0.1:{REDIS_PORT} (data in {DATA}).\n"
            f"Admin access for this run: redis-cli -p {REDIS_PORT} --user admin --pass {store.admin_password}\n"
            "Ctrl-C stops both.",
            flush=True,
        )
        stopped.wait()


if __name__ == "__main__":
    main()
