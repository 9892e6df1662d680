"""Live fuzzing against a real 4-validator network (4 `tensornet node run` processes on loopback).

The network must keep committing while mutants arrive: its height grows during the fuzz, every node
answers its API throughout, and all nodes agree on the state root at a common height afterwards. The
same network also seeds a corpus (`fuzz capture` from a node and from a chain.db).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from node.testnet.gen import generate
from node.testnet.local import free_port_base

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def _get(url: str) -> dict | None:
    try:
        r = httpx.get(url, timeout=2.0)
        return r.json() if r.status_code in (200, 503) else None
    except (httpx.HTTPError, ValueError):
        return None


def start_network(tmp: Path) -> tuple[list[subprocess.Popen], list[str], list[Path]]:
    base = free_port_base(8)
    plans, _ = generate(tmp / "net", hosts=["127.0.0.1"] * 4, chain_id="tensornet-fuzz-live", p2p_base=base,
                        api_base=base + 4)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    for p in plans:
        log = open(p.home / "node.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen([sys.executable, "-m", "node.cli.app", "node", "run", "--home", str(p.home)],
                                      cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    return procs, [p.api for p in plans], [p.home for p in plans]


def stop_network(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def wait_height(apis: list[str], height: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hs = [(_get(f"{a}/status") or {}).get("height", -1) for a in apis]
        if min(hs) >= height:
            return
        time.sleep(0.5)
    raise AssertionError(f"network did not reach height {height} in {timeout} s: heights {hs}")


def roots_at(apis: list[str], height: int) -> list[str | None]:
    return [(_get(f"{a}/commits/{height}") or {}).get("state_root") for a in apis]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli.app", "fuzz", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_live_fuzz_keeps_the_network_committing(tmp_path: Path) -> None:
    procs, apis, homes = start_network(tmp_path)
    try:
        wait_height(apis, 3, timeout=90)
        # a seed corpus from the running network, both ways
        cap = _cli("capture", "--node", apis[0], "--out", str(tmp_path / "corpus"), "--json", timeout=60)
        assert cap.returncode == 0, cap.stderr
        counts = json.loads(cap.stdout)["seeds"]
        assert counts.get("block", 0) > 0 and counts.get("commit", 0) > 0 and counts.get("status") == 1, counts
        cap2 = _cli("capture", "--home", str(homes[1]), "--out", str(tmp_path / "corpus2"), "--json")
        assert cap2.returncode == 0, cap2.stderr
        assert json.loads(cap2.stdout)["seeds"].get("dag", 0) > 0
        seeded = _cli("run", "dag", "--runs", "300", "--corpus", str(tmp_path / "corpus"), "--json")
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        assert json.loads(seeded.stdout.splitlines()[-1])["crashes"] == 0

        before = max((_get(f"{a}/status") or {}).get("height", 0) for a in apis)
        live = _cli("live", "all", "--api", apis[0], "--seconds", "20", "--rate", "40", "--json", timeout=120)
        report = json.loads(live.stdout.splitlines()[-1]) if live.stdout.strip() else {}
        assert live.returncode == 0, (live.stdout[-3000:], live.stderr[-3000:])
        assert report["sent_total"] > 100, report
        assert report["node"]["responsive"] and report["node"]["height_increased"], report
        assert report["node"]["failed_polls"] == 0, report
        for a in apis[1:]:  # the other nodes kept answering too
            assert _get(f"{a}/health") is not None
        after = min((_get(f"{a}/status") or {}).get("height", 0) for a in apis)
        assert after > before, (before, after)
        common = after
        wait_height(apis, common, timeout=30)
        roots = roots_at(apis, common)
        assert None not in roots and len(set(roots)) == 1, roots
    finally:
        stop_network(procs)
