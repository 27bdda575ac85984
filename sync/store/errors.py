"""Typed errors of the replica store."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by `sync.store`."""

    code = "store_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StoreMissingError(StoreError):
    """No store exists at the path; ``outpost init`` creates one."""

    code = "store_missing"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"No Outpost store at {path}; create it with `outpost init`")


class StoreExistsError(StoreError):
    """A store already exists where a new one was to be created."""

    code = "store_exists"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"An Outpost store already exists at {path}; refusing to overwrite it")


class StoreOwnerError(StoreError):
    """The store belongs to another node than the one opening it."""

    code = "store_owner"

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Store {path} belongs to node `{actual}`, not `{expected}`; check the site config"
        )


class StoreVersionError(StoreError):
    """The store was written by a newer Outpost than this one."""

    code = "store_version"

    def __init__(self, path: str, store_version: int, supported: int) -> None:
        self.path = path
        self.store_version = store_version
        self.supported = supported
        super().__init__(
            f"Store {path} has layout version {store_version}; this Outpost reads up to "
            f"{supported}: upgrade Outpost"
        )


class StoreBusyError(StoreError):
    """Another connection kept SQLite from finishing an operation; retry it."""

    code = "store_busy"

    def __init__(self, path: str, operation: str) -> None:
        self.path = path
        self.operation = operation
        super().__init__(f"{operation} of {path} could not finish: another reader or writer holds it; retry")


class SealedProjectionError(StoreError):
    """A shared read (`sync.store.row_cache`) asked for a sealed field, which is
    never kept in memory between requests: read it with an ordinary read."""

    code = "sealed_projection"

    def __init__(self, collection: str, column: str) -> None:
        self.collection = collection
        self.column = column
        super().__init__(f"{collection}.{column} is sealed: shared reads keep no sealed field; "
                         "leave it out of the fields, or use an ordinary read")
