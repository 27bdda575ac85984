"""Materialized rows kept by version, so a read that meets rows it has made
before (an agent's inbox asked for again) makes only the ones written since.

A row's ``_seq`` is the number of the write that last changed it: every write
of a row sets it (`SqliteStore._write`), numbers only grow, and a row dropped
and stored again gets a new one. So (row id, ``_seq``) names one content of a
row for as long as the file is this store's, and a row kept under the ``_seq``
a read finds is that row as the read sees it. Nothing is invalidated: a row
written since simply no longer matches.

Kept rows are shared by every reader, so they are `SharedRow`s: dicts that
refuse to be changed. A `types.MappingProxyType` would do as well, but an inbox
page read through proxies cost 4.9 million instructions against 3.9 through
plain dicts (`SharedRow`: 4.3). List values inside are the readers' to leave
alone.
Sealed fields (ciphertext, blind indexes) are never kept: a shared read of a
projection holding one is refused (`SealedProjectionError`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from typing import Any, NoReturn

from sync.schema import COLLECTIONS
from sync.store.errors import SealedProjectionError

#: (collection, projected columns)
_Projection = tuple[str, tuple[str, ...]]
#: above this share of rows found kept, a read costs least reading versions first:
#: a version is a third of a row's cost to fetch, and a row fetched by id and
#: materialized costs about three versions more than one fetched in the page's query
HIT_SHARE_FOR_VERSIONS_FIRST = 0.5
#: the weight of the latest read in the moving average of the share found kept
_SHARE_WEIGHT = 0.25


@functools.lru_cache(maxsize=64)
def check_shareable(collection: str, names: tuple[str, ...]) -> None:
    """Refuse a projection that holds a sealed field's column."""
    spec = COLLECTIONS[collection]
    sealed = {c for f in spec.secret_fields for c in (f.members or (f.name,))}
    held = sorted(sealed.intersection(names))
    if held:
        raise SealedProjectionError(collection, held[0])


class SharedRow(dict[str, Any]):
    """A row shared between readers: read it as a dict; changing it raises
    `TypeError` (copy it with ``dict(row)`` to change the copy)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a shared row is read-only: change a copy, dict(row)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse


class RowCache:
    """The rows shared reads made, by projection (collection and columns) and
    row id, each with its ``_seq``. Each projection keeps at most ``max_rows``:
    beyond, the longest kept go first (kept, not read: a row read all the time
    is made once more after ``max_rows`` others, which is cheaper than moving
    it on every read). Not thread-safe: one thread (the store's event loop)
    uses it.

    It also follows, per projection, the share of rows its reads found kept
    (a moving average): a reader asks it `expects_hits` to choose between
    reading the rows' versions first, then only the rows not kept (cheapest
    when most are kept), and reading every row whole at once (cheapest when
    few are: many agents, each read rarely, or rows that keep changing)."""

    __slots__ = ("max_rows", "_kept", "_hit_share")

    def __init__(self, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {max_rows}")
        self.max_rows = max_rows
        self._kept: dict[_Projection, dict[str, tuple[int, SharedRow]]] = {}
        self._hit_share: dict[_Projection, float] = {}

    def expects_hits(self, collection: str, names: tuple[str, ...]) -> bool:
        """Whether lately at least `HIT_SHARE_FOR_VERSIONS_FIRST` of the rows
        read with this projection were found kept."""
        return self._hit_share.get((collection, names), 0.0) >= HIT_SHARE_FOR_VERSIONS_FIRST

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._kept.values())

    def find(self, collection: str, names: tuple[str, ...], versions: list[tuple[str, int]]) -> list[SharedRow | None]:
        """For each (row id, ``_seq``), the row kept as of that ``_seq``, or None."""
        projection = (collection, names)
        kept = self._kept.get(projection, {})
        out: list[SharedRow | None] = []
        hits = 0
        for row_id, seq in versions:
            found = kept.get(row_id)
            if found is not None and found[0] == seq:
                out.append(found[1])
                hits += 1
            else:
                out.append(None)
        if versions:
            share = self._hit_share.get(projection, 0.0)
            self._hit_share[projection] = share + (hits / len(versions) - share) * _SHARE_WEIGHT
        return out

    def keep(self, collection: str, names: tuple[str, ...],
             made: Iterable[tuple[int, dict[str, Any]]]) -> dict[str, SharedRow]:
        """Keep each (``_seq``, row materialized with ``names``, ``row_id``
        first); returns them read-only by row id, as readers get them."""
        kept = self._kept.setdefault((collection, names), {})
        out = {}
        for seq, row in made:
            shared = SharedRow(row)
            row_id = shared["row_id"]
            kept.pop(row_id, None)  # kept anew: the last to go
            kept[row_id] = (seq, shared)
            out[row_id] = shared
        for row_id in list(itertools.islice(kept, max(0, len(kept) - self.max_rows))):
            del kept[row_id]
        return out
