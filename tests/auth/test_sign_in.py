"""Sign-in, refresh, sign-out and revocation, through a node's HTTP API (in process).

The branch node here has no HQ running at all: it signs its staff in from the
user rows it synced. Every refusal is a problem document with a clear message,
never a password, hash or token.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sync.edits import Edit
from sync.store.sqlite import FOREIGN_STALE_S
from tests.auth.conftest import ADMIN, PASSWORD, Deployment, bearer, sign_in
from tests.conftest import problem


def refused(response: Any, status: int, code: str, reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = problem(response)
    assert body["code"] == code, body
    if reason is not None:
        assert body["reason"] == reason, body
    text = response.text
    assert "Traceback" not in text and PASSWORD not in text and "argon2" not in text
    return body


def test_sign_in_at_the_branch_gives_a_short_access_token_and_a_refresh_token(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        pair = sign_in(client, "Ana")  # usernames are matched lowercased
        assert pair["token_type"] == "Bearer" and pair["expires_in"] == 600
        assert pair["refresh_expires_in"] == 12 * 3600 and pair["refresh_token"].startswith("opr_")
        me = client.get("/auth/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json() == pair["principal"]
        assert me.json() | {"user_id": "", "session_id": ""} == {
            "user_id": "", "username": "ana", "role": "agent", "site": "branch-a", "team": "north",
            "device_id": None, "issuer": "branch-a", "session_id": "",
        }
        assert me.json()["user_id"] == deployment.user_ids["ana"]


def test_wrong_password_and_unknown_user_get_the_same_answer(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        wrong = client.post("/auth/sign-in", json={"username": "ana", "password": "not-the-password"})
        unknown = client.post("/auth/sign-in", json={"username": "nobody-here", "password": "not-the-password"})
        elsewhere = client.post("/auth/sign-in", json={"username": "bo", "password": PASSWORD})  # branch-b's user
        for response in (wrong, unknown, elsewhere):
            body = refused(response, 401, "sign_in_failed")
            assert body["detail"] == "Wrong username or password"
            assert response.headers["www-authenticate"] == "Bearer"
            assert "not-the-password" not in response.text and "nobody-here" not in response.text
        assert wrong.json() == unknown.json() == elsewhere.json()


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_session(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        first = sign_in(client)
        second = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200, second.text
        second_pair = second.json()
        assert second_pair["refresh_token"] != first["refresh_token"]
        assert second_pair["principal"]["session_id"] == first["principal"]["session_id"]
        assert client.get("/auth/me", headers=bearer(second_pair["access_token"])).status_code == 200

        # the first refresh token again: someone else holds the family
        body = refused(client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401,
                       "unauthorized", "refresh_reused")
        assert "already used" in body["detail"]
        # the whole session ends: the newest refresh token and the access tokens too
        refused(client.post("/auth/refresh", json={"refresh_token": second_pair["refresh_token"]}), 401,
                "unauthorized", "refresh_revoked")
        for token in (first["access_token"], second_pair["access_token"]):
            refused(client.get("/auth/me", headers=bearer(token)), 401, "unauthorized", "session_ended")
        # another sign-in is a new session, unaffected
        assert client.get("/auth/me", headers=bearer(sign_in(client)["access_token"])).status_code == 200
        refused(client.post("/auth/refresh", json={"refresh_token": "opr_made-up"}), 401, "unauthorized",
                "refresh_unknown")


def test_sign_out_ends_the_session_at_once(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        pair = sign_in(client)
        other = sign_in(client)  # another session of the same user
        out = client.post("/auth/sign-out", headers=bearer(pair["access_token"]))
        assert out.status_code == 204, out.text
        refused(client.get("/auth/me", headers=bearer(pair["access_token"])), 401, "unauthorized", "session_ended")
        refused(client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401, "unauthorized",
                "refresh_revoked")
        assert client.get("/auth/me", headers=bearer(other["access_token"])).status_code == 200


def test_access_tokens_expire_and_refresh_renews_them(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        pair = sign_in(client)
        auth = client.app.state.node.auth
        real = auth.now_ms
        auth.now_ms = lambda: real() + 11 * 60_000
        refused(client.get("/auth/me", headers=bearer(pair["access_token"])), 401, "unauthorized", "expired")
        renewed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert renewed.status_code == 200
        assert client.get("/auth/me", headers=bearer(renewed.json()["access_token"])).status_code == 200
        auth.now_ms = lambda: real() + 13 * 3_600_000  # past the session's 12 hours
        refused(client.post("/auth/refresh", json={"refresh_token": renewed.json()["refresh_token"]}), 401,
                "unauthorized", "refresh_expired")


def test_missing_or_foreign_bearer_tokens_are_refused(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        body = refused(client.get("/auth/me"), 401, "unauthorized", "missing_token")
        assert "Authorization: Bearer" in body["detail"]
        refused(client.get("/auth/me", headers=bearer("not.a.token")), 401, "unauthorized", "malformed")
        refused(client.get("/auth/me", headers=ADMIN), 401, "unauthorized", "malformed")  # the operator token
        refused(client.post("/auth/sign-out"), 401, "unauthorized", "missing_token")


def test_disabling_at_hq_takes_effect_there_at_once(deployment: Deployment) -> None:
    ana = deployment.user_ids["ana"]
    with deployment.client("hq") as client:
        pair = sign_in(client)  # HQ holds every user
        assert pair["principal"]["issuer"] == "hq"
        disabled = client.post(f"/users/{ana}/disable", headers=ADMIN)
        assert disabled.status_code == 200 and disabled.json()["disabled"] is True
        assert disabled.json()["tokens_valid_after_ms"] > 0
        refused(client.get("/auth/me", headers=bearer(pair["access_token"])), 401, "unauthorized", "disabled")
        refused(client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401, "unauthorized",
                "disabled")
        body = refused(client.post("/auth/sign-in", json={"username": "ana", "password": PASSWORD}), 403,
                       "account_disabled")
        assert "disabled" in body["detail"]
        # a wrong password for a disabled account says nothing of the account
        refused(client.post("/auth/sign-in", json={"username": "ana", "password": "wrong-one"}), 401,
                "sign_in_failed")
        assert client.post(f"/users/{ana}/enable", headers=ADMIN).status_code == 200
        refused(client.get("/auth/me", headers=bearer(pair["access_token"])), 401, "unauthorized", "revoked")
        assert client.get("/auth/me", headers=bearer(sign_in(client)["access_token"])).status_code == 200


def test_revoking_tokens_at_hq_reaches_the_branch_with_its_next_sync(deployment: Deployment) -> None:
    ana = deployment.user_ids["ana"]
    with deployment.client("branch-a") as branch:
        pair = sign_in(branch)
        with deployment.client("hq") as hq:
            at_hq = sign_in(hq)
            assert hq.post(f"/users/{ana}/revoke-tokens", headers=ADMIN).status_code == 200
            refused(hq.get("/auth/me", headers=bearer(at_hq["access_token"])), 401, "unauthorized", "revoked")
            assert hq.get("/auth/me", headers=bearer(sign_in(hq)["access_token"])).status_code == 200
        assert branch.get("/auth/me", headers=bearer(pair["access_token"])).status_code == 200  # not synced yet
        asyncio.run(deployment.sync("branch-a"))  # another process writes the branch's file
        time.sleep(FOREIGN_STALE_S)
        refused(branch.get("/auth/me", headers=bearer(pair["access_token"])), 401, "unauthorized", "revoked")
        refused(branch.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401, "unauthorized",
                "revoked")
        assert branch.get("/auth/me", headers=bearer(sign_in(branch)["access_token"])).status_code == 200


def test_a_changed_role_ends_the_token(deployment: Deployment) -> None:
    async def promote() -> None:
        store = await deployment.open_store("hq")
        try:
            await store.write_local([Edit("users", deployment.user_ids["ana"], "role", "set", "supervisor")])
        finally:
            await store.close()

    with deployment.client("hq") as client:
        pair = sign_in(client)
        asyncio.run(promote())
        refused(client.get("/auth/me", headers=bearer(pair["access_token"])), 401, "unauthorized", "user_changed")
        assert sign_in(client)["principal"]["role"] == "supervisor"


def test_failed_sign_ins_are_limited_per_username(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        for _ in range(5):
            refused(client.post("/auth/sign-in", json={"username": "ana", "password": "guess"}), 401,
                    "sign_in_failed")
        limited = client.post("/auth/sign-in", json={"username": "ana", "password": PASSWORD})  # even the right one
        body = refused(limited, 429, "too_many_attempts")
        retry = int(limited.headers["retry-after"])
        assert 0 < retry <= 900 and body["retry_after_s"] == retry and body["scope"] == "account"
        assert body["detail"] == f"Too many failed sign-ins for this account; try again in {retry} s"
        # an unknown username is limited the same way (no hint which names exist)
        for _ in range(5):
            client.post("/auth/sign-in", json={"username": "ghost", "password": "guess"})
        refused(client.post("/auth/sign-in", json={"username": "ghost", "password": "guess"}), 429,
                "too_many_attempts")
        assert sign_in(client, "max")["principal"]["username"] == "max"  # others are not limited
        auth = client.app.state.node.auth
        real = auth.now_ms
        auth.now_ms = lambda: real() + 15 * 60_000 + 1_000
        assert sign_in(client)["principal"]["username"] == "ana"  # the window has passed


def test_failed_sign_ins_are_limited_per_address(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        for i in range(20):
            refused(client.post("/auth/sign-in", json={"username": f"spray-{i}", "password": "guess"}), 401,
                    "sign_in_failed")
        body = refused(client.post("/auth/sign-in", json={"username": "ana", "password": PASSWORD}), 429,
                       "too_many_attempts")
        assert body["scope"] == "address" and "from this address" in body["detail"]


def test_bad_sign_in_bodies_are_refused_without_echo(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        for body in ({"username": "ana"}, {"username": "ana", "password": "SECRET-pw-1", "otp": 1},
                     {"username": "ana", "password": "x" * 2000}, {"username": 7, "password": "SECRET-pw-1"}):
            response = client.post("/auth/sign-in", json=body)
            assert response.status_code == 400, response.text
            assert "SECRET-pw-1" not in response.text and "xxxxxxxx" not in response.text
            problem(response)


def test_sign_in_state_is_hashed_in_the_database(deployment: Deployment) -> None:
    with deployment.client("branch-a") as client:
        pair = sign_in(client)
        renewed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    data = b"".join(p.read_bytes() for p in deployment.configs["branch-a"].data_path.iterdir() if p.is_file())
    for secret in (PASSWORD, pair["refresh_token"], renewed["refresh_token"], pair["access_token"]):
        assert secret.encode() not in data
