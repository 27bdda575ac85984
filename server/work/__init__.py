"""The operation's work rules and KPIs (../shared/DESIGN.md, Work rules), as
plain functions with no web framework and no SQL, so every node runs them the
same way, offline too, and so does the mobile reference client (mobile/).

Time is passed in; rows come in as the store's plain dicts; what a rule decides
is returned as `sync.edits.Edit` lists for the caller to commit.
"""
