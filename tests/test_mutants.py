"""The convergence tests can fail: against a deliberately broken merge rule they do.

Each case runs a slice of the suite in a subprocess with a mutant from
tests/mutants/ on PYTHONPATH (the node processes those tests start inherit it)
and expects that slice to fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTANT = ROOT / "tests" / "mutants" / "broken_lww"


def run_with_mutant(*pytest_args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(MUTANT), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=mutant",
         *pytest_args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


def test_mutant_is_active() -> None:
    env = {**os.environ, "PYTHONPATH": str(MUTANT)}
    probe = "import sync.merge as m; print(m.merge_lww.__name__)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "first_arrival_wins"


@pytest.mark.parametrize(
    "target",
    [
        "tests/properties/test_merge_laws.py::test_join_is_commutative[lww]",
        "tests/properties/test_replica_convergence.py::test_replicas_converge_whatever_the_delivery_order",
    ],
)
def test_property_tests_catch_a_broken_merge(target: str) -> None:
    result = run_with_mutant(target)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "failed" in result.stdout


@pytest.mark.system
def test_multi_node_test_catches_a_broken_merge() -> None:
    result = run_with_mutant("tests/system/test_partitions.py::test_random_partitions_converge[7]")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "AssertionError" in result.stdout
