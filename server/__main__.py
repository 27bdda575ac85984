"""``python -m server`` is the `outpost` command."""

from server.cli import main

main()
