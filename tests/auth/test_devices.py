"""Phones: an account manager enrols one; its credential buys tokens of that user only."""

from __future__ import annotations

import asyncio

from tests.auth.conftest import ADMIN, Deployment, bearer, sign_in
from tests.auth.test_sign_in import refused


def test_enrol_a_phone_and_sign_it_in(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        manager = sign_in(client, "max")
        enrolled = client.post("/devices/enroll", json={"label": "phone of max"},
                               headers=bearer(manager["access_token"]))
        assert enrolled.status_code == 201, enrolled.text
        credential = enrolled.json()
        assert credential["user_id"] == deployment.user_ids["max"] and credential["device_secret"].startswith("opd_")

        pair = client.post("/devices/sign-in", json={"device_id": credential["device_id"],
                                                     "device_secret": credential["device_secret"]})
        assert pair.status_code == 200, pair.text
        me = client.get("/auth/me", headers=bearer(pair.json()["access_token"])).json()
        assert me["user_id"] == deployment.user_ids["max"] and me["device_id"] == credential["device_id"]
        assert me["role"] == "account_manager"
        renewed = client.post("/auth/refresh", json={"refresh_token": pair.json()["refresh_token"]})
        assert renewed.json()["principal"]["device_id"] == credential["device_id"]

        # a phone's session does not enrol more phones
        refused(client.post("/devices/enroll", json={}, headers=bearer(pair.json()["access_token"])), 403,
                "forbidden")
        for body in ({"device_id": credential["device_id"], "device_secret": "opd_guess"},
                     {"device_id": "01JD0QK2M6X3Z1V9A8B7C6D5E4", "device_secret": credential["device_secret"]}):
            response = client.post("/devices/sign-in", json=body)
            refused(response, 401, "unauthorized", "device_credentials")
            assert credential["device_secret"] not in response.text
    db = b"".join(p.read_bytes() for p in deployment.configs["branch-a"].data_path.iterdir() if p.is_file())
    assert credential["device_secret"].encode() not in db


def test_only_account_managers_enrol_phones(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        agent = sign_in(client, "ana")
        body = refused(client.post("/devices/enroll", json={}, headers=bearer(agent["access_token"])), 403, "forbidden")
        assert body["allowed_roles"] == ["account_manager"] and "`agent`" in body["detail"]
        refused(client.post("/devices/enroll", json={}), 401, "unauthorized", "missing_token")


def test_revoking_the_user_at_hq_retires_the_phone_after_sync(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        manager = sign_in(client, "max")
        credential = client.post("/devices/enroll", json={}, headers=bearer(manager["access_token"])).json()
        phone = {"device_id": credential["device_id"], "device_secret": credential["device_secret"]}
        session = client.post("/devices/sign-in", json=phone).json()
        with deployment.client("hq") as hq:
            assert hq.post(f"/users/{deployment.user_ids['max']}/revoke-tokens", headers=ADMIN).status_code == 200
        asyncio.run(deployment.sync("branch-a"))
        refused(client.get("/auth/me", headers=bearer(session["access_token"])), 401, "unauthorized", "revoked")
        refused(client.post("/devices/sign-in", json=phone), 401, "unauthorized", "revoked")
