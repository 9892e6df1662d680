"""Governance a user can drive through the CLI (issue 17): validators vote with their hotkeys, testnets take
short governance windows, `gov propose` waits and prints the id, `gov show` gives percentages.

The slow test is the acceptance: `testnet gen` + four `node run` processes on free ports, a proposal made and
voted only through `tensornet` subprocesses with the validators' hotkeys, passing and executing on every node at
the same height (spec/economics.md §2, spec/testnet.md "Pass a proposal")."""

from __future__ import annotations

import inspect
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from node.cli import cmd_testnet
from node.cli.cmd_gov import tally_view
from node.testing.procs import REPO, NodeProc, state_roots_at, stop_all, tensornet_cmd, wait_for
from node.testnet import local as testnet
from node.testnet.gen import VALIDATOR_BALANCE
from node.testnet.local import free_port_base
from protocol.economics.emission import UNIT
from protocol.state.genesis import load_genesis

VOTING_PERIOD = 900  # heights: four concurrent CLI votes fit with room on a loaded 2-core machine
EXECUTION_DELAY = 10


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*tensornet_cmd(), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def cli(*args: str) -> Any:
    res = run(*args, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def gen(out: Path, *extra: str) -> list[dict[str, Any]]:
    base = free_port_base(8)
    return cli("testnet", "gen", "--out", str(out), "--hosts", ",".join(["127.0.0.1"] * 4), "--chain-id",
               "tensornet-gov", "--p2p-port", str(base), "--api-port", str(base + 4), *extra)["nodes"]


# --- fast: options, defaults, one-line errors, the tally view ------------------------------------------------


def test_testnet_gen_takes_governance_windows_and_funds_validator_hotkeys(tmp_path: Path) -> None:
    gen(tmp_path / "a", "--gov-voting-period", "77", "--gov-execution-delay", "3")
    g = load_genesis(tmp_path / "a" / "genesis.json")
    assert (g.gov_voting_period, g.gov_execution_delay) == (77, 3)
    balances = dict(g.balances)
    assert sorted(balances.get(c.hotkey) for c in g.committee) == [VALIDATOR_BALANCE] * 4  # votes and a deposit
    assert VALIDATOR_BALANCE > g.gov_deposit
    gen(tmp_path / "b")
    d = load_genesis(tmp_path / "b" / "genesis.json")
    spec = testnet.TestnetSpec(directory=tmp_path)  # `testnet up` and `gen` share the short defaults
    assert (d.gov_voting_period, d.gov_execution_delay) == (spec.gov_voting_period, spec.gov_execution_delay)
    assert d.gov_voting_period < 7200 and d.gov_execution_delay < 100
    up = inspect.signature(cmd_testnet.up).parameters
    assert (up["gov_voting_period"].default, up["gov_execution_delay"].default) == (
        d.gov_voting_period, d.gov_execution_delay)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["testnet", "gen", "--out", "{tmp}/x", "--hosts", "127.0.0.1", "--gov-voting-period", "0"],
         "error: --gov-voting-period 0: use 1..10000000 heights"),
        (["testnet", "gen", "--out", "{tmp}/x", "--hosts", "127.0.0.1", "--gov-execution-delay", "-1"],
         "error: --gov-execution-delay -1: use 0..10000000 heights"),
        (["gov", "vote", "--proposal", "1", "--choice", "yes", "--validator", "--home", "{tmp}"],
         "error: --validator: no validator_key in {tmp} (give a node home with --home)"),
        (["gov", "vote", "--proposal", "1", "--choice", "yes", "--validator", "--hotkey-file", "{tmp}/k"],
         "error: --validator and --hotkey-file both name the signing key: give one"),
        (["gov", "propose", "--param", "max_subnets", "--value", "4", "--validator", "--home", "{tmp}"],
         "error: --validator: no validator_key in {tmp} (give a node home with --home)"),
    ],
)
def test_bad_governance_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = run(*[a.format(tmp=tmp_path) for a in args], timeout=60)
    assert res.returncode == 1 and res.stderr.strip() == message.format(tmp=tmp_path), res.stderr


