"""`tensornet ... | head`: a reader that goes away early is not an error. The CLI used to print
"internal error: BrokenPipeError" and exit 70; it now exits 141 (128 + SIGPIPE) with nothing on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.app import EXIT_CLOSED_STDOUT, _stdout_closed
from node.testing.procs import REPO, tensornet_cmd


def run_into_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a real `tensornet` whose stdout is a pipe with its read end already closed: the earliest a reader
    can close, so the first write fails every time (no race with how much a reader took first)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*tensornet_cmd(), *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, timeout=120, check=False)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("fmt", [["--json"], []], ids=["json", "table"])
def test_a_closed_stdout_exits_quietly(tmp_path: Path, fmt: list[str]) -> None:
    done = run_into_closed_pipe(["wallet", "list", "--home", str(tmp_path), *fmt])
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == ""
    assert done.returncode == EXIT_CLOSED_STDOUT


def test_stdout_closed_tells_a_gone_reader_from_a_live_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only our own stdout's EPIPE is quiet: a BrokenPipeError from a socket, with stdout fine, stays a bug."""
    read_end, write_end = os.pipe()
    with open(write_end, "w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        assert not _stdout_closed()
        os.close(read_end)
        assert _stdout_closed()
