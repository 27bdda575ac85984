"""The pure core imports no web framework, no database driver, no HTTP client."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import crypto
import server.work
import sync

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("litestar", "aiosqlite", "httpx", "uvicorn", "sqlite3")
CORE = sorted(
    m.name
    for m in pkgutil.walk_packages(sync.__path__, "sync.")
    if not m.name.startswith("sync.store")
) + ["crypto"] + sorted(m.name for m in pkgutil.walk_packages(crypto.__path__, "crypto.")) + [
    "server.work"
] + sorted(m.name for m in pkgutil.walk_packages(server.work.__path__, "server.work."))


@pytest.mark.parametrize("module", CORE)
def test_core_module_loads_no_edge_package(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        f"bad = sorted(m for m in {FORBIDDEN!r} if m in sys.modules); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"{module} loads {out.stdout.strip()}"


def test_store_is_the_only_sql() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*(ROOT / "sync").rglob("*.py"), *(ROOT / "crypto").rglob("*.py"), *(ROOT / "server").rglob("*.py")]
        if "store" not in p.parts and ("aiosqlite" in p.read_text() or "import sqlite3" in p.read_text())
    ]
    # server/ opens stores only through sync.store; the demo alone also plays someone
    # who edits a node's file behind its back (an audit entry), to show it is caught
    assert offenders == ["server/demo.py"]


def test_only_server_imports_litestar() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*(ROOT / "sync").rglob("*.py"), *(ROOT / "crypto").rglob("*.py")]
        if "litestar" in p.read_text()
    ]
    assert offenders == []


MOBILE = ["mobile"] + sorted(m.name for m in pkgutil.walk_packages(__import__("mobile").__path__, "mobile."))


@pytest.mark.parametrize("module", MOBILE)
def test_the_phone_client_loads_no_server_code(module: str) -> None:
    """The reference phone client speaks the protocol with `sync` and `crypto`
    (and httpx, aiosqlite under `sync.store`): no litestar, and of the server
    only its pure work rules, as a Kotlin or Swift client would."""
    probe = (
        f"import sys, {module}; "
        "bad = sorted(m for m in sys.modules if m in ('litestar', 'uvicorn') "
        "or (m.startswith('server') and m != 'server' and not m.startswith('server.work'))); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"{module} loads {out.stdout.strip()}"
