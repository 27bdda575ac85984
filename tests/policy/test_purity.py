"""Policy, masking and access rules (and their recording) are plain functions: no
web framework, database driver or HTTP client loads with them, and a Policy holds
no global state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["server.policy", "server.masking", "server.access", "server.audit_log",
                                    "server.consents"])
def test_loads_no_edge_package(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        "print(','.join(sorted(m for m in ('litestar', 'aiosqlite', 'httpx', 'uvicorn', 'sqlite3') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_two_policies_do_not_share_state() -> None:
    from server.policy import parse_policy

    text = 'version = 1\n[node_rows]\nhq = "all"\n[roles.auditor]\nsites = ["hq"]\nrows = "all"\n'
    a = parse_policy(text + '[roles.auditor.tasks]\nread = ["kind"]\n')
    b = parse_policy(text)
    assert a.access("auditor", "tasks", "kind") == "read" and b.access("auditor", "tasks", "kind") == "none"
