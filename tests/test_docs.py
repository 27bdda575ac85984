"""The README documents every CLI command, and starts with the two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from server.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_cli_command_is_in_the_readme() -> None:
    missing = [name for name in main.commands if f"outpost {name}" not in README]
    assert missing == [], f"README lacks `outpost {missing[0]}`" if missing else ""


def test_readme_starts_with_exactly_two_setup_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["python3 run.py demo", "python3 run.py test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "python3 run.py test" in ci
