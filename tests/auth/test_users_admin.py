"""The operator's users API: defined at HQ only, never showing a hash."""

from __future__ import annotations

from tests.auth.conftest import ADMIN, PASSWORD, Deployment
from tests.auth.test_sign_in import refused
from tests.conftest import problem


def test_create_list_and_get_users_at_hq(deployment: Deployment) -> None:
    with deployment.client("hq") as client:
        created = client.post("/users", headers=ADMIN, json={
            "username": "lin.wei", "role": "supervisor", "site": "branch-b", "team": "south",
            "display_name": "林伟", "password": "another long password"})
        assert created.status_code == 201, created.text
        view = created.json()
        assert set(view) == {"row_id", "username", "display_name", "role", "site", "team", "disabled",
                             "tokens_valid_after_ms", "deleted"}
        assert view["display_name"] == "林伟" and view["disabled"] is False
        listed = client.get("/users", headers=ADMIN)
        assert sorted(u["username"] for u in listed.json()) == ["ana", "bo", "lin.wei", "max"]
        assert "argon2" not in listed.text and "password" not in listed.text
        assert client.get("/users", params={"username": "LIN.WEI"}, headers=ADMIN).json() == [view]
        assert client.get(f"/users/{view['row_id']}", headers=ADMIN).json() == view
        refused(client.get("/users/01JD0QK2M6X3Z1V9A8B7C6D5E4", headers=ADMIN), 404, "not_found")


def test_usernames_are_unique_and_sites_must_be_known(deployment: Deployment) -> None:
    with deployment.client("hq") as client:
        taken = refused(client.post("/users", headers=ADMIN, json={
            "username": "ana", "role": "agent", "site": "branch-b", "password": PASSWORD}), 409, "username_taken")
        assert "`ana`" in taken["detail"]
        unknown = refused(client.post("/users", headers=ADMIN, json={
            "username": "zoe", "role": "agent", "site": "branch-z", "password": PASSWORD}), 422, "unknown_site")
        assert "$.site" in unknown["detail"]


def test_bad_user_bodies_are_refused_without_echo(deployment: Deployment) -> None:
    with deployment.client("hq") as client:
        for body in ({"username": "zoe", "role": "agent", "site": "branch-a", "password": "SHORTpw"},
                     {"username": "zoe", "role": "SECRET-ROLE", "site": "branch-a", "password": PASSWORD},
                     {"username": "Zoe Upper", "role": "agent", "site": "branch-a", "password": PASSWORD},
                     {"username": "zoe", "role": "agent", "site": "branch-a", "password": PASSWORD, "admin": True}):
            response = client.post("/users", headers=ADMIN, json=body)
            assert response.status_code == 400, response.text
            assert "SHORTpw" not in response.text and "SECRET-ROLE" not in response.text
            assert PASSWORD not in response.text
            problem(response)
        short = client.post("/users", headers=ADMIN, json={
            "username": "zoe", "role": "agent", "site": "branch-a", "password": "SHORTpw"}).json()
        assert any(e["key"] == "password" or "password" in e["message"] for e in short["errors"]), short


def test_users_are_defined_at_hq_only(deployment: Deployment) -> None:
    ana = deployment.user_ids["ana"]
    with deployment.client("branch-a") as client:
        body = refused(client.post("/users", headers=ADMIN, json={
            "username": "zoe", "role": "agent", "site": "branch-a", "password": PASSWORD}), 409, "wrong_node")
        assert "`hq`" in body["detail"]
        for action in ("disable", "enable", "revoke-tokens"):
            refused(client.post(f"/users/{ana}/{action}", headers=ADMIN), 409, "wrong_node")
        assert [u["username"] for u in client.get("/users", headers=ADMIN).json()] == ["ana", "max"]


def test_the_users_api_takes_the_operator_token(deployment: Deployment) -> None:
    with deployment.client("hq") as client:
        refused(client.get("/users"), 401, "unauthorized")
        refused(client.post("/users", json={"username": "zoe", "role": "agent", "site": "hq",
                                            "password": PASSWORD}), 401, "unauthorized")
