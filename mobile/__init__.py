"""The reference phone client: an account manager's phone as a node of the lowest level.

It syncs with its site node over the sync protocol (api_spec/sync-protocol.md,
"Phones"), holds its user's customers and tasks in its own SQLite store, sealed
at rest, opens their personal fields with the scope keys its site wraps for it,
and records work while the site is unreachable. It imports `sync` and
`crypto`, never the server.

    phone = await Phone.enroll(data_dir, site_url, username, password, passphrase=...)
    await phone.sync()
    for item in await phone.inbox(now_ms):
        ...
"""

from mobile.client import Card, InboxTask, Phone
from mobile.errors import EnrolmentError, MobileError, NotHeldError

__all__ = ["Card", "EnrolmentError", "InboxTask", "MobileError", "NotHeldError", "Phone"]
