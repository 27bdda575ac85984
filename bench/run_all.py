"""Run every benchmark in turn, each as its own process, and print its figures.

    python3 run.py bench [--quick]    # or: .venv/bin/python bench/run_all.py [--quick]

``--quick`` runs each with 10,000 customers instead of 100,000, and each listed
in QUICK_ARGS with its own smoke-run arguments instead (a smoke run; its
figures do not meet the full-size targets' terms). Exits non-zero if any
benchmark fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "bench_merge.py", "bench_initial_sync.py", "bench_resync.py", "bench_seal.py", "bench_sealed_sync.py",
    "bench_audit_card.py", "bench_work_api.py",
)
#: ``--quick`` arguments of the benchmarks that do not take 10,000 customers
QUICK_ARGS = {"bench_audit_card.py": ["--quick"], "bench_work_api.py": ["--quick"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 customers instead of 100,000 (a smoke run)")
    args = parser.parse_args()
    failed = []
    for name in BENCHMARKS:
        extra = QUICK_ARGS.get(name, ["--customers", "10000"]) if args.quick else []
        print(f"== {name} {' '.join(extra)}".rstrip(), flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / name), *extra], cwd=HERE.parent)
        print(f"== {name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {time.perf_counter() - start:.0f} s\n",
              flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
