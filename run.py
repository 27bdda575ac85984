#!/usr/bin/env python3
"""Set up Outpost in ./.venv and run it: the README's two commands.

    python3 run.py demo     # HQ + two branches on loopback: partition, edit, heal, converge
    python3 run.py test     # the whole test suite (extra arguments go to pytest)
    python3 run.py bench    # the benchmarks in bench/ (minutes; not part of the tests)
    python3 run.py outpost ARGS...   # any `outpost` command

Needs only Python 3.11+. The virtual environment is (re)installed whenever
pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".install-stamp"


def ensure_env() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Outpost needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text().strip() == want:
        return
    if not PY.exists():
        print("run.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    print("run.py: installing Outpost and its test tools into .venv", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "bench", "outpost"}:
        print(__doc__)
        return 2
    ensure_env()
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "demo":
        cmd = [str(BIN / "outpost"), "demo", *rest]
    elif command == "test":
        cmd = [str(PY), "-m", "pytest", *rest]
    elif command == "bench":
        cmd = [str(PY), str(ROOT / "bench" / "run_all.py"), *rest]
    else:
        cmd = [str(BIN / "outpost"), *rest]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
