"""The real policy and site configs from sites/, read once per session."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from server.policy import Policy, load_policy

SITES = Path(__file__).resolve().parents[2] / "sites"
POLICY_FILE = SITES / "policy.toml"
#: the file as plain TOML, read without server.policy: the tests' own reading of it
RAW: dict[str, Any] = tomllib.loads(POLICY_FILE.read_text())


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(POLICY_FILE)
