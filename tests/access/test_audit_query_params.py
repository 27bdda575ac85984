"""The auditor API refuses query parameters out of range with a 400 that names
them (Litestar does not apply msgspec constraints to query parameters, so they
are declared on the parameters themselves)."""

from __future__ import annotations

import pytest

from tests.access.conftest import ADMIN, AccessDeployment


@pytest.mark.parametrize(("path", "params"), [
    ("/audit/actors/operator", {"limit": 0}), ("/audit/actors/operator", {"limit": 1_001}),
    ("/audit/actors/operator", {"since_ms": -5}), ("/audit/actors/operator", {"after": "x.1"}),
    ("/audit/verify", {"chain": "Not A Node"}),
])
def test_out_of_range_query_parameters_are_a_400(deployment: AccessDeployment, path: str,
                                                 params: dict[str, object]) -> None:
    response = deployment.clients["hq"].get(path, params=params, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert next(iter(params)) in response.text
