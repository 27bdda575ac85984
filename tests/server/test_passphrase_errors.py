"""A wrong keystore passphrase, or a damaged keystore file, stops a command with
one clear line: `outpost serve`, `sync` and `enroll` open the keystore, and each
must exit 1 with a single ``outpost: ...`` line on stderr naming the keystore,
no traceback, and no passphrase echoed. `outpost status` reads only the database
and needs no passphrase.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from server.node import PASSPHRASE_ENV
from server.node_process import free_port

ROOT = Path(__file__).resolve().parents[2]
GOOD = "correct horse battery staple, branch-a"
WRONG = "incorrect horse battery staple"


def outpost(*args: str | Path, passphrase: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    if passphrase is not None:
        env[PASSPHRASE_ENV] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "server", *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, timeout=60,
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 1, nothing on stdout, one ``outpost:`` line on stderr, no
    traceback, no passphrase; returns the line."""
    assert result.returncode == 1, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    message = result.stderr.strip()
    assert message.startswith("outpost: ") and "\n" not in message, message
    assert result.stdout == ""
    assert GOOD not in message and WRONG not in message, "a passphrase was echoed"
    return message


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """branch-a's database and keystore (sealed with `GOOD`), made once for the module."""
    data = tmp_path_factory.mktemp("keystore") / "branch-a"
    done = outpost("init", "branch-a", "--data-dir", data, passphrase=GOOD)
    assert done.returncode == 0, done.stderr
    return data


@pytest.fixture
def data_dir(initialised: Path, tmp_path: Path) -> Path:
    """A copy of the initialised node for one test to damage."""
    return Path(shutil.copytree(initialised, tmp_path / "branch-a"))


def command(name: str, data: Path) -> list[str | Path]:
    """The command line of ``name`` for branch-a at ``data``, pointed at an upstream
    where nothing listens (so a command that got past its keystore says so)."""
    args: list[str | Path] = [name, "branch-a", "--data-dir", data]
    if name == "serve":
        return [*args, "--port", str(free_port()), "--no-replicate"]
    return [*args, "--upstream-url", f"http://127.0.0.1:{free_port()}"] + (["--quiet"] if name == "sync" else [])


@pytest.mark.parametrize("name", ["serve", "sync", "enroll"])
def test_wrong_passphrase(data_dir: Path, name: str) -> None:
    message = one_line_failure(outpost(*command(name, data_dir), passphrase=WRONG))
    keystore = data_dir / "branch-a.keystore"
    assert message == f"outpost: wrong passphrase for keystore {keystore} (or the file was altered)"


@pytest.mark.parametrize("name", ["serve", "sync", "enroll"])
def test_no_passphrase_and_no_terminal(data_dir: Path, name: str) -> None:
    message = one_line_failure(outpost(*command(name, data_dir), passphrase=None))
    assert PASSPHRASE_ENV in message and "passphrase" in message, message


def test_a_wrong_passphrase_changes_nothing_and_the_right_one_gets_further(data_dir: Path) -> None:
    keystore = (data_dir / "branch-a.keystore").read_bytes()
    one_line_failure(outpost(*command("sync", data_dir), passphrase=WRONG))
    assert (data_dir / "branch-a.keystore").read_bytes() == keystore
    status = json.loads(outpost("status", "branch-a", "--data-dir", data_dir, "--json", passphrase=WRONG).stdout)
    (link,) = status["links"]
    assert link["last_error"] is None and link["pull_cursor"] == 0, "the sync went past the keystore"
    # the right passphrase opens the keystore: the same command now fails at the link
    message = one_line_failure(outpost(*command("sync", data_dir), passphrase=GOOD))
    assert "Cannot reach `hq`" in message, message


def _cut(n: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:n]


def _flip(index: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[index] ^= 0x01
        return bytes(out)

    return change


#: case -> (change to the keystore's bytes, what the message must say)
DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated-contents": (lambda d: d[:-10], "truncated: the file ends inside the sealed contents"),
    "truncated-header": (_cut(25), "truncated: the file ends inside the header"),
    "truncated-magic": (_cut(5), "truncated: the file ends inside the magic"),
    "empty": (_cut(0), "truncated: the file ends inside the magic"),
    "not-a-keystore": (lambda d: b"\x00garbage" * 40, "not an Outpost keystore (bad magic)"),
    "trailing-bytes": (lambda d: d + b"\x00" * 7, "trailing bytes after the sealed contents"),
    "flipped-contents": (_flip(-20), "wrong passphrase for keystore"),
    "flipped-format": (_flip(17), "is not one this version reads"),
}


@pytest.mark.parametrize("name", ["serve", "sync"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_keystore(data_dir: Path, case: str, name: str) -> None:
    change, expected = DAMAGE[case]
    keystore = data_dir / "branch-a.keystore"
    keystore.write_bytes(change(keystore.read_bytes()))
    message = one_line_failure(outpost(*command(name, data_dir), passphrase=GOOD))
    assert expected in message and str(keystore) in message, message


@pytest.mark.parametrize("name", ["serve", "sync"])
def test_missing_keystore(data_dir: Path, name: str) -> None:
    keystore = data_dir / "branch-a.keystore"
    keystore.unlink()
    message = one_line_failure(outpost(*command(name, data_dir), passphrase=GOOD))
    assert message == f"outpost: no keystore at {keystore}; create one first (outpost init)"


@pytest.mark.parametrize("name", ["serve", "sync"])
def test_unreadable_keystore(data_dir: Path, name: str) -> None:
    """The keystore path is something that cannot be read as a file (here a directory,
    as a bad restore leaves it; an unreadable file fails the same way)."""
    keystore = data_dir / "branch-a.keystore"
    keystore.unlink()
    keystore.mkdir()
    message = one_line_failure(outpost(*command(name, data_dir), passphrase=GOOD))
    assert message == f"outpost: cannot open {keystore}: Is a directory", message
