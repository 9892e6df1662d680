"""README.md's copy-paste sections, run as written against a real detached testnet (slow): issue 17's acceptance.

The test extracts the ```sh block under "Pay a miner" and "Change a parameter" and runs their lines, unchanged,
in one bash process whose working directory stands in for the repository root (`.venv` linked to the real one),
so `--dir testnet` lands in a temporary directory. Between the README's lines it runs its own checks on every
node, not only the one the README talks to:
- after each `tensornet chain supply`: `/supply` balances exactly;
- after `client query`: the paid query is claimed on chain (exactly the price) and no transaction counted failed;
- after `client close-escrow`: the escrow is gone everywhere and the client got back exactly what it held;
- after `gov show`: the proposal is voting with the four validators' hotkey votes, quorum and threshold met;
- after the governance block: the proposal executed on every node at the one height each reports, the new
  value is in force everywhere, and the state roots agree just before and at that height.
"""

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

from node.cli.cmd_chain import check_supply
from node.testing.procs import REPO
from protocol.economics.emission import UNIT

pytestmark = pytest.mark.slow

PAY = "Pay a miner"
GOV = "Change a parameter"
CHECK = "__readme_check__"  # the test's own checks, run between the README's lines
PRICE = 2 * UNIT // 1000  # `testnet up --price 0.002`, in units


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


def _get(api: str, path: str) -> Any:
    r = httpx.get(api + path, timeout=10)
    return None if r.status_code == 404 else r.raise_for_status().json()


def _height(api: str) -> int:
    return int(_get(api, "/status")["height"])


def _record(directory: Path, what: str, data: dict[str, Any]) -> None:
    """Facts a check saw, for the test's final comparisons (the checks run in processes of their own)."""
    (directory / f"readme-{what}.json").write_text(json.dumps({**data, "t": time.time()}))


def recorded(directory: Path, what: str) -> dict[str, Any]:
    return json.loads((directory / f"readme-{what}.json").read_text())


def check_paid(directory: Path) -> None:
    """Escrow 1 (the README's query, the fresh network's first) is claimed: exactly the price, on every node."""
    nodes = apis(directory)
    deadline = time.monotonic() + 180
    while not all((_get(a, "/escrows/1") or {}).get("claimed", 0) > 0 for a in nodes):
        assert time.monotonic() < deadline, f"escrow 1 unclaimed somewhere after 180 s: {_get(nodes[0], '/escrows/1')}"
        time.sleep(1)
    e = _get(nodes[0], "/escrows/1")
    assert (e["claimed"], e["claims"]) == (PRICE, 1), e
    assert e["remaining"] + e["claimed"] == 10 * PRICE, e  # `client query` locks 10 prices by default
    client = e["client"]
    _record(directory, "paid", {"escrow": e, "balance": _get(nodes[0], f"/accounts/{client}")["balance"],
                                "height": _height(nodes[0])})
    supply_everywhere(directory)
    for a in nodes:  # defect 6: copies of gossiped transactions are not failures
        assert _metric(a, "ok") > 0 and _metric(a, "failed") == 0, a


def check_closed(directory: Path) -> None:
    """Escrow 1 is closed on every node and nothing stays locked in escrow."""
    nodes = apis(directory)
    deadline = time.monotonic() + 60
    while any(_get(a, "/escrows/1") is not None for a in nodes):
        assert time.monotonic() < deadline, "escrow 1 still open on some node 60 s after close-escrow returned"
        time.sleep(0.5)
    paid = recorded(directory, "paid")["escrow"]
    _record(directory, "closed", {"balance": _get(nodes[0], f"/accounts/{paid['client']}")["balance"]})
    assert all(s["escrow"] == 0 for s in supply_everywhere(directory))


def _validator_hotkeys(directory: Path) -> set[str]:
    from node.client.wallet import read_hotkey
    from protocol import crypto

    return {crypto.address(read_hotkey(k).public) for k in sorted(directory.glob("node*/validator_key"))}


def _newest_proposal(api: str) -> dict[str, Any]:
    rows = _get(api, "/proposals")
    assert rows, "no proposal on chain"
    return _get(api, f"/proposals/{rows[0]['id']}")


def check_voted(directory: Path) -> None:
    """The README's proposal is voting, and every vote in it is one of the four validator hotkeys' yes."""
    from node.cli.cmd_gov import tally_view

    nodes, hotkeys = apis(directory), _validator_hotkeys(directory)
    assert len(hotkeys) == 4, hotkeys
    deadline = time.monotonic() + 120
    while (p := _newest_proposal(nodes[-1]))["voters"] < 4:  # the votes were sent; they land in a few rounds
        assert time.monotonic() < deadline, f"4 votes not counted within 120 s: {p}"
        time.sleep(0.5)
    v = tally_view(p)
    assert p["status"] == "voting", f"the votes must land inside the voting window: {p}"
    assert p["proposer"] in hotkeys and {x["voter"] for x in p["votes"]} == hotkeys, p
    assert {x["choice"] for x in p["votes"]} == {"yes"} and v["yes_pct"] == 100.0, p
    assert [x["weight"] for x in p["votes"]] == [10_000 * UNIT] * 4 and p["yes"] == 40_000 * UNIT, p  # self-stakes
    assert v["quorum_reached"] and v["threshold_reached"]
    _record(directory, "voted", {"proposal": p, "height": _height(nodes[0])})


