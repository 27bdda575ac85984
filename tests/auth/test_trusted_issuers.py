"""A node accepts only the access tokens it issued, unless its config trusts the issuer."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from crypto.identity import NodeIdentity
from server.tokens import AccessClaims, sign_access_token
from tests.auth.conftest import Deployment, bearer, sign_in, user
from tests.auth.test_sign_in import refused


def test_a_token_from_another_node_is_refused(deployment: Deployment) -> None:
    with deployment.client("branch-a") as branch:
        token = sign_in(branch)["access_token"]
    for node in ("hq", "branch-b"):
        with deployment.client(node) as client:
            body = refused(client.get("/auth/me", headers=bearer(token)), 401, "unauthorized", "untrusted_issuer")
            assert "sign in here" in body["detail"]


def test_a_trusted_issuers_token_is_verified_with_its_registered_key(tmp_path: Path) -> None:
    d = Deployment(tmp_path, trusted={"hq": ["branch-a"], "branch-b": ["branch-a"]})
    asyncio.run(d.init([user("ana")]))
    with d.client("branch-a") as branch:
        pair = sign_in(branch)
    token = pair["access_token"]
    with d.client("hq") as hq:
        me = hq.get("/auth/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["issuer"] == "branch-a" and me.json()["username"] == "ana"
        # the session lives at branch-a: sign out there
        body = refused(hq.post("/auth/sign-out", headers=bearer(token)), 409, "wrong_node")
        assert "branch-a" in body["detail"]
        # a token that names branch-a but is signed by another key
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        forged = sign_access_token(AccessClaims(**claims), NodeIdentity.generate("branch-a"))
        refused(hq.get("/auth/me", headers=bearer(forged)), 401, "unauthorized", "bad_signature")
    # branch-b trusts branch-a too, but its registry holds no key of branch-a's
    with d.client("branch-b") as other:
        refused(other.get("/auth/me", headers=bearer(token)), 401, "unauthorized", "unknown_key")
