"""`python -m bench.state --json` runs at tiny sizes and prints the keys scripts read; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.state", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_bench_state_prints_both_figures_per_size() -> None:
    proc = _run("--json", "--accounts", "50,200", "--changes", "20", "--updates", "2", "--full-runs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["changes"] == 20
    for name in ("root_update_ms", "full_root_ms", "build_s", "root_update_sqlite_ms", "tree_flush_ms"):
        assert sorted(out[name]) == ["200", "50"], out
        assert all(type(v) is float and v >= 0 for v in out[name].values()), out


def test_bench_state_refuses_a_bad_size() -> None:
    proc = _run("--json", "--accounts", "ten")
    assert proc.returncode == 2 and "--accounts is a comma-separated list" in proc.stderr


def test_bench_state_with_state_times_the_real_root_beside_v1() -> None:
    proc = _run("--json", "--state", "--accounts", "50", "--changes", "20", "--updates", "2", "--full-runs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    for name in ("state_root_ms", "state_full_root_ms", "state_build_s", "root_update_ms"):
        assert list(out[name]) == ["50"] and type(out[name]["50"]) is float and out[name]["50"] >= 0, out


def test_bench_state_with_restart_times_start_up_beside_the_rebuild() -> None:
    proc = _run("--json", "--restart", "--accounts", "50", "--changes", "20", "--updates", "2", "--full-runs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    for name in ("restart_s", "restart_full_s", "restart_rebuild_s"):
        assert list(out[name]) == ["50"] and type(out[name]["50"]) is float and out[name]["50"] >= 0, out


def test_bench_state_with_snapshot_times_the_step_beside_the_full_encode() -> None:
    proc = _run("--json", "--snapshot", "--snapshot-every", "3", "--accounts", "50", "--changes", "20", "--updates",
                "2", "--full-runs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    for name in ("snapshot_ms", "snapshot_full_ms"):
        assert list(out[name]) == ["50"] and type(out[name]["50"]) is float and out[name]["50"] >= 0, out
