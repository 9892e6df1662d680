"""Start and stop real node processes for multi-process tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]  # the repository root (node/testing/procs.py)


def tensornet_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("tensornet")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "node.cli.app"]


class NodeProc:
    """One `tensornet node run` process with its log file."""

    def __init__(self, home: Path, api: str, extra: Iterable[str] = ()) -> None:
        self.home = home
        self.api = api
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None

    def start(self) -> NodeProc:
        log = open(self.home / "node.log", "ab")  # noqa: SIM115 - the child owns it
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [*tensornet_cmd(), "node", "run", "--home", str(self.home), *self.extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a deadline; returns the exit code."""
        if self.proc is None:
            return None
        self.kill(signal.SIGTERM)
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 3.0) -> dict | list | None:
        try:
            r = httpx.get(self.api + path, timeout=timeout)
            json_body = r.headers.get("content-type", "").startswith("application/json")
            return r.json() if r.status_code < 500 or json_body else None
        except (httpx.HTTPError, ValueError):
            return None

    def status(self) -> dict | None:
        s = self.get("/status")
        return s if isinstance(s, dict) else None

    def height(self) -> int:
        s = self.status()
        return int(s["height"]) if s else -1

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.home / "node.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25, nodes: list[NodeProc] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for n in nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise AssertionError(f"node {n.home.name} exited with {n.proc.returncode} while waiting for {what}:\n"
                                     f"{n.log_tail()}")
        time.sleep(interval)
    tails = "\n".join(f"--- {n.home.name}\n{n.log_tail(15)}" for n in nodes)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def state_roots_at(nodes: list[NodeProc], height: int) -> set[str]:
    roots = set()
    for n in nodes:
        c = n.get(f"/commits/{height}")
        roots.add(c["state_root"] if isinstance(c, dict) and "state_root" in c else f"missing@{n.home.name}")
    return roots


def stop_all(nodes: list[NodeProc]) -> None:
    for n in nodes:
        try:
            n.stop()
        except Exception:
            if n.proc is not None:
                os.killpg(n.proc.pid, signal.SIGKILL)


class BootstrapProc:
    """One `tensornet bootstrap` process; its stderr (the logs) goes to `<home>/bootstrap.log`, never to DEVNULL,
    so a bootstrap that dies leaves its reason behind. Quacks like NodeProc for `wait_for(..., nodes=[...])`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: subprocess.Popen | None = None
        self.multiaddr = ""

    def start(self, listen: str = "/ip4/127.0.0.1/tcp/0") -> BootstrapProc:
        """Start it and wait for the one JSON line with its full multiaddr (an OS-chosen port by default)."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "bootstrap.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [*tensornet_cmd(), "bootstrap", "--home", str(self.home), "--listen", listen, "--json"],
            stdout=subprocess.PIPE, stderr=log, cwd=REPO, text=True, start_new_session=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=15)
            raise AssertionError(f"bootstrap exited with {self.proc.returncode} before printing its address:\n"
                                 f"{self.log_tail()}")
        self.multiaddr = json.loads(line)["multiaddr"]
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a deadline; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.home / "bootstrap.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
