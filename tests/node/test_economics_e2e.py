"""Four validator processes on loopback: a subnet is replaced at the subnet limit, and a governance proposal
passes and changes a parameter on every node at the same height (spec/economics.md §1, §2, §5)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from node.client.api_client import NodeClient
from node.client.wallet import Wallet
from node.testing.procs import REPO, NodeProc, state_roots_at, stop_all, tensornet_cmd, wait_for
from node.testnet.gen import account, generate
from node.testnet.local import free_port_base
from protocol.economics.emission import UNIT
from protocol.messages import AddStake, CreateSubnet, Register, Transfer

pytestmark = pytest.mark.slow

CHAIN = "tensornet-econ"
PASSWORD = "e2e-password"
GENESIS = {
    "max_subnets": 2,
    "subnet_immunity_period": 5,
    "subnet_min_burn": UNIT,
    "subnet_burn_interval": 1,
    "gov_deposit": 5 * UNIT,
    # heights: room for two CLI votes (a few seconds at tens of heights/s while busy); an idle local chain rests to
    # ~10 heights/s, so each 100 heights here is ~10 s of the suite
    "gov_voting_period": 600,
    "gov_execution_delay": 5,
    "gov_quorum_bps": 3000,
    "gov_threshold_bps": 5000,
}


def cli(*args: str) -> Any:
    res = subprocess.run([*tensornet_cmd(), *args, "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def get(node: NodeProc, path: str) -> Any:
    body = node.get(path)
    assert body is not None, f"{node.home.name}: GET {path} failed"
    return body


def test_subnet_replaced_at_the_limit_and_a_proposal_executes_everywhere(tmp_path: Path) -> None:
    base = free_port_base(8)
    plans, _ = generate(
        tmp_path / "net", hosts=["127.0.0.1"] * 4, chain_id=CHAIN, p2p_base=base, api_base=base + 4,
        funded={"alice": 1000 * UNIT, "bob": 1000 * UNIT, "owner-1": UNIT, "owner-2": UNIT},
        subnets=[("owner-1", "strong", {}), ("owner-2", "weak", {})], genesis_params=GENESIS,
    )  # fmt: skip
    nodes = [NodeProc(p.home, p.api).start() for p in plans]
    alice, bob = account(tmp_path / "net", "alice"), account(tmp_path / "net", "bob")
    wallets = tmp_path / "wallets"
    pw = tmp_path / "password"
    pw.write_text(PASSWORD + "\n")
    for i in (0, 1):  # validators 0 and 1 vote through the CLI with their (genesis self-staked) coldkeys
        Wallet.create(wallets, f"v{i}", PASSWORD, kdf="fast", coldkey=plans[i].validator)
    Wallet.create(wallets, "bob", PASSWORD, kdf="fast", coldkey=bob)
    try:
        wait_for(lambda: min(n.height() for n in nodes) >= 3, 120, "every node at height 3", nodes=nodes)
        api = nodes[0].api

        # --- lifecycle: stake makes subnet 1 strong; bob's create_subnet at the limit replaces subnet 2
        with NodeClient(api) as c:
            c.send(alice, Register(1, alice.public, 10 * UNIT))
            c.send(alice, AddStake(alice.public, 100 * UNIT))
            for p in plans[:2]:  # the voting validators hold only stake: votes pay fees (spec/economics.md §6)
                c.send(alice, Transfer(p.validator.public, UNIT))
        wait_for(lambda: get(nodes[0], "/subnets/1")["score"] > 0, 120, "subnet 1's score to rise", nodes=nodes)
        listed = cli("subnet", "list", "--node", api)
        assert [(r["netuid"], r["name"], r["immune"]) for r in listed] == [(1, "strong", False), (2, "weak", False)]
        assert listed[0]["score"] > listed[1]["score"] == 0
        with NodeClient(api) as c:
            c.send(bob, CreateSubnet("newcomer", 10 * UNIT))
        wait_for(lambda: all(get(n, "/subnets/2")["name"] == "newcomer" for n in nodes), 120,
                 "subnet 2 replaced on every node", nodes=nodes)
        for n in nodes:
            (d,) = get(n, "/subnets/deregistered")
            assert (d["netuid"], d["name"], d["replaced_by"]) == (2, "weak", bob.address)
            assert d["owner"] == account(tmp_path / "net", "owner-2").address
            assert [s["name"] for s in get(n, "/subnets")] == ["strong", "newcomer"]
        created = get(nodes[0], "/subnets/2")
        assert created["owner"] == bob.address and created["created_at"] == d["height"]
        assert created["immune_until"] == d["height"] + GENESIS["subnet_immunity_period"]

        # --- governance: bob proposes doubling base emission; two of four validators vote yes
        before = get(nodes[0], "/governance")["parameters"]["base_emission"]["value"]
        assert before == UNIT
        cli("gov", "propose", "--param", "base_emission", "--value", str(2 * UNIT), "--memo", "e2e",
            "--wallet", "bob", "--home", str(wallets), "--password-file", str(pw), "--node", api)
        wait_for(lambda: len(get(nodes[1], "/proposals")) == 1, 120, "the proposal on chain", nodes=nodes)
        for i in (0, 1):
            cli("gov", "vote", "--proposal", "1", "--choice", "yes", "--wallet", f"v{i}", "--home", str(wallets),
                "--password-file", str(pw), "--node", nodes[i].api)
        wait_for(lambda: get(nodes[2], "/proposals/1")["yes"] == 20_000 * UNIT, 120, "both votes counted",
                 nodes=nodes)
        shown = cli("gov", "show", "1", "--node", nodes[3].api)
        assert sorted(v["voter"] for v in shown["votes"]) == sorted(p.validator.address for p in plans[:2])
        wait_for(lambda: all(get(n, "/proposals/1")["status"] == "executed" for n in nodes), 400,
                 "the proposal executed on every node", nodes=nodes)
        at = get(nodes[0], "/proposals/1")["executes_at"]
        for n in nodes:
            p = get(n, "/proposals/1")
            assert p["executes_at"] == at and p["outcome"] == f"base_emission = {2 * UNIT} from height {at}"
            assert get(n, "/governance")["parameters"]["base_emission"]["value"] == 2 * UNIT
        assert cli("gov", "list", "--node", api)[0]["status"] == "executed"
        # one state (params included) on every node at the execution height and just before it
        for h in (at - 1, at):
            assert len(state_roots_at(nodes, h)) == 1, f"state roots differ at height {h}"

        # --- fees: the CLI shows the fee before signing, refuses above --fee, reports it in --json
        wallet_args = ["--wallet", "bob", "--home", str(wallets), "--password-file", str(pw), "--node", api]
        refused = subprocess.run([*tensornet_cmd(), "tx", "transfer", "--to", alice.address, "--amount", "1",
                                  "--fee", "0.0001", *wallet_args], cwd=REPO, capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode == 1 and "not signed" in refused.stderr + refused.stdout, refused.stderr
        assert "fee 0.000" in refused.stderr and "after the fee" in refused.stderr
        params = get(nodes[0], "/status")["fees"]
        sent = cli("tx", "transfer", "--to", alice.address, "--amount", "1", "--tip", "0.001", "--fee", "0.01",
                   *wallet_args)
        assert sent["tip"] == UNIT // 1000 and sent["fee"] > params["tx_base_fee"] + UNIT // 1000
        nonce = get(nodes[0], f"/accounts/{bob.address}/nonce")["next_nonce"]
        wait_for(lambda: get(nodes[3], f"/accounts/{bob.address}")["nonce"] >= nonce, 120, "bob's tipped transfer",
                 nodes=nodes)

        # --- concentration is served alongside
        conc = get(nodes[2], "/concentration")
        assert conc["committee"]["nakamoto"] == 2 and sorted(conc["subnets"]) == ["1", "2"]
        assert get(nodes[2], "/subnets/1")["concentration"]["validator_stake"] >= 100 * UNIT
    finally:
        stop_all(nodes)
