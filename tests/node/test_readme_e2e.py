"""README.md's copy-paste sections, run as written against a real detached testnet (slow).

The test extracts the ```sh block under each section heading and runs its lines, unchanged, in one bash
process whose working directory stands in for the repository root (`.venv` linked to the real one), so
`--dir testnet` lands in a temporary directory. After every `tensornet chain supply` line it runs its own
check: `/supply` balances exactly on every node, not only on the one the README queries; and after the
"pay a miner" block, the paid query was claimed on chain and no transaction counted as failed.

Hook for the "change a parameter" section (governance): when README.md has a `## Change a parameter`
section, its block runs right after "pay a miner" on the same network; until then that part is skipped
and says so."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.cmd_chain import check_supply
from tests.netutil import REPO

pytestmark = pytest.mark.slow

PAY = "Pay a miner"
GOV = "Change a parameter"  # the governance engineer's section; run when it lands
CHECK = "__readme_check__"  # the test's own checks, run between the README's lines


def readme_block(title: str) -> list[str] | None:
    """The command lines of the first ```sh block under `## title`, or None without such a section."""
    text = (REPO / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if m is None:
        return None
    block = re.search(r"```sh\n(.*?)```", m.group(1), re.S)
    assert block, f"README section {title!r} has no ```sh block"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def apis(directory: Path) -> list[str]:
    return [n["api"] for n in json.loads((directory / "network.json").read_text())["nodes"]]


def supply_everywhere(directory: Path) -> list[dict[str, Any]]:
    """Every node's /supply, each checked exactly (recomputed here as `tensornet chain supply` does)."""
    out = []
    for api in apis(directory):
        s = httpx.get(api + "/supply", timeout=10).json()
        check_supply(s)  # raises CliError unless issued == balances + stake + escrow + deposits + pending + burned
        out.append(s)
    return out


def _metric(api: str, outcome: str) -> float:
    text = httpx.get(api + "/metrics", timeout=10).text
    m = re.search(rf'^tensornet_txs_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def check(directory: Path, what: str) -> None:
    """Run between README lines by the script (`python -m tests.node.test_readme_e2e DIR WHAT`)."""
    if what == "supply":
        supply_everywhere(directory)
    elif what == "paid":
        # the miner's claim lands on chain: some escrow paid out, so `claimed` > 0 on node 0
        deadline = time.monotonic() + 120
        api = apis(directory)[0]
        while True:
            escrows = _escrows(api)
            if any(e["claimed"] > 0 for e in escrows):
                break
            assert time.monotonic() < deadline, f"no escrow claimed within 120 s: {escrows}"
            time.sleep(1)
        supply_everywhere(directory)
        for a in apis(directory):  # defect 6: copies of gossiped transactions are not failures
            assert _metric(a, "ok") > 0 and _metric(a, "failed") == 0, a


def _escrows(api: str) -> list[dict[str, Any]]:
    out = []
    for eid in range(1, 64):
        r = httpx.get(f"{api}/escrows/{eid}", timeout=10)
        if r.status_code == 404:
            break
        out.append(r.json())
    return out


def script(lines: list[str], directory: Path) -> str:
    hook = f"{shlex.quote(sys.executable)} -m tests.node.test_readme_e2e {shlex.quote(str(directory))}"
    out = ["set -euo pipefail", f"{CHECK}() {{ (cd {shlex.quote(str(REPO))} && {hook} \"$1\"); }}"]
    for ln in lines:
        out.append(ln)
        if re.match(r"tensornet chain supply\b", ln.strip()):
            out.append(f"{CHECK} supply")
    return "\n".join(out) + "\n"


def test_readme_pay_a_miner_and_change_a_parameter_run_as_written(tmp_path: Path) -> None:
    pay = readme_block(PAY)
    assert pay, "README.md lost its 'Pay a miner' section"
    assert any("testnet up" in ln and "--detach" in ln for ln in pay), "the section must start a detached testnet"
    root = tmp_path / "root"  # stands in for the repository root
    root.mkdir()
    (root / ".venv").symlink_to(REPO / ".venv")
    directory = root / "testnet"
    lines = [*pay, f"{CHECK} paid"]
    gov = readme_block(GOV)
    if gov is not None:
        lines += [ln for ln in gov if not re.match(r"\s*(\. \.venv|tensornet testnet (clean|up)\b)", ln)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORNET_")}
    env["PYTHONPATH"] = str(REPO)
    try:
        r = subprocess.run(["bash", "-c", script(lines, directory)], cwd=root, env=env, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, f"exit {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"
        assert "balanced" in r.stdout and "tensornet_txs_total" in r.stdout
        assert re.search(r'tensornet_txs_total\{outcome="duplicate"\}', r.stdout)
    finally:
        subprocess.run([sys.executable, "-m", "node.cli", "testnet", "down", "--dir", str(directory)], cwd=REPO,
                       env=env, capture_output=True, timeout=120)
    # gov is None until the governance section lands: then only "pay a miner" ran (see the module docstring)


if __name__ == "__main__":  # the script's between-lines checks
    check(Path(sys.argv[1]), sys.argv[2])
