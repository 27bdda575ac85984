"""All customers of one sales rep go to one responsible agent.

The responsible agent of a sales rep is the agent already assigned to most of
the rep's customers (ties: the smallest user id), so the choice is a function
of the rows alone and two nodes holding the same customers make the same one.
A rep none of whose customers has an agent yet is left alone (no one to pick).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from server.work.tasks import Row
from sync.edits import Edit


def responsible_agents(customers: Iterable[Row]) -> dict[str, str]:
    """sales rep -> its responsible agent, over the live customers."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for c in customers:
        if c.get("deleted") or not c.get("sales_rep") or not c.get("assigned_agent"):
            continue
        counts[c["sales_rep"]][c["assigned_agent"]] += 1
    return {rep: min(agents.items(), key=lambda kv: (-kv[1], kv[0]))[0] for rep, agents in counts.items()}


def sales_rep_edits(customers: Iterable[Row]) -> list[Edit]:
    """Assign each live customer of a sales rep to the rep's responsible agent."""
    customers = [c for c in customers if not c.get("deleted")]
    agents = responsible_agents(customers)
    return [
        Edit("customers", c["row_id"], "assigned_agent", "set", agents[c["sales_rep"]])
        for c in sorted(customers, key=lambda c: c["row_id"])
        if c.get("sales_rep") in agents and c.get("assigned_agent") != agents[c["sales_rep"]]
    ]
