"""A running node serves its interactive API docs, and the OpenAPI document it
serves is the committed ``api_spec/openapi.json``, byte for byte as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.node_process import NodeProcess
from tests.conftest import LoopThread, enrolled_nodes

SPEC = Path(__file__).resolve().parents[2] / "api_spec" / "openapi.json"


@pytest.fixture(scope="module")
def hq(tmp_path_factory: pytest.TempPathFactory, aio: LoopThread) -> Iterator[NodeProcess]:
    with enrolled_nodes(aio, tmp_path_factory.mktemp("docs-node"), ()) as (node, _):
        yield node


def test_the_node_serves_swagger_ui(hq: NodeProcess) -> None:
    with httpx.Client(base_url=hq.url, timeout=30) as client:
        page = client.get("/docs/swagger")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Swagger UI, with the node's own document embedded in the page
    assert "SwaggerUIBundle" in page.text and "swagger-ui-bundle.js" in page.text
    assert "<title>Outpost node API</title>" in page.text and '"operationId":"GetCustomer"' in page.text.replace(" ", "")


def test_the_served_openapi_document_is_the_committed_one(hq: NodeProcess) -> None:
    with httpx.Client(base_url=hq.url, timeout=30) as client:
        served = client.get("/docs/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(SPEC.read_text()), "regenerate with `python -m server.openapi`"
