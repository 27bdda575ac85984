"""Erasure reaches a phone: the customer is gone from it, and the scope keys that
wrapped its data keys are destroyed there too, so a copy of the phone's
database taken before opens nothing with the keys the phone holds after."""

from __future__ import annotations

import pytest

from crypto.keystore import open_keystore
from mobile import NotHeldError
from mobile.keys import open_customer
from tests.conftest import LoopThread
from tests.mobile.conftest import Site

pytestmark = pytest.mark.system


def test_an_erased_customer_and_its_keys_leave_the_phone(site: Site, aio: LoopThread) -> None:
    async def run() -> None:
        phone = await site.enroll("max", "max-erasure")
        await phone.sync()
        customer = site.customers["max_2"]
        copy = await phone.store.read_row("customers", customer)
        assert copy is not None
        opened, _ = open_customer(phone.keystore, copy)
        assert opened["name"].reveal() == "司马静怡"
        before = {(k.group, k.field_class, k.version) for k in phone.keystore.scope_keys()}

        await site.hq.call("POST", f"/customers/{customer}/erase",
                           json={"requested_by": "data_subject", "basis": "subject_request"})
        for _ in range(2):  # the new scope keys, then the old ones' retirement
            await site.branch_sync()
        await phone.sync()

        with pytest.raises(NotHeldError):
            await phone.card(customer)
        held = {(k.group, k.field_class, k.version) for k in phone.keystore.scope_keys()}
        branch = open_keystore(site.branch.data_dir / "branch-a.keystore", site.branch.passphrase)
        assert held == {(k.group, k.field_class, k.version) for k in branch.scope_keys(group="branch-a")
                        if k.field_class != "index"}, "the phone holds what its site holds, no more"
        assert held != before, "the keys that wrapped the erased data keys were rotated away"
        _, unavailable = open_customer(phone.keystore, copy)
        assert unavailable and set(unavailable.values()) == {"no_key"}, "a copy from before opens nothing"
        card = await phone.card(site.customers["max_1"])
        assert card.unavailable == {} and card.pii["name"].reveal() == "欧阳明远", "the others open still"

    aio.run(run(), timeout=120)
