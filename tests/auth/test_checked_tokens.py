"""A checked access token is not checked again while nothing it was checked
against changed; any change does make it checked again: here a revocation
written into the node's file by another process, which the node's own
bookkeeping never saw: seen within `FOREIGN_STALE_S`."""

from __future__ import annotations

import asyncio
import time

from sync.edits import Edit
from sync.store.sqlite import FOREIGN_STALE_S
from tests.auth.conftest import Deployment, bearer, sign_in
from tests.auth.test_sign_in import refused


def test_a_change_made_by_another_process_ends_a_checked_token(deployment: Deployment) -> None:
    ana = deployment.user_ids["ana"]
    with deployment.client("hq") as hq:
        token = bearer(sign_in(hq)["access_token"])
        for _ in range(3):  # checked once, then remembered
            assert hq.get("/auth/me", headers=token).status_code == 200

        async def revoke_behind_its_back() -> None:
            store = await deployment.open_store("hq")
            try:
                row = await store.read_row("users", ana)
                assert row is not None
                await store.write_local([Edit("users", ana, "tokens_valid_after_ms", "set",
                                              row["tokens_valid_after_ms"] + 10**9)])
            finally:
                await store.close()

        asyncio.run(revoke_behind_its_back())
        time.sleep(FOREIGN_STALE_S)
        refused(hq.get("/auth/me", headers=token), 401, "unauthorized", "revoked")
