"""Generate the committed contract: api_spec/openapi.json and the sync wire schema.

    .venv/bin/python -m server.openapi          # rewrite both files
    .venv/bin/python -m server.openapi --check  # exit 1 if either is out of date

The OpenAPI document comes from the app itself; the wire schema from the msgspec
Structs of `sync.changes` (what a Kotlin or Swift client decodes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec

from server.app import create_app
from server.config import SiteConfig
from sync.changes import Ack, ChangesPage, Frame, PullRequest, PushBatch

SPEC_DIR = Path(__file__).resolve().parent.parent / "api_spec"


def openapi_document() -> str:
    app = create_app(SiteConfig(node_id="hq", role="hq"), replicate=False)
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def wire_schema() -> str:
    (frame, message), components = msgspec.json.schema_components(
        [Frame, PullRequest | ChangesPage | PushBatch | Ack], ref_template="#/$defs/{name}"
    )
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Outpost sync wire (msgpack)",
           "description": "A Frame is [protocol, schema, codec, body]; its body is one message, "
                          "msgpack-encoded and zlib-compressed when codec is 'zlib'. See sync-protocol.md.",
           "$defs": {**components, "Frame": frame, "Message": message}}
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


GENERATED = {"openapi.json": openapi_document, "sync-wire.schema.json": wire_schema}


def main(argv: list[str]) -> int:
    stale = []
    for name, make in GENERATED.items():
        path = SPEC_DIR / name
        text = make()
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run `.venv/bin/python -m server.openapi`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
