"""A node served for `bench_work_api`: the real app plus one bare route (bench only).

    OUTPOST_ADMIN_TOKEN=... OUTPOST_KEYSTORE_PASSPHRASE=... \\
        .venv/bin/python -m bench.work_server SITE --data-dir DIR --port PORT

What `outpost serve SITE --no-replicate` runs (`server.app.create_app` under
uvicorn, with the same uvicorn options and log setup, in its own process), with
one route added to that app object here, after it is built: ``GET /bench/bare``
answers a small constant JSON object, with no guard, no dependency, no database
and no audit entry. It is the baseline the work API is measured against: the
same process, event loop, uvicorn and Litestar, serving nothing of its own. The
product app has no such route and must not grow one.

``BENCH_PROFILE=PATH`` in the environment arms cProfile: SIGUSR1 starts it,
SIGUSR2 stops it and writes its stats to PATH, so the profile holds a measured
window only (no startup: keystore, the key steward's first pass). The event
loop's thread only, not aiosqlite's threads, whose time shows as waiting.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import signal
from typing import Any

import uvicorn
from litestar import get

from server.app import create_app
from server.cli import resolve_site
from server.config import load_site, with_overrides
from server.logging import setup_logging
from server.node import PASSPHRASE_ENV

PROFILE_ENV = "BENCH_PROFILE"
BARE_PATH = "/bench/bare"
#: what the bare route answers, every time
BARE_BODY = {"status": "ok", "node": "bench"}


@get(BARE_PATH, operation_id="BenchBare", name="bench:bare", include_in_schema=False)
async def bare() -> dict[str, Any]:
    """A constant: the cost of uvicorn, Litestar's routing and JSON, nothing else."""
    return BARE_BODY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = with_overrides(load_site(resolve_site(args.site)), data_dir=args.data_dir, port=args.port)
    setup_logging("INFO", node_id=config.node_id)
    app = create_app(config, passphrase=os.environ[PASSPHRASE_ENV], replicate=False)
    app.register(bare)

    def serve() -> None:
        uvicorn.run(app, host=config.listen.host, port=config.listen.port, access_log=False, log_config=None,
                    timeout_graceful_shutdown=5)

    profile_path = os.environ.get(PROFILE_ENV)
    if profile_path:
        profiler = cProfile.Profile()

        def stop_profile(*_: Any) -> None:
            profiler.disable()
            profiler.dump_stats(profile_path)

        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
        signal.signal(signal.SIGUSR2, stop_profile)
    serve()


if __name__ == "__main__":
    main()
