"""The chain driver over real SQLite stores: commits, execution, and restart from disk."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from node.chain import Chain
from node.mempool import tx_owner
from node.storage import StoreError
from protocol.crypto import Keypair
from protocol.messages import MAX_BLOCK_TXS, SignedBlock, SignedTransaction, Transaction, Transfer
from protocol.state.genesis import build_genesis

UNIT = 10**9


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def make_network(tmp_path: Path, n: int = 4):
    keys = [Keypair(bytes([i + 1]) * 32) for i in range(n)]
    alice = Keypair(b"\xaa" * 32)
    genesis = build_genesis(
        "test-chain", validators=[(k.public, 1000 * UNIT) for k in keys], balances={alice.public: 50 * UNIT}
    )
    clock = FakeClock()
    chains = [Chain(tmp_path / f"n{i}", genesis, keypair=keys[i], clock=clock) for i in range(n)]
    return chains, keys, alice, genesis, clock


def step(chains: list[Chain], clock: FakeClock, rounds: int, down: frozenset[int] = frozenset()) -> None:
    """Advance time; every live validator proposes when due and every live node gets every block."""
    for _ in range(rounds):
        clock.t += 0.3
        for i, c in enumerate(chains):
            if i in down:
                continue
            v = c.propose()
            if v is None:
                continue
            for j, other in enumerate(chains):
                if j != i and j not in down:
                    other.receive_block(v.data)


def fill_gaps(target: Chain, source: Chain) -> None:
    """What the synchronizer does: hand over every block of the source's rounds."""
    for r in range(1, source.core.dag.highest_round + 1):
        for data in source.blocks_by_round(source.epoch, r, r, 64):
            try:
                target.receive_block(data)
            except Exception:
                pass


def test_commits_execute_transactions_identically(tmp_path: Path) -> None:
    chains, keys, alice, genesis, clock = make_network(tmp_path)
    bob = Keypair(b"\xbb" * 32)
    tx = SignedTransaction.create(Transaction("test-chain", alice.public, 0, Transfer(bob.public, 7 * UNIT), 0), alice)
    chains[0].submit_tx(tx.to_bytes())
    step(chains, clock, 12)
    heights = {c.height for c in chains}
    assert min(heights) >= 5
    h = min(heights)
    roots = {c.store.commits(h, h)[0].state_root for c in chains}
    assert len(roots) == 1, "state roots diverged"
    for c in chains:
        assert c.state.account(bob.public)["balance"] == 7 * UNIT
    for c in chains:
        c.close()


def test_restart_resumes_without_reexecuting_or_losing(tmp_path: Path) -> None:
    chains, keys, alice, genesis, clock = make_network(tmp_path)
    step(chains, clock, 10)
    node = chains[3]
    height, root, own_round = node.height, node.state.root(), node.core.last_proposed_round
    node.close()
    restarted = Chain(tmp_path / "n3", genesis, keypair=keys[3], clock=clock)
    assert restarted.height == height
    assert restarted.state.root() == root
    assert restarted.core.last_proposed_round == own_round, "might sign a second block for a round"
    chains[3] = restarted
    step(chains, clock, 10)
    assert restarted.height > height
    h = min(c.height for c in chains)
    assert len({c.store.commits(h, h)[0].state_root for c in chains}) == 1
    assert restarted.store.check() == []
    for c in chains:
        c.close()


def test_node_that_missed_blocks_catches_up(tmp_path: Path) -> None:
    chains, keys, alice, genesis, clock = make_network(tmp_path)
    step(chains, clock, 10, down=frozenset({2}))
    assert chains[2].height == 0 and chains[0].height > 0
    fill_gaps(chains[2], chains[0])
    assert chains[2].height >= chains[0].height - 1
    step(chains, clock, 5)
    h = min(c.height for c in chains)
    assert len({c.store.commits(h, h)[0].state_root for c in chains}) == 1


def test_store_refuses_another_chain(tmp_path: Path) -> None:
    chains, keys, alice, genesis, clock = make_network(tmp_path)
    chains[0].close()
    other = build_genesis("other-chain", validators=[(k.public, 1000 * UNIT) for k in keys])
    with pytest.raises(StoreError, match="genesis"):
        Chain(tmp_path / "n0", other, keypair=keys[0], clock=clock)


def test_wiped_store_never_signs_a_second_block_for_a_round(tmp_path: Path) -> None:
    chains, keys, alice, genesis, clock = make_network(tmp_path)
    step(chains, clock, 6)
    node = chains[1]
    signed_round = node.core.last_proposed_round
    node.store.record_own_block(0, signed_round, node.store.own_block(0, signed_round), b"x", 1)  # idempotent
    with pytest.raises(StoreError, match="second block"):
        node.store.record_own_block(0, signed_round, b"\x00" * 32, b"y", 1)


@pytest.mark.parametrize("cap", [5, 1000])
def test_own_blocks_hold_at_most_max_block_txs(tmp_path: Path, cap: int) -> None:
    """config.toml's max_block_txs bounds our blocks (it was read but never applied: the mempool's default
    of 1000 held whatever the config said, so a block of transfers never passed ~215 KB)."""
    others, keys, alice, genesis, clock = make_network(tmp_path, n=1)
    others[0].close()
    chain = Chain(tmp_path / "capped", genesis, keypair=keys[0], clock=clock, max_block_txs=cap)
    bob = Keypair(b"\xbb" * 32)
    for nonce in range(12):
        tx = Transaction("test-chain", alice.public, nonce, Transfer(bob.public, UNIT), 0)
        chain.submit_tx(SignedTransaction.create(tx, alice).to_bytes())
    clock.t += 0.3
    v = chain.propose()
    assert v is not None and len(v.signed.body.payload) == min(cap, 12)
    chain.close()


def test_a_max_block_txs_over_the_wire_cap_still_makes_valid_blocks(tmp_path: Path) -> None:
    """max_block_txs = 6000 made 4,600-transaction blocks that every peer refused (the wire caps a block at
    MAX_BLOCK_TXS = 4096): the proposer was cut out of the DAG. The config value is now held to the cap."""
    keys = [Keypair(bytes([i + 1]) * 32) for i in range(4)]
    # 16 each (the nonce gap), from senders validator 0 owns (it proposes only those at once: node/mempool.py)
    owned = (k for k in (Keypair(i.to_bytes(2, "big") * 16) for i in range(1 << 16)) if tx_owner(k.public, 4) == 0)
    senders = list(itertools.islice(owned, MAX_BLOCK_TXS // 16 + 2))
    genesis = build_genesis("test-chain", validators=[(k.public, 1000 * UNIT) for k in keys],
                            balances={s.public: 50 * UNIT for s in senders})
    clock = FakeClock()
    chain = Chain(tmp_path / "big", genesis, keypair=keys[0], clock=clock, max_block_txs=6000)
    bob = Keypair(b"\xbb" * 32)
    for s in senders:
        for nonce in range(16):
            chain.submit_tx(SignedTransaction.create(Transaction("test-chain", s.public, nonce, Transfer(bob.public, 1),
                                                                 0), s).to_bytes())
    clock.t += 0.3
    v = chain.propose()
    assert v is not None and len(v.signed.body.payload) == MAX_BLOCK_TXS
    SignedBlock.from_bytes(v.data)  # what a peer decodes first: it raised "list of 4600 items exceeds the cap"
    chain.close()
