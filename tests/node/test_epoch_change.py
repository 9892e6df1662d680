"""A committee change at an epoch boundary, with every node its own OS process on loopback.

Four validators start the chain; a fifth node runs with a validator key that is not in the genesis
committee. It gets stake and announces its consensus endpoint by transactions; at the next epoch
boundary the state puts it in the committee, and from then on it proposes blocks that get committed.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from node.client.api_client import NodeClient
from node.testing.procs import REPO, NodeProc, state_roots_at, stop_all, tensornet_cmd, wait_for
from node.testnet.gen import account, generate
from protocol.messages import AddStake, ServeAxon
from protocol.state.genesis import load_genesis

pytestmark = pytest.mark.slow
UNIT = 10**9
CHAIN = "tensornet-epochs"


def own_blocks_in(db: Path, epoch_from: int) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT COUNT(*) FROM own_blocks WHERE epoch >= ?", (epoch_from,)).fetchone()[0]


def test_a_staked_validator_joins_the_committee_at_the_epoch_boundary(tmp_path: Path) -> None:
    plans, genesis_path = generate(
        tmp_path / "net", hosts=["127.0.0.1"] * 5, chain_id=CHAIN, p2p_base=31600, api_base=27600,
        funded={"joiner": 100_000 * UNIT}, genesis_params={"epoch_rounds": 60, "committee_size": 5},
    )
    # the fifth validator is not in the genesis committee: it starts as a follower
    g = load_genesis(str(genesis_path))
    four = dataclasses.replace(g, committee=g.committee[:4]).to_json()
    for p in plans:
        (p.home / "genesis.json").write_text(four)
    nodes = [NodeProc(p.home, p.api).start() for p in plans]
    joiner = plans[4]
    try:
        wait_for(lambda: min(n.height() for n in nodes) >= 3, 90, "3 commits on every node", nodes=nodes)
        st = nodes[4].status()
        assert st is not None and st["validator"] is False and st["epoch"] == 0

        with NodeClient(plans[0].api) as client:
            client.send(account(tmp_path / "net", "joiner"), AddStake(joiner.validator.public, 50_000 * UNIT))
            wait_for(lambda: int(client.account(joiner.validator.public)["hotkey_stake"]) > 0, 60, "stake committed",
                     nodes=nodes)
            addr = joiner.multiaddr.split("/p2p/")[0]
            client.send(joiner.validator, ServeAxon(0, joiner.peer_id, (addr,)))

        def joined() -> bool:
            s = nodes[4].status()
            return bool(s and s["validator"] and s["epoch"] >= 1)

        wait_for(joined, 120, "the fifth node in a later epoch's committee", nodes=nodes)
        epoch = nodes[4].status()["epoch"]
        committee = nodes[0].status()["committee"]
        assert joiner.validator.address in committee and len(committee) == 5

        # it proposes in its epoch, and the chain keeps committing with all five agreeing
        wait_for(lambda: own_blocks_in(joiner.home / "chain.db", epoch) >= 5, 60, "the new member's blocks",
                 nodes=nodes)
        h = min(n.height() for n in nodes)
        wait_for(lambda: min(n.height() for n in nodes) >= h + 5, 60, "commits after the change", nodes=nodes)
        common = min(n.height() for n in nodes)
        assert len(state_roots_at(nodes, common)) == 1, "state roots differ after the committee change"
        # the store replays from genesis across the epoch change to the same roots
        nodes[4].stop()
        check = subprocess.run(
            [*tensornet_cmd(), "node", "db", "check", "--home", str(joiner.home), "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        report = json.loads(check.stdout)
        assert report["ok"] is True and report["replayed"] is True and report["height"] > common - 5
        # and a restart resumes in the new epoch, still in the committee
        nodes[4].start()
        wait_for(joined, 60, "the restarted member back in its epoch", nodes=nodes)
        wait_for(lambda: nodes[4].height() >= common + 3, 60, "the restarted member committing", nodes=nodes)
    finally:
        stop_all(nodes)
