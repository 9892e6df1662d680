"""Rest when idle (spec/consensus.md §D.2a) through whole chains (core + mempool + state + SQLite) in the
deterministic simulator, and the setting in config.toml. Times are simulated milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import ConfigError, NodeConfig, load_config, write_config
from node.mempool import FALLBACK_ROUNDS, tx_owner
from node.sync import Synchronizer
from node.testing.chains import ChainSimulation
from node.testnet.gen import LOCAL_IDLE_INTERVAL_MS, generate
from node.testnet.local import free_port_base
from protocol.consensus.core import CoreParams
from protocol.crypto import Keypair
from protocol.messages import SignedTransaction, Transaction, Transfer
from protocol.testing.sim import Faults

UNIT = 10**9
IDLE_MS = 1000


def quorum_round(sim: ChainSimulation) -> int:
    return max(n.core.quorum_round for n in sim.nodes)


def test_idle_chains_rest_and_a_submitted_transaction_commits_without_waiting_out_the_rest(tmp_path: Path) -> None:
    sender = Keypair(b"\x42" * 32)
    sim = ChainSimulation(tmp_path, [1, 1, 1, 1], seed=7, params=CoreParams(idle_interval_ms=IDLE_MS),
                          balances={sender.public: 10 * UNIT})
    try:
        sim.run(1_000)
        r0 = quorum_round(sim)
        sim.run(11_000)
        assert quorum_round(sim) - r0 <= 15, "an idle network kept running rounds at full pace"
        assert min(len(n.commits) for n in sim.nodes) >= 5, "a resting network still commits"

        for n in sim.nodes:  # the daemon's proposer wakes the same way when a transaction is admitted
            n.chain.on_tx = lambda n=n: sim._reschedule(n)
        submit_at = sim.now + 437  # mid-rest
        sim.run(submit_at)
        assert not any(n.chain.has_txs for n in sim.nodes)
        transfer = Transfer(Keypair(b"\x43" * 32).public, 1)
        tx = SignedTransaction.create(Transaction("sim", sender.public, 0, transfer, 0), sender)
        for n in sim.nodes:  # a client's submit, gossiped to every mempool; one validator proposes it
            n.chain.submit_tx(tx.to_bytes())
        sim.run(submit_at + IDLE_MS // 2)
        for n in sim.nodes:
            assert n.chain.state.next_nonce(sender.public) == 1, f"node {n.index}: not committed half a rest later"
            ours = next(c for c in n.commits if c.ok_txs)
            assert ours.committed_ms - submit_at < 10 * 45  # a handful of rounds at full pace
        sim.assert_consistent()
    finally:
        sim.close()


def test_idle_interval_in_config_toml(tmp_path: Path) -> None:
    assert NodeConfig().idle_interval_ms == 1000  # real nodes rest by default
    write_config(tmp_path, NodeConfig(idle_interval_ms=0))
    assert "idle_interval_ms = 0" in (tmp_path / "config.toml").read_text()
    assert load_config(tmp_path).idle_interval_ms == 0
    # a config.toml written before the setting existed gets the default
    (tmp_path / "config.toml").write_text('api = "127.0.0.1:1"\n')
    assert load_config(tmp_path).idle_interval_ms == 1000


@pytest.mark.parametrize("name", ["idle_interval_ms", "min_round_delay_ms", "leader_timeout_ms"])
def test_negative_timing_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "config.toml").write_text(f"{name} = -1\n")
    with pytest.raises(ConfigError, match=f"{name} must be >= 0"):
        load_config(tmp_path)


def test_local_testnets_rest_for_a_shorter_interval(tmp_path: Path) -> None:
    base = free_port_base(4)  # nothing listens here: the homes are only written
    plans, _ = generate(tmp_path, hosts=["127.0.0.1"] * 2, chain_id="idle", p2p_base=base, api_base=base + 2)
    assert LOCAL_IDLE_INTERVAL_MS < NodeConfig().idle_interval_ms
    assert all(load_config(p.home).idle_interval_ms == LOCAL_IDLE_INTERVAL_MS for p in plans)


def test_a_resting_node_waits_a_rest_before_probing_peers_for_rounds(tmp_path: Path) -> None:
    """The synchronizer probes a peer when the round has not moved: while resting that is normal for a rest."""
    sender = Keypair(b"\x44" * 32)
    sim = ChainSimulation(tmp_path, [1, 1, 1, 1], seed=3, params=CoreParams(idle_interval_ms=IDLE_MS),
                          balances={sender.public: 10 * UNIT})
    try:
        sim.run(3_000)
        sync = Synchronizer(sim.nodes[0].chain, fetcher=None, stack=lambda: None)  # type: ignore[arg-type]
        assert sync._patience() == (IDLE_MS + CoreParams().leader_timeout_ms) / 1000
        tx = SignedTransaction.create(Transaction("sim", sender.public, 0, Transfer(sender.public, 1), 0), sender)
        sim.nodes[0].chain.submit_tx(tx.to_bytes())
        assert sync._patience() == 0  # busy: an unmoved round is a stall at once, as before resting existed
    finally:
        sim.close()


def test_a_transaction_whose_owner_is_down_does_not_wait_out_rests(tmp_path: Path) -> None:
    """Its owner is silent, so another validator proposes it after FALLBACK_ROUNDS rounds (§D.2b). A validator
    holding it stays busy, so those rounds run at full pace: ten rests would be ten idle intervals."""
    sender = next(k for k in (Keypair(bytes([0x50 + i]) * 32) for i in range(64)) if tx_owner(k.public, 4) == 3)
    sim = ChainSimulation(tmp_path, [1, 1, 1, 1], seed=11, faults=Faults(silent=frozenset({3})),
                          params=CoreParams(idle_interval_ms=IDLE_MS), balances={sender.public: 10 * UNIT})
    try:
        sim.run(8_000)  # rested: the silent owner's leader slots are swapped out by reputation meanwhile
        for n in sim.nodes:
            n.chain.on_tx = lambda n=n: sim._reschedule(n)
        submit_at = sim.now + 300
        sim.run(submit_at)
        tx = SignedTransaction.create(Transaction("sim", sender.public, 0, Transfer(sender.public, 1), 0), sender)
        for n in sim.nodes[:3]:
            n.chain.submit_tx(tx.to_bytes())
        sim.run(submit_at + FALLBACK_ROUNDS * IDLE_MS)
        for n in sim.nodes[:3]:
            assert n.chain.state.next_nonce(sender.public) == 1, f"node {n.index}: not committed"
            ours = next(c for c in n.commits if c.ok_txs)
            assert ours.committed_ms - submit_at < 3 * IDLE_MS, "the fallback rounds ran at the resting pace"
        sim.run(sim.now + 5 * IDLE_MS)
        assert not any(n.chain.has_txs for n in sim.nodes[:3]), "committed, so the validators rest again"
    finally:
        sim.close()
