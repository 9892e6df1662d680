"""The explorer page: self-contained, and rendered by a real headless Chromium against a running testnet."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from node.explorer import PAGE
from node.testnet.local import tensornet_argv

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def test_page_loads_nothing_from_outside() -> None:
    urls = set(re.findall(r"https?://[^\s\"'`)]+", PAGE))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name, not a download
    assert "<link" not in PAGE and "src=" not in PAGE
    assert "innerHTML" not in PAGE  # chain data is inserted as text only


def _browser() -> str:
    """A headless-capable Chromium; installed with apt-get when missing and we are root, else skip."""
    for name in BROWSERS:
        if shutil.which(name):
            return name
    if os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            pass
        if shutil.which("chromium"):
            return "chromium"
    pytest.skip("no chromium: `apt-get install -y chromium` failed or needs root (not available on this machine)")


class _Dom(HTMLParser):
    """Just enough of the rendered DOM: elements by id and by class, with their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.classes: dict[str, list[dict[str, str | None]]] = {}
        self.rows: dict[str, int] = {}
        self._stack: list[tuple[str, str | None]] = []
        self._table: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for c in (a.get("class") or "").split():
            self.classes.setdefault(c, []).append(a)
        if tag == "table":
            self._table.append(a.get("id") or "." + (a.get("class") or "").split(" ")[0])
        if tag == "tr" and self._table and self._table[-1]:
            self.rows[self._table[-1]] = self.rows.get(self._table[-1], 0) + 1
        self._stack.append((tag, a.get("id")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._table:
            self._table.pop()
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._stack:
            if ident:
                self.by_id[ident] = self.by_id.get(ident, "") + data


def _procs_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_explorer_renders_a_live_network_in_chromium(tmp_path: Path) -> None:
    browser = _browser()
    d = tmp_path / "net"
    try:
        up = subprocess.run(
            [*tensornet_argv(), "testnet", "up", "--validators", "4", "--subnets", "2", "--miners", "2",
             "--epochs", "1", "--dir", str(d), "--timeout", "200", "--detach", "--json"],
            capture_output=True, text=True, timeout=260, cwd=ROOT,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        res = json.loads(up.stdout.strip().splitlines()[-1])
        api = json.loads((d / "network.json").read_text())["nodes"][1]["api"]
        shot = tmp_path / "explorer.png"
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-dev-shm-usage", "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
        dom_text = subprocess.run([*cmd, "--dump-dom", api + "/"], capture_output=True, text=True, timeout=90).stdout
        subprocess.run([*cmd, "--window-size=1400,1600", f"--screenshot={shot}", api + "/"],
                       capture_output=True, timeout=90)
        dom = _Dom()
        dom.feed(dom_text)
        assert dom.by_id.get("error", "") == "", dom.by_id.get("error")
        assert int(dom.by_id["head-height"]) >= res["height"] - 5
        assert dom.by_id["chain-id"] == "tensornet-local"
        assert int(dom.by_id["head-peers"]) == 3
        assert dom.rows["commits"] >= 10  # header + recent commits
        assert dom.rows["committee"] == 1 + 4
        subnets = dom.classes["subnet"]
        assert sorted(s["data-netuid"] for s in subnets) == ["1", "2"]
        assert len(dom.classes["metagraph"]) == 2
        assert dom.rows[".metagraph"] == 2 * (1 + 3)  # per subnet: header, 2 miners, 1 validator
        cells = dom.classes["cell"]
        assert cells and any(int(c["data-weight"] or 0) > 0 for c in cells)
        series = dom.classes["series"]
        assert sorted(s["data-netuid"] for s in series) == ["1", "2"]
        assert all((s.get("d") or "").startswith("M") for s in series)
        conc = {r["data-scope"]: r for r in dom.classes["conc-row"]}
        assert sorted(conc) == ["committee", "subnet 1", "subnet 2"]
        assert conc["committee"]["data-nakamoto"] == "2"  # 4 equal validators: two reach 1/3 of the stake
        assert all(int(r["data-nakamoto"] or 0) >= 1 for r in conc.values())
        assert dom.rows["proposals"] == 1  # the header: nobody proposed anything
        assert shot.exists() and shot.stat().st_size > 10_000
    finally:
        subprocess.run([*tensornet_argv(), "testnet", "down", "--dir", str(d)], capture_output=True, timeout=60)
        for pid in _procs_mentioning(str(d)):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
