"""Log setup: one line per event with its ids and counts as ``key=value``.

Log records carry event names, node and row ids, field names, counts and reason
codes (see STYLE.md, "Logging without PII"); this formatter prints the ``extra``
members a record was given so those ids reach the log.
"""

from __future__ import annotations

import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD]
        return f"{line} {' '.join(extras)}" if extras else line


def setup_logging(level: str = "INFO", *, node_id: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"[{node_id}] " if node_id else ""
    handler.setFormatter(KeyValueFormatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
