"""Retention at HQ, for the operator: purge what has expired now, besides the
schedule (server/retention.py)."""

from __future__ import annotations

from litestar import Controller, post

from server.deps import NodeDep
from server.errors import WrongNodeError, problems
from server.retention import RetentionReport


class RetentionController(Controller):
    path = "/retention"
    tags = ["retention"]

    @post("/run", operation_id="RunRetention", responses=problems(401, 409), name="retention:run", status_code=200,
          security=[{"OperatorToken": []}])
    async def run(self, node: NodeDep) -> RetentionReport:  # type: ignore[valid-type]
        """Purge now what HQ's ``[retention]`` periods have expired: results
        recorded more than ``results_days`` ago, and tasks done, archived or
        cancelled more than ``closed_tasks_days`` ago. The rows are tombstoned at
        HQ and deleted at every node on its next sync; a result's sealed notes are
        shredded. Answers how many rows of each collection were purged, and the
        cut-offs applied. HQ purges on its own every ``interval_s`` as well; a
        purge in progress is waited for. Each run is an access event
        (``retention_purge``, with the count). Only at HQ (409 elsewhere)."""
        if node.retention is None:
            raise WrongNodeError("retention run", node.config.node_id, node.hq)
        return await node.retention.purge(purpose="requested")
