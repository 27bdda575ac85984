"""Users, as HQ defines them: create, disable or enable, revoke every token.

Users are written only at HQ (routes refuse these calls elsewhere) and reach the
nodes of their site by sync (`sync.scope.PeerScope`). Disabling or revoking
raises the user's ``tokens_valid_after_ms``: every session begun before it ends
at HQ at once and at the user's site with its next sync (server/sessions.py).

No web framework here: server/routes/users.py and the CLI (through the API) call it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from server.passwords import PasswordCheck
from sync.audit import AuditDraft
from sync.edits import Edit
from sync.ids import NodeIdStr, new_ulid
from sync.schema import Role, Username
from sync.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

#: ASVS 5.0 6.2.1: at least 8 characters (15 recommended); long passphrases welcome
Password = Annotated[str, Meta(min_length=8, max_length=128, description="at least 8 characters")]


class UserCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new user: signs in with ``username`` and ``password`` at HQ and at the nodes of ``site``."""

    username: Annotated[Username, Meta(description="lowercase letters, digits, dots, dashes, underscores")]
    role: Role
    site: Annotated[NodeIdStr, Meta(description="the node where the user works (HQ or an enrolled node)")]
    password: Password
    display_name: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    team: Annotated[str, Meta(min_length=1, max_length=64)] | None = None

    def __repr__(self) -> str:
        return f"UserCreate(username={self.username!r}, role={self.role!r}, site={self.site!r}, password=***)"

    def __rich_repr__(self) -> Iterator[tuple[str, object]]:
        yield "username", self.username
        yield "role", self.role
        yield "site", self.site


class UsernameTakenError(Exception):
    """Usernames are unique per deployment."""

    code = "username_taken"

    def __init__(self, username: str) -> None:
        self.username = username
        self.message = f"The username `{username}` is taken; choose another"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"username": self.username}


class UnknownSiteError(Exception):
    """A user's site must be HQ or a node in HQ's registry."""

    code = "unknown_site"

    def __init__(self, site: str) -> None:
        self.site = site
        self.message = f"No node `{site}` in HQ's registry: a user's site is HQ or a node under [[nodes]] - at `$.site`"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"site": self.site, "at": "$.site"}


class UserGoneError(Exception):
    """No live user of that id here."""

    code = "not_found"

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.message = f"No `users` row `{user_id}` here"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"collection": "users", "row_id": self.user_id}


async def create_user(store: SqliteStore, passwords: PasswordCheck, body: UserCreate, *,
                      audit: Callable[[str], AuditDraft] | None = None) -> dict[str, Any]:
    """Store a new user (at HQ) with an Argon2id hash of its password, and the
    audit entry ``audit`` makes for the new user's id in the same transaction;
    raises `UsernameTakenError` or `UnknownSiteError`."""
    if await store.node(body.site) is None:
        raise UnknownSiteError(body.site)
    if any(not r["deleted"] for r in await store.find_rows("users", limit=10, username=body.username)):
        raise UsernameTakenError(body.username)
    password_hash = await passwords.hash(body.password)
    row_id = new_ulid(store.clock.now_ms(), os.urandom(10))
    values: dict[str, Any] = {
        "username": body.username, "display_name": body.display_name, "role": body.role, "site": body.site,
        "team": body.team, "password_hash": password_hash,
    }
    await store.write_local([Edit("users", row_id, k, "set", v) for k, v in values.items()],
                            audit=None if audit is None else audit(row_id))
    log.info("users.created", extra={"user_id": row_id, "role": body.role, "site": body.site})
    return await live_user(store, row_id)


async def live_user(store: SqliteStore, user_id: str) -> dict[str, Any]:
    row = await store.read_row("users", user_id)
    if row is None or row["deleted"] or row["username"] is None:
        raise UserGoneError(user_id)
    return row


async def set_disabled(store: SqliteStore, user_id: str, disabled: bool, *,
                       audit: AuditDraft | None = None) -> dict[str, Any]:
    """Disable (which also revokes every token) or enable a user, with its audit entry."""
    row = await live_user(store, user_id)
    edits = [Edit("users", user_id, "disabled", "set", disabled)]
    if disabled:
        edits.append(_revocation(store, row))
    await store.write_local(edits, audit=audit)
    log.info("users.disabled" if disabled else "users.enabled", extra={"user_id": user_id})
    return await live_user(store, user_id)


async def revoke_tokens(store: SqliteStore, user_id: str, *, audit: AuditDraft | None = None) -> dict[str, Any]:
    """End every session and token of a user (lost phone, left the company):
    they sign in again. ``audit``: its entry, committed with it."""
    row = await live_user(store, user_id)
    await store.write_local([_revocation(store, row)], audit=audit)
    log.info("users.tokens revoked", extra={"user_id": user_id})
    return await live_user(store, user_id)


def _revocation(store: SqliteStore, row: dict[str, Any]) -> Edit:
    # only grows, even if HQ's clock went back
    stamp = max(store.clock.now_ms(), int(row["tokens_valid_after_ms"]) + 1)
    return Edit("users", row["row_id"], "tokens_valid_after_ms", "set", stamp)


async def list_users(store: SqliteStore, *, username: str | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
    """The live users this node holds (all at HQ, a site's own elsewhere)."""
    equals = {} if username is None else {"username": username.strip().lower()}
    return [r for r in await store.find_rows("users", limit=limit, **equals) if not r["deleted"]]