def check_executed(directory: Path) -> None:
    """Executed on every node at the height each reports, the value in force everywhere, one state root."""
    nodes = apis(directory)
    ps = [_get(a, f"/proposals/{recorded(directory, 'voted')['proposal']['id']}") for a in nodes]
    at = ps[0]["executes_at"]
    for a, p in zip(nodes, ps, strict=True):
        assert (p["status"], p["executes_at"]) == ("executed", at), a
        assert p["outcome"] == f"max_subnets = 40 from height {at}", a
        assert _get(a, "/governance")["parameters"]["max_subnets"]["value"] == 40, a
        assert _height(a) >= at, a
    for h in (at - 1, at):
        roots = {(_get(a, f"/commits/{h}") or {}).get("state_root", f"missing@{a}") for a in nodes}
        assert len(roots) == 1, f"state roots differ at height {h}: {roots}"
    supply_everywhere(directory)
    _record(directory, "executed", {"height": _height(nodes[0]), "executes_at": at})


CHECKS = {"supply": supply_everywhere, "paid": check_paid, "closed": check_closed, "voted": check_voted,
          "executed": check_executed}
AFTER = [  # README line (start) -> the check that follows it
    (r"tensornet chain supply\b", "supply"),
    (r"tensornet client query\b", "paid"),
    (r"until tensornet client close-escrow\b", "closed"),
    (r"tensornet gov show \S+$", "voted"),
]


def check(directory: Path, what: str) -> None:
    """Run between README lines by the script (`python -m tests.node.test_readme_e2e DIR WHAT`)."""
    CHECKS[what](directory)


def script(lines: list[str], directory: Path) -> str:
    hook = f"{shlex.quote(sys.executable)} -m tests.node.test_readme_e2e {shlex.quote(str(directory))}"
    out = ["set -euo pipefail", f"{CHECK}() {{ (cd {shlex.quote(str(REPO))} && {hook} \"$1\"); }}"]
    for ln in lines:
        out.append(ln)
        out += [f"{CHECK} {what}" for pattern, what in AFTER if re.match(pattern, ln.strip())]
    return "\n".join(out) + "\n"


def _table_int(stdout: str, title: str, key: str) -> int:
    """An integer row of the last key/value table titled `title` that the CLI printed."""
    assert title in stdout, f"no {title!r} table in the output"
    m = re.search(rf"^\s*{re.escape(key)}\s+(\d+)\s*$", stdout[stdout.rindex(title):], re.M)
    assert m, f"no {key!r} row in the {title!r} table"
    return int(m.group(1))


def test_readme_pay_a_miner_and_change_a_parameter_run_as_written(tmp_path: Path) -> None:
    pay, gov = readme_block(PAY), readme_block(GOV)
    assert pay, "README.md lost its 'Pay a miner' section"
    assert gov, "README.md lost its 'Change a parameter' section"
    assert any("testnet up" in ln and "--detach" in ln for ln in pay), "the section must start a detached testnet"
    root = tmp_path / "root"  # stands in for the repository root
    root.mkdir()
    (root / ".venv").symlink_to(REPO / ".venv")
    directory = root / "testnet"
    lines = [*pay, *[ln for ln in gov if not re.match(r"\s*(\. \.venv|tensornet testnet (clean|up)\b)", ln)],
             f"{CHECK} executed"]
    script_text = script(lines, directory)
    for what in CHECKS:  # every check is wired to a README line
        assert f"{CHECK} {what}" in script_text, f"no README line triggers the {what!r} check"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORNET_")}
    env["PYTHONPATH"] = str(REPO)
    t0 = time.time()
    try:
        r = subprocess.run(["bash", "-c", script_text], cwd=root, env=env, capture_output=True, text=True,
                           timeout=1500)
        assert r.returncode == 0, f"exit {r.returncode}\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-4000:]}"
    finally:
        subprocess.run([sys.executable, "-m", "node.cli.app", "testnet", "down", "--dir", str(directory)], cwd=REPO,
                       env=env, capture_output=True, timeout=120)
    assert "balanced" in r.stdout and re.search(r'tensornet_txs_total\{outcome="duplicate"\}', r.stdout)
    # the refund at close: what the escrow held after the claim, and the client's balance moved by it less the fee
    paid, closed = recorded(directory, "paid"), recorded(directory, "closed")
    refunded, fee = (_table_int(r.stdout, "escrow closed", k) for k in ("refunded", "fee"))
    assert refunded == paid["escrow"]["remaining"] == 9 * PRICE
    assert closed["balance"] - paid["balance"] == refunded - fee
    voted, executed = recorded(directory, "voted"), recorded(directory, "executed")
    p = voted["proposal"]
    rate = (executed["height"] - paid["height"]) / (executed["t"] - paid["t"])
    print(f"\nREADME run {time.time() - t0:.0f} s; commit rate {rate:.1f} heights/s; voting window "
          f"{p['voting_ends'] - p['created_at']} heights, votes landed by height {voted['height']} "
          f"(ends {p['voting_ends']}), executed at {executed['executes_at']}")


if __name__ == "__main__":  # the script's between-lines checks
    check(Path(sys.argv[1]), sys.argv[2])
