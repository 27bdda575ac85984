"""Site configuration: one TOML file per node in sites/, decoded into Structs.

A bad config names its path and the offending key, in msgspec's words::

    sites/branch-a.toml: Expected `int` >= 1, got `0` - at `$.sync.interval_s`

Relative paths in a config (``data_dir``) are relative to the config file.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sync.ids import NodeIdStr, RowId
from sync.schema import FieldClass

Role = Literal["hq", "branch", "partner", "mobile"]
Port = Annotated[int, Meta(ge=0, le=65_535)]


class ConfigError(Exception):
    """A site config that cannot be read or is invalid."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ListenConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 8700


class UpstreamConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where this node syncs to: the upstream's node id and base URL."""

    node_id: NodeIdStr
    url: Annotated[str, Meta(pattern=r"^https?://")]


class SyncConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    interval_s: Annotated[float, Meta(gt=0)] = 5.0
    max_drift_ms: Annotated[int, Meta(ge=0)] = 60_000
    page_limit: Annotated[int, Meta(ge=1, le=50_000)] = 5_000
    push_limit: Annotated[int, Meta(ge=1, le=50_000)] = 5_000
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024 * 1024
    timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    backoff_max_s: Annotated[float, Meta(gt=0)] = 60.0


class AuthConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sign-in at this node (server/sessions.py).

    ``trusted_issuers``: other nodes whose access tokens this node accepts,
    verified with their public keys from this node's registry (HQ holds those
    of the nodes enrolled with it); a node always accepts its own.
    ``reveals_per_day``: how many masked fields one user may reveal at this node
    in any 24 hours (``POST /customers/{id}/reveal``); 0 allows none.
    """

    access_ttl_s: Annotated[int, Meta(ge=60, le=3_600)] = 600
    refresh_ttl_s: Annotated[int, Meta(ge=600, le=7 * 86_400)] = 12 * 3_600
    trusted_issuers: list[NodeIdStr] = []
    max_failures_per_user: Annotated[int, Meta(ge=1, le=1_000)] = 5
    max_failures_per_address: Annotated[int, Meta(ge=1, le=100_000)] = 20
    failure_window_s: Annotated[int, Meta(ge=1, le=86_400)] = 900
    reveals_per_day: Annotated[int, Meta(ge=0, le=10_000)] = 50


class AuditConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The audit log (server/audit_log.py, server/audit_shipping.py).

    ``checkpoint_interval_s``: how often the node signs its chain head while it
    has new entries, whether by the timer or before a shipment, and at shutdown;
    ``self_check_interval_s``: how often, at most, the node goes without
    re-reading its whole chain before shipping (to report a break in entries
    already shipped); it re-reads it anyway after it opens and whenever another
    process wrote to its database file (0: at every shipment); ``ship_limit``:
    entries per shipment."""

    checkpoint_interval_s: Annotated[float, Meta(gt=0, le=86_400)] = 300.0
    self_check_interval_s: Annotated[float, Meta(ge=0, le=7 * 86_400)] = 600.0
    ship_limit: Annotated[int, Meta(ge=1, le=50_000)] = 5_000


#: one retention period, in days: at least a day, at most a century
RetentionDays = Annotated[int, Meta(ge=1, le=36_500)]


class RetentionConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How long HQ keeps what the work leaves behind (server/retention.py).

    Only HQ purges: it tombstones expired rows, and the tombstones replicate, so
    every node below deletes them too (and a tombstone shreds a result's sealed
    notes). A ``[retention]`` table at any other node is a `ConfigError`, so no
    one believes a branch keeps its own periods.

    ``results_days``: a result is purged this long after its ``recorded_at_ms``
    (after it was written, when it has none). ``closed_tasks_days``: a task that
    is ``done``, ``archived`` or ``cancelled`` is purged this long after it
    reached that status (the stamp of its ``status`` field); open tasks are kept.
    ``audit_days``: how long audit entries are kept (the audit log's own
    retention; at least the six months the Cybersecurity Law (Art. 21) asks of
    network logs). ``interval_s``: seconds between the scheduled purges.
    """

    results_days: RetentionDays = 1_095
    closed_tasks_days: RetentionDays = 365
    audit_days: Annotated[int, Meta(ge=180, le=36_500)] = 1_825
    interval_s: Annotated[float, Meta(gt=0)] = 3_600.0


#: an ISO date, ``2025-10-01``
IsoDate = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]


class WorkConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The work rules at this node (server/work_rules.py, server/work/).

    ``tz``: the zone of customers without their own (IANA name); ``holidays``
    and ``working_days``: dates that are not, or are, working days against the
    Monday-Friday week; ``sweep_interval_s``: seconds between the rule sweeps
    (every node sweeps, offline too); ``complaint_deadline_hours`` and
    ``complaint_warn_hours``: a complaint ticket's deadline, and how long before
    it the ticket shows ``warning``."""

    tz: Annotated[str, Meta(min_length=1, max_length=64)] = "Asia/Shanghai"
    holidays: list[IsoDate] = []
    working_days: list[IsoDate] = []
    sweep_interval_s: Annotated[float, Meta(gt=0)] = 900.0
    complaint_deadline_hours: Annotated[int, Meta(ge=1, le=24 * 90)] = 48
    complaint_warn_hours: Annotated[int, Meta(ge=0, le=24 * 90)] = 8


class NodeEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A node enrolled below this one (HQ's registry).

    ``classes``: the PII field classes whose keys it may receive under its
    contract (a partner without ``identity`` can never open an ID number, even
    from a copy of its own files); ``lookups``: whether it may receive the
    blind-index key (screen pop, duplicates). Both only narrow what the access
    policy gives the roles at its kind of site (`server.policy.NodeScope`);
    they never widen it.
    ``campaigns``: a partner's contracted campaign ids (its tasks; see
    sites/policy.toml); ``user``: the user a mobile device belongs to (its rows).
    """

    node_id: NodeIdStr
    role: Role
    parent: NodeIdStr | None = None
    classes: list[FieldClass] = msgspec.field(default_factory=lambda: ["contact", "identity", "address", "profile"])
    lookups: bool = True
    campaigns: list[RowId] = []
    user: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class SiteConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    node_id: NodeIdStr
    role: Role
    description: str = ""
    data_dir: str = "var/{node_id}"
    listen: ListenConfig = msgspec.field(default_factory=ListenConfig)
    upstream: UpstreamConfig | None = None
    sync: SyncConfig = msgspec.field(default_factory=SyncConfig)
    nodes: list[NodeEntry] = []
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    audit: AuditConfig = msgspec.field(default_factory=AuditConfig)
    #: HQ only: retention periods (`retention_periods` gives the defaults when absent)
    retention: RetentionConfig | None = None
    #: the work rules' calendar and schedule
    work: WorkConfig = msgspec.field(default_factory=WorkConfig)
    #: a partner's contracted campaign ids (its own copy of its registry entry's)
    campaigns: list[RowId] = []
    #: the access policy (sites/policy.toml's format), relative to this file
    policy: str = "policy.toml"
    #: where the file was read from (set by `load_site`)
    path: str = ""

    @property
    def data_path(self) -> Path:
        base = Path(self.path).parent if self.path else Path.cwd()
        return (base / self.data_dir.format(node_id=self.node_id)).resolve()

    @property
    def db_path(self) -> Path:
        return self.data_path / f"{self.node_id}.db"

    @property
    def policy_path(self) -> Path:
        base = Path(self.path).parent if self.path else Path.cwd()
        return (base / self.policy).resolve()

    @property
    def retention_periods(self) -> RetentionConfig | None:
        """The retention periods HQ enforces (its ``[retention]``, else the
        defaults); None at any other node, which purges nothing by itself."""
        if self.role != "hq":
            return None
        return self.retention if self.retention is not None else RetentionConfig()

    @property
    def keystore_path(self) -> Path:
        """The node's keys: a separate file from the database, sealed with a passphrase."""
        return self.data_path / f"{self.node_id}.keystore"


def load_site(path: str | Path) -> SiteConfig:
    """Read and validate a site config; raises `ConfigError` naming what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        config = msgspec.toml.decode(data, type=SiteConfig)
    except msgspec.DecodeError as exc:
        raise ConfigError(str(path), str(exc)) from None
    if config.role != "hq" and config.upstream is None:
        raise ConfigError(str(path), "a non-HQ node needs an [upstream] - at `$.upstream`")
    if config.role != "hq" and config.retention is not None:
        raise ConfigError(str(path), "only HQ sets retention periods (its purges replicate to every node); "
                                     "remove this table - at `$.retention`")
    try:
        ZoneInfo(config.work.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(str(path), f"unknown time zone `{config.work.tz}`: use an IANA name such as "
                                     "`Asia/Shanghai` - at `$.work.tz`") from None
    return msgspec.structs.replace(config, path=str(path.resolve()))


def with_overrides(config: SiteConfig, *, data_dir: str | None = None, port: int | None = None,
                   upstream_url: str | None = None) -> SiteConfig:
    """The config with command-line overrides applied (paths are taken as given)."""
    if data_dir is not None:
        config = msgspec.structs.replace(config, data_dir=str(Path(data_dir).resolve()))
    if port is not None:
        config = msgspec.structs.replace(config, listen=ListenConfig(host=config.listen.host, port=port))
    if upstream_url is not None and config.upstream is not None:
        config = msgspec.structs.replace(config, upstream=UpstreamConfig(node_id=config.upstream.node_id, url=upstream_url))
    return config
