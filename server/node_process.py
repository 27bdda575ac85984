"""A node as a separate `outpost serve` process on loopback, with a client for its API.

Used by the demo, the system tests and the benchmarks: real processes, real
SQLite files, real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from server.auth import TOKEN_ENV
from server.cli import ROOT
from server.node import PASSPHRASE_ENV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """One `outpost serve` subprocess and an HTTP client for its API."""

    def __init__(self, site: str, workdir: Path, *, token: str, upstream_url: str | None = None,
                 sync_interval_s: float = 1.0, extra_args: tuple[str, ...] = (), passphrase: str | None = None,
                 config: Path | None = None) -> None:
        self.site = site
        #: the site config to run (default: the repository's ``sites/<site>.toml``)
        self.config = config
        self.extra_args = extra_args
        self.port = free_port()
        self.data_dir = workdir / site
        self.log_path = workdir / f"{site}.log"
        self.token = token
        self.upstream_url = upstream_url
        self.sync_interval_s = sync_interval_s
        #: the keystore passphrase, given to the child through its environment only
        self.passphrase = passphrase or secrets.token_urlsafe(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", headers={"authorization": f"Bearer {token}"}, timeout=60
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _site_arg(self) -> str:
        return self.site if self.config is None else str(self.config)

    def _args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.upstream_url:
            args += ["--upstream-url", self.upstream_url]
        return args

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, TOKEN_ENV: self.token, PASSPHRASE_ENV: self.passphrase}

    def init(self) -> None:
        self._run("init")

    async def enroll(self) -> str:
        """Register the node's public keys with its upstream (HQ must be running; in a
        thread, so a `LinkProxy` on this loop keeps relaying)."""
        return await asyncio.to_thread(self._run, "enroll")

    def _run(self, command: str, *extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "server", command, self._site_arg, *self._args(), *extra],
                              capture_output=True, cwd=ROOT, env=self.env, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"outpost {command} {self.site} failed: {done.stderr.strip()}")
        return done.stdout

    async def start(self) -> None:
        env = self.env
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", self._site_arg, *self._args(),
             "--sync-interval", str(self.sync_interval_s), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.site} exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.TransportError):
                if (await self.client.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.site} did not answer /health within 30 s; see {self.log_path}")

    async def stop(self) -> None:
        await self.client.aclose()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)

    def kill(self) -> None:
        """SIGKILL, as a power cut would (no shutdown, no flush beyond what committed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def peak_rss_mb(self) -> float:
        """The process's peak resident set size so far (Linux ``VmHWM``)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{self.site} {method} {path}: {response.status_code} {response.text}")
        return response.json()

    async def sync_now(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", "/sync/now")
        return result

    async def digest(self, peer: str | None = None) -> dict[str, Any]:
        """The node's digests; at HQ with ``peer``, its key records as that peer should hold them."""
        result: dict[str, Any] = await self.call("GET", "/status/digest", params={} if peer is None else {"peer": peer})
        return result