def test_tally_view_gives_percentages_against_quorum_and_threshold() -> None:
    p = {"yes": 30, "no": 10, "abstain": 10, "snapshot_stake": 200, "quorum_bps": 2000, "threshold_bps": 5000}
    v = tally_view(p)
    assert (v["turnout_pct"], v["quorum_pct"], v["yes_pct"], v["threshold_pct"]) == (25.0, 20.0, 75.0, 50.0)
    assert v["quorum_reached"] and v["threshold_reached"]
    tie = tally_view({**p, "yes": 10, "abstain": 0, "snapshot_stake": 101})  # 20 of 101 < 20%; 50% is not > 50%
    assert (tie["quorum_reached"], tie["threshold_reached"], tie["yes_pct"]) == (False, False, 50.0)


# --- slow: the acceptance, on real processes through the CLI only --------------------------------------------


@pytest.mark.slow
def test_validators_vote_with_their_hotkeys_and_the_change_lands_everywhere_at_one_height(tmp_path: Path) -> None:
    net = tmp_path / "net"
    rows = gen(net, "--gov-voting-period", str(VOTING_PERIOD), "--gov-execution-delay", str(EXECUTION_DELAY))
    nodes = [NodeProc(Path(r["home"]), r["api"]).start() for r in rows]
    homes = [str(n.home) for n in nodes]
    try:
        wait_for(lambda: min(n.height() for n in nodes) >= 3, 180, "every node at height 3", nodes=nodes)
        assert cli("gov", "params", "--node", nodes[0].api)["parameters"]["max_subnets"]["value"] == 32

        # node0's validator proposes with its hotkey; the command waits for inclusion and prints the id
        t0, h0 = time.monotonic(), nodes[0].height()
        made = cli("gov", "propose", "--param", "max_subnets", "--value", "40", "--memo", "issue 17",
                   "--validator", "--home", homes[0], "--node", nodes[0].api)
        assert made["id"] == 1 and made["status"] == "voting" and made["fee"] > 0
        assert made["voting_ends"] == made["created_at"] + VOTING_PERIOD
        assert made["executes_at"] == made["voting_ends"] + EXECUTION_DELAY

        # every validator votes with its hotkey through its own node, at once: three yes, one no
        choices = ["yes", "yes", "yes", "no"]
        procs = [subprocess.Popen([*tensornet_cmd(), "gov", "vote", "--proposal", "1", "--choice", c, "--validator",
                                   "--home", h, "--node", n.api, "--json"], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for c, h, n in zip(choices, homes, nodes, strict=True)]
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, out + err
            assert json.loads(out)["kind"] == "vote"
        wait_for(lambda: (nodes[2].get("/proposals/1") or {}).get("voters") == 4, 180, "four votes counted",
                 nodes=nodes)
        shown = cli("gov", "show", "1", "--node", nodes[3].api)
        assert shown["status"] == "voting", "the votes must land inside the voting window"
        assert (shown["turnout_pct"], shown["yes_pct"]) == (100.0, 75.0)  # 40,000 of 40,000 voted; 30,000 yes
        assert shown["quorum_reached"] and shown["threshold_reached"]
        assert sorted(v["weight"] for v in shown["votes"]) == [10_000 * UNIT] * 4
        text = run("gov", "show", "1", "--node", nodes[3].api)
        assert text.returncode == 0 and "100.0% of" in text.stdout and "threshold > 50.0% reached" in text.stdout

        at = made["executes_at"]
        wait_for(lambda: all((n.get("/proposals/1") or {}).get("status") == "executed" for n in nodes), 900,
                 "the proposal executed on every node", nodes=nodes)
        rate = (nodes[0].height() - h0) / (time.monotonic() - t0)
        print(f"\ncommit rate during the proposal: {rate:.1f} heights/s; voting window {VOTING_PERIOD} heights")
        for n in nodes:
            p = cli("gov", "show", "1", "--node", n.api)
            assert (p["executes_at"], p["outcome"]) == (at, f"max_subnets = 40 from height {at}")
            assert (p["yes"], p["no"]) == (30_000 * UNIT, 10_000 * UNIT)
            assert cli("gov", "params", "--node", n.api)["parameters"]["max_subnets"]["value"] == 40
            assert cli("chain", "supply", "--node", n.api)["balanced"] is True
        for h in (at - 1, at):  # one state on every node just before and at the execution height
            assert len(state_roots_at(nodes, h)) == 1, f"state roots differ at height {h}"
        assert all(n.alive for n in nodes)
    finally:
        stop_all(nodes)
