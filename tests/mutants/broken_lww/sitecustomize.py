"""Break LWW: keep whatever value arrived first (order-dependent, not commutative)."""

import sync.merge as merge


def first_arrival_wins(current, incoming):  # type: ignore[no-untyped-def]
    if current is None:
        return merge.Applied(incoming)
    return merge.SUPERSEDED


merge.merge_lww = first_arrival_wins
merge.merge_for.cache_clear()
