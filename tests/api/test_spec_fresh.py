"""api_spec/ is generated from the app and the wire Structs; it must be current."""

from __future__ import annotations

import json

from server.openapi import GENERATED, SPEC_DIR


def test_committed_spec_files_are_current() -> None:
    stale = [name for name, make in GENERATED.items() if (SPEC_DIR / name).read_text() != make()]
    assert stale == [], f"regenerate with `.venv/bin/python -m server.openapi`: {stale}"


def test_openapi_names_every_operation() -> None:
    doc = json.loads((SPEC_DIR / "openapi.json").read_text())
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert {"SyncPull", "SyncPush", "GetHealth", "GetStatus"} <= set(ids)
